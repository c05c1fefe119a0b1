package swarm

import (
	"net/netip"

	"github.com/anacrolix/torrent"
)

// Traffic splits the piece data a torrent received by source. Byte counts
// are piece data the client still wanted when it arrived: duplicates and
// protocol overhead are excluded, data of pieces that then failed their
// hash check is included.
type Traffic struct {
	// FromPeers is what came from BitTorrent peers other than the servers,
	// since the Meter's first Update.
	FromPeers int64
	// FromServer is what came over connections to one of the server
	// addresses given to NewMeter (see there), since the Meter's first
	// Update.
	FromServer int64
	// FromWebSeeds is what came from HTTP web seeds since the torrent was
	// added.
	FromWebSeeds int64
	// Uploaded is the piece data sent to peers since the torrent was added.
	Uploaded int64
	// Peers is the number of open peer connections, servers included.
	Peers int
	// HashFailures counts pieces that failed their hash check after peers
	// or web seeds supplied all of their data (anacrolix's
	// PiecesDirtiedBad; the initial check of unknown pieces at start-up is
	// not counted).
	HashFailures int64
}

// Received is all the piece data received: FromServer + FromPeers +
// FromWebSeeds.
func (tr Traffic) Received() int64 { return tr.FromServer + tr.FromPeers + tr.FromWebSeeds }

// Meter accumulates a torrent's Traffic. anacrolix keeps per-connection
// counters only while a connection is open, so the Meter follows each
// connection from one Update to the next and adds what it received in
// between to the totals: bytes from a connection survive its closing.
// What a connection received after the last Update before it closed is
// not counted, so Update should be called often (a workstation does every
// second) while the torrent downloads.
//
// A Meter follows one torrent. It is not safe for concurrent use.
type Meter struct {
	exact   map[netip.AddrPort]bool
	anyPort map[netip.Addr]bool
	seen    map[*torrent.PeerConn]int64 // useful bytes read, at the last Update
	tr      Traffic
}

// NewMeter returns a Meter that counts bytes from connections whose remote
// address is one of serverAddrs as FromServer instead of FromPeers. An
// entry is "IP:port" (matches a connection we opened to the server's
// listening port, the usual case: peers dial the server) or a bare "IP"
// (matches any connection from that address, also one the server opened
// to us, whose remote port is ephemeral; useless when peers share the
// server's IP, as in the one-machine demo). Unparsable entries, "" say,
// are ignored.
func NewMeter(serverAddrs ...string) *Meter {
	m := &Meter{
		exact:   make(map[netip.AddrPort]bool),
		anyPort: make(map[netip.Addr]bool),
		seen:    make(map[*torrent.PeerConn]int64),
	}
	for _, s := range serverAddrs {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			m.exact[unmap(ap)] = true
		} else if a, err := netip.ParseAddr(s); err == nil {
			m.anyPort[a.Unmap()] = true
		}
	}
	return m
}

// Update reads t's counters and returns its traffic so far.
func (m *Meter) Update(t *torrent.Torrent) Traffic {
	live := make(map[*torrent.PeerConn]int64)
	conns := t.PeerConns()
	for _, c := range conns {
		cs := c.Stats()
		n := cs.BytesReadUsefulData.Int64()
		delta := n - m.seen[c]
		live[c] = n
		if delta <= 0 {
			continue
		}
		if m.isServer(c) {
			m.tr.FromServer += delta
		} else {
			m.tr.FromPeers += delta
		}
	}
	m.seen = live
	st := t.Stats()
	m.tr.FromWebSeeds = st.WebSeeds.BytesReadUsefulData.Int64()
	m.tr.Uploaded = st.BytesWrittenData.Int64()
	m.tr.HashFailures = st.PiecesDirtiedBad.Int64()
	m.tr.Peers = len(conns)
	return m.tr
}

// Traffic returns the traffic as of the last Update (zero before the
// first).
func (m *Meter) Traffic() Traffic { return m.tr }

// isServer reports whether c is a connection to one of the servers.
func (m *Meter) isServer(c *torrent.PeerConn) bool {
	if c.RemoteAddr == nil {
		return false
	}
	ap, err := netip.ParseAddrPort(c.RemoteAddr.String())
	if err != nil {
		return false
	}
	ap = unmap(ap)
	return m.exact[ap] || m.anyPort[ap.Addr()]
}

// unmap returns ap with an IPv4-mapped IPv6 address as plain IPv4.
func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// AddFromServer counts n payload bytes received from the print server
// outside the torrent client (pieces it dealt over HTTP).
func (m *Meter) AddFromServer(n int64) { m.tr.FromServer += n }
