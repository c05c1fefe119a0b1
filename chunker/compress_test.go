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
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/labseed/labseed/treecmp"
)

// needZstd skips the test when the zstd program is not installed.
func needZstd(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath(ZstdProgram); err != nil {
		t.Skipf("the zstd program is not installed (apt-get install zstd): %v", err)
	}
}

// frame describes the one zstd frame of a chunk.
type frame struct {
	contentSize uint64 // from the header
	window      uint64 // the window the decoder needs
	checksum    bool
}

// oneFrame parses b, which must be exactly one zstd frame: its header, its
// blocks (RFC 8878 section 3.1.1.2) and its checksum, nothing after.
func oneFrame(b []byte) (frame, error) {
	var h zstd.Header
	if err := h.Decode(b); err != nil {
		return frame{}, err
	}
	if h.Skippable || !h.HasFCS {
		return frame{}, fmt.Errorf("skippable %v, has content size %v", h.Skippable, h.HasFCS)
	}
	f := frame{contentSize: h.FrameContentSize, window: h.WindowSize, checksum: h.HasCheckSum}
	if h.SingleSegment {
		f.window = h.FrameContentSize
	}
	b = b[h.HeaderSize:]
	for {
		if len(b) < 3 {
			return f, errors.New("truncated block header")
		}
		bh := int(b[0]) | int(b[1])<<8 | int(b[2])<<16
		last, typ, size := bh&1 == 1, bh>>1&3, bh>>3
		switch typ {
		case 1: // RLE: one byte repeated size times
			size = 1
		case 3:
			return f, errors.New("reserved block type")
		}
		if len(b) < 3+size {
			return f, errors.New("truncated block")
		}
		b = b[3+size:]
		if last {
			break
		}
	}
	if f.checksum {
		if len(b) < 4 {
			return f, errors.New("truncated checksum")
		}
		b = b[4:]
	}
	if len(b) > 0 {
		return f, fmt.Errorf("%d bytes after the frame", len(b))
	}
	return f, nil
}

// withRealBinary returns the gzip tar tgz with one more file: the running
// test binary, megabytes of real machine code. The generated images' contents
// are random draws that zstd -19 compresses no better than level 4; a
// distribution's binaries and libraries are what it shrinks.
func withRealBinary(t *testing.T, tgz []byte) []byte {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	mtime := time.Unix(1700000000, 0)
	return rewriteTar(t, tgz, nil, func(tw *tar.Writer) error {
		err := errors.Join(
			tw.WriteHeader(&tar.Header{Name: "opt/labseed/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime}),
			tw.WriteHeader(&tar.Header{Name: "opt/labseed/chunker.test", Mode: 0o755, Size: int64(len(bin)), ModTime: mtime}))
		if err == nil {
			_, err = tw.Write(bin)
		}
		return err
	})
}

// TestPublishZstdProgram publishes the same image at level 4 (built-in
// encoder) and 19 (the zstd program), and checks that level 19 is smaller,
// keeps the chunk format (the same chunks, each one zstd frame with its
// content size and checksum), and extracts to the same tree. The chunks are
// of at least 9 MiB so that zstd -19 uses its largest window, 8 MiB, which
// the Applier's decoder must accept.
func TestPublishZstdProgram(t *testing.T) {
	needZstd(t)
	in := withRealBinary(t, genImage(t, 21, 12<<20))
	cfg := Config{Name: "zstd", ChunkMin: 9 << 20, ChunkAvg: 10 << 20, ChunkMax: 16 << 20}
	m4, p4 := publish(t, in, cfg)
	cfg.Level = 19
	start := time.Now()
	m19, p19 := publish(t, in, cfg)
	t.Logf("%d chunks, %d tar bytes: level 4 %d bytes, level 19 %d bytes (%.3f) in %.1f s",
		len(m19.Chunks), m19.TarBytes, m4.PayloadBytes, m19.PayloadBytes,
		float64(m19.PayloadBytes)/float64(m4.PayloadBytes), time.Since(start).Seconds())

	if m19.Level != 19 || m4.Level != 4 {
		t.Fatalf("manifests record levels %d and %d, want 19 and 4", m19.Level, m4.Level)
	}
	if m19.PayloadBytes >= m4.PayloadBytes {
		t.Fatalf("level 19 published %d bytes, not less than level 4's %d", m19.PayloadBytes, m4.PayloadBytes)
	}
	if len(m19.Chunks) != len(m4.Chunks) || len(m19.Chunks) < 2 {
		t.Fatalf("%d chunks at level 19, %d at level 4; want the same, at least 2", len(m19.Chunks), len(m4.Chunks))
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderMaxWindow(MaxChunkRawSize))
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	var maxWindow uint64
	for i := range m19.Chunks {
		c4, c19 := chunk(m4, p4, i), chunk(m19, p19, i)
		for _, c := range []struct {
			level int
			z     []byte
		}{{4, c4}, {19, c19}} {
			f, err := oneFrame(c.z)
			if err != nil {
				t.Fatalf("level %d chunk %d is not one zstd frame: %v", c.level, i, err)
			}
			if !f.checksum || f.contentSize != uint64(m19.Chunks[i].RawSize) {
				t.Fatalf("level %d chunk %d: frame %+v, want a checksum and content size %d", c.level, i, f, m19.Chunks[i].RawSize)
			}
			if c.level == 19 {
				maxWindow = max(maxWindow, f.window)
			}
		}
		r4, err := dec.DecodeAll(c4, nil)
		if err != nil {
			t.Fatal(err)
		}
		r19, err := dec.DecodeAll(c19, nil)
		if err != nil {
			t.Fatalf("decode level 19 chunk %d: %v", i, err)
		}
		if !bytes.Equal(r4, r19) {
			t.Fatalf("chunk %d holds different tar fragments at levels 4 and 19", i)
		}
	}
	t.Logf("largest level 19 window: %d KiB", maxWindow>>10)
	if maxWindow < 8<<20 {
		t.Fatalf("largest level 19 window is %d KiB, want 8 MiB", maxWindow>>10)
	}

	dir := t.TempDir()
	want, got := filepath.Join(dir, "level4"), filepath.Join(dir, "level19")
	applyAll(t, newApplier(t, m4, want), p4, rand.Perm(len(m4.Chunks)))
	applyAll(t, newApplier(t, m19, got), p19, rand.Perm(len(m19.Chunks)))
	diffs, err := treecmp.Compare(want, got, cmpOpts)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Errorf("level 4 vs level 19: %s", d)
	}
}

func TestPublishDeterministicZstdProgram(t *testing.T) {
	needZstd(t)
	in := genImage(t, 5, 2<<20)
	cfg := smallChunks
	cfg.Level = 9
	m1, p1 := publish(t, in, cfg)
	m2, p2 := publish(t, in, cfg)
	if m1.InfoHash != m2.InfoHash || !bytes.Equal(p1, p2) {
		t.Fatal("publishing the same input twice at level 9 gave different payloads")
	}
}

func TestCheckLevel(t *testing.T) {
	for _, level := range []int{0, 1, 4} {
		if err := CheckLevel(level); err != nil {
			t.Errorf("CheckLevel(%d): %v", level, err)
		}
	}
	for _, level := range []int{-1, 20, 22} {
		if err := CheckLevel(level); err == nil || !strings.Contains(err.Error(), "compression level "+strconv.Itoa(level)) {
			t.Errorf("CheckLevel(%d): %v, want an error naming the level", level, err)
		}
	}
	if _, err := exec.LookPath(ZstdProgram); err == nil {
		if err := CheckLevel(19); err != nil {
			t.Errorf("CheckLevel(19) with zstd installed: %v", err)
		}
	}
	t.Setenv("PATH", t.TempDir())
	if err := CheckLevel(5); !errors.Is(err, ErrNoZstd) {
		t.Errorf("CheckLevel(5) without zstd: %v, want ErrNoZstd", err)
	}
}

// failReader fails the test if anything reads it.
type failReader struct{ t *testing.T }

func (r failReader) Read([]byte) (int, error) {
	r.t.Error("Publish read its input")
	return 0, io.EOF
}

func TestPublishNoZstdProgram(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, _, err := Publish(context.Background(), failReader{t}, io.Discard, Config{Name: "t", Level: 19})
	if !errors.Is(err, ErrNoZstd) {
		t.Fatalf("level 19 without zstd: %v, want ErrNoZstd", err)
	}
	for _, s := range []string{"zstd program", "level 19", "apt-get install zstd"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	t.Logf("level 19 without zstd: %v", err)

	// The built-in levels do not need it.
	publish(t, mkTar(t, tarEntry{name: "a", data: []byte("a")}), Config{Name: "t", Level: 4})
}

// TestPublishZstdProgramFails runs a zstd that fails, or writes no zstd
// frame, and checks that the error names the chunk and says what went wrong.
func TestPublishZstdProgramFails(t *testing.T) {
	tests := []struct {
		name   string
		script string
		want   []string
	}{
		{"exit status", "echo 'zstd: error 70 : Write error : cannot write block : No space left on device' >&2\nexit 70",
			[]string{"chunk 0", "-12", "exit status 70", "No space left on device"}},
		{"no frame", "echo 'not zstd at all'",
			[]string{"chunk 0", "not a zstd frame", "nothing on stderr"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, ZstdProgram), []byte("#!/bin/sh\n"+tt.script+"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			t.Setenv("PATH", dir)
			in := mkTar(t, tarEntry{name: "a", data: bytes.Repeat([]byte("a"), 1000)})
			_, _, err := Publish(context.Background(), bytes.NewReader(in), io.Discard, Config{Name: "t", Level: 12, Workers: 1})
			if err == nil {
				t.Fatal("Publish succeeded")
			}
			for _, s := range tt.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
}

// zstdChildren returns the pids of the zstd processes this process started.
func zstdChildren(t *testing.T) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone
		}
		// pid (comm) state ppid ...
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		f := strings.Fields(s[i+1:])
		if j := strings.IndexByte(s, '('); j < 0 || s[j+1:i] != ZstdProgram || len(f) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid == os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestPublishZstdProgramCancel cancels a level 19 publish while its zstd
// program compresses a chunk, and checks that Publish kills it: the zstd
// found in $PATH here is a stand-in that never ends (a script named zstd,
// which sleeps), so Publish returns only if it kills the program, and no
// zstd process may be left behind.
func TestPublishZstdProgramCancel(t *testing.T) {
	if _, err := os.Stat("/usr/bin/perl"); err != nil {
		t.Skipf("perl (Debian perl-base) runs the stand-in zstd: %v", err)
	}
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, ZstdProgram), []byte("#!/usr/bin/perl\nsleep 3600;\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	in := genImage(t, 22, 40<<20)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, _, err := Publish(ctx, bytes.NewReader(in), io.Discard,
			Config{Name: "t", Level: 19, ChunkMin: 12 << 20, ChunkAvg: 14 << 20, ChunkMax: 16 << 20})
		errc <- err
	}()
	var running []int
	for deadline := time.Now().Add(time.Minute); len(running) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no zstd process started within a minute")
		}
		select {
		case err := <-errc:
			t.Fatalf("Publish returned before a zstd process was seen: %v", err)
		default:
		}
		running = zstdChildren(t)
	}
	cancel()
	var err error
	select {
	case err = <-errc:
	case <-time.After(time.Minute):
		t.Fatalf("Publish still running a minute after the cancellation: it waits for its zstd %v (which never ends) instead of killing it", running)
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Publish returned %v, want context.Canceled", err)
	}
	if left := zstdChildren(t); len(left) > 0 {
		t.Fatalf("zstd processes %v still running after Publish returned", left)
	}
}
