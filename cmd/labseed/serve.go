package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/hosts"
	"github.com/labseed/labseed/netboot"
	"github.com/labseed/labseed/pxe"
	"github.com/labseed/labseed/seeder"
	"github.com/labseed/labseed/store"
	"golang.org/x/sync/errgroup"
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
store; hand edits are picked up within seconds. See "labseed hosts".`,
	example: `labseed serve --listen 10.1.0.1
labseed serve --store /srv/labseed --listen 10.1.0.1 --http-port 8080
labseed serve --listen 10.1.0.1 --pxe proxy --image lab1`,
	run: func(ctx context.Context, fs *flag.FlagSet, args []string) error {
		cfg := seeder.DefaultConfig()
		dir := fs.String("store", defaultStore, "image store `DIR`")
		fs.StringVar(&cfg.ListenIP, "listen", "", "`IP` to listen on (default all); give the lab interface's address")
		fs.StringVar(&cfg.AdvertiseIP, "advertise", "", "`IP` workstations reach this server at (default the --listen address)")
		fs.IntVar(&cfg.HTTPPort, "http-port", cfg.HTTPPort, "HTTP API and web seed `port` (-1: any free port)")
		fs.IntVar(&cfg.GossipPort, "gossip-port", cfg.GossipPort, "gossip `port`, TCP and UDP (-1: any free port)")
		fs.IntVar(&cfg.TorrentPort, "torrent-port", cfg.TorrentPort, "BitTorrent `port` (-1: any free port)")
		rate := fs.String("upload-rate", "0", "limit BitTorrent upload to `RATE`, e.g. 100mbit (0: unlimited)")
		fs.BoolVar(&cfg.Insecure, "insecure", false, "gossip without encryption")
		fs.BoolVar(&cfg.Local, "local", false, "fast gossip timers for a lab on one machine (tests)")
		pxeMode := fs.String("pxe", "off", "network boot: `MODE` off, proxy (next to the lab's DHCP server) or dhcp (be the DHCP server)")
		bootDir := fs.String("boot-dir", "", "`DIR` with the boot files (undionly.kpxe, ipxe.efi, vmlinuz, initrd.img) for --pxe (default STORE/boot, where 'labseed netboot build' writes them)")
		pxeImage := fs.String("image", "", "image `NAME` the network-booted clone environment installs (--pxe)")
		iface := fs.String("interface", "", "lab network `INTERFACE` for --pxe (default all)")
		noBind := fs.Bool("pxe-no-bind", false, "--pxe proxy on a server that runs its own DHCP server: read DHCP with a raw socket instead of binding port 67")
		verbose := fs.Bool("v", false, "log debug detail")
		if err := parse(fs, args, 0, 0); err != nil {
			return err
		}
		var err error
		if cfg.UploadRate, err = parseRate(*rate); err != nil {
			return err
		}
		st, err := store.Open(*dir)
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
		cfg.Logger = logger(*verbose)
		limitMemory(256 << 20)
		mode, err := pxe.ParseMode(*pxeMode)
		if err != nil {
			return err
		}
		var boot *pxe.Server
		if mode != pxe.ModeOff {
			ip := net.ParseIP(cfg.AdvertiseIP)
			if ip == nil {
				ip = net.ParseIP(cfg.ListenIP)
			}
			if ip == nil || ip.IsUnspecified() {
				return fmt.Errorf("--pxe needs the server's lab address: give --listen or --advertise")
			}
			if *bootDir == "" {
				*bootDir = filepath.Join(st.Dir(), "boot")
			}
			for _, f := range []string{netboot.KernelFile, netboot.InitrdFile, netboot.BIOSFile, netboot.UEFIFile} {
				if _, err := os.Stat(filepath.Join(*bootDir, f)); err != nil {
					cfg.Logger.Warn("network boot: a boot file is missing: run 'labseed netboot build'", "file", filepath.Join(*bootDir, f))
				}
			}
			pc := pxe.DefaultConfig()
			pc.Mode, pc.ServerIP, pc.Interface, pc.BootDir, pc.Image = mode, ip, *iface, *bootDir, *pxeImage
			pc.NoBind = *noBind
			if mode == pxe.ModeDHCP {
				if pc.DHCP, err = dhcpNetwork(cfg.Hosts, st.Dir()); err != nil {
					return err
				}
			}
			pc.HTTPAddr = net.JoinHostPort(ip.String(), strconv.Itoa(cfg.HTTPPort))
			pc.Logger = cfg.Logger
			if boot, err = pxe.New(pc); err != nil {
				return err
			}
			cfg.Boot = boot
		}
		srv, err := seeder.New(cfg)
		if err != nil {
			if boot != nil {
				boot.Close()
			}
			return err
		}
		g, ctx := errgroup.WithContext(ctx)
		g.Go(func() error { return srv.Run(ctx) })
		if boot != nil {
			g.Go(func() error { return boot.Run(ctx) })
		}
		return g.Wait()
	},
}

// dhcpNetwork is the network --pxe dhcp hands out, from lab.conf: netmask,
// gateway, DNS, domain and dhcp_pool (machines not in the hosts table; none:
// only the table's machines get an address). Leases of the pool are kept in
// STORE/leases.json.
func dhcpNetwork(db *hosts.DB, dir string) (pxe.DHCPConfig, error) {
	n, err := db.Network()
	if err != nil {
		return pxe.DHCPConfig{}, err
	}
	ip := func(a netip.Addr) net.IP {
		if !a.IsValid() {
			return nil
		}
		return net.IP(a.AsSlice())
	}
	c := pxe.DHCPConfig{
		Netmask: net.CIDRMask(n.Prefix, 32), Gateway: ip(n.Gateway), Domain: n.Domain,
		PoolStart: ip(n.PoolFirst), PoolEnd: ip(n.PoolLast),
		LeaseFile: filepath.Join(dir, "leases.json"),
	}
	for _, d := range n.DNS {
		c.DNS = append(c.DNS, ip(d))
	}
	return c, nil
}
