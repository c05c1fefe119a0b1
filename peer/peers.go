package peer

import (
	"hash/fnv"
	"net"
	"time"

	"github.com/labseed/labseed/gossip"
)

// dials reports whether the workstation at torrent address self dials the
// one at other; exactly one of each pair does. If both dialled, every pair
// would hold two connections (anacrolix keeps both), and MaxConns would
// cover only half as many distinct partners. Which one dials is a hash of
// the pair, so that each workstation dials about half of the others
// whatever the addressing.
func dials(self, other string) bool {
	lo, hi := min(self, other), max(self, other)
	h := fnv.New32a()
	h.Write([]byte(lo + " " + hi))
	return (h.Sum32()&1 == 0) == (self == lo)
}

// rediscoverAfter is how long an address handed to the torrent client is
// not handed again: a peer the client dropped (killed and restarted, say)
// is offered again after that.
const rediscoverAfter = 10 * time.Second

// discovery chooses, from the lab's members as the gossip shows them, the
// torrent addresses to hand to the torrent client: there is no tracker
// and no DHT.
type discovery struct {
	self   string // this workstation's torrent address
	server string // the print server's torrent address
	// useServer lets the client connect to the print server: only when
	// it does not deal pieces (feed.go); otherwise the feeders take
	// from it what no workstation has, and nothing else.
	useServer bool
	known     map[string]bool // handed to the client since knownAt
	knownAt   time.Time
}

// toAdd returns the torrent addresses of live members that the client is
// to connect to now: the workstations this one dials (dials) and the other
// members (print servers), except those handed over already.
func (d *discovery) toAdd(members []gossip.Member, now time.Time) []string {
	if d.known == nil || now.Sub(d.knownAt) > rediscoverAfter {
		d.known, d.knownAt = map[string]bool{}, now
	}
	var add []string
	for _, m := range members {
		a := m.Status.TorrentAddr
		if a == "" || a == d.self || m.State != gossip.StateAlive || d.known[a] {
			continue
		}
		if m.Status.Role == gossip.RolePeer && !dials(d.self, a) {
			continue // a dials us
		}
		if a == d.server && !d.useServer {
			continue // the feeders fetch from the print server
		}
		d.known[a] = true
		add = append(add, a)
	}
	return add
}

// tcpAddr resolves host:port for the torrent client, which wants a net.Addr.
func tcpAddr(hostport string) net.Addr {
	a, err := net.ResolveTCPAddr("tcp", hostport)
	if err != nil {
		return &net.TCPAddr{}
	}
	return a
}
