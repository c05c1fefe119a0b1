package keys

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
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
	// IdentityKeyFile (ed25519, 0600) signs the "who am I" answers of a
	// print server that has no image.key: a follower, whose images are
	// signed upstream. Its public half, IdentityPubFile, is what the
	// follower's workstations check those answers with.
	IdentityKeyFile = "identity.key"
	IdentityPubFile = "identity.pub"
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
	// IdentityKey checks the print server's "who am I" answers
	// (identity.pub) when they are not signed with the image key: in the
	// lab of a print server that follows another one, whose images are
	// signed upstream. Nil: PublicKey checks them.
	IdentityKey ed25519.PublicKey
}

// ReadWorkstation reads dir/image.pub, dir/lab.key and, if there,
// dir/identity.pub.
func ReadWorkstation(dir string) (Workstation, error) {
	var w Workstation
	var err error
	if w.PublicKey, err = ReadPublicKey(filepath.Join(dir, PublicKeyFile)); err != nil {
		return Workstation{}, err
	}
	if w.LabKey, err = ReadHexKey(filepath.Join(dir, LabKeyFile)); err != nil {
		return Workstation{}, err
	}
	if w.IdentityKey, err = ReadPublicKey(filepath.Join(dir, IdentityPubFile)); errors.Is(err, ErrNoKeys) {
		w.IdentityKey = nil
	} else if err != nil {
		return Workstation{}, err
	}
	return w, nil
}

// WriteWorkstation writes w into dir (created 0755 if missing) as
// image.pub (0644), lab.key (0600) and, when w has one, identity.pub
// (0644; an older one is removed when w has none), and returns the files'
// names.
func WriteWorkstation(dir string, w Workstation) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	p, l, id := filepath.Join(dir, PublicKeyFile), filepath.Join(dir, LabKeyFile), filepath.Join(dir, IdentityPubFile)
	if err := WritePublicKey(p, w.PublicKey); err != nil {
		return nil, err
	}
	if err := WriteHexKey(l, w.LabKey); err != nil {
		return nil, err
	}
	if w.IdentityKey == nil {
		if err := os.Remove(id); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("keys: %w", err)
		}
		return []string{p, l}, nil
	}
	if err := WritePublicKey(id, w.IdentityKey); err != nil {
		return nil, err
	}
	return []string{p, l, id}, nil
}

// Fingerprint is how labseed shows a public key to a sysadmin, to compare
// with what another machine shows: "SHA256:" and the unpadded base64 of
// the SHA-256 of the key's 32 bytes (as ssh-keygen -l shows keys).
func Fingerprint(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// WritePublicKey writes pub to name as a PKIX PEM file, mode 0644.
func WritePublicKey(name string, pub ed25519.PublicKey) error {
	b, err := EncodePublicKey(pub)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(name, b, 0o644); err != nil {
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
	return ParsePublicKey(name, b)
}

// ParsePublicKey parses an ed25519 public key in the format of
// WritePublicKey (PKIX PEM); name says where b came from, in errors.
func ParsePublicKey(name string, b []byte) (ed25519.PublicKey, error) {
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

// EncodePublicKey returns pub as WritePublicKey writes it (PKIX PEM).
func EncodePublicKey(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
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
