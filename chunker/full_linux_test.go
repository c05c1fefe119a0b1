package chunker

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/labseed/labseed/treecmp"
	"golang.org/x/sys/unix"
)

// TestFullDisk extracts onto a file system too small for the image, checks
// that the error says so, then grows the file system and resumes.
func TestFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	in := genImage(t, 11, 6<<20)
	m, payload := publish(t, in, smallChunks)
	dir := t.TempDir()
	ref := filepath.Join(dir, "ref")
	applyAll(t, newApplier(t, m, ref), payload, rand.Perm(len(m.Chunks)))

	target := filepath.Join(dir, "small")
	os.Mkdir(target, 0o755)
	if err := unix.Mount("labseed-test", target, "tmpfs", 0, "size=2m"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH) })

	a, err := NewApplier(m, ApplyConfig{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	order := rand.Perm(len(m.Chunks))
	for _, i := range order {
		if err = a.Apply(context.Background(), i, chunk(m, payload, i)); err != nil {
			break
		}
	}
	a.Close()
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("extracting onto a full disk: %v, want ErrNoSpace", err)
	}
	t.Logf("full disk reported as: %v", err)

	if err := unix.Mount("labseed-test", target, "tmpfs", unix.MS_REMOUNT, "size=64m"); err != nil {
		t.Fatal(err)
	}
	applyAll(t, newApplier(t, m, target), payload, order)
	diffs, err := treecmp.Compare(ref, target, cmpOpts)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Errorf("resumed after full disk: %s", d)
	}
}
