package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/labseed/labseed/follow"
	"github.com/labseed/labseed/keys"
	"github.com/labseed/labseed/metrics"
	"golang.org/x/sync/errgroup"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/hosts"
	"github.com/labseed/labseed/netboot"
	"github.com/labseed/labseed/pxe"
	"github.com/labseed/labseed/seeder"
	"github.com/labseed/labseed/store"
)

var serveCmd = &command{
	name:  "serve",
	usage: "[--store DIR] [--listen IP] [--http-port " + strconv.Itoa(api.DefaultPort) + "] [--gossip-port 7946] [--torrent-port 6881] [--pxe off|proxy|dhcp] [--upstream HOST[:PORT] [--upstream-key FILE] [--upstream-rate RATE] [--upstream-stage MIB]]",
	summary: `Run the print-server daemon: seed every image of the store.
It seeds over BitTorrent and HTTP (web seed), serves the API the workstations
start from and the lab status, and is the lab's gossip seed. Images published
while it runs are picked up within seconds. Stop it with SIGTERM or Ctrl-C; a
restart seeds again at once, without re-hashing.
With --pxe proxy it also answers the network boot of the lab's machines as a
proxyDHCP server next to the lab's own DHCP server (--pxe dhcp: as the lab's
DHCP server), serves --boot-dir (default STORE/boot, written by 'labseed
netboot build') over TFTP (the iPXE first stage) and HTTP (kernel, initrd),
and gives every machine its iPXE menu; see docs/pxe.md.
The hosts table (STORE/hosts.csv), the lab settings (STORE/lab.conf), the
clone templates (STORE/templates/) and hooks (STORE/hooks/) are read from the
store; hand edits are picked up within seconds. See "labseed hosts".
It runs the deploy tasks of "labseed deploy" (kept in STORE/deploy.json: a
restart goes on with the one running) and sends the Wake-on-LAN packets of
"labseed wake" and deploy from the lab interface (--interface).
With --upstream it follows another print server (of another lab, or a
central one): every image version published there is replicated here (the
signed manifest first, checked with the upstream's image key; then only the
chunks this store lacks, each checked; served here once whole), so publish
once for the whole site. --upstream-key names the upstream's image.pub (from
its 'labseed keys export'); without it the key is pinned on first contact,
shown, and kept in STORE/keys/image.pub. The followers of one upstream
also fetch a new version from each other (each its share from the
upstream, the rest from the others, every chunk checked): they must reach
each other across the campus at their --listen address, port --http-port.
While the upstream is still publishing, a follower already fetches the
chunks written so far into STORE/staging (at most --upstream-stage MiB;
never served to the lab, used only where the signed manifest names them,
the rest removed). See "labseed images".`,
	example: `labseed serve --listen 10.1.0.1
labseed serve --store /srv/labseed --listen 10.1.0.1 --http-port 8080
labseed serve --listen 10.1.0.1 --pxe proxy --image lab1
labseed serve --listen 10.2.0.1 --pxe proxy --upstream 10.1.0.1 --upstream-rate 200mbit`,
	run: func(ctx context.Context, fs *flag.FlagSet, args []string) error {
		o := serveOptions{server: seeder.DefaultConfig()}
		cfg := &o.server
		fs.StringVar(&o.store, "store", defaultStore, "image store `DIR`")
		fs.StringVar(&cfg.ListenIP, "listen", "", "`IP` to listen on (default all); give the lab interface's address")
		fs.StringVar(&cfg.AdvertiseIP, "advertise", "", "`IP` workstations reach this server at (default the --listen address)")
		fs.IntVar(&cfg.HTTPPort, "http-port", cfg.HTTPPort, "HTTP API and web seed `port` (-1: any free port)")
		fs.IntVar(&cfg.GossipPort, "gossip-port", cfg.GossipPort, "gossip `port`, TCP and UDP (-1: any free port)")
		fs.IntVar(&cfg.TorrentPort, "torrent-port", cfg.TorrentPort, "BitTorrent `port` (-1: any free port)")
		fs.StringVar(&o.uploadRate, "upload-rate", "0", "limit BitTorrent upload to `RATE`, e.g. 100mbit (0: unlimited)")
		fs.BoolVar(&cfg.Insecure, "insecure", false, "gossip without encryption")
		fs.BoolVar(&cfg.Local, "local", false, "fast gossip timers for a lab on one machine (tests)")
		fs.StringVar(&o.pxe, "pxe", "off", "network boot: `MODE` off, proxy (next to the lab's DHCP server) or dhcp (be the DHCP server)")
		fs.StringVar(&o.bootDir, "boot-dir", "", "`DIR` with the boot files (undionly.kpxe, ipxe.efi, vmlinuz, initrd.img) for --pxe (default STORE/boot, where 'labseed netboot build' writes them)")
		fs.StringVar(&o.image, "image", "", "image `NAME` the network-booted clone environment installs (--pxe)")
		fs.StringVar(&o.iface, "interface", "", "lab network `INTERFACE` for --pxe and the Wake-on-LAN packets of wake and deploy (default the one holding the --listen address; without --listen, the only one up with an IPv4 address)")
		fs.BoolVar(&o.noBind, "pxe-no-bind", false, "--pxe proxy on a server that runs its own DHCP server: read DHCP with a raw socket instead of binding port 67")
		fs.StringVar(&o.upstream, "upstream", "", "follow the print server at `HOST[:PORT]`: replicate every image published there")
		fs.StringVar(&o.upstreamKey, "upstream-key", "", "the upstream's image.pub `FILE` (default: pinned on first contact)")
		fs.StringVar(&o.upstreamRate, "upstream-rate", "0", "cap what is fetched from the upstream at `RATE`, e.g. 200mbit (0: no cap)")
		fs.Int64Var(&o.upstreamStage, "upstream-stage", follow.DefaultStageBytes>>20, "stage at most `MIB` of the chunks of a publish in progress upstream (0: none; the version is then fetched once published)")
		fs.DurationVar(&o.upstreamEvery, "upstream-interval", follow.DefaultInterval, "how often to ask the upstream for new versions")
		fs.BoolVar(&o.verbose, "v", false, "log debug detail")
		if err := parse(fs, args, 0, 0); err != nil {
			return err
		}
		return runServe(ctx, o)
	},
}

// serveOptions are labseed serve's flags: the print server's configuration
// as far as flags set it, and what the store and the network boot add.
type serveOptions struct {
	store      string
	server     seeder.Config // ports, addresses, gossip
	uploadRate string
	pxe        string // off, proxy or dhcp
	bootDir    string
	image      string
	iface      string
	noBind     bool
	verbose    bool

	upstream      string // follow this print server
	upstreamKey   string // its image.pub
	upstreamRate  string
	upstreamStage int64 // MiB
	upstreamEvery time.Duration
}

// runServe runs the print server until ctx ends. The server is assembled
// by package seeder, network boot included; this only adds the store's
// files to its configuration.
func runServe(ctx context.Context, o serveOptions) error {
	cfg := o.server
	var err error
	if cfg.UploadRate, err = parseRate(o.uploadRate); err != nil {
		return err
	}
	mode, err := pxe.ParseMode(o.pxe)
	if err != nil {
		return err
	}
	st, err := store.Open(o.store)
	if err != nil {
		return err
	}
	if cfg.LabKey, err = st.LabKey(); err != nil {
		return err
	}
	if cfg.AdminKey, err = st.AdminKey(); err != nil {
		return err
	}
	cfg.Store = st
	if cfg.Hosts, err = hosts.Open(st.Dir()); err != nil {
		return err
	}
	cfg.WakeInterface = o.iface
	cfg.Logger = logger(o.verbose)
	var fcfg *follow.Config
	if o.upstream != "" {
		// The upstream's key is pinned before the print server starts:
		// a new store would otherwise get a signing key of its own.
		if fcfg, err = followConfig(ctx, o, st, cfg.Logger); err != nil {
			if ctx.Err() != nil {
				return nil // stopped while waiting for the upstream: a clean stop
			}
			return err
		}
	}
	limitMemory(256 << 20)
	if mode != pxe.ModeOff {
		pc := pxe.DefaultConfig()
		pc.Mode, pc.Interface, pc.BootDir, pc.Image, pc.NoBind = mode, o.iface, o.bootDir, o.image, o.noBind
		if pc.BootDir == "" {
			// The store's own boot directory is made here, so that the
			// print server starts (and says what is missing) before the
			// first 'labseed netboot build'.
			pc.BootDir = filepath.Join(st.Dir(), "boot")
			if err := os.MkdirAll(pc.BootDir, 0o755); err != nil {
				return fmt.Errorf("network boot: %w", err)
			}
		}
		for _, f := range []string{netboot.KernelFile, netboot.InitrdFile, netboot.BIOSFile, netboot.UEFIFile} {
			if _, err := os.Stat(filepath.Join(pc.BootDir, f)); err != nil {
				cfg.Logger.Warn("network boot: a boot file is missing: run 'labseed netboot build'", "file", filepath.Join(pc.BootDir, f))
			}
		}
		cfg.PXE = &pc
	}
	var f *follow.Follower
	if fcfg != nil {
		cfg.Upstream = func() *api.UpstreamStatus { return f.Status() }
		cfg.Replication = func() metrics.Replication {
			st := f.Status()
			r := metrics.Replication{Following: true, BytesFetched: st.BytesFetched, ChunksFetched: st.ChunksFetched, ChunksReused: st.ChunksReused,
				BytesFromFollowers: st.BytesFromFollowers, ChunksFromFollowers: st.ChunksFromFollowers, BytesToFollowers: st.BytesToFollowers}
			for _, im := range st.Images {
				if im.State == api.ReplicationRefused {
					r.Refused++
				}
			}
			return r
		}
		// The other followers of the upstream fetch chunks from this one.
		cfg.Chunks = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if f == nil {
				http.Error(w, "not started yet", http.StatusServiceUnavailable)
				return
			}
			f.ServeChunk(w, r)
		})
		// And the chunks it staged while the upstream was publishing.
		cfg.Staged = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if f == nil {
				http.Error(w, "not started yet", http.StatusServiceUnavailable)
				return
			}
			f.ServeStaged(w, r)
		})
	}
	srv, err := seeder.New(cfg)
	if err != nil {
		return err
	}
	if fcfg == nil {
		return srv.Run(ctx)
	}
	fcfg.HTTPAddr = srv.Lab().HTTPAddr
	fcfg.Committed = func(string, int) { srv.Rescan() } // seeded at once, not at the next scan
	if f, err = follow.New(*fcfg); err != nil {
		return err
	}
	if _, _, err := f.Pin(ctx); err != nil { // pinned above: sets the status's key
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Run(gctx) })
	g.Go(func() error { return f.Run(gctx) })
	return g.Wait()
}

// followConfig is the follower's configuration from the flags; it pins
// the upstream's image key in the store (waiting for the upstream to
// answer when the store has none and --upstream-key is not given) and
// says which key this print server trusts.
func followConfig(ctx context.Context, o serveOptions, st *store.Store, log *slog.Logger) (*follow.Config, error) {
	fc := follow.Config{Store: st, Upstream: o.upstream, Interval: o.upstreamEvery, StageBytes: o.upstreamStage << 20, Logger: log}
	if o.upstreamStage <= 0 {
		fc.StageBytes = -1
	}
	var err error
	if fc.Rate, err = parseRate(o.upstreamRate); err != nil {
		return nil, fmt.Errorf("--upstream-rate: %w", err)
	}
	if o.upstreamKey != "" {
		if fc.Key, err = keys.ReadPublicKey(o.upstreamKey); err != nil {
			return nil, fmt.Errorf("--upstream-key: %w", err)
		}
	}
	fc.Name, _ = os.Hostname()
	f, err := follow.New(fc)
	if err != nil {
		return nil, err
	}
	fp, pinned, err := f.Pin(ctx)
	if err != nil {
		return nil, err
	}
	switch {
	case pinned && o.upstreamKey == "":
		log.Warn("pinned the upstream's image key on first contact: check that it is the one 'labseed keys export' shows on the upstream", "upstream", o.upstream, "key", fp,
			"file", filepath.Join(st.Dir(), "keys", keys.PublicKeyFile))
	case pinned:
		log.Info("trusting the upstream's image key", "upstream", o.upstream, "key", fp, "from", o.upstreamKey)
	default:
		log.Info("following", "upstream", o.upstream, "key", fp)
	}
	return &fc, nil
}
