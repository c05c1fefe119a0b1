package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labseed/labseed/internal/fixture"
	"github.com/labseed/labseed/treecmp"
)

// labseedBin is the labseed binary the tests run, built by TestMain.
var labseedBin string

func TestMain(m *testing.M) {
	if os.Getenv("LABSEED_PXE_CLIENT") != "" || os.Getenv("LABSEED_DEPLOY_WS") != "" {
		os.Exit(m.Run()) // a helper process (TestHelperPXEClient, TestHelperDeployWS): no binary needed
	}
	dir, err := os.MkdirTemp("", "labseed-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	labseedBin = filepath.Join(dir, "labseed")
	if out, err := exec.Command("go", "build", "-o", labseedBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build labseed: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// labseed runs the binary and returns its stdout; it fails the test if the
// exit status is not the wanted one.
func labseed(t testing.TB, wantOK bool, args ...string) (string, string) {
	t.Helper()
	cmd := exec.Command(labseedBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if (err == nil) != wantOK {
		t.Fatalf("labseed %s: %v (want ok=%v)\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, wantOK, out.String(), errb.String())
	}
	return out.String(), errb.String()
}

func writeImage(t testing.TB, name string, seed uint64, size int64) string {
	t.Helper()
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := fixture.GenerateImage(f, fixture.ImageOptions{TotalBytes: size, Seed: seed, Gzip: true}); err != nil {
		t.Fatal(err)
	}
	return name
}

// TestCommands runs publish, images, verify, keys export and extract as a
// sysadmin would, and checks what they print and leave behind.
func TestCommands(t *testing.T) {
	dir := t.TempDir()
	st := filepath.Join(dir, "store")
	img := writeImage(t, filepath.Join(dir, "lab1.tar.gz"), 1, 16<<20)

	out, _ := labseed(t, true, "publish", "--store", st, img)
	if !strings.Contains(out, "published lab1 v1:") || !strings.Contains(out, "infohash") {
		t.Fatalf("publish summary: %q", out)
	}
	if fi, err := os.Stat(filepath.Join(st, "keys", "image.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("signing key: %v %v", fi, err)
	}
	out, _ = labseed(t, true, "publish", "--store", st, img)
	if !strings.Contains(out, "published lab1 v2:") {
		t.Fatalf("second publish: %q", out)
	}
	out, _ = labseed(t, true, "images", "--store", st)
	if !strings.Contains(out, "lab1") || !strings.Contains(out, "v2") {
		t.Fatalf("images: %q", out)
	}
	out, _ = labseed(t, true, "verify", "--store", st, "lab1")
	if !strings.Contains(out, "intact") {
		t.Fatalf("verify: %q", out)
	}
	keys := filepath.Join(dir, "keys")
	labseed(t, true, "keys", "export", "--store", st, keys)
	for _, f := range []string{"image.pub", "lab.key"} {
		if _, err := os.Stat(filepath.Join(keys, f)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(keys, "image.key")); err == nil {
		t.Fatal("keys export wrote the signing key")
	}
	target := filepath.Join(dir, "target")
	out, _ = labseed(t, true, "extract", "--store", st, "--image", "lab1", "--target", target, "--pub-key", filepath.Join(keys, "image.pub"), "--shuffle")
	if !strings.Contains(out, "extracted lab1 v2") {
		t.Fatalf("extract: %q", out)
	}
	// The same tarball extracted by GNU tar must give the same tree.
	ref := filepath.Join(dir, "ref")
	os.Mkdir(ref, 0o755)
	if b, err := exec.Command("tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-C", ref, "-xzf", img).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, b)
	}
	diffs, err := treecmp.Compare(ref, target, treecmp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) > 0 {
		t.Fatalf("extract differs from tar -x: %v", diffs)
	}
}

func TestCommandErrors(t *testing.T) {
	dir := t.TempDir()
	st := filepath.Join(dir, "store")
	img := writeImage(t, filepath.Join(dir, "lab1.tar.gz"), 2, 4<<20)
	labseed(t, true, "publish", "--store", st, img)

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown image", []string{"verify", "--store", st, "nope"}, "no such image"},
		{"not a tarball", []string{"publish", "--store", st, "--name", "x", "/etc/hostname"}, "not a tar"},
		{"missing file", []string{"publish", "--store", st, filepath.Join(dir, "missing.tar.gz")}, "no such file"},
		{"target not empty", []string{"extract", "--store", st, "--image", "lab1", "--target", st}, "not empty"},
		{"wrong public key", []string{"extract", "--store", st, "--image", "lab1", "--target", filepath.Join(dir, "t"), "--pub-key", filepath.Join(dir, "other.pub")}, "does not exist"},
		{"mistyped store, images", []string{"images", "--store", filepath.Join(dir, "typo")}, "no image store in"},
		{"mistyped store, verify", []string{"verify", "--store", filepath.Join(dir, "typo"), "lab1"}, "no image store in"},
		{"mistyped store, extract", []string{"extract", "--store", filepath.Join(dir, "typo"), "--image", "lab1", "--target", filepath.Join(dir, "t")}, "no image store in"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr := labseed(t, false, tt.args...)
			if !strings.Contains(stderr, tt.want) {
				t.Fatalf("stderr %q does not say %q", stderr, tt.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "typo")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a mistyped --store was made: %v", err)
	}
	// keys export makes the keys of a new store, and says so; of the
	// store that has them, it says nothing.
	_, stderr := labseed(t, true, "keys", "export", "--store", filepath.Join(dir, "new"), filepath.Join(dir, "k1"))
	if !strings.Contains(stderr, "had no keys: new ones were made") {
		t.Errorf("keys export of a new store: stderr %q", stderr)
	}
	if _, stderr := labseed(t, true, "keys", "export", "--store", st, filepath.Join(dir, "k2")); stderr != "" {
		t.Errorf("keys export of the store: stderr %q", stderr)
	}

	// A payload damaged on disk is found by verify, which names the chunk.
	payloads, _ := filepath.Glob(filepath.Join(st, "images", "lab1", "v1", "*.chunks"))
	if len(payloads) != 1 {
		t.Fatalf("payload files: %v", payloads)
	}
	f, err := os.OpenFile(payloads[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("garbage"), 1000)
	f.Close()
	_, stderr = labseed(t, false, "verify", "--store", st, "lab1")
	if !strings.Contains(stderr, "chunk 0") || !strings.Contains(stderr, "damaged") {
		t.Fatalf("verify of a damaged payload: %q", stderr)
	}
}

// TestHelpEveryCommand: "labseed help COMMAND" exits 0 and teaches the
// command's flags, those of the commands with subcommands (keys, hosts,
// netboot) too.
func TestHelpEveryCommand(t *testing.T) {
	for _, c := range commands {
		out, err := exec.Command(labseedBin, "help", c.name).CombinedOutput()
		_, flags, _ := strings.Cut(string(out), "\nflags:\n")
		flags, _, _ = strings.Cut(flags, "\nexample:")
		switch {
		case err != nil:
			t.Errorf("labseed help %s: %v\n%s", c.name, err, out)
		case !strings.Contains(string(out), "usage: labseed "+c.name):
			t.Errorf("labseed help %s has no usage line:\n%s", c.name, out)
		case c == dashboardCmd:
			if flags != "" {
				t.Errorf("labseed help dashboard shows flags it has not:\n%s", out)
			}
		case !strings.HasPrefix(flags, "  -"):
			t.Errorf("labseed help %s shows no flag:\n%s", c.name, out)
		}
	}
}

// waitCmd waits for cmd, at most d (then kills it).
func waitCmd(cmd *exec.Cmd, d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s: still running after %s", cmd.Args[len(cmd.Args)-1], d)
	}
}
