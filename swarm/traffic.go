package swarm

import (
	"net/netip"

	"github.com/anacrolix/torrent"
)

// Traffic splits the piece data a torrent received by source. Byte counts
// are piece data the client still wanted when it arrived, since the torrent
// was added: duplicates and protocol overhead are excluded, data of pieces
// that then failed their hash check is included.
type Traffic struct {
	// FromPeers is what came from BitTorrent peers other than the servers.
	FromPeers int64
	// FromServer is what came over the open connections to one of the
	// server addresses given to TorrentTraffic (see there).
	FromServer int64
	// FromWebSeeds is what came from HTTP web seeds.
	FromWebSeeds int64
	// Uploaded is the piece data sent to peers.
	Uploaded int64
	// Peers is the number of open peer connections, servers included.
	Peers int
	// HashFailures counts pieces that failed their hash check after peers
	// or web seeds supplied all of their data (anacrolix's
	// PiecesDirtiedBad; the initial check of unknown pieces at start-up is
	// not counted).
	HashFailures int64
}

// TorrentTraffic returns t's traffic. Bytes from connections whose remote
// address is one of serverAddrs count as FromServer instead of FromPeers.
// An entry is "IP:port" (matches a connection we opened to the server's
// listening port, the usual case: peers dial the server) or a bare "IP"
// (matches any connection from that address, also one the server opened to
// us, whose remote port is ephemeral; useless when peers share the server's
// IP, as in the one-machine demo). Unparsable entries are ignored.
//
// anacrolix keeps per-connection counters only for open connections: bytes
// from a server connection that has since closed are counted in FromPeers.
func TorrentTraffic(t *torrent.Torrent, serverAddrs ...string) Traffic {
	exact := make(map[netip.AddrPort]bool)
	anyPort := make(map[netip.Addr]bool)
	for _, s := range serverAddrs {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			exact[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())] = true
		} else if a, err := netip.ParseAddr(s); err == nil {
			anyPort[a.Unmap()] = true
		}
	}
	st := t.Stats()
	tr := Traffic{
		FromWebSeeds: st.WebSeeds.BytesReadUsefulData.Int64(),
		Uploaded:     st.BytesWrittenData.Int64(),
		HashFailures: st.PiecesDirtiedBad.Int64(),
	}
	conns := t.PeerConns()
	tr.Peers = len(conns)
	if len(exact)+len(anyPort) > 0 {
		for _, c := range conns {
			if c.RemoteAddr == nil {
				continue
			}
			ap, err := netip.ParseAddrPort(c.RemoteAddr.String())
			if err != nil {
				continue
			}
			ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			if exact[ap] || anyPort[ap.Addr()] {
				cs := c.Stats()
				tr.FromServer += cs.BytesReadUsefulData.Int64()
			}
		}
	}
	tr.FromPeers = max(0, st.PeerConns.BytesReadUsefulData.Int64()-tr.FromServer)
	return tr
}
