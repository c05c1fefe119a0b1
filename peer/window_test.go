package peer

import (
	"slices"
	"testing"

	"github.com/labseed/labseed/chunker"
)

// testDownload is a download of n chunks of 4 pieces each, walked in
// chunk order.
func testDownload(n int) *download {
	const pl = 256 << 10
	m := &chunker.Manifest{PieceLength: pl, PayloadBytes: int64(n) * 4 * pl}
	d := &download{m: m, pieceLen: pl, numPieces: n * 4, payloadLen: m.PayloadBytes,
		complete: make([]bool, n*4), missing: make([]int, n), queued: make([]bool, n),
		boosted: make([]bool, n), peerHas: make([]bool, n*4)}
	for c := range n {
		m.Chunks = append(m.Chunks, chunker.Chunk{Offset: int64(c) * 4 * pl, Size: 4 * pl})
		d.order = append(d.order, c)
		d.missing[c] = 4
	}
	return d
}

func TestWindowTakesChunksOnlyTheServerHas(t *testing.T) {
	d := testDownload(10)
	raise, lower := d.plan()
	if want := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}; !slices.Equal(raise, want) || lower != nil {
		t.Fatalf("first window: raise %v lower %v, want the pieces of chunks 0-3", raise, lower)
	}
	// Another workstation got a piece of chunk 1; chunk 0 is done; this
	// workstation has a piece of chunk 2 itself.
	d.peerHas[5] = true
	d.queued[0] = true
	d.complete[9] = true
	raise, lower = d.plan()
	if want := []int{16, 17, 18, 19, 20, 21, 22, 23}; !slices.Equal(raise, want) {
		t.Errorf("raise %v, want chunks 4 and 5", raise)
	}
	if want := []int{4, 5, 6, 7}; !slices.Equal(lower, want) {
		t.Errorf("lower %v, want chunk 1 back to normal", lower)
	}
	// Nothing changed: nothing to do.
	if raise, lower = d.plan(); raise != nil || lower != nil {
		t.Errorf("a second plan changed %v %v", raise, lower)
	}
	// Once this workstation has the piece the other one had, chunk 1 is
	// server-only again and, earlier in the order, takes chunk 5's place.
	d.complete[5] = true
	raise, lower = d.plan()
	if !slices.Equal(raise, []int{4, 6, 7}) || !slices.Equal(lower, []int{20, 21, 22, 23}) {
		t.Errorf("raise %v lower %v, want chunk 1 in, chunk 5 out", raise, lower)
	}
}
