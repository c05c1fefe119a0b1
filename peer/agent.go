package peer

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/anacrolix/torrent/metainfo"
	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/gossip"
	"github.com/labseed/labseed/swarm"
)

// Config configures an Agent. Zero values mean the defaults.
type Config struct {
	// Server is the print server's HTTP address, host or host:port (port
	// api.DefaultPort by default); required.
	Server string
	// Target is the directory the image is extracted into; required. It must
	// be empty, or hold this image's interrupted extraction.
	Target string
	// StateDir holds the staging data (the downloaded payload, the piece
	// bitmap, the applier's state); default Target/.labseed. It is removed
	// when the agent is done.
	StateDir string
	// Image is the image's name; default the print server's only image.
	Image string
	// PublicKey checks the manifest's signature; LabKey joins the lab's
	// encrypted gossip. Both required unless Insecure.
	PublicKey ed25519.PublicKey
	LabKey    []byte
	Insecure  bool
	// Linger is how long a finished agent keeps seeding, waiting for the
	// other workstations to finish; default DefaultLinger; negative: not at all.
	Linger time.Duration
	// ListenIP is the address the agent's services bind to; default all.
	ListenIP string
	// TorrentPort and GossipPort are the agent's BitTorrent and gossip
	// ports; default (0) a free port each, as -1 asks everywhere in
	// labseed: the agent gossips its addresses, and many agents can run on
	// one machine (tests, the demo). Set them for a firewall.
	TorrentPort, GossipPort int
	// Rate limits BitTorrent traffic in each direction, in bytes/s, to
	// simulate a switch port (the demo); 0 is unlimited.
	Rate int64
	// NoWebSeed stops the agent from falling back on the print server's
	// HTTP web seed when the download makes no progress for WebSeedAfter.
	// (The web seed is not used from the start: anacrolix fetches 64 MiB
	// ranges from it, the same ones for every workstation, which would spend
	// the print server's port on duplicates the swarm would carry anyway.)
	NoWebSeed bool
	// WebSeedAfter is how long the download may stall before the web seed
	// is added; default 15 s.
	WebSeedAfter time.Duration
	// Local selects fast gossip timers for loopback tests and the demo.
	Local bool
	// Name is the agent's name in the lab; default the host name and the
	// agent's address (netbooted workstations often share one host name).
	Name string
	// MaxConns is the most BitTorrent connections the agent keeps; default
	// 10. Every connection that uploads can hold 4 MiB of piece data
	// (swarm.MaxAllocPeerRequestData), so this bounds the agent's memory
	// (about 60 MiB + 4 MiB × MaxConns); on a switched LAN ten partners
	// keep both directions of a port busy.
	MaxConns int
	// ApplyWorkers is how many chunks are applied at once; default 2.
	ApplyWorkers int
	// Logger receives the agent's logs; nil discards.
	Logger *slog.Logger
	// Progress, if set, is called about once a second from Run's goroutine.
	Progress func(Progress)
	// HTTPClient talks to the print server; default a client with timeouts.
	HTTPClient *http.Client
}

// Progress is what the workstation's screen shows.
type Progress struct {
	Phase               gossip.Phase
	Image               string
	Chunks, ChunksTotal int
	// Percent is the share of the payload verified and applied.
	Percent               float64
	Downloaded, Total     int64 // payload bytes verified / in all
	DownRate, UpRate      float64
	Peers                 int
	ETA                   time.Duration
	FromServer, FromPeers int64
	LabDone, LabHosts     int // workstations finished / known
	HashFailures          int64
}

// DefaultLinger is how long a finished agent keeps seeding by default.
const DefaultLinger = 10 * time.Minute

// ErrNoKeys is returned when the agent has neither keys nor Insecure.
var ErrNoKeys = errors.New("peer: no keys: copy the directory written by 'labseed keys export' on the print server and give it with --keys (or run with --insecure)")

// Agent is a workstation agent. Create it with New, run it with Run.
type Agent struct {
	cfg Config
	log *slog.Logger
	api *api.Client
}

// New validates cfg.
func New(cfg Config) (*Agent, error) {
	if cfg.Server == "" {
		return nil, errors.New("peer: no print server address")
	}
	cfg.Server = api.WithDefaultPort(cfg.Server)
	if cfg.Target == "" {
		return nil, errors.New("peer: no target directory")
	}
	if !cfg.Insecure && (len(cfg.PublicKey) != ed25519.PublicKeySize || len(cfg.LabKey) != 32) {
		return nil, ErrNoKeys
	}
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(cfg.Target, chunker.StateDirName)
	}
	if cfg.Linger == 0 {
		cfg.Linger = DefaultLinger
	}
	if cfg.WebSeedAfter <= 0 {
		cfg.WebSeedAfter = 15 * time.Second
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 10
	}
	if cfg.ApplyWorkers <= 0 {
		cfg.ApplyWorkers = 2
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Agent{cfg: cfg, log: log.With("component", "peer"), api: api.NewClient(cfg.Server)}
	if cfg.HTTPClient != nil {
		a.api.HTTP = cfg.HTTPClient
	}
	return a, nil
}

// Run downloads and applies the image, lingers, cleans up. It returns nil
// only when the target holds the verified image. Cancelled, it returns the
// context's error and keeps the staging data for a resume.
func (a *Agent) Run(ctx context.Context) error {
	spec, err := a.fetchImage(ctx)
	if err != nil {
		return err
	}
	m := spec.m
	info, err := spec.mi.UnmarshalInfo()
	if err != nil {
		return fmt.Errorf("peer: torrent: %w", err)
	}
	ap, err := chunker.NewApplier(m, chunker.ApplyConfig{Target: a.cfg.Target, StateDir: a.cfg.StateDir, Logger: a.log})
	if err != nil {
		return fmt.Errorf("peer: %w", err)
	}
	defer ap.Close()
	tdir := filepath.Join(a.cfg.StateDir, "torrent")
	if err := os.MkdirAll(tdir, 0o700); err != nil {
		return fmt.Errorf("peer: staging: %w", err)
	}
	bitmap, err := swarm.OpenBitmap(filepath.Join(tdir, "pieces.bitmap"), info.NumPieces())
	if err != nil {
		return fmt.Errorf("peer: staging: %w", err)
	}
	payload := filepath.Join(tdir, info.Name)
	dl := newDownload(m, info.NumPieces(), bitmap, ap)
	if applied, _ := ap.Progress(); applied > 0 || dl.verified > 0 {
		a.log.Info("resuming", "image", m.Name, "verified_bytes", dl.verified, "payload_bytes", m.PayloadBytes,
			"chunks_applied", applied, "chunks", len(m.Chunks))
	}
	storage := swarm.NewStorage()
	defer storage.Close()
	storage.Register(metainfo.NewHashFromHex(m.InfoHash), swarm.Files{
		Path: payload, Completion: bitmap, OnPiece: dl.pieceDone,
	})

	adv := a.advertiseIP()
	name := a.cfg.Name
	if name == "" {
		h, _ := os.Hostname()
		name = h + "-" + adv
	}
	downLimit := swarm.NewLimiter(a.cfg.Rate)
	client, err := swarm.NewClient(swarm.Config{
		ListenIP: a.cfg.ListenIP, Port: freeByDefault(a.cfg.TorrentPort), UploadRate: a.cfg.Rate, DownloadLimiter: downLimit,
		Storage: storage, Logger: a.log, MaxConns: a.cfg.MaxConns,
	})
	if err != nil {
		return fmt.Errorf("peer: torrent client: %w", err)
	}
	defer client.Close()
	node, err := gossip.New(gossip.Config{
		Name: name, BindAddr: bindAddr(a.cfg.ListenIP), BindPort: freeByDefault(a.cfg.GossipPort), AdvertiseAddr: adv,
		Key: a.cfg.LabKey, Insecure: a.cfg.Insecure, Local: a.cfg.Local, Logger: a.log,
		Seeds: []string{spec.lab.GossipAddr},
	})
	if err != nil {
		return fmt.Errorf("peer: gossip: %w", err)
	}
	defer node.Close()
	r := &run{a: a, spec: spec, ap: ap, dl: dl, client: client, node: node, name: name, payload: payload,
		torrentAddr: net.JoinHostPort(adv, strconv.Itoa(client.LocalPort())), started: time.Now(), downLimit: downLimit,
		writeErr: make(chan error, 1)}
	r.setPhase(gossip.PhaseJoining)
	jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = node.Join(jctx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// The print server may have gone (the others can still serve), but a
		// node that cannot join is usually one with the wrong lab key.
		return fmt.Errorf("peer: join the lab: %w", err)
	}
	if r.t, err = swarm.AddTorrent(client, spec.mi); err != nil {
		return fmt.Errorf("peer: add torrent: %w", err)
	}
	r.t.SetOnWriteChunkError(r.onWriteError)
	return r.run(ctx)
}

// advertiseIP is the address other nodes reach this one at: the listen
// address if one was given, otherwise the local address of a connection to
// the print server.
func (a *Agent) advertiseIP() string {
	if ip := a.cfg.ListenIP; ip != "" && ip != "0.0.0.0" && ip != "::" {
		return ip
	}
	c, err := net.DialTimeout("tcp", a.cfg.Server, 5*time.Second)
	if err != nil {
		return "127.0.0.1"
	}
	defer c.Close()
	return c.LocalAddr().(*net.TCPAddr).IP.String()
}

func bindAddr(ip string) string {
	if ip == "" {
		return "0.0.0.0"
	}
	return ip
}

// tcpAddr resolves host:port for the torrent client, which wants a net.Addr.
func tcpAddr(hostport string) net.Addr {
	a, err := net.ResolveTCPAddr("tcp", hostport)
	if err != nil {
		return &net.TCPAddr{}
	}
	return a
}

// freeByDefault is a port of Config as swarm and gossip take it: the
// agent's default (0) is a free port, which they call -1.
func freeByDefault(port int) int {
	if port == 0 {
		return -1
	}
	return port
}
