package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/keys"
	"github.com/labseed/labseed/peer"
	"golang.org/x/term"
)

var peerCmd = &command{
	name:  "peer",
	usage: "--server HOST[:PORT] --target DIR --keys DIR [--image NAME] [--linger DURATION] [--sync [--keep PATH,...]]",
	summary: `Fetch an image from the lab's swarm into a directory (the workstation agent).
It verifies the signed manifest, joins the lab, takes the pieces the print
server deals it (pieces no other workstation has yet) and everything else from
the other workstations over BitTorrent, and writes each chunk to TARGET as
soon as it is verified. When done it keeps seeding until every workstation is done (or
--linger passes), removes its staging data (TARGET/.labseed) and exits 0 only
if TARGET holds the verified image; the record of the image and its payload
stay in TARGET/.labseed/installed. Killed, it resumes where it was when run
again. With --sync, TARGET may hold a tree (the image installed before):
it is made exactly the image, only what differs written, what the image
does not hold removed (but the --keep paths), and the chunks the kept
payload holds are not fetched. The netboot image starts it through
'labseed clone'; the keys come from 'labseed keys export'.`,
	example: `mount /dev/sda1 /mnt/target
labseed peer --server 10.1.0.1 --target /mnt/target --keys ` + keys.DefaultDir,
	run: func(ctx context.Context, fs *flag.FlagSet, args []string) error {
		var cfg peer.Config
		var keyDir, rate string
		var verbose bool
		fs.StringVar(&cfg.Server, "server", "", "print server `HOST[:PORT]` (port "+strconv.Itoa(api.DefaultPort)+" by default)")
		fs.StringVar(&cfg.Target, "target", "", "`DIR` to extract the image into: empty, or an interrupted run's")
		fs.StringVar(&keyDir, "keys", "", "`DIR` with image.pub and lab.key from 'labseed keys export'")
		fs.StringVar(&cfg.Image, "image", "", "image `NAME` (default: the print server's only image)")
		fs.DurationVar(&cfg.Linger, "linger", peer.DefaultLinger, "keep seeding up to `DURATION` after finishing, until every workstation is done")
		fs.StringVar(&cfg.ListenIP, "listen", "", "`IP` to listen on (default all)")
		fs.IntVar(&cfg.TorrentPort, "torrent-port", 0, "BitTorrent `port` (0 or -1: any free port)")
		fs.IntVar(&cfg.GossipPort, "gossip-port", 0, "gossip `port` (0 or -1: any free port)")
		fs.StringVar(&rate, "rate", "0", "limit BitTorrent traffic each way to `RATE`, e.g. 100mbit (0: unlimited)")
		fs.StringVar(&cfg.Name, "name", "", "`NAME` in the lab status, unique in the lab (default the host name, this machine's address and 4 random hex digits, new at every run)")
		fs.BoolVar(&cfg.Insecure, "insecure", false, "run without keys: no signature check, unencrypted gossip")
		fs.BoolVar(&cfg.NoWebSeed, "no-web-seed", false, "do not use the print server's HTTP web seed")
		fs.BoolVar(&cfg.Local, "local", false, "fast gossip timers for a lab on one machine (tests)")
		fs.BoolVar(&cfg.Sync, "sync", false, "TARGET holds a tree: make it exactly the image, fetching only the chunks its kept payload lacks")
		keep := fs.String("keep", "", "with --sync, comma-separated `PATHS` of TARGET to leave as they are, e.g. /home")
		fs.BoolVar(&verbose, "v", false, "log debug detail")
		if err := parse(fs, args, 0, 0); err != nil {
			return err
		}
		if cfg.Server == "" || cfg.Target == "" {
			return errUsage
		}
		for _, k := range strings.Split(*keep, ",") {
			if k = strings.TrimSpace(k); k != "" {
				cfg.Keep = append(cfg.Keep, k)
			}
		}
		var err error
		if cfg.Rate, err = parseRate(rate); err != nil {
			return err
		}
		if keyDir == "" && !cfg.Insecure {
			return peer.ErrNoKeys
		}
		if keyDir != "" {
			w, err := keys.ReadWorkstation(keyDir)
			if err != nil {
				return err
			}
			cfg.PublicKey, cfg.LabKey = w.PublicKey, w.LabKey
		}
		cfg.Logger = logger(verbose)
		cfg.Progress = progressPrinter()
		// The lab bench's swarm diagnosis (docs/lab-bench.md).
		cfg.TraceDir = os.Getenv("LABSEED_TORRENT_STATUS")
		limitMemory(workstationMemory)
		a, err := peer.New(cfg)
		if err != nil {
			return err
		}
		start := time.Now()
		interrupted := func(err error) error {
			if errors.Is(err, context.Canceled) {
				return fmt.Errorf("interrupted; run the same command again to resume")
			}
			return err
		}
		im, err := a.Resolve(ctx)
		if err != nil {
			return interrupted(err)
		}
		fmt.Printf("fetching %s into %s\n", im, cfg.Target)
		s, err := a.Fetch(ctx, im)
		if err != nil {
			return interrupted(err)
		}
		if err := s.Seed(ctx); err != nil {
			return interrupted(err)
		}
		fmt.Printf("done: %s holds the verified image (%.1f s; %s)\n", cfg.Target, time.Since(start).Seconds(), selfUsage())
		if r, ok := s.Synced(); ok {
			fmt.Printf("synced: %d of %d chunks found on the disk, %d fetched; %d entries unchanged, %d written, %d removed\n",
				r.Local, r.Chunks, r.Fetched, r.Entries.Unchanged, r.Entries.Written, r.Entries.Removed)
		}
		return nil
	},
}

// progressPrinter returns the agent's Progress callback: a line redrawn in
// place on a terminal, a log line every 10 seconds otherwise.
func progressPrinter() func(peer.Progress) {
	tty := term.IsTerminal(int(os.Stderr.Fd()))
	var last time.Time
	var lastPhase string
	return func(p peer.Progress) {
		line := fmt.Sprintf("%s %-11s %5.1f%%  chunks %d/%d  down %s  up %s  peers %d  from peers %.0f%%  lab %d/%d done",
			p.Image, p.Phase, p.Percent, p.Chunks, p.ChunksTotal, fmtRate(p.DownRate), fmtRate(p.UpRate), p.Peers,
			share(p.FromPeers, p.FromServer), p.LabDone, p.LabHosts)
		if p.Sync {
			line += fmt.Sprintf("  local %d", p.ChunksLocal)
		}
		if p.ETA > 0 {
			line += "  ETA " + p.ETA.Round(time.Second).String()
		}
		if tty {
			fmt.Fprintf(os.Stderr, "\r\033[K%s", line)
			if p.Phase.String() == "done" {
				fmt.Fprintln(os.Stderr)
			}
			return
		}
		if time.Since(last) >= 10*time.Second || p.Phase.String() != lastPhase {
			fmt.Fprintln(os.Stderr, strings.TrimSpace(line))
			last, lastPhase = time.Now(), p.Phase.String()
		}
	}
}

func share(peers, server int64) float64 {
	if peers+server == 0 {
		return 0
	}
	return 100 * float64(peers) / float64(peers+server)
}
