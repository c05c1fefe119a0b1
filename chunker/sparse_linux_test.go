package chunker

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labseed/labseed/treecmp"
	"golang.org/x/sys/unix"
)

// sparseFile describes a sparse file of the test tree: its size and the
// offsets of the 4 KiB blocks of random data written into it.
type sparseFile struct {
	name   string
	size   int64
	blocks []int64
}

var sparseFiles = []sparseFile{
	// The shape of /var/log/lastlog with user IDs in the billions: 60 GB,
	// 30 blocks of data (more than the 4 of an old GNU sparse header, so
	// it needs extension blocks), some past 8 GiB (numbers in base 256),
	// the last block at the very end.
	{name: "var/log/lastlog", size: 60 << 30, blocks: func() []int64 {
		var b []int64
		for i := range int64(29) {
			b = append(b, i*(2<<30)+i*4096*3)
		}
		return append(b, 60<<30-4096)
	}()},
	// Data at the start only, then a hole to the end.
	{name: "var/lib/head-only", size: 1 << 30, blocks: []int64{0, 4096, 8192}},
	// Nothing but a hole.
	{name: "var/lib/all-hole", size: 3 << 30},
	// Blocks closer than sparseMergeGap: carried as one part.
	{name: "var/lib/close", size: 64 << 20, blocks: []int64{1 << 20, 1<<20 + 8192, 1<<20 + 16384}},
}

// TestSparseAgainstGNUTar makes tarballs holding a 60 GB sparse file (and
// smaller ones) with GNU tar in its four sparse formats (GNU, PAX 0.0, 0.1
// and 1.0), publishes each and extracts it: publishing, the payload and
// the extraction must cost what the data costs, and the extracted files
// must equal GNU tar's own extraction: same size, same content, holes
// where it has holes (st_blocks).
func TestSparseAgainstGNUTar(t *testing.T) {
	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("GNU tar not installed")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	rng := rand.New(rand.NewPCG(3, 4))
	var dataBytes int64
	for _, sf := range sparseFiles {
		p := filepath.Join(src, sf.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(sf.size); err != nil {
			t.Skipf("the file system of %s cannot hold a %d-byte sparse file: %v", dir, sf.size, err)
		}
		block := make([]byte, 4096)
		for _, off := range sf.blocks {
			for i := range block {
				block[i] = byte(rng.Uint32())
			}
			if _, err := f.WriteAt(block, off); err != nil {
				t.Fatal(err)
			}
			dataBytes += 4096
		}
		f.Close()
	}
	os.WriteFile(filepath.Join(src, "etc-hostname"), []byte("pc01\n"), 0o644)
	if st := statT(t, filepath.Join(src, sparseFiles[0].name)); st.Blocks*512 > 1<<20 {
		t.Skipf("the file system of %s does not keep holes", dir)
	}

	formats := []struct{ name, flags string }{
		{"gnu", "--format=gnu"},
		{"pax-0.0", "--format=posix --sparse-version=0.0"},
		{"pax-0.1", "--format=posix --sparse-version=0.1"},
		{"pax-1.0", "--format=posix --sparse-version=1.0"},
	}
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			dir := t.TempDir()
			tarball := filepath.Join(dir, "image.tar")
			args := append([]string{"--sparse", "--numeric-owner"}, strings.Fields(f.flags)...)
			run(t, "tar", append(args, "-C", src, "-cf", tarball, ".")...)
			want := filepath.Join(dir, "want")
			os.Mkdir(want, 0o755)
			run(t, "tar", "--numeric-owner", "-C", want, "-xf", tarball)
			in, err := os.ReadFile(tarball)
			if err != nil {
				t.Fatal(err)
			}

			// Before sparse files were read as data plus holes this took
			// minutes (8 s per GiB of holes); the deadline turns a hang
			// into a failure.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			start := time.Now()
			var payload bytes.Buffer
			m, _, err := Publish(ctx, bytes.NewReader(in), &payload, Config{Name: "sparse"})
			if err != nil {
				t.Fatalf("Publish: %v", err)
			}
			published := time.Since(start)
			if m.TarBytes > 4*dataBytes+64<<10 || m.PayloadBytes > 2*dataBytes+64<<10 {
				t.Errorf("%d bytes of data made %d bytes of tar fragments and %d of payload", dataBytes, m.TarBytes, m.PayloadBytes)
			}
			got := filepath.Join(dir, "got")
			start = time.Now()
			applyAll(t, newApplier(t, m, got), payload.Bytes(), rand.Perm(len(m.Chunks)))
			extracted := time.Since(start)
			t.Logf("%d KiB tarball (%d KiB of data, %d GiB of files): published in %v (%d chunks, %d KiB payload), extracted in %v",
				len(in)>>10, dataBytes>>10, m.FileBytes>>30, published.Round(time.Millisecond), len(m.Chunks), m.PayloadBytes>>10, extracted.Round(time.Millisecond))

			// treecmp hashes whole files: the sparse ones are compared by
			// their data below.
			opts := treecmp.Options{}
			for _, sf := range sparseFiles {
				opts.Ignore = append(opts.Ignore, sf.name)
			}
			diffs, err := treecmp.Compare(want, got, opts)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range diffs {
				t.Errorf("GNU tar vs labseed: %s", d)
			}
			for _, sf := range sparseFiles {
				compareSparse(t, filepath.Join(want, sf.name), filepath.Join(got, sf.name), int64(len(sf.blocks))*4096)
			}
		})
	}
}

// compareSparse compares two sparse files by their size and the bytes of
// every data extent of either (outside them both read as zeros), and
// checks that got holes where want does: it allocates no more than want
// and than its data, with a few blocks to spare for extent trees.
func compareSparse(t *testing.T, want, got string, data int64) {
	t.Helper()
	fw, err := os.Open(want)
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Close()
	fg, err := os.Open(got)
	if err != nil {
		t.Fatal(err)
	}
	defer fg.Close()
	sw, sg := statT(t, want), statT(t, got)
	if sw.Size != sg.Size {
		t.Errorf("%s: %d bytes, GNU tar made %d", got, sg.Size, sw.Size)
		return
	}
	const slack = 16 << 10
	if alloc := sg.Blocks * 512; alloc > sw.Blocks*512+slack || alloc > data+slack {
		t.Errorf("%s: %d bytes allocated for %d bytes of data (GNU tar's: %d): the holes were filled", got, alloc, data, sw.Blocks*512)
	}
	ext := append(extents(t, fw, sw.Size), extents(t, fg, sg.Size)...)
	a, b := make([]byte, 1<<20), make([]byte, 1<<20)
	for _, e := range ext {
		for off := e[0]; off < e[1]; off += int64(len(a)) {
			n := min(int64(len(a)), e[1]-off)
			if _, err := fw.ReadAt(a[:n], off); err != nil && err != io.EOF {
				t.Fatal(err)
			}
			if _, err := fg.ReadAt(b[:n], off); err != nil && err != io.EOF {
				t.Fatal(err)
			}
			if !bytes.Equal(a[:n], b[:n]) {
				t.Errorf("%s differs from GNU tar's extraction in bytes %d-%d", got, off, off+n)
				return
			}
		}
	}
}

// extents returns the data extents of f, as [start, end) pairs.
func extents(t *testing.T, f *os.File, size int64) [][2]int64 {
	t.Helper()
	var out [][2]int64
	fd := int(f.Fd())
	for off := int64(0); off < size; {
		d, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err == unix.ENXIO {
			break
		}
		if err != nil {
			t.Fatalf("SEEK_DATA: %v", err)
		}
		h, err := unix.Seek(fd, d, unix.SEEK_HOLE)
		if err != nil {
			t.Fatalf("SEEK_HOLE: %v", err)
		}
		out = append(out, [2]int64{d, h})
		off = h
	}
	return out
}

func statT(t *testing.T, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestSparseTestdata publishes and extracts the sparse tarballs of
// testdata (a 10 MiB file with 7 segments of text, made by GNU tar 1.35 in
// the GNU, PAX 1.0 and PAX 0.0 formats), without needing GNU tar: the file
// comes back with its size, its text at its offsets, and its holes.
func TestSparseTestdata(t *testing.T) {
	offsets := []int64{0, 1 << 20, 2 << 20, 3 << 20, 4 << 20, 5 << 20, 10<<20 - 100}
	for _, name := range []string{"sparse-gnu.tar", "sparse-pax.tar", "sparse-pax00.tar"} {
		t.Run(name, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			m, payload := publish(t, in, Config{Name: "sparse"})
			if m.Format != FormatVersion || m.FileBytes != 10<<20 || m.Entries != 1 {
				t.Errorf("manifest: format %d, %d file bytes, %d entries; want format %d, 10 MiB, 1", m.Format, m.FileBytes, m.Entries, FormatVersion)
			}
			got := t.TempDir()
			applyAll(t, newApplier(t, m, got), payload, []int{0})
			p := filepath.Join(got, "lastlog")
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != 10<<20 {
				t.Fatalf("%d bytes, want 10 MiB", len(b))
			}
			want := make([]byte, 10<<20)
			for i, off := range offsets {
				copy(want[off:], bytes.Repeat([]byte("labseed sparse segment "+strconv.Itoa(i)+" "), 4))
			}
			if !bytes.Equal(b, want) {
				t.Error("content differs from the file tar was made of")
			}
			if st := statT(t, p); st.Blocks*512 > int64(len(offsets))*4096+16<<10 {
				t.Errorf("%d bytes allocated for 7 segments: the holes were filled", st.Blocks*512)
			}
		})
	}
}

// TestApplyEmptyPart applies a part of no data of a non-empty file (how a
// sparse file that is all hole is carried): the file is made at its size,
// all hole.
func TestApplyEmptyPart(t *testing.T) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: "hole", Typeflag: tar.TypeReg, Mode: 0o640, Size: 0, Format: tar.FormatPAX,
		PAXRecords: map[string]string{paxOffset: "0", paxSize: strconv.Itoa(1 << 30)}})
	tw.Close()
	m, z := rawChunkManifest(t, b.Bytes())
	target := t.TempDir()
	applyAll(t, newApplier(t, m, target), z, []int{0})
	st := statT(t, filepath.Join(target, "hole"))
	if st.Size != 1<<30 || st.Blocks != 0 || st.Mode&0o7777 != 0o640 {
		t.Errorf("size %d, %d blocks, mode %o; want 1 GiB, 0, 640", st.Size, st.Blocks, st.Mode&0o7777)
	}
}
