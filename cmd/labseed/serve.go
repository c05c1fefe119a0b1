package main

import (
	"context"
	"flag"

	"github.com/labseed/labseed/seeder"
	"github.com/labseed/labseed/store"
)

var serveCmd = &command{
	name:  "serve",
	usage: "[--store DIR] [--listen IP] [--http-port 7480] [--gossip-port 7946] [--torrent-port 6881]",
	summary: `Run the print-server daemon: seed every image of the store.
It seeds over BitTorrent and HTTP (web seed), serves the API the workstations
start from and the lab status, and is the lab's gossip seed. Images published
while it runs are picked up within seconds. Stop it with SIGTERM or Ctrl-C; a
restart seeds again at once, without re-hashing.`,
	example: `labseed serve --listen 10.1.0.1
labseed serve --store /srv/labseed --listen 10.1.0.1 --http-port 8080`,
	run: func(ctx context.Context, fs *flag.FlagSet, args []string) error {
		cfg := seeder.DefaultConfig()
		dir := fs.String("store", defaultStore, "image store `DIR`")
		fs.StringVar(&cfg.ListenIP, "listen", "", "`IP` to listen on (default all); give the lab interface's address")
		fs.StringVar(&cfg.AdvertiseIP, "advertise", "", "`IP` workstations reach this server at (default the --listen address)")
		fs.IntVar(&cfg.HTTPPort, "http-port", cfg.HTTPPort, "HTTP API and web seed `port` (0: any free port)")
		fs.IntVar(&cfg.GossipPort, "gossip-port", cfg.GossipPort, "gossip `port`, TCP and UDP (0: any free port)")
		fs.IntVar(&cfg.TorrentPort, "torrent-port", cfg.TorrentPort, "BitTorrent `port` (0: any free port)")
		rate := fs.String("upload-rate", "0", "limit BitTorrent upload to `RATE`, e.g. 100mbit (0: unlimited)")
		fs.BoolVar(&cfg.Insecure, "insecure", false, "gossip without encryption")
		fs.BoolVar(&cfg.Local, "local", false, "fast gossip timers for a lab on one machine (tests)")
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
		cfg.Store = st
		cfg.Logger = logger(*verbose)
		limitMemory(256 << 20)
		srv, err := seeder.New(cfg)
		if err != nil {
			return err
		}
		return srv.Run(ctx)
	},
}
