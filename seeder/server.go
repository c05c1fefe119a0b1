package seeder

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/deal"
	"github.com/labseed/labseed/deploy"
	"github.com/labseed/labseed/gossip"
	"github.com/labseed/labseed/hosts"
	"github.com/labseed/labseed/internal/neigh"
	"github.com/labseed/labseed/internal/textsafe"
	"github.com/labseed/labseed/lifecycle"
	"github.com/labseed/labseed/metrics"
	"github.com/labseed/labseed/pxe"
	"github.com/labseed/labseed/store"
	"github.com/labseed/labseed/swarm"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
)

// Config configures a Server. Zero values mean the defaults of a real lab
// (DefaultConfig spells them out); LocalConfig is the preset for tests and
// the demo: loopback, free ports, fast gossip timers.
type Config struct {
	// Store holds the images to seed; required.
	Store *store.Store
	// ListenIP is the address every service binds to; default all addresses.
	ListenIP string
	// AdvertiseIP is the address workstations reach the server at, in the
	// image answers, the gossip and the network boot; default ListenIP when
	// it is one address, else the address of the network boot's lab
	// interface (see PXE), else the address of the interface with the
	// default route.
	AdvertiseIP string
	// HTTPPort (default api.DefaultPort), GossipPort (gossip.DefaultPort,
	// 7946) and TorrentPort (swarm.DefaultPort, 6881) are the ports of the
	// API and web seed, the gossip (TCP and UDP) and BitTorrent; -1 picks
	// a free one (Lab tells which).
	HTTPPort, GossipPort, TorrentPort int
	// Name is the server's gossip node name; default "server-" + hostname.
	Name string
	// LabKey encrypts the gossip (32 bytes); required unless Insecure
	// (the gossip unencrypted). It is the workstation credential, in every
	// netboot image: it gives no right to change anything.
	LabKey   []byte
	Insecure bool
	// AdminKey (32 bytes, STORE/keys/admin.key) authenticates the requests
	// that change the lab: importing the hosts table, setting next boots
	// (api.AdminAuth). Nil: the server refuses them all.
	AdminKey []byte
	// UploadRate limits the server's BitTorrent upload in bytes/s (0 = unlimited).
	UploadRate int64
	// Local selects fast gossip timers for loopback tests and the demo.
	Local bool
	// ScanInterval is how often the store is checked for newly published
	// images; default 2 s.
	ScanInterval time.Duration
	// Version is labseed's version, for the build-info metric.
	Version string
	// Hosts, if set, is the lab's hosts table: the hosts API (PathHosts,
	// PathWhoAmI), the boot part of the lab status, and what the network
	// boot asks about each machine (next-boot marks, static leases).
	Hosts *hosts.DB
	// HTTPLimits bound what one client can hold of the HTTP server:
	// timeouts, connections and deals per address.
	HTTPLimits HTTPLimits
	// Neighbours says where a request's source address is (this machine,
	// an on-link neighbour and its MAC, or routed): "who am I" and clone
	// reports are answered for the requester's own MAC only. Default
	// neigh.Lookup, the kernel's routes and neighbour table.
	Neighbours func(netip.Addr) (neigh.Peer, error)
	// PXE, if set, makes the server the lab's network boot too (package
	// pxe): New opens its sockets after the server's own listeners, Run
	// serves it, the server's HTTP listener serves its iPXE scripts,
	// kernel and initrd under /pxe/, and its boot events are in the lab
	// status. New fills in what the print server knows, and refuses a PXE
	// that sets it: ServerIP (the advertised address, see AdvertiseIP),
	// HTTPAddr (that address and the HTTP port), Hosts (Config.Hosts);
	// Interface when empty, by pxe.LabInterface's rule (the interface that
	// holds ListenIP; without ListenIP the only candidate, and New refuses
	// to guess between several); Logger when nil; in ModeDHCP with a
	// hosts table, DHCP from lab.conf, its leases in the store's
	// leases.json.
	PXE *pxe.Config
	// WakeInterface is the lab network's interface the Wake-on-LAN magic
	// packets leave from (wake requests and deploy tasks); default the
	// network boot's (PXE), else the one holding the advertised address,
	// else the only candidate (pxe.LabInterface).
	WakeInterface string
	// Wake, if set, sends the magic packets of wake requests and deploy
	// tasks instead of pxe.Wake on the lab interface (a seam for tests).
	// It is called from any goroutine.
	Wake func(ctx context.Context, macs []net.HardwareAddr) (pxe.WakeResult, error)
	// Upstream, if set, returns this print server's replication from the
	// one it follows (package follow), for the lab status; it is called
	// from any goroutine.
	Upstream func() *api.UpstreamStatus
	// Replication, if set, returns the replication counters for the
	// metrics (bytes and chunks fetched, chunks reused, images refused).
	Replication func() metrics.Replication
	// Chunks, if set, serves api.PathChunks (package follow: the chunks
	// this follower holds, to the other followers of its upstream).
	Chunks http.Handler
	// Staged, if set, serves api.PathChunk for the chunks no publish in
	// progress here has (package follow: the chunks this follower
	// staged, to the other followers of its upstream).
	Staged http.Handler
	// Logger receives the server's logs; nil discards.
	Logger *slog.Logger
}

// DefaultConfig returns the configuration for a real lab, without a store:
// the zero Config with its default ports written out.
func DefaultConfig() Config {
	return Config{HTTPPort: api.DefaultPort, GossipPort: gossip.DefaultPort, TorrentPort: swarm.DefaultPort}
}

// LocalConfig returns the configuration of a print server for tests and
// the demo, without a store: on 127.0.0.1, free ports, fast gossip timers.
func LocalConfig() Config {
	return Config{ListenIP: "127.0.0.1", HTTPPort: -1, GossipPort: -1, TorrentPort: -1, Local: true}
}

// port is Config.HTTPPort as net.Listen takes it: def for 0, 0 (the
// system picks) for -1. (gossip and swarm take their ports as Config does.)
func port(p, def int) (int, error) {
	switch {
	case p == 0:
		return def, nil
	case p == -1:
		return 0, nil
	case p < 0 || p > 65535:
		return 0, fmt.Errorf("seeder: port %d out of range (0 for the default %d, -1 for any free port)", p, def)
	}
	return p, nil
}

// Server is a running print-server daemon. Create it with New, run it with Run.
type Server struct {
	cfg      Config
	log      *slog.Logger
	storage  *swarm.Storage
	client   *torrent.Client
	node     *gossip.Node
	httpLn   net.Listener
	boot     *pxe.Server        // Config.PXE's network boot; nil without
	tracker  *lifecycle.Tracker // one record per machine
	lab      api.Lab
	started  time.Time
	metrics  *metrics.Metrics
	webSeed  atomic.Int64       // payload bytes served over HTTP to web seeds
	dealt    atomic.Int64       // payload bytes dealt over HTTP (PathDeal)
	upLimit  *rate.Limiter      // UploadRate, shared by BitTorrent and deals
	hostsErr string             // last hosts table error logged, by the scan loop
	admin    *api.AdminVerifier // nil without Config.AdminKey
	signer   ed25519.PrivateKey // signs the "who am I" answers: image.key, a follower's identity.key
	limits   HTTPLimits         // Config.HTTPLimits with the defaults
	conns    *perIPListener     // the HTTP listener, ConnsPerIP at most per address
	deals    dealClients        // deals under way and unconfirmed, per address
	ports    portRates          // the lab's best receive rates, for slow ports (slowport.go)
	logLimit textsafe.Limiter   // log lines about refused requests, per client

	deployMu   sync.Mutex
	deploy     *deploy.Task  // the current or last deploy task; nil: none yet
	deployPoke chan struct{} // makes the deploy loop step now
	httpDone   chan struct{} // closed when the HTTP server has taken its last request (Run)
	scanPoke   chan struct{} // makes the scan loop scan now (Rescan)
	fmu        sync.Mutex
	followers  map[string]api.FollowerStatus // by name@address; bounded, see followers.go

	chunkServing chan struct{}   // api.PathChunk answers under way (maxChunkServing)
	publishing   map[string]bool // the images whose publish in progress was listed last (handlePublishing); under fmu

	mu     sync.Mutex
	seeded map[metainfo.Hash]*seededImage
	images []api.ImageInfo // the store's current images, as of the last scan
}

type seededImage struct {
	img    *store.Image
	t      *torrent.Torrent
	dealer *deal.Dealer // which workstation gets which pieces (PathDeal)
}

// New validates cfg and opens the server's listeners, so that its addresses
// are known before Run.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("seeder: no store")
	}
	if len(cfg.LabKey) != 32 && !cfg.Insecure {
		return nil, errors.New("seeder: the lab key must be 32 bytes (or run insecure explicitly)")
	}
	if cfg.AdminKey != nil && len(cfg.AdminKey) != 32 {
		return nil, errors.New("seeder: the admin key must be 32 bytes")
	}
	if cfg.ScanInterval <= 0 {
		cfg.ScanInterval = 2 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "seeder")
	if cfg.Name == "" {
		h, _ := os.Hostname()
		cfg.Name = "server-" + h
	}
	httpPort, err := port(cfg.HTTPPort, api.DefaultPort)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, storage: swarm.NewStorage(), seeded: map[metainfo.Hash]*seededImage{}, started: time.Now(), chunkServing: make(chan struct{}, maxChunkServing),
		deployPoke: make(chan struct{}, 1), scanPoke: make(chan struct{}, 1)}
	if cfg.AdminKey != nil {
		s.admin, _ = api.NewAdminVerifier(cfg.AdminKey)
	}
	s.tracker = lifecycle.New(lifecycle.Config{Known: s.inTable})
	s.limits = cfg.HTTPLimits.withDefaults()
	// The store's signing key signs the "who am I" answers too: the
	// workstations check them with image.pub, as the images. A follower
	// has no image.key (its images are signed upstream): its own
	// identity.key signs them, checked with identity.pub.
	if s.signer, err = cfg.Store.IdentityKey(); err != nil {
		return nil, fmt.Errorf("seeder: %w", err)
	}

	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.ListenIP, strconv.Itoa(httpPort)))
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("seeder: HTTP listener: %w (another 'labseed serve' on this machine? stop it, or give this one another --http-port)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("seeder: HTTP listener: %w", err)
	}
	s.httpLn = ln
	s.conns = limitPerIP(ln, s.limits.ConnsPerIP)
	var lab pxe.Interface
	if cfg.PXE != nil {
		ip := net.ParseIP(cfg.ListenIP)
		if ip == nil || ip.IsUnspecified() {
			ip = net.ParseIP(cfg.AdvertiseIP)
		}
		if lab, err = pxe.LabInterface(cfg.PXE.Interface, ip); err != nil {
			ln.Close()
			return nil, fmt.Errorf("seeder: network boot: %w", err)
		}
	}
	adv := advertiseIP(cfg, lab.IP)
	node, err := gossip.New(gossip.Config{
		Name: cfg.Name, BindAddr: bindAddr(cfg.ListenIP), BindPort: cfg.GossipPort, AdvertiseAddr: adv,
		Key: cfg.LabKey, Insecure: cfg.Insecure, Local: cfg.Local, Logger: log,
		OnChange: s.dealtGone,
	})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("seeder: gossip: %w", err)
	}
	s.mu.Lock() // dealtGone may run already
	s.node = node
	s.mu.Unlock()
	s.upLimit = swarm.NewLimiter(cfg.UploadRate)
	s.client, err = swarm.NewClient(swarm.Config{
		ListenIP: cfg.ListenIP, Port: cfg.TorrentPort, UploadLimiter: s.upLimit,
		Storage: s.storage, Logger: log, AcceptPeer: s.labMember,
	})
	if err != nil {
		ln.Close()
		s.node.Close()
		return nil, fmt.Errorf("seeder: torrent client: %w", err)
	}
	s.lab = api.Lab{
		GossipAddr:  s.node.Addr(),
		TorrentAddr: net.JoinHostPort(adv, strconv.Itoa(s.client.LocalPort())),
		HTTPAddr:    net.JoinHostPort(adv, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)),
	}
	s.metrics, err = metrics.New(metrics.Config{Source: s.snapshot, Version: cfg.Version})
	if err == nil {
		s.boot, err = s.newBoot(adv, lab.Name)
	}
	if err != nil {
		ln.Close()
		s.client.Close()
		s.node.Close()
		return nil, err
	}
	s.setStatus()
	s.loadDeploy()
	return s, nil
}

// labMember reports whether ip is the address of a live lab member (in the
// gossip): the print server's BitTorrent client accepts connections from
// them only (swarm.Config.AcceptPeer).
func (s *Server) labMember(ip netip.Addr) bool {
	for _, m := range s.node.Members() {
		if (m.State == gossip.StateAlive || m.State == gossip.StateSuspect) && slices.Contains(memberIPs(m), ip) {
			return true
		}
	}
	return false
}

// memberIPs returns the addresses a gossip member is reached at: its
// gossip address and, if it gossips one, its BitTorrent address.
func memberIPs(m gossip.Member) []netip.Addr {
	var ips []netip.Addr
	for _, a := range []string{m.Addr, m.Status.TorrentAddr} {
		if ap, err := netip.ParseAddrPort(a); err == nil {
			ips = append(ips, ap.Addr().Unmap())
		}
	}
	return ips
}

// slowHolder reports whether the lab member at ip is slow for the
// dealer: it gossips no BitTorrent address (it cannot pass the pieces
// dealt to it on), or it is on a slow port (portRates).
func (s *Server) slowHolder(ip netip.Addr) bool {
	members := s.node.Members()
	for _, m := range members {
		if (m.State == gossip.StateAlive || m.State == gossip.StateSuspect) && m.Status.TorrentAddr != "" && slices.Contains(memberIPs(m), ip) {
			slow, tell := s.ports.slow(members, m.Name, time.Now())
			if tell != nil {
				s.log.Warn("workstation on a slow port: it is dealt no new pieces, the others pass them to it (a bad cable, a port negotiated down?)",
					"member", tell.name, "ip", ip, "best_rate_mbit", mbit(tell.best), "lab_median_mbit", mbit(tell.median))
			}
			return slow
		}
	}
	return true
}

// advertiseIP is the one rule for the address workstations reach the
// server at: AdvertiseIP, else ListenIP when it is one address, else the
// address of the network boot's lab interface (labIP, when it runs), else
// the address of the interface with the default route.
func advertiseIP(cfg Config, labIP net.IP) string {
	if cfg.AdvertiseIP != "" {
		return cfg.AdvertiseIP
	}
	if ip := net.ParseIP(cfg.ListenIP); ip != nil && !ip.IsUnspecified() {
		return cfg.ListenIP
	}
	if labIP != nil {
		return labIP.String()
	}
	return outboundIP()
}

// Machines returns the server's one record per machine (booted,
// identified, downloading, configured, done or failed), for whoever acts
// on them (a deploy's waves and re-wakes): read them with Get, Since and
// Changed.
func (s *Server) Machines() *lifecycle.Tracker { return s.tracker }

// Boot returns the server's network boot, nil without Config.PXE.
func (s *Server) Boot() *pxe.Server { return s.boot }

// Lab returns the addresses the server's services listen at.
func (s *Server) Lab() api.Lab { return s.lab }

// Run seeds, serves and gossips until ctx is cancelled, then shuts down:
// HTTP first, then a graceful gossip leave, then the torrent client.
func (s *Server) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: s.limits.HeaderTimeout, IdleTimeout: s.limits.IdleTimeout,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	g.Go(func() error {
		if err := hs.Serve(s.conns); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("seeder: HTTP: %w", err)
		}
		return nil
	})
	s.httpDone = make(chan struct{})
	g.Go(func() error {
		defer close(s.httpDone)
		<-ctx.Done()
		// Requests under way get 5 s to end; then every connection is cut
		// (streams to workstations, and connections a client opened but
		// never sent a request on, which Shutdown waits 5 s for too).
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hs.Shutdown(sctx); err != nil {
			s.log.Info("HTTP connections cut at shutdown", "after", "5s")
			return hs.Close()
		}
		return nil
	})
	if s.boot != nil {
		// After the HTTP listener serves: the boot's answers point to it.
		g.Go(func() error { return s.boot.Run(ctx) })
	}
	g.Go(func() error { return s.scanLoop(ctx) })
	g.Go(func() error { return s.statusLoop(ctx) })
	g.Go(func() error { return s.metrics.Run(ctx) })
	g.Go(func() error { return s.deployLoop(ctx) })
	s.log.Info("serving", "http", s.lab.HTTPAddr, "gossip", s.lab.GossipAddr, "torrent", s.lab.TorrentAddr, "store", s.cfg.Store.Dir())
	err := g.Wait()
	lctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	s.node.Leave(lctx)
	cs := s.client.Stats()
	s.log.Info("stopped", "bittorrent_bytes", cs.BytesWrittenData.Int64(),
		"dealt_bytes", s.dealt.Load(), "web_seed_bytes", s.webSeed.Load())
	s.client.Close()
	s.storage.Close()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// scanLoop seeds the store's images, and new ones as they are published.
func (s *Server) scanLoop(ctx context.Context) error {
	t := time.NewTicker(s.cfg.ScanInterval)
	defer t.Stop()
	for {
		if err := s.scan(); err != nil {
			s.log.Warn("scan store", "err", err)
		}
		s.checkHosts()
		s.holdDeals()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.scanPoke:
		}
	}
}

// Rescan makes the server scan its store now rather than at its next
// ScanInterval: a version put there by another process or component (a
// follower's replication, package follow) is seeded at once. It does not
// wait for the scan.
func (s *Server) Rescan() {
	select {
	case s.scanPoke <- struct{}{}:
	default:
	}
}

// checkHosts re-reads hand edits of the hosts table and settings, so that
// the network boot follows them; an edit that does not parse is logged once.
func (s *Server) checkHosts() {
	if s.cfg.Hosts == nil {
		return
	}
	_, err := s.cfg.Hosts.Hosts()
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if msg != s.hostsErr {
		if err != nil {
			s.log.Error("hosts table: keeping the last good one", "err", err)
		} else if s.hostsErr != "" {
			s.log.Info("hosts table: fixed")
		}
		s.hostsErr = msg
	}
}

func (s *Server) scan() error {
	imgs, err := s.cfg.Store.Images()
	if len(imgs) == 0 && err != nil {
		return err
	}
	if err != nil {
		s.log.Warn("scan store: images not seeded", "err", err) // the others are
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.images = imageInfos(imgs)
	for _, im := range imgs {
		ih := metainfo.NewHashFromHex(im.Manifest.InfoHash)
		if _, ok := s.seeded[ih]; ok {
			continue
		}
		mi, err := metainfo.LoadFromFile(im.TorrentPath())
		if err != nil {
			s.log.Warn("image not seeded", "image", im.Manifest.Name, "err", err)
			continue
		}
		s.storage.Register(ih, swarm.Files{Path: im.PayloadPath(), ReadOnly: true, Completion: swarm.AllComplete()})
		t, err := swarm.AddTorrent(s.client, mi, 0)
		if err != nil {
			s.log.Warn("image not seeded", "image", im.Manifest.Name, "err", err)
			continue
		}
		s.seeded[ih] = &seededImage{img: im, t: t, dealer: newDealer(im.Manifest)}
		s.log.Info("seeding", "image", im.Manifest.Name, "version", im.Manifest.Version, "infohash", im.Manifest.InfoHash)
	}
	// Versions whose files publish removed are dropped.
	for ih, si := range s.seeded {
		if _, err := os.Stat(si.img.PayloadPath()); err != nil {
			si.t.Drop()
			delete(s.seeded, ih)
			s.log.Info("stopped seeding", "image", si.img.Manifest.Name, "version", si.img.Manifest.Version)
		}
	}
	return nil
}

// statusLoop gossips the server's own status.
func (s *Server) statusLoop(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.setStatus()
			s.trackAgents()
		}
	}
}

func (s *Server) setStatus() {
	st := gossip.Status{
		Role:        gossip.RoleServer,
		Phase:       gossip.PhaseSeeding,
		TorrentAddr: s.lab.TorrentAddr,
		HTTPAddr:    s.lab.HTTPAddr,
		StartedUnix: s.started.Unix(),
		UpdatedUnix: time.Now().Unix(),
		Percent:     100,
	}
	if s.client != nil {
		cs := s.client.Stats()
		st.Uploaded = uint64(cs.BytesWrittenData.Int64() + s.webSeed.Load() + s.dealt.Load())
	}
	s.node.SetStatus(st)
}

// trackAgents gives the lifecycle records the gossiped status of the
// agents that name their machine (labseed clone's). A member speaks for a
// MAC only under the rule of "who am I" (requester.go) applied to its
// gossip address: anyone can join the gossip (lab.key is public), but a
// stranger cannot fill another machine's row with a made-up download.
func (s *Server) trackAgents() {
	for _, m := range s.node.Members() {
		if m.Status.MAC == "" {
			continue
		}
		mac, err := hosts.ParseMAC(m.Status.MAC)
		if err != nil {
			continue
		}
		ap, err := netip.ParseAddrPort(m.Addr)
		if err != nil {
			continue
		}
		if _, err := s.macsFrom(ap.Addr().Unmap(), []net.HardwareAddr{mac}); err != nil {
			s.refusedMember(m.Addr, err)
			continue
		}
		s.tracker.Agent(mac, lifecycle.Agent{Name: m.Name, Addr: m.Addr, State: m.State, Status: m.Status})
	}
}

// refusedMember logs, at most once a minute per address, a member whose
// gossiped MAC is not its own (or not yet resolved: then at debug level).
func (s *Server) refusedMember(addr string, err error) {
	if !s.logLimit.Allow("gossip member "+addr, time.Now()) {
		return
	}
	lvl := slog.LevelWarn
	if errors.Is(err, errUnresolved) {
		lvl = slog.LevelDebug
	}
	s.log.Log(context.Background(), lvl, "a gossip member's status is not shown: the MAC it names is not its own",
		"member", textsafe.Clean(addr, 64), "err", textsafe.Clean(err.Error(), 256))
}

// inTable reports whether mac is in the hosts table (the last good one).
func (s *Server) inTable(mac net.HardwareAddr) bool {
	if s.cfg.Hosts == nil {
		return false
	}
	_, ok := s.cfg.Hosts.Lookup(mac)
	return ok
}

func bindAddr(ip string) string {
	if ip == "" {
		return "0.0.0.0"
	}
	return ip
}

// outboundIP returns the address of the interface with the default route,
// without sending anything (a UDP socket is only connected).
func outboundIP() string {
	c, err := net.Dial("udp4", "192.0.2.1:9")
	if err != nil {
		return "127.0.0.1"
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String()
}

// snapshot is the metrics' view of the lab: gossip members, the images being
// seeded and the server's own traffic.
func (s *Server) snapshot() metrics.Snapshot {
	var snap metrics.Snapshot
	for _, m := range s.node.Members() {
		st := m.Status
		st.Image, st.TorrentAddr, st.HTTPAddr, st.Err = clean(st.Image), clean(st.TorrentAddr), clean(st.HTTPAddr), cleanErr(st.Err)
		snap.Hosts = append(snap.Hosts, metrics.Host{Name: clean(m.Name), State: m.State, Status: st})
	}
	s.mu.Lock()
	for _, si := range s.seeded {
		m := si.img.Manifest
		snap.Images = append(snap.Images, metrics.Image{Name: m.Name, Version: m.Version,
			PayloadBytes: m.PayloadBytes, InputBytes: m.InputBytes, Chunks: len(m.Chunks)})
		st := si.t.Stats()
		snap.Server.Peers += st.ActivePeers
		snap.Server.HashFailures += st.PiecesDirtiedBad.Int64()
	}
	s.mu.Unlock()
	cs := s.client.Stats()
	snap.Server.Uploaded = cs.BytesWrittenData.Int64()
	snap.Server.WebSeedBytes = s.webSeed.Load()
	snap.Server.DealtBytes = s.dealt.Load()
	s.deployMu.Lock()
	if t := s.deploy; t != nil {
		d := &metrics.Deploy{ID: t.ID, Image: t.Image, State: string(t.State), Active: !t.Over(), Started: t.Started, Machines: map[string]int{}}
		for st, n := range t.Counts() {
			d.Machines[string(st)] = n
		}
		snap.Deploy = d
	}
	s.deployMu.Unlock()
	if s.cfg.Replication != nil {
		snap.Replication = s.cfg.Replication()
	}
	return snap
}
