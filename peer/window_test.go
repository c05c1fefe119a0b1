package peer

import (
	"slices"
	"testing"

	"github.com/labseed/labseed/chunker"
)

// testDownload is a download of n chunks of 4 MiB (16 pieces) each.
func testDownload(n int) *chunkTracker {
	const pl, per = 256 << 10, 16
	m := &chunker.Manifest{PieceLength: pl, PayloadBytes: int64(n) * per * pl}
	d := &chunkTracker{m: m, pieceLen: pl, numPieces: n * per, payloadLen: m.PayloadBytes,
		complete: make([]bool, n*per), checking: make([]bool, n*per), missing: make([]int, n), queued: make([]bool, n),
		boosted: make([]bool, n)}
	for c := range n {
		m.Chunks = append(m.Chunks, chunker.Chunk{Offset: int64(c) * per * pl, Size: per * pl})
		d.missing[c] = per
	}
	return d
}

// pieceRange returns pieces first..last.
func pieceRange(first, last int) []int {
	var r []int
	for p := first; p <= last; p++ {
		r = append(r, p)
	}
	return r
}

func TestWindowCoversTheFirstMissingBytesInOrder(t *testing.T) {
	d := testDownload(10) // 4 MiB chunks: 24 MiB of missing pieces is 6 chunks
	raise, lower := d.plan()
	if want := pieceRange(0, 6*16-1); !slices.Equal(raise, want) || lower != nil {
		t.Fatalf("first window: raise %v lower %v, want the pieces of chunks 0-5", raise, lower)
	}
	// Nothing changed: nothing to do.
	if raise, lower = d.plan(); raise != nil || lower != nil {
		t.Fatalf("a second plan changed %v %v", raise, lower)
	}
	// Chunk 0 is applied and half of chunk 1 verified: the window holds
	// 2 MiB less of chunk 1, so it reaches into chunk 7 (6: 22 MiB so far).
	d.queued[0] = true
	for p := 0; p < 24; p++ {
		d.complete[p] = true
	}
	raise, lower = d.plan()
	if want := pieceRange(6*16, 8*16-1); !slices.Equal(raise, want) || lower != nil {
		t.Errorf("raise %v lower %v, want chunks 6 and 7 in", raise, lower)
	}
	// Chunk 0 failed its hash after all (what requeue does): it is missing
	// again and takes chunk 7's place.
	d.queued[0], d.boosted[0], d.missing[0] = false, false, 16
	for p := range 16 {
		d.complete[p] = false
	}
	raise, lower = d.plan()
	if !slices.Equal(raise, pieceRange(0, 15)) || !slices.Equal(lower, pieceRange(7*16, 8*16-1)) {
		t.Errorf("raise %v lower %v, want chunk 0 in, chunk 7 out", raise, lower)
	}
}
