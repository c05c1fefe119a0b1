package chunker

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// cuts returns the cut offsets cdc finds in p, feeding it in pieces of step bytes.
func cuts(p []byte, step int) []int {
	c := newCDC(4<<10, 16<<10, 64<<10)
	var out []int
	pos := 0
	for len(p) > 0 {
		b := p[:min(step, len(p))]
		for len(b) > 0 {
			k, cut := c.scan(b)
			b, p, pos = b[k:], p[k:], pos+k
			if cut {
				out = append(out, pos)
			}
		}
	}
	return out
}

func TestCDCBoundaries(t *testing.T) {
	r := rand.New(rand.NewChaCha8([32]byte{1}))
	data := make([]byte, 4<<20)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	a := cuts(data, 1<<20)
	if b := cuts(data, 777); !slices.Equal(a, b) {
		t.Fatal("cut points depend on how the data is fed")
	}
	prev := 0
	for _, c := range a {
		if n := c - prev; n < 4<<10 || n > 64<<10 {
			t.Fatalf("chunk of %d bytes outside [4 KiB, 64 KiB]", n)
		}
		prev = c
	}
	if n := len(a); n < len(data)/(32<<10) || n > len(data)/(8<<10) {
		t.Fatalf("%d cuts in 4 MiB, want about 256", n)
	}
	// Insert bytes near the start: the cuts after it move by the insertion.
	ins := append(append(append([]byte{}, data[:1000]...), []byte("inserted!")...), data[1000:]...)
	b := cuts(ins, 1<<20)
	moved := map[int]bool{}
	for _, c := range b {
		moved[c-9] = true
	}
	same := 0
	for _, c := range a {
		if moved[c] {
			same++
		}
	}
	if same < len(a)-2 {
		t.Fatalf("after a 9-byte insertion only %d of %d cut points survive", same, len(a))
	}
}
