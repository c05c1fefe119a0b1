package peer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNewTargetNotDir: a target that is a file is refused by name before
// anything is fetched (it failed later as "read state: ... not a
// directory").
func TestNewTargetNotDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := New(Config{Server: "127.0.0.1:1", Target: file, Insecure: true})
	if err == nil || !strings.Contains(err.Error(), file+" is not a directory") {
		t.Fatalf("New with a file as target: %v", err)
	}
}
