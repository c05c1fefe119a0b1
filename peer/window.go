package peer

import "github.com/anacrolix/torrent"

// prioWindow is how many bytes of missing pieces have high priority at a
// time (boost): enough that every connection finds blocks in it that no
// other connection is fetching (10 connections × swarm.MaxRequests ×
// swarm.BlockSize is 10 MiB). With a window of 4 chunks (about 6 MiB) the connections of a
// workstation kept taking each other's requests (anacrolix's request
// stealing), and 10-16 % of what the workstations received was blocks
// another connection had already delivered (lab bench, N=8).
const prioWindow = 24 << 20

// boost gives high priority to the pieces of the first chunks, in payload
// order, that still miss pieces (up to prioWindow bytes of them), so that
// chunks complete one after another and extraction keeps pace with the
// download. Without it anacrolix asks for the rarest pieces first: the
// newest ones, which the print server deals in payload order. A
// workstation then kept taking new pieces while older chunks waited for
// their last piece (lab bench, N=8: one workstation had 50 of 209 chunks
// applied when the download was 76 % through, and finished 20 s after the
// others).
func (d *chunkTracker) boost(t *torrent.Torrent) {
	raise, lower := d.plan()
	for _, p := range raise {
		t.Piece(p).SetPriority(torrent.PiecePriorityHigh)
	}
	for _, p := range lower {
		t.Piece(p).SetPriority(torrent.PiecePriorityNormal)
	}
}

// plan chooses the window (see boost) and returns the pieces whose
// priority changes: raise to high, lower back to normal.
func (d *chunkTracker) plan() (raise, lower []int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var n int64 // missing bytes in the window
	for c := range d.m.Chunks {
		want := !d.queued[c] && n < prioWindow
		first, last := d.pieces(c)
		if want {
			for p := first; p <= last; p++ {
				if !d.complete[p] {
					n += d.pieceSize(p)
				}
			}
		}
		if want == d.boosted[c] {
			continue
		}
		d.boosted[c] = want
		for p := first; p <= last; p++ {
			if d.complete[p] {
				continue
			}
			if want {
				raise = append(raise, p)
			} else {
				lower = append(lower, p)
			}
		}
	}
	return raise, lower
}
