package swarm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	pp "github.com/anacrolix/torrent/peer_protocol"
	"golang.org/x/time/rate"
)

// MaxAllocPeerRequestData is the ClientConfig.MaxAllocPeerRequestDataPerConn
// NewClient sets: 4 MiB instead of anacrolix's 1 MiB, four times what a
// labseed peer ever asks of another at once (MaxRequests blocks of
// BlockSize). It is also the most piece data a connection can make this
// client read into memory for it.
//
// On anacrolix/torrent v1.59.1 a seeder whose allowance is smaller than
// what a leecher keeps requested stops serving that leecher for good
// (DESIGN.md). Measured here with a leecher asking for 16 KiB blocks with
// anacrolix's full pipeline (up to 1024 requests): with 1 MiB it stalled
// after 129 blocks, with 4 MiB after 513, with 16 MiB never. 129 =
// 1+2+…+64 + 2 and 513 = 1+2+…+256 + 2: the leecher doubles its pipeline
// while data flows, and the stall comes early in the first round that asks
// for more than the allowance holds. That fits the code: each connection
// has one goroutine that reads requested data; it picks the next request
// in map order and waits for that request's share of the allowance, which
// is handed out first-come first-served. When it picks a request queued
// behind others, those get the allowance freed by sending, but nobody
// reads their data any more, so nothing more is sent: deadlock. The
// deadlock is the connection's own: the client's other connections go on.
//
// labseed peers keep at most MaxRequests blocks (1 MiB) requested from a
// peer (see the ReadExtendedHandshake callback in NewClient), so 4 MiB
// never stalls them (TestSeederServesWholePayload). It used to be 1 GiB
// so that any client's pipeline fit, but then nothing bounded what a
// connection could make the client hold: a few anonymous connections that
// asked for 1024 blocks of 256 KiB each and never read drove a print
// server from 226 to 938 MiB in 6 s. With 4 MiB such a connection holds 4
// MiB and stalls itself (TestRequestFlood).
const MaxAllocPeerRequestData = 4 << 20

// DefaultMaxConns is the most BitTorrent connections a workstation keeps
// by default (peer.Config.MaxConns).
const DefaultMaxConns = 10

// Crowded reports whether a lab of workstations (counting each) has more
// than maxConns others for each: then no workstation is connected to every
// other one at once, and it asks for CrowdBlockSize blocks while the print
// server holds the pieces it deals for deal.CrowdHold.
func Crowded(workstations, maxConns int) bool { return workstations-1 > maxConns }

// DefaultMaxConnsPerIP is the default of Config.MaxConnsPerIP. Between two
// labseed nodes there is one connection (peer.dials), two for a moment
// when one of them restarts.
const DefaultMaxConnsPerIP = 4

// BlockSize is the size of the blocks (BitTorrent "chunks") a client asks
// its peers for: 128 KiB instead of the usual 16 KiB. anacrolix v1.59.1
// keeps a connection's request queue at about twice the number of requests
// its last request update added, and every HAVE, piece completion or
// priority change triggers an update that adds one or two: in a busy swarm
// a connection had 1 or 2 requests outstanding (seen in the lab bench with
// LABSEED_TORRENT_STATUS: "reqq: 2+0/(1/64)"), i.e. 32 KiB per round trip
// through queues of a loaded 20 Mbit/s port. With 256 KiB blocks (a whole
// piece of labseed's default piece length) the same queue carries 16 times
// as much. Every labseed node accepts such requests (its rate limiters'
// burst is as large, see RateBurst).
//
// Lab bench, N=8, 20 Mbit/s, every piece dealt once by the print server:
// with 128 KiB blocks each connection averaged 1.9 requests outstanding,
// and the workstations' ports, which carry 7/8 of the image between
// workstations, were used to 14 of their 19 Mbit/s of TCP goodput. Larger
// blocks paid off only with a larger priority window (peer.prioWindow);
// together they took the bench from 1.27-1.31 to 1.03 T_lim.
//
// A crowded lab (Crowded) asks for CrowdBlockSize instead.
const BlockSize = 256 << 10

// CrowdBlockSize is the block a workstation asks for in a crowded lab
// (Crowded: more workstations than it keeps connections to): a quarter
// of a piece. There anacrolix's request stealing and its closing
// of connections to make room for new ones each cost up to a block: in a
// lab of 48 on 2 Mbit/s ports, where a 256 KiB block takes ~10 s through
// a port shared by ten connections, 64 KiB blocks cut the bytes received
// twice from 10-12 to 5.5-6.7 MB per workstation and the last workstation
// from 1.37-1.54 to 1.19 and 1.34 T_lim (2026-12-05; 1.20 and 1.21 with
// the crowded lab's longer hold of dealt pieces). In a lab of 8 on
// 20 Mbit/s ports with the Debian image, every connection open, they made
// it slower (0.94 and 1.00 T_lim against 0.88) and hungrier (a piece of
// four blocks goes through anacrolix's smart-ban copy): there BlockSize
// stays (docs/lab-bench.md, "Where the lab of 48's extra bytes come
// from" and "A crowded lab").
const CrowdBlockSize = 64 << 10

// MaxRequests is the most block requests a client keeps outstanding to one
// peer by default (Files.MaxRequests): 1 MiB of BlockSize blocks, which is
// 0.4 s of a 20 Mbit/s port and 8 ms of a 1 Gbit/s one, far above a LAN's
// round trip (anacrolix keeps about 2 outstanding anyway, see BlockSize).
// It also bounds what an uploading peer holds in memory for us (anacrolix
// reads every queued request ahead).
const MaxRequests = (1 << 20) / BlockSize

// CrowdMaxRequests is MaxRequests in a crowded lab: 256 KiB of
// CrowdBlockSize blocks at each peer. Since a request stays with a peer
// that delivers (StealAfter), it waits behind those made before it; at
// 1 MiB per peer, on 1 Mbit/s ports shared by ten connections, the last
// pieces of a lab of 90 waited there for over a minute, ten workstations
// stalled and added the web seed, and the print server dealt 1.36 × the
// payload: 1.40 T_lim against 1.27 with 256 KiB, and 1.12 against 1.11 on
// 2 Mbit/s ports (docs/lab-bench.md, "Measured: pieces received twice").
const CrowdMaxRequests = (256 << 10) / CrowdBlockSize

// StealAfter is ClientConfig.RequestStealAfter, a setting of labseed's
// patch to anacrolix (third_party/anacrolix-torrent/LABSEED.md): a block
// requested of one peer is asked of another only once the request is this
// old and the first peer has delivered nothing useful for as long, so a
// peer that stops answering loses its requests and one that is busy
// sending keeps them. anacrolix itself moves a request at once to any
// connection with fewer outstanding ("request stealing"); with blocks of a
// whole piece (BlockSize) the first peer has usually begun sending it, so
// both copies arrive. In the lab bench (N = 8, 20 Mbit/s, the Debian
// minbase image) 15-25 of each workstation's 191 pieces arrived twice, a
// tenth of what it received; with StealAfter none did, and the lab of 90
// on 2 Mbit/s ports went from 1.19-1.20 to 1.12 T_lim (docs/lab-bench.md,
// "Measured: pieces received twice").
const StealAfter = 10 * time.Second

// RateBurst is the token-bucket burst NewClient gives the upload and download
// rate limiters, in bytes.
//
// anacrolix v1.59.1 never calls WaitN: uploads call ReserveN(now, chunk
// length) and a request longer than the burst is rejected (it panics if it
// ever got that far), so the burst must hold a whole block (BlockSize). Downloads truncate each socket or web-seed
// body read to the burst, then ReserveN the bytes read and sleep. Left at 0,
// anacrolix would set the upload burst to MaxAllocPeerRequestDataPerConn,
// i.e. 4 MiB here, and would let through bursts that large. 256 KiB
// keeps reads large and the overshoot small (20 ms at 100 Mb/s). It is
// also the longest block a peer may ask this client for.
const RateBurst = 256 << 10

// DefaultPort is the BitTorrent port of a Config whose Port is 0.
const DefaultPort = 6881

// KeepAlive is the ClientConfig.KeepAliveTimeout NewClient sets: at most
// this long a connection's writer sleeps without looking for work (see the
// comment in NewClient); anacrolix's default is a minute.
const KeepAlive = time.Second

// Config configures NewClient. The zero value of every field but Storage
// means its default.
type Config struct {
	// ListenIP is the address to accept peer connections on. Default ""
	// listens on all addresses (IPv4 and IPv6). An IPv4 address disables
	// IPv6 and vice versa.
	ListenIP string
	// Port is the TCP port for peer connections; default DefaultPort.
	// -1 picks a free one (Client.LocalPort tells which): many clients
	// share one machine in tests and in `labseed demo`.
	Port int
	// UploadRate limits the piece data sent to peers, in bytes per second.
	// Default 0 is unlimited. The demo uses it to simulate a switch port.
	// Protocol messages are not counted, nor is an HTTP web seed the
	// caller serves itself.
	UploadRate int64
	// DownloadRate limits everything read from peer connections and web
	// seeds, in bytes per second. Default 0 is unlimited.
	DownloadRate int64
	// UploadLimiter and DownloadLimiter, if set, replace the limiters made
	// from UploadRate and DownloadRate, so that traffic outside the client
	// (pieces dealt over HTTP, see package deal) can share one simulated
	// port with it through LimitWriter and LimitReader. Make them with
	// NewLimiter.
	UploadLimiter, DownloadLimiter *rate.Limiter
	// Storage holds the torrents' payloads. Required. One Storage serves
	// one client; close it after the client.
	Storage *Storage
	// Logger receives anacrolix's own log records, all at Debug level.
	// Default nil discards them.
	Logger *slog.Logger
	// MaxConns is the most peer connections per torrent; default 256 (the
	// print server talks to every workstation). Each connection that
	// uploads can hold up to MaxAllocPeerRequestData of requested piece
	// data in memory (anacrolix v1.59.1 reads outstanding requests ahead),
	// so a workstation that must stay small uses a few: see
	// peer.Config.MaxConns.
	MaxConns int
	// AcceptPeer, if set, decides whether to accept a connection from a
	// peer at addr (IPv4 addresses in their 4-byte form): false closes it
	// before anything is read from it. It is called from the accepting
	// goroutine, one connection at a time, and must return promptly.
	// Default nil accepts every address. The print server accepts lab
	// members only (seeder.Server).
	AcceptPeer func(addr netip.Addr) bool
	// MaxConnsPerIP is the most connections accepted from one IP address
	// at a time; more are closed at once. Default DefaultMaxConnsPerIP;
	// negative: no limit. Connections this client dials do not count.
	MaxConnsPerIP int
}

// NewClient validates cfg and starts a BitTorrent client tuned for a lab
// subnet. Add torrents with AddTorrent (it uses cfg.Storage), peers with Torrent.AddPeers, web seeds with
// Torrent.AddWebSeeds, and call Torrent.DownloadAll: anacrolix downloads
// nothing until asked. Close the client with Client.Close.
func NewClient(cfg Config) (*torrent.Client, error) {
	switch {
	case cfg.Port < -1 || cfg.Port > 65535:
		return nil, fmt.Errorf("swarm: port %d out of range 0-65535 (0 for %d, -1 for any free port)", cfg.Port, DefaultPort)
	case cfg.Port == 0:
		cfg.Port = DefaultPort
	case cfg.Port == -1:
		cfg.Port = 0 // the system picks
	}
	tc, err := clientConfig(cfg)
	if err != nil {
		return nil, err
	}
	return startClient(cfg, tc)
}

// startClient starts a client with configuration tc (from clientConfig)
// and gives it the TCP listener and dialer of cfg.
//
// labseed sets up TCP itself (clientConfig disables anacrolix's own) for
// two reasons. Connections are accepted through a gate (gateListener) that
// applies cfg.AcceptPeer and cfg.MaxConnsPerIP before anacrolix sees them.
// And a client bound to one address must also dial from it: anacrolix
// dials from an unbound socket, so its connections would leave from
// whatever address the routing table picks; peers ban misbehaving peers by
// IP, and several labseed hosts on one machine (127.0.0.N in the tests and
// the demo) would all appear as 127.0.0.1, so one bad peer would get every
// host banned.
func startClient(cfg Config, tc *torrent.ClientConfig) (*torrent.Client, error) {
	cl, err := torrent.NewClient(tc)
	if err != nil {
		return nil, fmt.Errorf("swarm: start BitTorrent client on %s: %w", listenDesc(cfg), err)
	}
	lc := net.ListenConfig{KeepAlive: -1} // BitTorrent has its own keep-alives
	ln, err := lc.Listen(context.Background(), "tcp", net.JoinHostPort(cfg.ListenIP, strconv.Itoa(cfg.Port)))
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("swarm: start BitTorrent client on %s: %w", listenDesc(cfg), err)
	}
	maxPerIP := cfg.MaxConnsPerIP
	if maxPerIP == 0 {
		maxPerIP = DefaultMaxConnsPerIP
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cl.AddListener(&gateListener{Listener: ln, accept: cfg.AcceptPeer, maxPerIP: maxPerIP,
		log: logger.With("component", "swarm"), perIP: map[netip.Addr]int{}})
	if tc.DialForPeerConns {
		d := &net.Dialer{KeepAlive: -1}
		if ip := net.ParseIP(cfg.ListenIP); ip != nil && !ip.IsUnspecified() {
			d.LocalAddr = &net.TCPAddr{IP: ip}
		}
		cl.AddDialer(torrent.NetworkDialer{Network: "tcp", Dialer: d})
	}
	go func() { <-cl.Closed(); ln.Close() }()
	return cl, nil
}

// clientConfig validates cfg and returns the anacrolix configuration
// NewClient uses. cfg.Port is as NewClient resolved it: 0 lets the system
// pick.
func clientConfig(cfg Config) (*torrent.ClientConfig, error) {
	if cfg.Storage == nil {
		return nil, errors.New("swarm: Config.Storage is required")
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("swarm: port %d out of range 0-65535", cfg.Port)
	}
	if cfg.UploadRate < 0 || cfg.DownloadRate < 0 {
		return nil, fmt.Errorf("swarm: negative rate (upload %d, download %d B/s): use 0 for unlimited", cfg.UploadRate, cfg.DownloadRate)
	}
	var listenIP netip.Addr
	if cfg.ListenIP != "" {
		var err error
		listenIP, err = netip.ParseAddr(cfg.ListenIP)
		if err != nil {
			return nil, fmt.Errorf("swarm: listen address %q: %w", cfg.ListenIP, err)
		}
		listenIP = listenIP.Unmap()
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	tc := torrent.NewDefaultClientConfig()
	tc.DefaultStorage = cfg.Storage
	// TCP only, set up by startClient on the configured address and port.
	tc.DisableTCP = true
	tc.ListenPort = cfg.Port
	tc.ListenHost = func(string) string { return cfg.ListenIP }
	if listenIP.IsValid() {
		tc.DisableIPv6 = listenIP.Is4()
		tc.DisableIPv4 = listenIP.Is6()
	}
	// Membership comes from gossip (DESIGN.md "Swarm rules"): no DHT, no
	// trackers, no PEX, no WebTorrent (it needs websocket trackers).
	tc.NoDHT = true
	tc.PeriodicallyAnnounceTorrentsToDht = false
	tc.DisableTrackers = true
	tc.DisablePEX = true
	tc.DisableWebtorrent = true
	// One subnet: no NAT to punch through, nothing to hide from an ISP.
	// Plaintext handshakes only (Preferred false + RequirePreferred true
	// refuses MSE both ways), which saves the CPU of RC4 on every byte.
	tc.HeaderObfuscationPolicy = torrent.HeaderObfuscationPolicy{Preferred: false, RequirePreferred: true}
	// TCP only: uTP's delay-based congestion control only costs throughput
	// on a switched LAN, and it would open UDP sockets we do not need.
	tc.DisableUTP = true
	// No UPnP/NAT-PMP: the lab switch is not a home router.
	tc.NoDefaultPortForwarding = true
	// Seed true with aggressive upload left on makes Torrent.seeding()
	// true while still downloading: peers upload freely inside the lab
	// instead of anacrolix's "no more than 100 KiB ahead of what they gave
	// us" tit-for-tat, and keep serving after completion.
	tc.Seed = true
	tc.DisableAggressiveUpload = false
	// Every lab member may connect at once (after a Wake-on-LAN batch);
	// the per-IP accept limiter would refuse the burst.
	tc.DisableAcceptRateLimiting = true
	// Keep connections between two complete nodes (anacrolix drops them):
	// anacrolix keeps per-connection counters only while a connection is
	// open, and a Meter reads them at each Update: what arrived since the
	// last Update before completion would not be counted (nothing at all
	// by a Meter first updated after completion). An idle connection costs
	// a socket (anacrolix sends keep-alives only on connections it still
	// finds useful).
	tc.DropMutuallyCompletePeers = false
	// A lab has ~100 machines and every one of them should be able to talk
	// to every other plus the print server (defaults: 50 established, 25
	// half-open per torrent, 100 half-open in total, 500/50 peer
	// addresses). Dials are cheap on a LAN: no 10 per second limit.
	tc.EstablishedConnsPerTorrent = 256
	if cfg.MaxConns > 0 {
		tc.EstablishedConnsPerTorrent = cfg.MaxConns
	}
	tc.HalfOpenConnsPerTorrent = 128
	tc.TotalHalfOpenConns = 256
	tc.TorrentPeersHighWater = 1024
	tc.TorrentPeersLowWater = 256
	tc.DialRateLimiter = rate.NewLimiter(rate.Inf, 0)
	// A connection's writer goroutine sleeps until it is tickled or, if it
	// wrote since, this long after its last write. v1.59.1 can lose a tickle: a rate-limited upload arms a
	// retry timer, and if that fires between the writer filling its buffer
	// and waiting again (likely on a loaded machine), the connection sits
	// idle until the timer (default 1 minute) even though the peer has
	// requests pending: measured here as 20-60 s stalls of rate-limited
	// transfers under CPU load. One second bounds such a stall; the cost
	// is a 4-byte keep-alive per second on idle connections that still
	// matter (anacrolix's own tests use 1 ms).
	tc.KeepAliveTimeout = KeepAlive
	// Consider every missing piece when choosing what to ask each peer for.
	// anacrolix walks the pieces in its request order (priority, then the
	// rarest first) and stops after 64 MiB of unverified pieces (default
	// MaxUnverifiedBytes), whether or not the peer at hand has them. Early
	// in a lab's run ~1000 pieces are held by the print server alone, so
	// the walk ended before it reached any piece another workstation had:
	// no workstation was interested in any other, and all of them
	// downloaded from the print server only, each at 1/N of its port, for
	// the first minute or more (seen in the lab bench with
	// LABSEED_TORRENT_STATUS: every workstation connection idle, "reqq 0",
	// not interested, while availability-2 pieces existed). 0: no limit.
	tc.MaxUnverifiedBytes = 0
	// Leave a request with the peer it was made of while that peer
	// delivers (see StealAfter).
	tc.RequestStealAfter = StealAfter
	// Bounded, and still above what a labseed peer asks for: see
	// MaxAllocPeerRequestData.
	tc.MaxAllocPeerRequestDataPerConn = MaxAllocPeerRequestData
	// Ask each peer for at most the torrent's Files.MaxRequests blocks at
	// once, whatever request queue it advertises (anacrolix advertises 1024
	// and pipelines up to ~960). Measured in the netns lab at 20 Mbit/s:
	// with ~960 requests queued at the print server, each workstation's
	// blocks waited tens of seconds there, and a block once requested from
	// the server is not asked of a workstation that has it, so for the
	// first 100-200 s the workstations hardly served each other. The
	// callback runs before anacrolix copies Reqq into
	// PeerConn.PeerMaxRequests.
	tc.Callbacks.ReadExtendedHandshake = func(pc *torrent.PeerConn, d *pp.ExtendedHandshakeMessage) {
		most := cfg.Storage.maxRequests(pc.Torrent().InfoHash())
		if d.Reqq <= 0 || d.Reqq > most {
			d.Reqq = most
		}
	}
	// Simulated port speeds (see RateBurst for the burst).
	tc.UploadRateLimiter = cfg.UploadLimiter
	if tc.UploadRateLimiter == nil {
		tc.UploadRateLimiter = NewLimiter(cfg.UploadRate)
	}
	if tc.UploadRateLimiter.Limit() == rate.Inf {
		// anacrolix refuses requests longer than the upload limiter's
		// burst (RateBurst = BlockSize, the blocks labseed peers ask
		// for), but only if the limiter has a finite rate: without one,
		// a peer could ask for whole pieces of any length. 1 TiB/s is
		// no limit on any real port.
		tc.UploadRateLimiter = rate.NewLimiter(1<<40, RateBurst)
	}
	tc.DownloadRateLimiter = cfg.DownloadLimiter
	if tc.DownloadRateLimiter == nil && cfg.DownloadRate > 0 {
		// nil (the default) skips the limiter entirely on every read.
		tc.DownloadRateLimiter = NewLimiter(cfg.DownloadRate)
	}
	// anacrolix logs a lot at Info and Warning that is routine for it
	// (dropped connections, a piece failing its hash, a ban); labseed
	// reports what matters itself, so everything goes to Debug.
	tc.Slogger = slog.New(debugHandler{logger.With("component", "anacrolix").Handler()})
	return tc, nil
}

func listenDesc(cfg Config) string {
	ip := cfg.ListenIP
	if ip == "" {
		ip = "all addresses"
	}
	return fmt.Sprintf("%s port %d", ip, cfg.Port)
}

// AddTorrent adds the torrent of mi to cl, asking peers for blocks of
// blockSize bytes (0: BlockSize; at most RateBurst, the longest block a
// labseed peer serves).
func AddTorrent(cl *torrent.Client, mi *metainfo.MetaInfo, blockSize int) (*torrent.Torrent, error) {
	if blockSize == 0 {
		blockSize = BlockSize
	}
	if blockSize < 0 || blockSize > RateBurst {
		return nil, fmt.Errorf("swarm: block size %d outside 1..%d", blockSize, RateBurst)
	}
	spec, err := torrent.TorrentSpecFromMetaInfoErr(mi)
	if err != nil {
		return nil, err
	}
	spec.ChunkSize = pp.Integer(blockSize)
	t, _, err := cl.AddTorrentSpec(spec)
	return t, err
}

// NewLimiter returns a limiter for bytesPerSec (0 = unlimited) with
// RateBurst.
func NewLimiter(bytesPerSec int64) *rate.Limiter {
	if bytesPerSec <= 0 {
		// Burst must still be non-zero: anacrolix would otherwise set it
		// to MaxAllocPeerRequestDataPerConn.
		return rate.NewLimiter(rate.Inf, RateBurst)
	}
	return rate.NewLimiter(rate.Limit(bytesPerSec), RateBurst)
}

// debugHandler demotes every record to Debug.
type debugHandler struct{ h slog.Handler }

func (d debugHandler) Enabled(ctx context.Context, _ slog.Level) bool {
	return d.h.Enabled(ctx, slog.LevelDebug)
}

func (d debugHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level > slog.LevelDebug {
		r.Level = slog.LevelDebug
	}
	return d.h.Handle(ctx, r)
}

func (d debugHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return debugHandler{d.h.WithAttrs(as)}
}

func (d debugHandler) WithGroup(name string) slog.Handler {
	return debugHandler{d.h.WithGroup(name)}
}
