package store

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/labseed/labseed/internal/atomicfile"
	"github.com/labseed/labseed/keys"
)

func (s *Store) keysDir() string { return filepath.Join(s.dir, "keys") }

// ErrFollower is returned by SigningKey (and so Publish) on the store of a
// print server that follows another one: its images are signed upstream,
// with a key it does not have.
var ErrFollower = errors.New("store: this print server follows another one (keys/image.pub is the upstream's and there is no keys/image.key): publish on the upstream print server, where the signing key is")

// ErrKeyMismatch is returned (wrapped) by PinImageKey for a key other than
// the one the store checks its images with.
var ErrKeyMismatch = errors.New("store: another image key")

// SigningKey returns the store's ed25519 signing key, creating it (and the
// public key next to it) on first use. On a follower's store (PinImageKey:
// image.pub without image.key) it returns ErrFollower.
func (s *Store) SigningKey() (ed25519.PrivateKey, error) {
	name := filepath.Join(s.keysDir(), keys.SigningKeyFile)
	priv, err := readPrivateKey(name)
	if errors.Is(err, os.ErrNotExist) {
		if s.Follower() {
			return nil, ErrFollower
		}
		return s.newSigningKey(name, keys.PublicKeyFile)
	}
	return priv, err
}

// readPrivateKey reads an ed25519 private key in PKCS #8 PEM; an error
// wrapping os.ErrNotExist when there is none.
func readPrivateKey(name string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("store: read signing key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("store: %s is not a PEM file", name)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", name, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("store: %s is not an ed25519 key", name)
	}
	return priv, nil
}

// newSigningKey makes an ed25519 key, writes it to name (0600) and its
// public half to pubFile of the keys directory.
func (s *Store) newSigningKey(name, pubFile string) (ed25519.PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.keysDir(), 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := atomicfile.Write(name, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, fmt.Errorf("store: write %s: %w", filepath.Base(name), err)
	}
	if err := keys.WritePublicKey(filepath.Join(s.keysDir(), pubFile), pub); err != nil {
		return nil, err
	}
	return priv, nil
}

// Follower reports whether the store is a follower's: its image.pub is an
// upstream print server's (PinImageKey) and it has no image.key.
func (s *Store) Follower() bool {
	_, errKey := os.Stat(filepath.Join(s.keysDir(), keys.SigningKeyFile))
	_, errPub := os.Stat(filepath.Join(s.keysDir(), keys.PublicKeyFile))
	return errors.Is(errKey, os.ErrNotExist) && errPub == nil
}

// PublicKey returns the key the store's images are signed with: the
// public half of image.key, or on a follower's store the upstream's key
// it pinned (image.pub). A store with neither gets a new image.key.
func (s *Store) PublicKey() (ed25519.PublicKey, error) {
	if s.Follower() {
		return keys.ReadPublicKey(filepath.Join(s.keysDir(), keys.PublicKeyFile))
	}
	priv, err := s.SigningKey()
	if err != nil {
		return nil, err
	}
	return priv.Public().(ed25519.PublicKey), nil
}

// PinImageKey makes pub the key the store's images are checked with: the
// image key of the upstream print server this store follows, kept as
// keys/image.pub (and so what "labseed keys export" writes for the
// workstations). It reports whether pub was pinned now (false: the store
// already trusted it). A store that trusts another key (pinned before, or
// its own image.key) is left alone: the error wraps ErrKeyMismatch and
// names both fingerprints.
func (s *Store) PinImageKey(pub ed25519.PublicKey) (bool, error) {
	if len(pub) != ed25519.PublicKeySize {
		return false, errors.New("store: not an ed25519 public key")
	}
	name := filepath.Join(s.keysDir(), keys.PublicKeyFile)
	if priv, err := readPrivateKey(filepath.Join(s.keysDir(), keys.SigningKeyFile)); err == nil {
		if have := priv.Public().(ed25519.PublicKey); !have.Equal(pub) {
			return false, fmt.Errorf("%w: this store has its own signing key %s (keys/image.key: it publishes images), the upstream's is %s: follow with a store of its own, or copy the upstream's keys/image.key here if this is the same site", ErrKeyMismatch, keys.Fingerprint(have), keys.Fingerprint(pub))
		}
		return false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	have, err := keys.ReadPublicKey(name)
	switch {
	case err == nil && have.Equal(pub):
		return false, nil
	case err == nil:
		return false, fmt.Errorf("%w: this store trusts %s (%s, pinned when it first followed), the upstream's key is %s: if the site's signing key really changed, remove %s and start again", ErrKeyMismatch, keys.Fingerprint(have), name, keys.Fingerprint(pub), name)
	case !errors.Is(err, keys.ErrNoKeys):
		return false, err
	}
	if err := os.MkdirAll(s.keysDir(), 0o700); err != nil {
		return false, fmt.Errorf("store: %w", err)
	}
	if err := keys.WritePublicKey(name, pub); err != nil {
		return false, err
	}
	return true, nil
}

// IdentityKey returns the key the print server signs its "who am I"
// answers with: image.key when the store has one (the workstations check
// them with image.pub), else, on a follower's store, identity.key, made on
// first use (the workstations check them with identity.pub, which
// ExportKeys writes). A store with neither gets a new image.key.
func (s *Store) IdentityKey() (ed25519.PrivateKey, error) {
	if !s.Follower() {
		return s.SigningKey()
	}
	name := filepath.Join(s.keysDir(), keys.IdentityKeyFile)
	priv, err := readPrivateKey(name)
	if errors.Is(err, os.ErrNotExist) {
		return s.newSigningKey(name, keys.IdentityPubFile)
	}
	return priv, err
}

// LabKey returns the lab key (32 bytes), creating it on first use: the
// workstation credential, which encrypts the lab's gossip. It is in every
// netboot image, so it is no secret and gives no right to change anything.
func (s *Store) LabKey() ([]byte, error) { return s.hexKey(keys.LabKeyFile) }

// AdminKey returns the admin key (32 bytes), creating it on first use
// (STORE/keys/admin.key, 0600): the admin credential, which signs the
// requests that change the lab (api.AdminAuth). ExportKeys never writes it;
// "labseed keys admin FILE" copies it for a sysadmin's machine.
func (s *Store) AdminKey() ([]byte, error) { return s.hexKey(keys.AdminKeyFile) }

// hexKey reads the 32-byte key file name of the keys directory, creating
// it (and the directory, 0700) if missing.
func (s *Store) hexKey(file string) ([]byte, error) {
	name := filepath.Join(s.keysDir(), file)
	k, err := keys.ReadHexKey(name)
	if !errors.Is(err, keys.ErrNoKeys) {
		return k, err
	}
	k = make([]byte, 32)
	rand.Read(k)
	if err := os.MkdirAll(s.keysDir(), 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := keys.WriteHexKey(name, k); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return k, nil
}

// ExportKeys writes what a workstation needs into dir: the public key that
// checks image signatures (on a follower, the upstream's), the lab key and,
// on a follower, the public key that checks its "who am I" answers
// (identity.pub). Neither a signing key nor the admin key leaves the
// store this way.
func (s *Store) ExportKeys(dir string) ([]string, error) {
	pub, err := s.PublicKey()
	if err != nil {
		return nil, err
	}
	lab, err := s.LabKey()
	if err != nil {
		return nil, err
	}
	w := keys.Workstation{PublicKey: pub, LabKey: lab}
	if s.Follower() {
		id, err := s.IdentityKey()
		if err != nil {
			return nil, err
		}
		w.IdentityKey = id.Public().(ed25519.PublicKey)
	}
	return keys.WriteWorkstation(dir, w)
}
