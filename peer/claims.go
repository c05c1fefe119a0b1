package peer

import (
	"net"
	"sync"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/labseed/labseed/deal"
)

// claimTrust is how recently a workstation must have sent this one piece
// data for its claims to count in wantFromServer. A workstation that holds
// pieces this one lacks is asked for them at once and sends within a
// second or two even through a busy port; one that claims pieces and sends
// nothing (a liar, a hung process) would otherwise keep this workstation
// from asking the print server for them for as long as it stays connected.
const claimTrust = 10 * time.Second

// claimGrace is how long the claims of a connection count before it
// delivered anything: in a re-image, the workstations hold most pieces
// from their own disks before anyone sends anything, and one that lacks
// them (its disk held no payload) would otherwise ask the print server
// for pieces the whole lab holds until its first deliveries. A liar costs
// this once per connection.
const claimGrace = 3 * time.Second

// claims weighs what the workstations this one is connected to claim to
// have: it remembers, per connection, when piece data last came over it.
type claims struct {
	mu         sync.Mutex
	deliveries map[*torrent.PeerConn]delivery
}

// delivery is what claims remembers of a connection: when it was first
// seen, the piece data it had sent (anacrolix's useful bytes read) and
// when that last grew.
type delivery struct {
	seen   time.Time
	useful int64
	at     time.Time
}

// wantFromServer returns the pieces this workstation may take from the
// print server: of missing (those it lacks), the ones no other
// workstation it is connected to has. A workstation's claims count only
// while it delivers (claimTrust), or for claimGrace after this one first
// saw the connection: one that never sent piece data is not believed for
// long. That costs little: a workstation with pieces this one lacks is
// asked for them and sends its first block within a second, and a piece
// just dealt to it is not dealt to anyone else for a while anyway
// (deal.DefaultHold); at worst a workstation joining a lab already under
// way takes its first deals (feeders × deal.DefaultMaxRun pieces) from the
// print server before its peers have sent anything. Connections from
// serverHost are not workstations'.
func (cl *claims) wantFromServer(missing deal.Bitmap, t *torrent.Torrent, serverHost string, now time.Time) deal.Bitmap {
	want := missing
	conns := t.PeerConns()
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.deliveries == nil {
		cl.deliveries = map[*torrent.PeerConn]delivery{}
	}
	live := make(map[*torrent.PeerConn]bool, len(conns))
	for _, pc := range conns {
		live[pc] = true
		if host, _, err := net.SplitHostPort(pc.RemoteAddr.String()); err == nil && host == serverHost {
			continue
		}
		dv, ok := cl.deliveries[pc]
		if !ok {
			dv.seen = now
			cl.deliveries[pc] = dv
		}
		st := pc.Stats()
		if useful := st.BytesReadUsefulData.Int64(); useful > dv.useful {
			dv.useful, dv.at = useful, now
			cl.deliveries[pc] = dv
		}
		if (dv.at.IsZero() || now.Sub(dv.at) > claimTrust) && now.Sub(dv.seen) > claimGrace {
			continue
		}
		it := pc.PeerPieces().Iterator()
		for it.HasNext() {
			want.Clear(int(it.Next()))
		}
	}
	for pc := range cl.deliveries {
		if !live[pc] {
			delete(cl.deliveries, pc)
		}
	}
	return want
}
