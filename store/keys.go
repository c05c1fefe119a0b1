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

// SigningKey returns the store's ed25519 signing key, creating it (and the
// public key next to it) on first use.
func (s *Store) SigningKey() (ed25519.PrivateKey, error) {
	name := filepath.Join(s.keysDir(), keys.SigningKeyFile)
	b, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		return s.newSigningKey(name)
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

func (s *Store) newSigningKey(name string) (ed25519.PrivateKey, error) {
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
		return nil, fmt.Errorf("store: write signing key: %w", err)
	}
	if err := keys.WritePublicKey(filepath.Join(s.keysDir(), keys.PublicKeyFile), pub); err != nil {
		return nil, err
	}
	return priv, nil
}

// PublicKey returns the public half of the store's signing key.
func (s *Store) PublicKey() (ed25519.PublicKey, error) {
	priv, err := s.SigningKey()
	if err != nil {
		return nil, err
	}
	return priv.Public().(ed25519.PublicKey), nil
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
// checks image signatures and the lab key. Neither the signing key nor the
// admin key leaves the store this way.
func (s *Store) ExportKeys(dir string) ([]string, error) {
	pub, err := s.PublicKey()
	if err != nil {
		return nil, err
	}
	lab, err := s.LabKey()
	if err != nil {
		return nil, err
	}
	return keys.WriteWorkstation(dir, keys.Workstation{PublicKey: pub, LabKey: lab})
}
