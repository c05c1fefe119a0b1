package chunker

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"testing"
	"time"
)

// tarEntry describes one entry for mkTar.
type tarEntry struct {
	name, link string
	typ        byte
	data       []byte
	mode       int64
}

// mkTar builds a tar stream in memory.
func mkTar(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
			if typ == tar.TypeDir {
				mode = 0o755
			}
		}
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: typ, Mode: mode,
			Size: int64(len(e.data)), ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
		if typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			tw.Write(e.data)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(b)
	zw.Close()
	return out.Bytes()
}

// small chunk sizes so that small test images have many chunks.
var smallChunks = Config{Name: "test", ChunkMin: 16 << 10, ChunkAvg: 64 << 10, ChunkMax: 256 << 10, PieceLength: 16 << 10}

// publish publishes in with cfg and returns the manifest and the payload.
func publish(t testing.TB, in []byte, cfg Config) (*Manifest, []byte) {
	t.Helper()
	var payload bytes.Buffer
	m, _, err := Publish(context.Background(), bytes.NewReader(in), &payload, cfg)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	return m, payload.Bytes()
}

// chunk returns chunk i's bytes from a payload.
func chunk(m *Manifest, payload []byte, i int) []byte {
	c := m.Chunks[i]
	return payload[c.Offset : c.Offset+c.Size]
}

func testKey() ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// rewriteTar copies the entries of the gzip tar tgz, passing each through
// edit (if not nil; it may change the header and the data in place), then
// lets extra (if not nil) append entries, and returns the result gzipped.
func rewriteTar(t testing.TB, tgz []byte, edit func(h *tar.Header, data []byte), extra func(tw *tar.Writer) error) []byte {
	t.Helper()
	src, err := openInput(bytes.NewReader(tgz))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	tr := tar.NewReader(src)
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if edit != nil {
			edit(h, data)
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if extra != nil {
		if err := extra(tw); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return gz(t, out.Bytes())
}
