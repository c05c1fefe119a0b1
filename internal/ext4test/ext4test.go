//go:build linux

// Package ext4test gives tests a small ext4 file system on a loop device,
// and a power cut: the shutdown ioctl that commits the journal and throws
// away the data still in the page cache, as a machine that loses power
// after a journal commit does. Tests call New, write, PowerCut, Remount and
// look at what survived. Everything needs root and mkfs.ext4; New skips the
// test otherwise.
//
// Usage:
//
//	fs := ext4test.New(t, 256<<20)
//	... write under fs.Dir ...
//	fs.PowerCut(t)
//	... close what is open on it ...
//	fs.Unmount(t)
//	fs.Remount(t)
package ext4test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Shutdown ioctl of ext4 and XFS (FS_IOC_SHUTDOWN, EXT4_IOC_SHUTDOWN,
// XFS_IOC_GOINGDOWN: _IOR('X', 125, __u32)) and its flags
// (include/uapi/linux/fs.h).
const (
	iocShutdown = 0x8004587d
	// FlagDefault syncs everything, then shuts down: nothing is lost.
	FlagDefault = 0
	// FlagLogFlush commits the journal, then shuts down without writing the
	// dirty data: the metadata of everything done so far is on disk, the
	// data not yet written back is lost. This is the power cut that leaves
	// files of the right names with zero length or zeros in them.
	FlagLogFlush = 1
	// FlagNoLogFlush shuts down without committing the journal: only what
	// earlier commits (every 5 s by default) wrote survives.
	FlagNoLogFlush = 2
)

// FS is an ext4 file system on a loop device, mounted at Dir.
type FS struct {
	// Image is the file backing the loop device.
	Image string
	// Dir is where the file system is mounted.
	Dir     string
	dev     string // the loop device made by NewDirectIO
	mounted bool
}

// mountArgs returns the mount command's arguments.
func (fs *FS) mountArgs() []string {
	if fs.dev != "" {
		return []string{fs.dev, fs.Dir}
	}
	return []string{"-o", "loop", fs.Image, fs.Dir}
}

// New makes an ext4 file system of size bytes in a sparse file, mounts it
// with -o loop under a temporary directory and unmounts it when the test
// ends. It skips the test unless it runs as root with mkfs.ext4 and loop
// devices.
func New(t testing.TB, size int64) *FS {
	t.Helper()
	return newFS(t, size, false)
}

// NewDirectIO is New with a loop device that writes to its backing file
// with direct I/O (losetup --direct-io=on), so that a sync waits for the
// machine's disk as it would for a real one: for benchmarks of syncs.
func NewDirectIO(t testing.TB, size int64) *FS {
	t.Helper()
	return newFS(t, size, true)
}

func newFS(t testing.TB, size int64, direct bool) *FS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("an ext4 loop device needs root")
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 not installed (Debian package e2fsprogs)")
	}
	dir := t.TempDir()
	fs := &FS{Image: filepath.Join(dir, "fs.img"), Dir: filepath.Join(dir, "mnt")}
	if err := os.Mkdir(fs.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(fs.Image)
	if err != nil {
		t.Fatal(err)
	}
	err = f.Truncate(size)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	// No lazy init: its kernel thread writes while the test runs.
	run(t, "mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", fs.Image)
	if direct {
		out, err := exec.Command("losetup", "--direct-io=on", "--find", "--show", fs.Image).CombinedOutput()
		if err != nil {
			t.Skipf("losetup --direct-io=on (no loop devices here?): %v: %s", err, out)
		}
		fs.dev = strings.TrimSpace(string(out))
		t.Cleanup(func() { exec.Command("losetup", "-d", fs.dev).Run() })
	}
	if out, err := exec.Command("mount", fs.mountArgs()...).CombinedOutput(); err != nil {
		t.Skipf("mount %v (no loop devices here?): %v: %s", fs.mountArgs(), err, out)
	}
	fs.mounted = true
	t.Cleanup(func() {
		if fs.mounted {
			if err := unix.Unmount(fs.Dir, 0); err != nil {
				unix.Unmount(fs.Dir, unix.MNT_DETACH)
			}
		}
	})
	return fs
}

// PowerCut shuts the file system down with FlagLogFlush: the journal is
// committed, dirty data is dropped, and every later write fails. Close
// what is open on it, then Unmount and Remount.
func (fs *FS) PowerCut(t testing.TB) { fs.Shutdown(t, FlagLogFlush) }

// Shutdown shuts the file system down with the given flag.
func (fs *FS) Shutdown(t testing.TB, flag uint32) {
	t.Helper()
	d, err := os.Open(fs.Dir)
	if err != nil {
		t.Fatal(err)
	}
	err = unix.IoctlSetPointerInt(int(d.Fd()), iocShutdown, int(flag))
	d.Close()
	if err != nil {
		t.Fatalf("shutdown ioctl on %s: %v", fs.Dir, err)
	}
}

// Unmount unmounts the file system. Every file opened on it must be closed.
func (fs *FS) Unmount(t testing.TB) {
	t.Helper()
	if err := unix.Unmount(fs.Dir, 0); err != nil {
		if errors.Is(err, unix.EBUSY) {
			t.Fatalf("unmount %s: %v (a file on it is still open)", fs.Dir, err)
		}
		t.Fatalf("unmount %s: %v", fs.Dir, err)
	}
	fs.mounted = false
}

// Remount mounts the file system again (replaying its journal).
func (fs *FS) Remount(t testing.TB) {
	t.Helper()
	run(t, "mount", fs.mountArgs()...)
	fs.mounted = true
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
}
