package treecmp

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// base is the mtime of everything in the test tree: 2024-01-02T03:04:05Z
// plus 123456789ns.
const base = int64(1704164645)*1e9 + 123456789

// setMtime sets the mtime (and atime) of p, not following a symlink.
func setMtime(t *testing.T, p string, ns int64) {
	t.Helper()
	ts := unix.NsecToTimespec(ns)
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatal(err)
	}
}

// testDirs lists the directories of the test tree, deepest first.
var testDirs = []string{"d/e", "d", "."}

// buildTree creates the test tree at dir:
//
//	a.txt        "hello", 0644, xattr user.k=v
//	d/           0755
//	d/e/         0750
//	d/f          hard link of d/g, and of d/e/h
//	d/g
//	d/e/h
//	link -> a.txt
//	caf\xe9      "non-UTF-8 name"
//	fifo
func buildTree(t *testing.T, dir string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	j := func(p string) string { return filepath.Join(dir, p) }
	must(os.MkdirAll(j("d/e"), 0o755))
	must(os.Chmod(j("d/e"), 0o750))
	must(os.WriteFile(j("a.txt"), []byte("hello"), 0o644))
	must(unix.Lsetxattr(j("a.txt"), "user.k", []byte("v"), 0))
	must(os.WriteFile(j("d/f"), []byte("linked"), 0o644))
	must(os.Link(j("d/f"), j("d/g")))
	must(os.Link(j("d/f"), j("d/e/h")))
	must(os.Symlink("a.txt", j("link")))
	must(os.WriteFile(j("caf\xe9"), []byte("non-UTF-8 name"), 0o600))
	must(unix.Mkfifo(j("fifo"), 0o640))
	for _, p := range []string{"a.txt", "d/f", "link", "caf\xe9", "fifo"} {
		setMtime(t, j(p), base)
	}
	fixDirTimes(t, dir)
}

// fixDirTimes sets the mtime of every directory of the test tree (that
// is still there) back to base, after entries were added or removed.
func fixDirTimes(t *testing.T, dir string) {
	t.Helper()
	for _, d := range testDirs {
		if _, err := os.Lstat(filepath.Join(dir, d)); err == nil {
			setMtime(t, filepath.Join(dir, d), base)
		}
	}
}

func TestCompare(t *testing.T) {
	tests := []struct {
		name         string
		mutate       func(t *testing.T, b string)
		keepDirTimes bool // do not reset directory mtimes after mutate
		opt          Options
		want         []string
	}{
		{
			name:   "identical",
			mutate: func(t *testing.T, b string) {},
		},
		{
			name: "mode",
			mutate: func(t *testing.T, b string) {
				if err := os.Chmod(filepath.Join(b, "a.txt"), 0o644|os.ModeSetuid); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"a.txt: mode 0644 != 04644"},
		},
		{
			name: "sticky dir",
			mutate: func(t *testing.T, b string) {
				if err := os.Chmod(filepath.Join(b, "d"), 0o755|os.ModeSticky); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"d: mode 0755 != 01755"},
		},
		{
			name: "content same size",
			mutate: func(t *testing.T, b string) {
				p := filepath.Join(b, "a.txt")
				writeKeep(t, p, "jello")
			},
			want: []string{"a.txt: content sha256 2cf24dba5fb0a30e != 187c9bceeb919e1b"},
		},
		{
			name: "size",
			mutate: func(t *testing.T, b string) {
				writeKeep(t, filepath.Join(b, "a.txt"), "hello!")
			},
			want: []string{"a.txt: size 5 != 6"},
		},
		{
			name: "xattr value",
			mutate: func(t *testing.T, b string) {
				if err := unix.Lsetxattr(filepath.Join(b, "a.txt"), "user.k", []byte("w\x00"), 0); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{`a.txt: xattr user.k "v" != "w\x00"`},
		},
		{
			name: "xattr missing and extra",
			mutate: func(t *testing.T, b string) {
				if err := unix.Lremovexattr(filepath.Join(b, "a.txt"), "user.k"); err != nil {
					t.Fatal(err)
				}
				if err := unix.Lsetxattr(filepath.Join(b, "d"), "user.new", nil, 0); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"a.txt: xattr user.k only in a", "d: xattr user.new only in b"},
		},
		{
			name: "symlink target",
			mutate: func(t *testing.T, b string) {
				p := filepath.Join(b, "link")
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink("/a.txt", p); err != nil {
					t.Fatal(err)
				}
				setMtime(t, p, base)
			},
			want: []string{`link: symlink target "a.txt" != "/a.txt"`},
		},
		{
			name: "missing and extra file",
			mutate: func(t *testing.T, b string) {
				if err := os.Remove(filepath.Join(b, "fifo")); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(b, "d/new"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"only in b: d/new", "only in a: fifo"},
		},
		{
			name: "directory missing",
			mutate: func(t *testing.T, b string) {
				if err := os.RemoveAll(filepath.Join(b, "d/e")); err != nil {
					t.Fatal(err)
				}
				if err := os.MkdirAll(filepath.Join(b, "x/y"), 0o755); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{
				"only in a: d/e (and 1 entry below)",
				"d/f: hard-link group d/e/h != d/f", // d/e/h was the smallest name
				"d/g: hard-link group d/e/h != d/f",
				"only in b: x (and 1 entry below)",
			},
		},
		{
			name: "non-UTF-8 name missing",
			mutate: func(t *testing.T, b string) {
				if err := os.Remove(filepath.Join(b, "caf\xe9")); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{`only in a: "caf\xe9"`},
		},
		{
			name: "type",
			mutate: func(t *testing.T, b string) {
				p := filepath.Join(b, "fifo")
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink("x", p); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"fifo: type fifo != symlink"},
		},
		{
			name: "hard link broken into copies",
			mutate: func(t *testing.T, b string) {
				// d/e/h becomes a copy with the same content, mode and
				// mtime: only the grouping differs.
				p := filepath.Join(b, "d/e/h")
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte("linked"), 0o644); err != nil {
					t.Fatal(err)
				}
				setMtime(t, p, base)
			},
			want: []string{
				"d/e/h: hard-link group d/e/h != (none)",
				"d/f: hard-link group d/e/h != d/f",
				"d/g: hard-link group d/e/h != d/f",
			},
		},
		{
			name: "hard links regrouped",
			mutate: func(t *testing.T, b string) {
				// a.txt joins no group, but d/g becomes a link of a.txt's
				// content copy: same sets of bytes, different inodes.
				p := filepath.Join(b, "d/g")
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				if err := os.Link(filepath.Join(b, "a.txt"), p); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{
				"a.txt: hard-link group (none) != a.txt",
				"d/g: size 6 != 5",
				"d/g: xattr user.k only in b",
				"d/g: hard-link group d/e/h != a.txt",
			},
		},
		{
			name: "mtime file",
			mutate: func(t *testing.T, b string) {
				setMtime(t, filepath.Join(b, "a.txt"), base+1)
			},
			want: []string{"a.txt: mtime 2024-01-02T03:04:05.123456789Z != 2024-01-02T03:04:05.123456790Z"},
		},
		{
			name: "mtime symlink",
			mutate: func(t *testing.T, b string) {
				setMtime(t, filepath.Join(b, "link"), base-1e9)
			},
			want: []string{"link: mtime 2024-01-02T03:04:05.123456789Z != 2024-01-02T03:04:04.123456789Z"},
		},
		{
			name: "mtime dir",
			mutate: func(t *testing.T, b string) {
				setMtime(t, filepath.Join(b, "d/e"), base+1)
			},
			keepDirTimes: true,
			want:         []string{"d/e: mtime 2024-01-02T03:04:05.123456789Z != 2024-01-02T03:04:05.123456790Z"},
		},
		{
			name: "mtime dir skipped",
			mutate: func(t *testing.T, b string) {
				if err := os.WriteFile(filepath.Join(b, "d/e/new"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			keepDirTimes: true,
			opt:          Options{SkipMtimeDirs: true},
			want:         []string{"only in b: d/e/new"},
		},
		{
			name: "ignored",
			mutate: func(t *testing.T, b string) {
				if err := os.MkdirAll(filepath.Join(b, ".labseed/state"), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(filepath.Join(b, "d/e"), 0o700); err != nil {
					t.Fatal(err)
				}
			},
			opt: Options{Ignore: []string{".labseed", "d/e/"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := t.TempDir(), t.TempDir()
			buildTree(t, a)
			buildTree(t, b)
			tc.mutate(t, b)
			if !tc.keepDirTimes {
				fixDirTimes(t, b)
			}
			got, err := Compare(a, b, tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Compare:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// writeKeep replaces the contents of p and restores its mtime.
func writeKeep(t *testing.T, p, data string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(data), 0); err != nil {
		t.Fatal(err)
	}
	setMtime(t, p, base)
}

func TestScan(t *testing.T) {
	dir := t.TempDir()
	buildTree(t, dir)
	m, err := Scan(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{".", "a.txt", "caf\xe9", "d", "d/e", "d/e/h", "d/f", "d/g", "fifo", "link"}
	if got := slices.Sorted(maps.Keys(m)); !slices.Equal(got, want) {
		t.Fatalf("paths %q, want %q", got, want)
	}
	tests := []struct {
		path string
		want Entry
	}{
		{"a.txt", Entry{Type: TypeFile, Mode: 0o644, Size: 5,
			SHA256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
			Xattrs: map[string]string{"user.k": "v"}}},
		{"d/e", Entry{Type: TypeDir, Mode: 0o750}},
		{"d/g", Entry{Type: TypeFile, Mode: 0o644, Size: 6, LinkGroup: "d/e/h",
			SHA256: hexSHA256("linked")}},
		{"link", Entry{Type: TypeSymlink, Mode: 0o777, Size: 5, Link: "a.txt"}},
		{"fifo", Entry{Type: TypeFIFO, Mode: 0o640}},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			e := m[tc.path]
			tc.want.Path = tc.path
			tc.want.UID, tc.want.GID = uint32(os.Getuid()), uint32(os.Getgid())
			tc.want.MtimeNs = e.MtimeNs
			if tc.want.Type != TypeDir {
				tc.want.MtimeNs = base
			}
			if tc.want.Type == TypeDir {
				tc.want.Size = e.Size
			}
			if !reflect.DeepEqual(e, tc.want) {
				t.Errorf("got  %+v\nwant %+v", e, tc.want)
			}
		})
	}
}

// hexSHA256 returns the hex SHA-256 of s.
func hexSHA256(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestComparePrivileged covers what only root can create: foreign owners
// and device nodes.
func TestComparePrivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: chown to foreign ids and mknod")
	}
	tests := []struct {
		name   string
		mutate func(b string) error
		want   []string
	}{
		{
			name:   "owner",
			mutate: func(b string) error { return os.Lchown(filepath.Join(b, "link"), 4242, 4343) },
			want:   []string{"link: owner 0:0 != 4242:4343"},
		},
		{
			name: "rdev",
			mutate: func(b string) error {
				p := filepath.Join(b, "null")
				if err := os.Remove(p); err != nil {
					return err
				}
				if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 5))); err != nil {
					return err
				}
				return os.Chmod(p, 0o666)
			},
			want: []string{"null: rdev 1,3 != 1,5"},
		},
		{
			name: "char to block",
			mutate: func(b string) error {
				p := filepath.Join(b, "null")
				if err := os.Remove(p); err != nil {
					return err
				}
				return unix.Mknod(p, unix.S_IFBLK|0o666, int(unix.Mkdev(1, 3)))
			},
			want: []string{"null: type char != block"},
		},
		{
			name: "trusted xattr",
			mutate: func(b string) error {
				return unix.Lsetxattr(filepath.Join(b, "a.txt"), "trusted.x", []byte{0xff}, 0)
			},
			want: []string{"a.txt: xattr trusted.x only in b"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := t.TempDir(), t.TempDir()
			for _, dir := range []string{a, b} {
				buildTree(t, dir)
				p := filepath.Join(dir, "null")
				if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(p, 0o666); err != nil {
					t.Fatal(err)
				}
				setMtime(t, p, base)
			}
			if err := tc.mutate(b); err != nil {
				t.Fatal(err)
			}
			for _, dir := range []string{a, b} {
				setMtime(t, filepath.Join(dir, "null"), base)
				fixDirTimes(t, dir)
			}
			got, err := Compare(a, b, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Compare:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestCompareMissingRoot(t *testing.T) {
	_, err := Compare(filepath.Join(t.TempDir(), "nope"), t.TempDir(), Options{})
	if err == nil || !strings.Contains(err.Error(), "nope") || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Compare of a missing tree: %v", err)
	}
}
