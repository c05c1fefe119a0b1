package peer

import (
	"net/netip"

	"github.com/anacrolix/torrent"
)

// traffic accumulates the bytes a torrent received per source. The client's
// per-connection counters vanish with their connection, so each one is
// followed while it lives and its growth added to the totals.
type traffic struct {
	server netip.AddrPort
	seen   map[*torrent.PeerConn]int64

	fromServer, fromPeers, fromWebSeed, uploaded, hashFailures int64
	peers                                                      int
}

func newTraffic(serverTorrentAddr string) *traffic {
	ap, _ := netip.ParseAddrPort(serverTorrentAddr)
	return &traffic{server: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), seen: map[*torrent.PeerConn]int64{}}
}

// update reads the torrent's counters.
func (tr *traffic) update(t *torrent.Torrent) {
	live := map[*torrent.PeerConn]int64{}
	conns := t.PeerConns()
	for _, c := range conns {
		st := c.Stats()
		n := st.BytesReadUsefulData.Int64()
		delta := n - tr.seen[c]
		live[c] = n
		if delta <= 0 {
			continue
		}
		if tr.isServer(c) {
			tr.fromServer += delta
		} else {
			tr.fromPeers += delta
		}
	}
	tr.seen = live
	st := t.Stats()
	tr.fromWebSeed = st.WebSeeds.BytesReadUsefulData.Int64()
	tr.uploaded = st.BytesWrittenData.Int64()
	tr.hashFailures = st.PiecesDirtiedBad.Int64()
	tr.peers = len(conns)
}

func (tr *traffic) isServer(c *torrent.PeerConn) bool {
	if c.RemoteAddr == nil {
		return false
	}
	ap, err := netip.ParseAddrPort(c.RemoteAddr.String())
	if err != nil {
		return false
	}
	// The print server never dials workstations, so its connections are the
	// ones to its listening address (all of a lab on loopback shares the IP).
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()) == tr.server
}

// total is everything received.
func (tr *traffic) total() int64 { return tr.fromServer + tr.fromPeers + tr.fromWebSeed }
