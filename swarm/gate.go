package swarm

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
)

// gateListener hands anacrolix only the connections Config.AcceptPeer
// accepts, and at most maxPerIP (negative: any number) at a time from one
// address. The others are closed before a byte is read from them.
type gateListener struct {
	net.Listener
	accept   func(netip.Addr) bool
	maxPerIP int
	log      *slog.Logger

	mu    sync.Mutex
	perIP map[netip.Addr]int // open accepted connections; no zero entries
}

// Accept returns the next connection that passes the gate.
func (l *gateListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if gc := l.admit(c); gc != nil {
			return gc, nil
		}
	}
}

// admit returns c wrapped so that closing it frees its place, or nil after
// closing it if it may not be accepted.
func (l *gateListener) admit(c net.Conn) net.Conn {
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		c.Close()
		return nil
	}
	ip := ap.Addr().Unmap()
	if l.accept != nil && !l.accept(ip) {
		l.log.Debug("refused a BitTorrent connection: not a lab member", "peer", ip)
		abort(c)
		return nil
	}
	l.mu.Lock()
	n := l.perIP[ip]
	full := l.maxPerIP >= 0 && n >= l.maxPerIP
	if !full {
		l.perIP[ip] = n + 1
	}
	l.mu.Unlock()
	if full {
		l.log.Debug("refused a BitTorrent connection: too many from this address", "peer", ip, "open", n)
		abort(c)
		return nil
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0) // as anacrolix does with its own connections
	}
	return &gatedConn{Conn: c, release: func() { l.release(ip) }}
}

func (l *gateListener) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perIP[ip] <= 1 {
		delete(l.perIP, ip)
	} else {
		l.perIP[ip]--
	}
}

// abort closes c with a reset: a refused peer gets no handshake.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// gatedConn frees its place in the gate when first closed.
type gatedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *gatedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
