package peer

import (
	"sync"

	"github.com/anacrolix/torrent"
	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/deal"
)

// chunkTracker tracks which pieces of the payload are verified and which
// chunks have all theirs: a chunk whose last piece is verified is handed
// to the appliers (ready) once.
type chunkTracker struct {
	m          *chunker.Manifest
	pieceLen   int64
	numPieces  int
	payloadLen int64

	mu       sync.Mutex
	complete []bool // per piece: verified
	// checking is per piece: being verified again after its chunk failed
	// its hash (requeue), until the check says good or bad (pieceDone).
	// Such a piece is not complete, but not to be asked of the print
	// server either: most of a damaged chunk's pieces are good, and a
	// feeder asking for them all in the milliseconds the check takes had
	// them dealt again.
	checking []bool
	missing  []int  // per chunk: pieces not yet verified
	queued   []bool // per chunk: handed to the appliers (or applied before)
	boosted  []bool // per chunk: its pieces have high priority (window.go)
	verified int64  // payload bytes in verified pieces
	ready    chan int
}

// newChunkTracker starts tracking the payload of m, in numPieces pieces:
// verified(p) says whether piece p was verified before (the staging
// bitmap of an interrupted run), applied(c) whether chunk c needs no
// pieces at all (applied to the target by an interrupted run), local(c)
// whether chunk c's bytes are in the staging payload, verified, already
// (found on the disk by a sync: localChunks). Chunks not applied that are
// local or whose pieces are all verified are ready at once.
func newChunkTracker(m *chunker.Manifest, numPieces int, verified func(p int) bool, applied, local func(c int) bool) *chunkTracker {
	d := &chunkTracker{
		m: m, pieceLen: m.PieceLength, numPieces: numPieces, payloadLen: m.PayloadBytes,
		complete: make([]bool, numPieces),
		checking: make([]bool, numPieces),
		missing:  make([]int, len(m.Chunks)),
		queued:   make([]bool, len(m.Chunks)),
		ready:    make(chan int, len(m.Chunks)),
		boosted:  make([]bool, len(m.Chunks)),
	}
	for p := range numPieces {
		if verified(p) {
			d.complete[p] = true
			d.verified += d.pieceSize(p)
		}
	}
	for c := range m.Chunks {
		if applied(c) {
			d.queued[c] = true
			continue
		}
		if local(c) {
			d.queued[c] = true
			d.ready <- c
			continue
		}
		first, last := d.pieces(c)
		for p := first; p <= last; p++ {
			if !d.complete[p] {
				d.missing[c]++
			}
		}
		if d.missing[c] == 0 {
			d.queued[c] = true
			d.ready <- c
		}
	}
	return d
}

func (d *chunkTracker) pieceSize(p int) int64 {
	return min(d.pieceLen, d.payloadLen-int64(p)*d.pieceLen)
}

// pieces returns the first and last piece holding bytes of chunk c.
func (d *chunkTracker) pieces(c int) (int, int) {
	ch := d.m.Chunks[c]
	return int(ch.Offset / d.pieceLen), int((ch.Offset + ch.Size - 1) / d.pieceLen)
}

// pieceDone is the storage's OnPiece callback.
func (d *chunkTracker) pieceDone(p int, complete bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p < 0 || p >= d.numPieces {
		return
	}
	d.checking[p] = false
	d.setLocked(p, complete)
}

// setLocked records piece p as verified or not. It is the only place that
// changes complete, verified and missing once the tracker is set up, and
// changes them only when the piece's state changes, so that they always
// agree: verified is the size of the pieces marked complete, and missing
// of a chunk not queued counts its pieces not complete. (A piece marked
// not complete and then verified again used to be counted twice, and the
// count reached the payload size while a piece was still missing: the
// feeders and the web-seed fallback stopped, and the run hung.)
func (d *chunkTracker) setLocked(p int, complete bool) {
	if d.complete[p] == complete {
		return
	}
	d.complete[p] = complete
	if complete {
		d.verified += d.pieceSize(p)
	} else {
		d.verified -= d.pieceSize(p)
	}
	// Chunks overlapping piece p.
	start, end := int64(p)*d.pieceLen, int64(p)*d.pieceLen+d.pieceSize(p)
	for c := d.chunkAt(start); c < len(d.m.Chunks) && d.m.Chunks[c].Offset < end; c++ {
		if d.queued[c] {
			continue
		}
		if !complete {
			d.missing[c]++
			continue
		}
		d.missing[c]--
		if d.missing[c] == 0 {
			d.queued[c] = true
			d.ready <- c
		}
	}
}

// chunkAt returns the index of the chunk holding payload byte off.
func (d *chunkTracker) chunkAt(off int64) int { return chunkAt(d.m, off) }

// chunkAt returns the index of the chunk of m holding payload byte off.
func chunkAt(m *chunker.Manifest, off int64) int {
	lo, hi := 0, len(m.Chunks)-1
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if m.Chunks[mid].Offset <= off {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// requeue makes chunk c wait for its pieces again, after its bytes failed
// the chunk hash: its pieces are verified again, and the bad ones fetched
// again.
func (d *chunkTracker) requeue(c int, t *torrent.Torrent) {
	first, last := d.recheck(c)
	for p := first; p <= last; p++ {
		t.Piece(p).VerifyData()
	}
}

// recheck marks chunk c not queued and its pieces not complete, and
// checking (see there) those that were complete, and returns them.
func (d *chunkTracker) recheck(c int) (first, last int) {
	first, last = d.pieces(c)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.queued[c] = false
	d.boosted[c] = false
	d.missing[c] = 0
	for p := first; p <= last; p++ {
		if !d.complete[p] {
			d.missing[c]++ // already waiting (a neighbour's requeue)
		}
	}
	for p := first; p <= last; p++ {
		if d.complete[p] {
			d.checking[p] = true
		}
		d.setLocked(p, false)
	}
	return first, last
}

// verifiedBytes returns the payload bytes in verified pieces.
func (d *chunkTracker) verifiedBytes() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.verified
}

// remaining returns the payload bytes still to verify: 0 once every piece
// is in (which the feeders, the web-seed fallback and the ETA go by).
func (d *chunkTracker) remaining() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.payloadLen - d.verified
}

// missingPieces returns the pieces not verified, except those being
// checked again.
func (d *chunkTracker) missingPieces() deal.Bitmap {
	want := deal.NewBitmap(d.numPieces)
	d.mu.Lock()
	defer d.mu.Unlock()
	for p, done := range d.complete {
		if !done && !d.checking[p] {
			want.Set(p)
		}
	}
	return want
}
