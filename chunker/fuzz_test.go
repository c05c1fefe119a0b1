package chunker

import (
	"bytes"
	"io"
	"os"
	"testing"
)

// FuzzReadFragment feeds arbitrary bytes to the fragment reader: it must
// return an error or entries that passed validation, never panic.
func FuzzReadFragment(f *testing.F) {
	f.Add(mkTar(f, tarEntry{name: "a", data: []byte("x")}))
	f.Add(mkTar(f, tarEntry{name: "../a", data: []byte("x")}))
	m, payload := publish(f, genImage(f, 9, 256<<10), smallChunks)
	raw, _ := openInput(bytes.NewReader(chunk(m, payload, 0)))
	if b, err := io.ReadAll(raw); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		readFragment(bytes.NewReader(b), func(e *entry, r io.Reader) error {
			if _, err := cleanName(e.hdr.Name); err != nil {
				t.Fatalf("entry %q passed validation", e.hdr.Name)
			}
			if e.offset+e.hdr.Size > e.total && e.hdr.Typeflag == '0' {
				t.Fatalf("part %d+%d beyond %d passed validation", e.offset, e.hdr.Size, e.total)
			}
			io.Copy(io.Discard, r)
			return nil
		})
	})
}

// FuzzDecodeManifest feeds arbitrary bytes to the manifest decoder.
func FuzzDecodeManifest(f *testing.F) {
	m, _ := publish(f, genImage(f, 10, 256<<10), smallChunks)
	b, _ := m.Encode()
	f.Add(b)
	f.Add([]byte(`{"format":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeManifest(b)
		if err != nil {
			return
		}
		var off int64
		for _, c := range m.Chunks {
			if c.Offset != off || c.RawSize > MaxChunkRawSize {
				t.Fatalf("invalid chunk %+v passed validation", c)
			}
			off += c.Size
		}
	})
}

// FuzzPublish feeds arbitrary tarballs to Publish: errors are fine, panics
// and manifests that fail validation are not.
func FuzzPublish(f *testing.F) {
	f.Add(mkTar(f, tarEntry{name: "a", data: []byte("x")}))
	for _, name := range []string{"hostile.tar", "sparse-gnu.tar", "sparse-pax.tar", "sparse-pax00.tar"} {
		if b, err := os.ReadFile("testdata/" + name); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, _, err := Publish(t.Context(), bytes.NewReader(b), io.Discard, smallChunks)
		if err == nil {
			if err := m.Validate(); err != nil {
				t.Fatal(err)
			}
		}
	})
}
