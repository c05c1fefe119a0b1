package keys

import (
	"crypto/ed25519"
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

// Key file names, in STORE/keys and in an exported key directory.
const (
	SigningKeyFile = "image.key"
	PublicKeyFile  = "image.pub"
	LabKeyFile     = "lab.key"
	AdminKeyFile   = "admin.key"
)

// DefaultDir is where a workstation looks for its keys: where the netboot
// image has them.
const DefaultDir = "/etc/labseed/keys"

// ErrNoKeys is returned (wrapped) when a key file does not exist.
var ErrNoKeys = errors.New("keys: key not found")

// Workstation is the keys a workstation holds: what "labseed keys export"
// writes.
type Workstation struct {
	// PublicKey checks image signatures (image.pub).
	PublicKey ed25519.PublicKey
	// LabKey encrypts the lab's gossip (lab.key, 32 bytes).
	LabKey []byte
}

// ReadWorkstation reads dir/image.pub and dir/lab.key.
func ReadWorkstation(dir string) (Workstation, error) {
	var w Workstation
	var err error
	if w.PublicKey, err = ReadPublicKey(filepath.Join(dir, PublicKeyFile)); err != nil {
		return Workstation{}, err
	}
	if w.LabKey, err = ReadHexKey(filepath.Join(dir, LabKeyFile)); err != nil {
		return Workstation{}, err
	}
	return w, nil
}

// WriteWorkstation writes w into dir (created 0755 if missing) as
// image.pub (0644) and lab.key (0600), and returns the files' names.
func WriteWorkstation(dir string, w Workstation) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	p, l := filepath.Join(dir, PublicKeyFile), filepath.Join(dir, LabKeyFile)
	if err := WritePublicKey(p, w.PublicKey); err != nil {
		return nil, err
	}
	if err := WriteHexKey(l, w.LabKey); err != nil {
		return nil, err
	}
	return []string{p, l}, nil
}

// WritePublicKey writes pub to name as a PKIX PEM file, mode 0644.
func WritePublicKey(name string, pub ed25519.PublicKey) error {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(name, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		return fmt.Errorf("keys: write public key: %w", err)
	}
	return nil
}

// ReadPublicKey reads an ed25519 public key written by WritePublicKey.
func ReadPublicKey(name string) (ed25519.PublicKey, error) {
	b, err := readKeyFile(name)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("keys: %s is not a PEM file", name)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("keys: %s: %w", name, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("keys: %s is not an ed25519 public key", name)
	}
	return pub, nil
}

// WriteHexKey writes a 32-byte secret key to name as 64 hex digits and a
// newline, mode 0600.
func WriteHexKey(name string, k []byte) error {
	if len(k) != 32 {
		return fmt.Errorf("keys: %s: a key of %d bytes, want 32", name, len(k))
	}
	if err := atomicfile.Write(name, []byte(hex.EncodeToString(k)+"\n"), 0o600); err != nil {
		return fmt.Errorf("keys: write %s: %w", filepath.Base(name), err)
	}
	return nil
}

// ReadHexKey reads a key file written by WriteHexKey (lab.key): 64 hex
// digits, surrounding white space ignored.
func ReadHexKey(name string) ([]byte, error) {
	b, err := readKeyFile(name)
	if err != nil {
		return nil, err
	}
	k, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(k) != 32 {
		return nil, fmt.Errorf("keys: %s is not a 32-byte hex key", name)
	}
	return k, nil
}

func readKeyFile(name string) ([]byte, error) {
	b, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s does not exist (run 'labseed keys export DIR' on the print server and copy DIR here)", ErrNoKeys, name)
	}
	return b, err
}
