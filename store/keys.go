package store

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/labseed/labseed/internal/atomicfile"
)

// Key file names, in DIR/keys of a store and in an exported key directory.
const (
	SigningKeyFile = "image.key"
	PublicKeyFile  = "image.pub"
	LabKeyFile     = "lab.key"
)

// ErrNoKeys is returned when a key directory lacks a key.
var ErrNoKeys = errors.New("store: key not found")

func (s *Store) keysDir() string { return filepath.Join(s.dir, "keys") }

// SigningKey returns the store's ed25519 signing key, creating it (and the
// public key next to it) on first use.
func (s *Store) SigningKey() (ed25519.PrivateKey, error) {
	name := filepath.Join(s.keysDir(), SigningKeyFile)
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
	if err := WritePublicKey(filepath.Join(s.keysDir(), PublicKeyFile), pub); err != nil {
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

// LabKey returns the lab's gossip encryption key (32 bytes), creating it on first use.
func (s *Store) LabKey() ([]byte, error) {
	name := filepath.Join(s.keysDir(), LabKeyFile)
	k, err := ReadLabKey(name)
	if !errors.Is(err, ErrNoKeys) {
		return k, err
	}
	k = make([]byte, 32)
	rand.Read(k)
	if err := os.MkdirAll(s.keysDir(), 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := atomicfile.Write(name, []byte(hex.EncodeToString(k)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("store: write lab key: %w", err)
	}
	return k, nil
}

// ExportKeys writes what a workstation needs into dir: the public key that
// checks image signatures and the lab's gossip key. Nothing secret about
// signing leaves the store.
func (s *Store) ExportKeys(dir string) ([]string, error) {
	pub, err := s.PublicKey()
	if err != nil {
		return nil, err
	}
	lab, err := s.LabKey()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	p, l := filepath.Join(dir, PublicKeyFile), filepath.Join(dir, LabKeyFile)
	if err := WritePublicKey(p, pub); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(l, []byte(hex.EncodeToString(lab)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("store: write lab key: %w", err)
	}
	return []string{p, l}, nil
}

// WritePublicKey writes pub to name as a PKIX PEM file.
func WritePublicKey(name string, pub ed25519.PublicKey) error {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(name, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		return fmt.Errorf("store: write public key: %w", err)
	}
	return nil
}

// ReadPublicKey reads an ed25519 public key written by WritePublicKey or ExportKeys.
func ReadPublicKey(name string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s does not exist (run 'labseed keys export DIR' on the print server and copy DIR here)", ErrNoKeys, name)
	}
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("store: %s is not a PEM file", name)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", name, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("store: %s is not an ed25519 public key", name)
	}
	return pub, nil
}

// ReadLabKey reads a lab gossip key file (64 hex digits).
func ReadLabKey(name string) ([]byte, error) {
	b, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s does not exist (run 'labseed keys export DIR' on the print server and copy DIR here)", ErrNoKeys, name)
	}
	if err != nil {
		return nil, err
	}
	k, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(k) != 32 {
		return nil, fmt.Errorf("store: %s is not a 32-byte hex key", name)
	}
	return k, nil
}
