package chunker

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// TestWalk reads every chunk's entries and puts the files back together
// from their parts: the same bytes as the image's.
func TestWalk(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 300<<10/16) // spans chunks
	in := gz(t, mkTar(t,
		tarEntry{name: "boot/", typ: '5', mode: 0o755},
		tarEntry{name: "boot/vmlinuz-6.1.0-1-amd64", data: big, mode: 0o644},
		tarEntry{name: "vmlinuz", typ: '2', link: "boot/vmlinuz-6.1.0-1-amd64"},
		tarEntry{name: "etc/hostname", data: []byte("master\n"), mode: 0o644},
	))
	m, payload := publish(t, in, Config{Name: "t", ChunkMin: 16 << 10, ChunkAvg: 32 << 10, ChunkMax: 64 << 10})
	if len(m.Chunks) < 3 {
		t.Fatalf("%d chunks: the test wants the kernel split", len(m.Chunks))
	}
	r, err := NewChunkReader(m)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	files := map[string][]byte{}
	var link string
	for i := range m.Chunks {
		err := r.Walk(i, chunk(m, payload, i), func(e Entry, d io.Reader) error {
			switch e.Header.Typeflag {
			case '0':
				if files[e.Header.Name] == nil {
					files[e.Header.Name] = make([]byte, e.FileSize)
				}
				_, err := io.ReadFull(d, files[e.Header.Name][e.Offset:e.Offset+e.Header.Size])
				return err
			case '2':
				link = e.Header.Linkname
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(files["boot/vmlinuz-6.1.0-1-amd64"], big) || string(files["etc/hostname"]) != "master\n" || link != "boot/vmlinuz-6.1.0-1-amd64" {
		t.Errorf("walked files differ: %d bytes of kernel, hostname %q, link %q", len(files["boot/vmlinuz-6.1.0-1-amd64"]), files["etc/hostname"], link)
	}
	bad := bytes.Clone(chunk(m, payload, 0))
	bad[len(bad)/2] ^= 1
	if err := r.Walk(0, bad, func(Entry, io.Reader) error { return nil }); !errors.Is(err, ErrChunkHash) {
		t.Errorf("Walk(corrupt chunk) = %v, want ErrChunkHash", err)
	}
}
