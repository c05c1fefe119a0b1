package seeder

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// Defaults of the HTTP limits (Config.HTTPLimits).
const (
	DefaultIdleTimeout    = 60 * time.Second
	DefaultRequestTimeout = 30 * time.Second
	DefaultStallTimeout   = 10 * time.Second
	DefaultConnsPerIP     = 64
	DefaultDealsPerIP     = 4
)

// HTTPLimits bound what one client can hold of the print server's HTTP
// server (API, deals, web seed, network boot files). Zero values mean the
// defaults.
type HTTPLimits struct {
	// HeaderTimeout bounds reading a request's headers (a client that
	// dribbles them, slowloris, is cut); default 10 s.
	HeaderTimeout time.Duration
	// IdleTimeout closes a kept-alive connection with no request; default
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// RequestTimeout bounds reading a request's body and answering an API
	// request; default DefaultRequestTimeout.
	RequestTimeout time.Duration
	// StallTimeout cuts a deal or web-seed stream that makes no progress
	// (the client stopped reading) for that long; default
	// DefaultStallTimeout. Streams that move are never cut by it.
	StallTimeout time.Duration
	// ConnsPerIP is the most connections one address may hold open;
	// default DefaultConnsPerIP.
	ConnsPerIP int
	// DealsPerIP is the most deals (PathDeal) one address may have under
	// way; default DefaultDealsPerIP (a workstation keeps two).
	DealsPerIP int
}

func (l HTTPLimits) withDefaults() HTTPLimits {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&l.HeaderTimeout, 10*time.Second)
	def(&l.IdleTimeout, DefaultIdleTimeout)
	def(&l.RequestTimeout, DefaultRequestTimeout)
	def(&l.StallTimeout, DefaultStallTimeout)
	if l.ConnsPerIP <= 0 {
		l.ConnsPerIP = DefaultConnsPerIP
	}
	if l.DealsPerIP <= 0 {
		l.DealsPerIP = DefaultDealsPerIP
	}
	return l
}

// apiLimits wraps a handler whose request and answer are small: reading
// the request and writing the answer must be done within RequestTimeout.
func (s *Server) apiLimits(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		dl := time.Now().Add(s.limits.RequestTimeout)
		rc.SetReadDeadline(dl)
		rc.SetWriteDeadline(dl)
		h.ServeHTTP(w, r)
		s.endRequest(rc)
	})
}

// endRequest writes out what the answer still has buffered within a
// deadline, then lifts the write deadline: it would outlive the request on
// a kept-alive connection (the network boot's files have none).
func (s *Server) endRequest(rc *http.ResponseController) {
	rc.SetWriteDeadline(time.Now().Add(s.limits.StallTimeout))
	rc.Flush()
	rc.SetWriteDeadline(time.Time{})
}

// streamLimits wraps a handler that streams a long answer (deals, the web
// seed): the request must be read within RequestTimeout; then every write
// of the answer must go through within StallTimeout, so a client that
// stops reading loses the connection while one that reads, however long,
// keeps it. The handler must call startStream once it has read the
// request.
func (s *Server) streamLimits(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		rc.SetReadDeadline(time.Now().Add(s.limits.RequestTimeout))
		h.ServeHTTP(w, r)
		s.endRequest(rc)
	})
}

// startStream ends the request's read deadline (a read deadline that
// passes while the answer streams would cancel the request) and returns w
// with a StallTimeout deadline on each write, and none later than end
// (zero: no end).
func (s *Server) startStream(w http.ResponseWriter, end time.Time) http.ResponseWriter {
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{})
	return &stallWriter{ResponseWriter: w, rc: rc, stall: s.limits.StallTimeout, end: end}
}

// stallWriter sets a write deadline before each write of a stream.
type stallWriter struct {
	http.ResponseWriter
	rc    *http.ResponseController
	stall time.Duration
	end   time.Time
}

func (w *stallWriter) Write(b []byte) (int, error) {
	dl := time.Now().Add(w.stall)
	if !w.end.IsZero() && w.end.Before(dl) {
		dl = w.end
	}
	w.rc.SetWriteDeadline(dl)
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *stallWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// perIPListener closes connections beyond max per source address at once.
type perIPListener struct {
	net.Listener
	max int

	mu    sync.Mutex
	conns map[netip.Addr]int
}

func limitPerIP(l net.Listener, max int) *perIPListener {
	return &perIPListener{Listener: l, max: max, conns: map[netip.Addr]int{}}
}

func (l *perIPListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
		if err != nil {
			return c, nil
		}
		ip := ap.Addr().Unmap()
		l.mu.Lock()
		if l.conns[ip] >= l.max {
			l.mu.Unlock()
			c.Close()
			continue
		}
		l.conns[ip]++
		l.mu.Unlock()
		return &countedConn{Conn: c, l: l, ip: ip}, nil
	}
}

// open returns how many connections ip holds.
func (l *perIPListener) open(ip netip.Addr) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conns[ip]
}

type countedConn struct {
	net.Conn
	l    *perIPListener
	ip   netip.Addr
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.l.conns[c.ip]--; c.l.conns[c.ip] <= 0 {
			delete(c.l.conns, c.ip)
		}
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
