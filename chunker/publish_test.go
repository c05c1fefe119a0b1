package chunker

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/klauspost/compress/zstd"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
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

// TestPublishReuse publishes with Config.Reuse offering, for each chunk,
// other compressed bytes: taken when they decode to the chunk's bytes
// exactly (here a level 1 frame in a level 4 publish), refused otherwise
// (another chunk's frame, bytes that are no frame), the chunk then
// compressed as without Reuse.
func TestPublishReuse(t *testing.T) {
	in := genImage(t, 8, 3<<20)
	plain, plainPayload := publish(t, in, smallChunks)
	fast := smallChunks
	fast.Level = 1
	m1, p1 := publish(t, in, fast)
	if len(m1.Chunks) != len(plain.Chunks) || len(plain.Chunks) < 10 {
		t.Fatalf("level 1: %d chunks, level 4: %d; want the same number, at least 10", len(m1.Chunks), len(plain.Chunks))
	}
	level1 := map[string][]byte{}
	for i, c := range m1.Chunks {
		level1[c.RawBLAKE3] = chunk(m1, p1, i)
	}
	reusing := func(offer func(sum string, size int64) []byte) (*Manifest, []byte) {
		cfg := smallChunks
		var calls atomic.Int64
		cfg.Reuse = func(sum [32]byte, size int64) []byte {
			calls.Add(1)
			return offer(hex.EncodeToString(sum[:]), size)
		}
		m, p := publish(t, in, cfg)
		if int(calls.Load()) != len(m.Chunks) {
			t.Fatalf("Reuse was asked %d times for %d chunks", calls.Load(), len(m.Chunks))
		}
		return m, p
	}

	// The right bytes, from another level: every chunk taken as offered.
	m, p := reusing(func(sum string, size int64) []byte { return level1[sum] })
	for i, c := range m.Chunks {
		if c.SHA256 != m1.Chunks[i].SHA256 || c.RawBLAKE3 != plain.Chunks[i].RawBLAKE3 {
			t.Fatalf("chunk %d: sha256 %s, raw %s; want the offered frame's %s, raw %s", i, c.SHA256, c.RawBLAKE3, m1.Chunks[i].SHA256, plain.Chunks[i].RawBLAKE3)
		}
	}
	if !bytes.Equal(p, p1) {
		t.Fatal("the payload is not the offered chunks one after another")
	}

	// Wrong bytes: chunk 0's frame for every chunk, a frame cut short or
	// damaged, bytes that are no frame, a frame of bytes that differ by
	// one. Only chunk 0 is taken.
	dec, _ := zstd.NewReader(nil)
	defer dec.Close()
	enc, _ := zstd.NewWriter(nil)
	defer enc.Close()
	for name, offer := range map[string]func(string, int64) []byte{
		"chunk 0's frame": func(string, int64) []byte { return chunk(m1, p1, 0) },
		"cut short": func(sum string, _ int64) []byte {
			b := level1[sum]
			return b[:len(b)-5]
		},
		"one byte changed": func(sum string, _ int64) []byte {
			b := bytes.Clone(level1[sum])
			b[len(b)/2] ^= 0x40
			return b
		},
		"not a frame": func(string, int64) []byte { return []byte("labseed") },
		"a frame of other bytes of the same size": func(sum string, _ int64) []byte {
			raw, err := dec.DecodeAll(level1[sum], nil)
			if err != nil {
				t.Fatal(err)
			}
			raw[len(raw)/2] ^= 1
			return enc.EncodeAll(raw, nil)
		},
	} {
		m, p := reusing(offer)
		for i, c := range m.Chunks {
			want := plain.Chunks[i].SHA256
			if i == 0 && name == "chunk 0's frame" {
				want = m1.Chunks[0].SHA256
			}
			if c.SHA256 != want {
				t.Errorf("%s: chunk %d has sha256 %s, want %s", name, i, c.SHA256, want)
			}
		}
		if name != "chunk 0's frame" && !bytes.Equal(p, plainPayload) {
			t.Errorf("%s: the payload differs from a publish without Reuse", name)
		}
	}
}
