package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/hosts"
	"github.com/labseed/labseed/netboot"
	"github.com/labseed/labseed/pxe"
	"github.com/labseed/labseed/seeder"
	"github.com/labseed/labseed/store"
)

var serveCmd = &command{
	name:  "serve",
	usage: "[--store DIR] [--listen IP] [--http-port " + strconv.Itoa(api.DefaultPort) + "] [--gossip-port 7946] [--torrent-port 6881] [--pxe off|proxy|dhcp]",
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
"labseed wake" and deploy from the lab interface (--interface).`,
	example: `labseed serve --listen 10.1.0.1
labseed serve --store /srv/labseed --listen 10.1.0.1 --http-port 8080
labseed serve --listen 10.1.0.1 --pxe proxy --image lab1`,
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
	srv, err := seeder.New(cfg)
	if err != nil {
		return err
	}
	return srv.Run(ctx)
}
