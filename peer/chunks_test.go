package peer

import (
	"testing"

	"github.com/labseed/labseed/chunker"
)

// TestRecheckAsksOnlyForBadPieces: a chunk that failed its hash has its
// pieces verified again; until each check ends, the piece is not asked of
// the print server (most are good), and the chunk is ready again once its
// bad piece is fetched again.
func TestRecheckAsksOnlyForBadPieces(t *testing.T) {
	const pl, per, n = 256 << 10, 16, 3
	m := &chunker.Manifest{PieceLength: pl, PayloadBytes: n * per * pl}
	for c := range n {
		m.Chunks = append(m.Chunks, chunker.Chunk{Offset: int64(c) * per * pl, Size: per * pl})
	}
	// A resume: every piece verified before, no chunk applied.
	d := newChunkTracker(m, n*per, func(int) bool { return true }, func(int) bool { return false }, func(int) bool { return false })
	for range n {
		<-d.ready
	}
	ask := func() []int {
		var ps []int
		want := d.missingPieces()
		for p := range n * per {
			if want.Has(p) {
				ps = append(ps, p)
			}
		}
		return ps
	}

	first, last := d.recheck(1) // chunk 1 failed its hash
	if first != 16 || last != 31 {
		t.Fatalf("chunk 1 is pieces %d-%d", first, last)
	}
	if got := ask(); got != nil {
		t.Fatalf("asked for %v while they are checked again", got)
	}
	if d.remaining() != per*pl {
		t.Errorf("remaining %d bytes, want chunk 1's %d", d.remaining(), per*pl)
	}
	d.pieceDone(20, false) // the damaged one
	for p := first; p <= last; p++ {
		if p != 20 {
			d.pieceDone(p, true)
		}
	}
	if got := ask(); len(got) != 1 || got[0] != 20 {
		t.Fatalf("asked for %v, want piece 20 only", got)
	}
	select {
	case c := <-d.ready:
		t.Fatalf("chunk %d ready with piece 20 missing", c)
	default:
	}
	d.pieceDone(20, true) // fetched again
	select {
	case c := <-d.ready:
		if c != 1 {
			t.Errorf("chunk %d ready, want 1", c)
		}
	default:
		t.Fatal("chunk 1 not ready with every piece verified again")
	}
	if d.remaining() != 0 || ask() != nil {
		t.Errorf("remaining %d, asking for %v", d.remaining(), ask())
	}
}
