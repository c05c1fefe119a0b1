package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/labseed/labseed/chunker"
)

// TestPublishLevel publishes with the zstd program and checks that a level
// publish cannot use is refused before the store is touched.
func TestPublishLevel(t *testing.T) {
	dir := t.TempDir()
	img := writeImage(t, filepath.Join(dir, "lab1.tar.gz"), 3, 4<<20)

	tests := []struct {
		name  string
		level string
		path  string // $PATH; empty: the test's
		want  string
	}{
		{"too high", "20", "", "compression level 20: use 1 (fastest) to 19"},
		{"negative", "-1", "", "compression level -1"},
		{"no zstd program", "19", t.TempDir(), "apt-get install zstd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := filepath.Join(dir, "store-"+tt.level)
			cmd := exec.Command(labseedBin, "publish", "--store", st, "--level", tt.level, img)
			if tt.path != "" {
				cmd.Env = append(os.Environ(), "PATH="+tt.path)
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Run(); err == nil {
				t.Fatal("publish succeeded")
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("stderr %q does not say %q", stderr.String(), tt.want)
			}
			if _, err := os.Stat(st); !os.IsNotExist(err) {
				t.Fatalf("the refused publish made the store: %v", err)
			}
		})
	}

	// Without the zstd program, the default level is the built-in one, with
	// a warning that says what to install.
	st := filepath.Join(dir, "store-nozstd")
	cmd := exec.Command(labseedBin, "publish", "--store", st, img)
	cmd.Env = append(os.Environ(), "PATH="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("publish without the zstd program: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "apt-get install zstd") {
		t.Fatalf("publish without the zstd program: stderr %q does not say what to install", stderr.String())
	}
	if m := readManifest(t, st, "lab1", 1); m.Level != chunker.DefaultLevel {
		t.Fatalf("default level without the zstd program: %d, want %d", m.Level, chunker.DefaultLevel)
	}

	if _, err := exec.LookPath(chunker.ZstdProgram); err != nil {
		t.Skipf("the zstd program is not installed (apt-get install zstd): %v", err)
	}
	st = filepath.Join(dir, "store-default")
	labseed(t, true, "publish", "--store", st, img)
	if m := readManifest(t, st, "lab1", 1); m.Level != publishLevel {
		t.Fatalf("default level with the zstd program: %d, want %d", m.Level, publishLevel)
	}

	st = filepath.Join(dir, "store")
	out, _ := labseed(t, true, "publish", "--store", st, "--level", "9", img)
	if !strings.Contains(out, "published lab1 v1:") {
		t.Fatalf("publish summary: %q", out)
	}
	b, err := os.ReadFile(filepath.Join(st, "images", "lab1", "v1", "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := chunker.DecodeManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	if m.Level != 9 {
		t.Fatalf("manifest level %d, want 9", m.Level)
	}
	out, _ = labseed(t, true, "verify", "--store", st, "lab1")
	if !strings.Contains(out, "intact") {
		t.Fatalf("verify: %q", out)
	}
}

// TestPublishChunkSize: --chunk-size makes smaller chunks (more of them);
// a size out of range is refused.
func TestPublishChunkSize(t *testing.T) {
	dir := t.TempDir()
	img := writeImage(t, filepath.Join(dir, "lab1.tar.gz"), 3, 4<<20)
	chunks := func(args ...string) int {
		t.Helper()
		st := filepath.Join(t.TempDir(), "store")
		labseed(t, true, append([]string{"publish", "--store", st, "--level", "1"}, append(args, img)...)...)
		b, err := os.ReadFile(filepath.Join(st, "images", "lab1", "v1", "manifest.json"))
		if err != nil {
			t.Fatal(err)
		}
		m, err := chunker.DecodeManifest(b)
		if err != nil {
			t.Fatal(err)
		}
		return len(m.Chunks)
	}
	def, small := chunks(), chunks("--chunk-size", "0.25")
	if small <= 2*def {
		t.Errorf("--chunk-size 0.25 made %d chunks, the default %d", small, def)
	}
	if _, stderr := labseed(t, false, "publish", "--store", filepath.Join(dir, "st"), "--chunk-size", "64", img); !strings.Contains(stderr, "--chunk-size 64: give 0.25 to 32 MiB") {
		t.Errorf("--chunk-size 64: %q", stderr)
	}
}

// readManifest reads and decodes version v of image name in store st.
func readManifest(t *testing.T, st, name string, v int) *chunker.Manifest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(st, "images", name, "v"+strconv.Itoa(v), "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := chunker.DecodeManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestPublishInterrupted: Ctrl-C in the middle of a publish (its input a
// pipe that has sent half the tar) says that nothing was published and
// leaves the store as it was: no version, nothing spooled.
func TestPublishInterrupted(t *testing.T) {
	dir := t.TempDir()
	img := writeImage(t, filepath.Join(dir, "lab1.tar.gz"), 3, 8<<20)
	tarball, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "input.tar.gz")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	st := filepath.Join(dir, "store")
	cmd := exec.Command(labseedBin, "publish", "--store", st, "--name", "lab1", "--level", "1", fifo)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Write(tarball[:len(tarball)/2])
	time.Sleep(500 * time.Millisecond) // publish reading, waiting for the rest
	cmd.Process.Signal(os.Interrupt)
	if err := waitCmd(cmd, 20*time.Second); err == nil {
		t.Fatal("an interrupted publish exited 0")
	}
	if !strings.Contains(stderr.String(), "interrupted: nothing was published") {
		t.Errorf("the interrupted publish says %q", stderr.String())
	}
	if out, _ := labseed(t, true, "images", "--store", st); strings.Contains(out, "lab1") {
		t.Errorf("after the interrupted publish the store lists lab1:\n%s", out)
	}
	var left []string
	filepath.WalkDir(st, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasPrefix(p, filepath.Join(st, "keys")+string(filepath.Separator)) && d.Name() != ".lock" {
			left = append(left, p)
		}
		return nil
	})
	if len(left) > 0 {
		t.Errorf("the interrupted publish left %v", left)
	}
}
