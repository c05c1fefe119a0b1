package swarm

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	g "github.com/anacrolix/generics"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"
)

// testInfo is a single-file info of length bytes in 16 KiB pieces; the
// piece hashes are not used by the storage.
func testInfo(length int64) *metainfo.Info {
	const pl = 16 << 10
	n := (length + pl - 1) / pl
	return &metainfo.Info{Name: "p", PieceLength: pl, Length: length, Pieces: make([]byte, 20*n)}
}

func openTest(t *testing.T, info *metainfo.Info, f Files) (storage.TorrentImpl, error) {
	t.Helper()
	s := NewStorage()
	t.Cleanup(func() { s.Close() })
	var ih metainfo.Hash
	s.Register(ih, f)
	return s.OpenTorrent(t.Context(), info, ih)
}

func pieceOf(ti storage.TorrentImpl, info *metainfo.Info, i int) storage.PieceImpl {
	return ti.PieceWithHash(info.Piece(i), g.None[[]byte]())
}

func completionOf(ti storage.TorrentImpl, info *metainfo.Info) []storage.Completion {
	var cs []storage.Completion
	for i := range info.NumPieces() {
		c := pieceOf(ti, info, i).Completion()
		c.Err = nil
		cs = append(cs, c)
	}
	return cs
}

var (
	unknown    = storage.Completion{}
	incomplete = storage.Completion{Ok: true}
	complete   = storage.Completion{Ok: true, Complete: true}
)

func TestStorageOpenWritable(t *testing.T) {
	const length = 4*16<<10 + 100 // 5 pieces, the last 100 bytes
	for _, tc := range []struct {
		name     string
		existing []byte // nil: no file
		bits     []int  // set in the bitmap beforehand
		want     []storage.Completion
		wantBits []int // complete afterwards
	}{
		{
			name: "new file: nothing to hash",
			bits: []int{0, 3},
			want: []storage.Completion{incomplete, incomplete, incomplete, incomplete, incomplete},
		},
		{
			name:     "full-length file: unknown pieces are hashed",
			existing: make([]byte, length),
			bits:     []int{0, 3},
			want:     []storage.Completion{complete, unknown, unknown, complete, unknown},
			wantBits: []int{0, 3},
		},
		{
			name:     "short file: pieces past its end are not trusted",
			existing: make([]byte, 2*16<<10+5),
			bits:     []int{0, 2, 4},
			want:     []storage.Completion{complete, unknown, incomplete, incomplete, incomplete},
			wantBits: []int{0},
		},
		{
			name:     "long file is truncated",
			existing: make([]byte, length+1<<20),
			bits:     []int{4},
			want:     []storage.Completion{unknown, unknown, unknown, unknown, complete},
			wantBits: []int{4},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "payload")
			if tc.existing != nil {
				if err := os.WriteFile(path, tc.existing, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			info := testInfo(length)
			bm := filepath.Join(dir, "bitmap")
			if err := os.WriteFile(bm, bitmapBytes(info.NumPieces(), tc.bits...), 0o644); err != nil {
				t.Fatal(err)
			}
			comp, err := OpenBitmap(bm, info.NumPieces())
			if err != nil {
				t.Fatal(err)
			}
			ti, err := openTest(t, info, Files{Path: path, Completion: comp})
			if err != nil {
				t.Fatal(err)
			}
			defer ti.Close()
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size() != length {
				t.Errorf("payload is %d bytes, want %d", fi.Size(), length)
			}
			got := completionOf(ti, info)
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("piece %d: %+v, want %+v", i, got[i], tc.want[i])
				}
			}
			for i := range info.NumPieces() {
				c, _ := comp.Get(i)
				want := false
				for _, b := range tc.wantBits {
					want = want || b == i
				}
				if c != want {
					t.Errorf("bitmap piece %d complete %v, want %v", i, c, want)
				}
			}
		})
	}
}

func TestStoragePieceIO(t *testing.T) {
	info := testInfo(3*16<<10 + 10)
	path := filepath.Join(t.TempDir(), "payload")
	var mu sync.Mutex
	var events []string
	ti, err := openTest(t, info, Files{Path: path, OnPiece: func(p int, ok bool) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, map[bool]string{true: "ok", false: "bad"}[ok]+string(rune('0'+p)))
	}})
	if err != nil {
		t.Fatal(err)
	}
	last := pieceOf(ti, info, 3)
	if n, err := last.WriteAt([]byte("0123456789"), 0); n != 10 || err != nil {
		t.Fatalf("WriteAt: %d, %v", n, err)
	}
	if _, err := last.WriteAt([]byte("x"), 10); err == nil {
		t.Error("write past the end of the last piece succeeded")
	}
	buf := make([]byte, 20)
	n, err := last.ReadAt(buf, 4)
	if n != 6 || string(buf[:n]) != "456789" || err == nil {
		t.Errorf("ReadAt past the end: %d %q %v, want 6 \"456789\" and an error", n, buf[:n], err)
	}
	if n, err := last.ReadAt(buf[:3], 2); n != 3 || err != nil || string(buf[:3]) != "234" {
		t.Errorf("ReadAt: %d %q %v", n, buf[:3], err)
	}
	// The whole-torrent reader sees the piece at its offset.
	r := ti.NewReader()
	defer r.Close()
	if n, err := r.ReadAt(buf[:10], 3*16<<10); n != 10 || err != nil || string(buf[:10]) != "0123456789" {
		t.Errorf("torrent ReadAt: %d %q %v", n, buf[:10], err)
	}
	if err := last.(storage.Flusher).Flush(); err != nil {
		t.Error(err)
	}
	if err := last.MarkComplete(); err != nil {
		t.Fatal(err)
	}
	if c := last.Completion(); c != complete {
		t.Errorf("after MarkComplete: %+v", c)
	}
	if err := pieceOf(ti, info, 1).MarkNotComplete(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if got := strings.Join(events, " "); got != "ok3 bad1" {
		t.Errorf("OnPiece events %q, want \"ok3 bad1\"", got)
	}
	mu.Unlock()
	if err := ti.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[3*16<<10:], []byte("0123456789")) {
		t.Errorf("file ends with %q", b[3*16<<10:])
	}
}

func TestStorageReadOnly(t *testing.T) {
	info := testInfo(40000)
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	if err := os.WriteFile(good, bytes.Repeat([]byte{7}, 40000), 0o644); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, make([]byte, 39999), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, wantErr string
	}{
		{"missing", filepath.Join(dir, "missing"), "no such file"},
		{"wrong size", short, "39999 bytes, the torrent says 40000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := openTest(t, info, Files{Path: tc.path, ReadOnly: true})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
	t.Run("serves, never writes", func(t *testing.T) {
		ti, err := openTest(t, info, Files{Path: good, ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer ti.Close()
		for i, c := range completionOf(ti, info) {
			if c != complete {
				t.Errorf("piece %d: %+v, want complete without hashing", i, c)
			}
		}
		p := pieceOf(ti, info, 1)
		if _, err := p.WriteAt([]byte{1}, 0); !errors.Is(err, ErrReadOnly) {
			t.Errorf("WriteAt: %v, want ErrReadOnly", err)
		}
		buf := make([]byte, 4)
		if n, err := p.ReadAt(buf, 0); n != 4 || err != nil || !bytes.Equal(buf, []byte{7, 7, 7, 7}) {
			t.Errorf("ReadAt: %d %v %v", n, buf, err)
		}
	})
}

func TestStorageOpenErrors(t *testing.T) {
	dir := t.TempDir()
	multi := &metainfo.Info{Name: "d", PieceLength: 16 << 10, Pieces: make([]byte, 20),
		Files: []metainfo.FileInfo{{Length: 1, Path: []string{"a"}}, {Length: 1, Path: []string{"b"}}}}
	for _, tc := range []struct {
		name    string
		info    *metainfo.Info
		files   *Files // nil: not registered
		wantErr string
	}{
		{"not registered", testInfo(10), nil, "not registered"},
		{"no path", testInfo(10), &Files{}, "no payload path"},
		{"multi-file", multi, &Files{Path: filepath.Join(dir, "m")}, "exactly one file"},
		{"missing directory", testInfo(10), &Files{Path: filepath.Join(dir, "no", "p")}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewStorage()
			defer s.Close()
			var ih metainfo.Hash
			if tc.files != nil {
				s.Register(ih, *tc.files)
			}
			_, err := s.OpenTorrent(t.Context(), tc.info, ih)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestStorageRegistrationLifecycle(t *testing.T) {
	info := testInfo(100)
	path := filepath.Join(t.TempDir(), "p")
	s := NewStorage()
	var ih metainfo.Hash
	s.Register(ih, Files{Path: path})
	ti, err := s.OpenTorrent(t.Context(), info, ih)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.OpenTorrent(t.Context(), info, ih); err == nil {
		t.Error("second open of an open torrent succeeded")
	}
	if err := ti.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OpenTorrent(t.Context(), info, ih); err == nil {
		t.Error("open after close without Register succeeded")
	}
	s.Register(ih, Files{Path: path})
	ti, err = s.OpenTorrent(t.Context(), info, ih)
	if err != nil {
		t.Fatalf("open after Register again: %v", err)
	}
	// Registered while open: used by the next open, closing the open one
	// does not forget it.
	s.Register(ih, Files{Path: path})
	if err := ti.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OpenTorrent(t.Context(), info, ih); err != nil {
		t.Fatalf("open of a registration made while open: %v", err)
	}
	// A replaced registration's Completion is closed, and so is that of
	// one never opened when the Storage closes.
	var ih2 metainfo.Hash
	ih2[0] = 1
	replaced, err := OpenBitmap(filepath.Join(t.TempDir(), "b1"), 1)
	if err != nil {
		t.Fatal(err)
	}
	unopened, err := OpenBitmap(filepath.Join(t.TempDir(), "b2"), 1)
	if err != nil {
		t.Fatal(err)
	}
	s.Register(ih2, Files{Path: path, Completion: replaced})
	s.Register(ih2, Files{Path: path, Completion: unopened})
	if err := replaced.Set(0, true); !errors.Is(err, ErrBitmapClosed) {
		t.Errorf("replaced completion: Set returned %v, want ErrBitmapClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.OpenTorrent(t.Context(), info, ih); err == nil {
		t.Error("open after Close succeeded")
	}
	if err := unopened.Set(0, true); !errors.Is(err, ErrBitmapClosed) {
		t.Errorf("unopened completion: Set returned %v, want ErrBitmapClosed", err)
	}
}
