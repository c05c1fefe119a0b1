package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "hosts.csv")
	if err := Write(name, []byte("one"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := Write(name, []byte("two"), 0o640); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(name)
	fi, _ := os.Stat(name)
	if err != nil || string(b) != "two" || fi.Mode().Perm() != 0o640 {
		t.Fatalf("got %q, %v, mode %v", b, err, fi.Mode())
	}
	// A failing writer leaves the old file and no temporary file.
	boom := errors.New("boom")
	err = WriteFunc(name, 0o640, func(w io.Writer) error {
		w.Write([]byte("half"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("error %v", err)
	}
	if b, _ := os.ReadFile(name); string(b) != "two" {
		t.Fatalf("a failed write changed the file to %q", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("left behind: %v", ents)
	}
	// A missing directory is an error, not a panic.
	if err := Write(filepath.Join(dir, "no", "x"), nil, 0o600); err == nil {
		t.Fatal("wrote into a missing directory")
	}
}
