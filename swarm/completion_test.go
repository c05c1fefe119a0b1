package swarm

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
)

// bitmapBytes builds a bitmap file's bytes for pieces with the given bits
// set.
func bitmapBytes(pieces int, set ...int) []byte {
	b := make([]byte, bitmapHeaderSize+(pieces+7)/8)
	copy(b, bitmapMagic)
	binary.BigEndian.PutUint32(b[8:], bitmapVersion)
	binary.BigEndian.PutUint32(b[12:], uint32(pieces))
	binary.BigEndian.PutUint32(b[16:], crc32.ChecksumIEEE(b[:16]))
	for _, i := range set {
		b[bitmapHeaderSize+i/8] |= 1 << (i % 8)
	}
	return b
}

func TestOpenBitmapReadsValidFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b")
	if err := os.WriteFile(path, bitmapBytes(13, 0, 7, 12), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := OpenBitmap(path, 13)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 13 {
		complete, known := c.Get(i)
		want := i == 0 || i == 7 || i == 12
		if complete != want || known != want {
			t.Errorf("piece %d: complete %v known %v, want %v %v", i, complete, known, want, want)
		}
	}
}

func TestOpenBitmapDiscardsMismatch(t *testing.T) {
	valid := bitmapBytes(13, 1, 2)
	for _, tc := range []struct {
		name     string
		contents []byte // nil: no file
	}{
		{"missing", nil},
		{"empty", []byte{}},
		{"too short", valid[:len(valid)-1]},
		{"too long", append(append([]byte{}, valid...), 0)},
		{"other piece count", bitmapBytes(12, 1, 2)[:len(valid)]},
		{"bad magic", func() []byte { b := append([]byte{}, valid...); b[0] = 'X'; return b }()},
		{"bad version", func() []byte {
			b := append([]byte{}, valid...)
			binary.BigEndian.PutUint32(b[8:], 2)
			binary.BigEndian.PutUint32(b[16:], crc32.ChecksumIEEE(b[:16]))
			return b
		}()},
		{"bad checksum", func() []byte { b := append([]byte{}, valid...); b[16] ^= 1; return b }()},
		{"stray bit past the last piece", func() []byte { b := append([]byte{}, valid...); b[len(b)-1] |= 0x80; return b }()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "b")
			if tc.contents != nil {
				if err := os.WriteFile(path, tc.contents, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			c, err := OpenBitmap(path, 13)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 13 {
				if complete, known := c.Get(i); complete || known {
					t.Errorf("piece %d: complete %v known %v, want unknown", i, complete, known)
				}
			}
			if err := c.Set(5, true); err != nil {
				t.Fatal(err)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if want := bitmapBytes(13, 5); string(got) != string(want) {
				t.Errorf("file after Set(5) is %x, want %x", got, want)
			}
		})
	}
}

func TestBitmapSetPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b")
	c, err := OpenBitmap(path, 20)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		piece    int
		complete bool
	}{{3, true}, {19, true}, {4, false}, {3, false}, {3, true}, {8, true}} {
		if err := c.Set(step.piece, step.complete); err != nil {
			t.Fatalf("Set(%d, %v): %v", step.piece, step.complete, err)
		}
	}
	for _, tc := range []struct {
		piece           int
		complete, known bool
	}{
		{3, true, true}, {19, true, true}, {8, true, true},
		{4, false, true}, // known incomplete in this session
		{5, false, false},
	} {
		if complete, known := c.Get(tc.piece); complete != tc.complete || known != tc.known {
			t.Errorf("piece %d: complete %v known %v, want %v %v", tc.piece, complete, known, tc.complete, tc.known)
		}
	}
	// No Close: a peer killed with -9 does not close either.
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := bitmapBytes(20, 3, 8, 19); string(got) != string(want) {
		t.Errorf("file is %x, want %x", got, want)
	}
	c2, err := OpenBitmap(path, 20)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	for _, tc := range []struct {
		piece           int
		complete, known bool
	}{{3, true, true}, {8, true, true}, {19, true, true}, {4, false, false}} {
		if complete, known := c2.Get(tc.piece); complete != tc.complete || known != tc.known {
			t.Errorf("reopened piece %d: complete %v known %v, want %v %v", tc.piece, complete, known, tc.complete, tc.known)
		}
	}
	c.Close()
}

func TestBitmapErrors(t *testing.T) {
	dir := t.TempDir()
	for _, pieces := range []int{0, -1} {
		if _, err := OpenBitmap(filepath.Join(dir, "b"), pieces); err == nil {
			t.Errorf("OpenBitmap with %d pieces succeeded", pieces)
		}
	}
	if _, err := OpenBitmap(filepath.Join(dir, "missing-dir", "b"), 4); err == nil {
		t.Error("OpenBitmap in a missing directory succeeded")
	}
	c, err := OpenBitmap(filepath.Join(dir, "b"), 4)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []int{-1, 4} {
		if err := c.Set(p, true); err == nil {
			t.Errorf("Set(%d) succeeded", p)
		}
		if complete, known := c.Get(p); complete || known {
			t.Errorf("Get(%d) = %v %v, want unknown", p, complete, known)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := c.Set(1, true); !errors.Is(err, ErrBitmapClosed) {
		t.Errorf("Set after Close: %v, want ErrBitmapClosed", err)
	}
}

func TestAllComplete(t *testing.T) {
	c := AllComplete()
	defer c.Close()
	steps := []struct {
		set             *bool // nil: just Get
		complete, known bool
	}{
		{nil, true, true},
		{ptr(false), false, true},
		{ptr(true), true, true},
	}
	for i, s := range steps {
		if s.set != nil {
			if err := c.Set(7, *s.set); err != nil {
				t.Fatal(err)
			}
		}
		if complete, known := c.Get(7); complete != s.complete || known != s.known {
			t.Errorf("step %d: complete %v known %v, want %v %v", i, complete, known, s.complete, s.known)
		}
	}
	if complete, known := c.Get(1 << 20); !complete || !known {
		t.Error("an untouched piece is not complete")
	}
}

func ptr[T any](v T) *T { return &v }
