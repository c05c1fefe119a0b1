package keys

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestWorkstationRoundTrip(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	lab := bytes.Repeat([]byte{0xab}, 32)
	dir := filepath.Join(t.TempDir(), "export")
	files, err := WriteWorkstation(dir, Workstation{PublicKey: pub, LabKey: lab})
	if err != nil || len(files) != 2 {
		t.Fatalf("write: %v, %v", files, err)
	}
	for name, mode := range map[string]os.FileMode{PublicKeyFile: 0o644, LabKeyFile: 0o600} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Mode().Perm() != mode {
			t.Errorf("%s: %v, mode %v, want %v", name, err, st.Mode().Perm(), mode)
		}
	}
	w, err := ReadWorkstation(dir)
	if err != nil || !pub.Equal(w.PublicKey) || !bytes.Equal(w.LabKey, lab) {
		t.Fatalf("read back: %+v, %v", w, err)
	}
}

func TestReadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, err := ReadWorkstation(filepath.Join(dir, "nope")); !errors.Is(err, ErrNoKeys) {
		t.Errorf("missing directory: %v, want ErrNoKeys", err)
	}
	for name, tc := range map[string]struct {
		read func(string) error
		file string
	}{
		"hex too short": {func(p string) error { _, err := ReadHexKey(p); return err }, write("short", "abcd\n")},
		"not hex":       {func(p string) error { _, err := ReadHexKey(p); return err }, write("nothex", string(bytes.Repeat([]byte("zz"), 32)))},
		"not PEM":       {func(p string) error { _, err := ReadPublicKey(p); return err }, write("notpem", "hello")},
		"bad PEM":       {func(p string) error { _, err := ReadPublicKey(p); return err }, write("badpem", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")},
	} {
		if err := tc.read(tc.file); err == nil || errors.Is(err, ErrNoKeys) {
			t.Errorf("%s: %v, want an error naming the file", name, err)
		}
	}
	if k, err := ReadHexKey(write("spaces", "  "+string(bytes.Repeat([]byte("0f"), 32))+"\n\n")); err != nil || k[31] != 0x0f {
		t.Errorf("white space around the key: %x, %v", k, err)
	}
	if err := WriteHexKey(filepath.Join(dir, "x"), []byte{1}); err == nil {
		t.Error("a 1-byte key was written")
	}
}

func TestWorkstationIdentityKey(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	id, _, _ := ed25519.GenerateKey(rand.Reader)
	lab := bytes.Repeat([]byte{1}, 32)
	dir := t.TempDir()
	files, err := WriteWorkstation(dir, Workstation{PublicKey: pub, LabKey: lab, IdentityKey: id})
	if err != nil || len(files) != 3 {
		t.Fatalf("write: %v, %v", files, err)
	}
	w, err := ReadWorkstation(dir)
	if err != nil || !id.Equal(w.IdentityKey) || !pub.Equal(w.PublicKey) {
		t.Fatalf("read back: %+v, %v", w, err)
	}
	// Written again without one (the store publishes again): no stale
	// identity.pub is left to check answers with.
	if _, err := WriteWorkstation(dir, Workstation{PublicKey: pub, LabKey: lab}); err != nil {
		t.Fatal(err)
	}
	if w, err = ReadWorkstation(dir); err != nil || w.IdentityKey != nil {
		t.Fatalf("after rewrite without identity key: %+v, %v", w, err)
	}
	if fp := Fingerprint(pub); len(fp) != len("SHA256:")+43 || fp == Fingerprint(id) {
		t.Errorf("fingerprint %q", fp)
	}
}
