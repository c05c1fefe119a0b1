package chunker

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPublishRejects(t *testing.T) {
	file := func(name string) tarEntry { return tarEntry{name: name, data: []byte("data")} }
	tests := []struct {
		name  string
		input []byte
		err   error  // wanted, with errors.Is
		entry string // the entry the error must name
	}{
		{"dotdot", mkTar(t, file("ok"), file("../../etc/cron.d/evil")), ErrUnsafePath, "../../etc/cron.d/evil"},
		{"absolute", mkTar(t, file("/etc/shadow")), ErrUnsafePath, "/etc/shadow"},
		{"through symlink", mkTar(t, tarEntry{name: "etc", typ: tar.TypeSymlink, link: "/etc"}, file("etc/passwd")), ErrThroughLink, "etc/passwd"},
		{"hard link outside", mkTar(t, tarEntry{name: "x", typ: tar.TypeLink, link: "../../etc/shadow"}), ErrLinkTarget, "x"},
		{"hard link to missing", mkTar(t, tarEntry{name: "x", typ: tar.TypeLink, link: "nothere"}), ErrLinkTarget, "x"},
		{"duplicate", mkTar(t, file("a/b"), file("a/b")), ErrDuplicate, "a/b"},
		{"reserved", mkTar(t, file(".labseed/image")), ErrReservedPath, ".labseed/image"},
		{"file as parent", mkTar(t, file("a"), file("a/b")), nil, "a/b"},
		{"unsupported type", mkTar(t, tarEntry{name: "v", typ: 'V'}), ErrEntryType, "v"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Publish(context.Background(), bytes.NewReader(tt.input), io.Discard, Config{Name: "t"})
			if err == nil {
				t.Fatal("Publish accepted the image")
			}
			if tt.err != nil && !errors.Is(err, tt.err) {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			var ee *EntryError
			if !errors.As(err, &ee) || ee.Name != tt.entry {
				t.Fatalf("error %q does not name entry %q", err, tt.entry)
			}
		})
	}
}

func TestPublishBadInput(t *testing.T) {
	good := gz(t, mkTar(t, tarEntry{name: "a", data: bytes.Repeat([]byte("x"), 100000)}))
	tests := []struct {
		name  string
		input []byte
		want  string
	}{
		{"truncated gzip", good[:len(good)/2], "truncated"},
		{"not a tar", []byte(strings.Repeat("hello, this is not a tarball\n", 100)), "not a tar"},
		{"xz", append([]byte{0xfd, '7', 'z', 'X', 'Z', 0}, make([]byte, 600)...), "xz -dc"},
		{"empty", nil, "not a tar"},
		{"no entries", make([]byte, 1024), "not a tar"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Publish(context.Background(), bytes.NewReader(tt.input), io.Discard, Config{Name: "t"})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one saying %q", err, tt.want)
			}
		})
	}
}

func TestPublishMultiMemberGzip(t *testing.T) {
	tr := mkTar(t, tarEntry{name: "a", data: bytes.Repeat([]byte("a"), 50000)}, tarEntry{name: "b", data: []byte("b")})
	// pigz and "cat x.gz y.gz" make gzip files of several members.
	multi := append(gz(t, tr[:10240]), gz(t, tr[10240:])...)
	m, _ := publish(t, multi, Config{Name: "multi"})
	if m.Entries != 2 || m.FileBytes != 50001 {
		t.Fatalf("read %d entries, %d bytes; want 2, 50001", m.Entries, m.FileBytes)
	}
}

func TestPublishDeterministic(t *testing.T) {
	in := genImage(t, 5, 2<<20)
	cfg := smallChunks
	m1, p1 := publish(t, in, cfg)
	m2, p2 := publish(t, in, cfg)
	if m1.InfoHash != m2.InfoHash || !bytes.Equal(p1, p2) {
		t.Fatal("publishing the same input twice gave different payloads")
	}
}

// TestSharedChunks publishes two versions of an image that differ by one
// changed file and counts the chunks they share.
func TestSharedChunks(t *testing.T) {
	v1 := genImage(t, 6, 24<<20)
	v2 := changeOneFile(t, v1)
	m1, _ := publish(t, v1, Config{Name: "v", ChunkMin: 64 << 10, ChunkAvg: 256 << 10, ChunkMax: 1 << 20})
	m2, _ := publish(t, v2, Config{Name: "v", ChunkMin: 64 << 10, ChunkAvg: 256 << 10, ChunkMax: 1 << 20})
	old := map[string]bool{}
	for _, c := range m1.Chunks {
		old[c.SHA256] = true
	}
	shared := 0
	for _, c := range m2.Chunks {
		if old[c.SHA256] {
			shared++
		}
	}
	t.Logf("one changed file: %d of %d chunks shared (%d new)", shared, len(m2.Chunks), len(m2.Chunks)-shared)
	if len(m2.Chunks)-shared > 3 {
		t.Fatalf("%d chunks differ between versions differing by one file", len(m2.Chunks)-shared)
	}
}

// changeOneFile rewrites a gzip tar with one byte of one file in the middle changed.
func changeOneFile(t *testing.T, in []byte) []byte {
	t.Helper()
	n := 0
	out := rewriteTar(t, in, func(h *tar.Header, data []byte) {
		if h.Typeflag == tar.TypeReg && len(data) > 100 {
			n++
			if n == 500 {
				data[50] ^= 1
			}
		}
	}, nil)
	if n < 500 {
		t.Fatalf("image has only %d files", n)
	}
	return out
}

// TestChunkMaxWithManyHeaders publishes a tree of thousands of
// directories and small files, whose headers (a PAX record each, for the
// nanoseconds of their mtimes) take 1.5 KiB in a chunk, and the small
// files' data 512 bytes: no chunk may pass ChunkMax (and the tar's end)
// uncompressed.
func TestChunkMaxWithManyHeaders(t *testing.T) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	// Rounds of directories, then a file whose data ends a chunk at the
	// forced cut: the directories before it must count there too.
	data := bytes.Repeat([]byte("0123456789abcdef"), 3<<20/16)
	for r := range 4 {
		for i := range 1500 {
			h := &tar.Header{Name: fmt.Sprintf("usr/share/doc/r%d/pkg%04d/", r, i), Typeflag: tar.TypeDir, Mode: 0o755,
				ModTime: time.Unix(1700000000, int64(i)+1), Format: tar.FormatPAX}
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 1500 { // small files: their data's padding counts too
			small := []byte(fmt.Sprintf("file %d of round %d\n", i, r))
			if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("usr/share/doc/r%d/pkg%04d/copyright", r, i), Typeflag: tar.TypeReg, Mode: 0o644,
				Size: int64(len(small)), ModTime: time.Unix(1700000000, int64(i)+1), Format: tar.FormatPAX}); err != nil {
				t.Fatal(err)
			}
			tw.Write(small)
		}
		if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("usr/share/doc/r%d/big", r), Typeflag: tar.TypeReg, Mode: 0o644,
			Size: int64(len(data)), ModTime: time.Unix(1700000000, 1), Format: tar.FormatPAX}); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	tw.Close()
	cfg := Config{Name: "dirs", ChunkMin: 256 << 10, ChunkAvg: 1 << 20, ChunkMax: 2 << 20}
	m, payload := publish(t, b.Bytes(), cfg)
	for i, c := range m.Chunks {
		if c.RawSize > cfg.ChunkMax+4096 { // a file part's header, the tar's end
			t.Errorf("chunk %d is %d bytes uncompressed, ChunkMax %d", i, c.RawSize, cfg.ChunkMax)
		}
		if c.RawSize < cfg.ChunkMin && i < len(m.Chunks)-1 {
			t.Errorf("chunk %d is %d bytes uncompressed, under ChunkMin %d", i, c.RawSize, cfg.ChunkMin)
		}
	}
	target := filepath.Join(t.TempDir(), "t")
	applyAll(t, newApplier(t, m, target), payload, rand.Perm(len(m.Chunks)))
	if _, err := os.Stat(filepath.Join(target, "usr/share/doc/r3/pkg1499")); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d chunks", len(m.Chunks))
}
