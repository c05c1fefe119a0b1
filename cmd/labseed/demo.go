package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/internal/fixture"
	"github.com/labseed/labseed/store"
	"github.com/labseed/labseed/treecmp"
	"golang.org/x/term"
)

var demoCmd = &command{
	name:  "demo",
	usage: "[--peers N] [--image FILE] [--link RATE] [--size BYTES] [--keep DIR]",
	summary: `Simulate a whole lab on this machine, with nothing to set up.
It generates a realistic root-filesystem image (or uses --image), publishes it,
starts a print server ('labseed serve') and N workstations ('labseed peer'),
each a separate process on loopback whose BitTorrent traffic is limited to the
simulated switch port speed (--link), shows the live lab table, checks every
workstation's tree against the image, and ends with a summary: wall time, the
physical limit (image size ÷ port rate), the time one server alone would have
needed (N × that), and the share of bytes the workstations served each other.`,
	example: "labseed demo\nlabseed demo --peers 12 --link 1gbit --image /srv/images/lab1.tar.gz",
	run: func(ctx context.Context, fs *flag.FlagSet, args []string) error {
		var o demoOptions
		var link string
		fs.IntVar(&o.peers, "peers", 8, "number of simulated workstations")
		fs.StringVar(&o.image, "image", "", "image tarball `FILE` to use instead of a generated one")
		fs.StringVar(&link, "link", "100mbit", "simulated switch port `RATE` of every machine")
		fs.Int64Var(&o.size, "size", 128<<20, "bytes of files in the generated image")
		fs.StringVar(&o.keep, "keep", "", "work in `DIR` and keep it (logs, trees), instead of a temporary directory (in memory when run as root)")
		if err := parse(fs, args, 0, 0); err != nil {
			return err
		}
		var err error
		if o.rate, err = parseRate(link); err != nil {
			return err
		}
		if o.peers < 1 || o.peers > 200 || o.rate <= 0 {
			return errUsage
		}
		return runDemo(ctx, o)
	},
}

type demoOptions struct {
	image, keep string
	size, rate  int64
	peers       int
}

func runDemo(ctx context.Context, o demoOptions) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir := o.keep
	if dir == "" {
		d, err := os.MkdirTemp("", "labseed-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
		// As root, the simulated lab lives in memory: every workstation's
		// disk is then as fresh as after mkfs, and the demo does not wear
		// this machine's disk. (tmpfs takes memory only as files are written.)
		if unmount := mountTmpfs(d); unmount != nil {
			defer unmount()
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	img := o.image
	if img == "" {
		img = filepath.Join(dir, "image.tar.gz")
		fmt.Printf("generating a root-filesystem image with %s of files\n", mib(o.size))
		if err := generateImage(img, o.size); err != nil {
			return err
		}
	}
	fi, err := os.Stat(img)
	if err != nil {
		return err
	}
	st := filepath.Join(dir, "store")
	if err := runPublish(ctx, publishOptions{store: st, name: "demo", image: img, level: chunker.DefaultLevel}); err != nil {
		return err
	}
	s, err := store.Open(st)
	if err != nil {
		return err
	}
	keys := filepath.Join(dir, "keys")
	if _, err := s.ExportKeys(keys); err != nil {
		return err
	}

	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	server := "127.0.0.1:" + strconv.Itoa(ports[0])
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := exec.CommandContext(ctx, self, "serve", "--store", st, "--listen", "127.0.0.1", "--local",
		"--http-port", strconv.Itoa(ports[0]), "--gossip-port", strconv.Itoa(ports[1]), "--torrent-port", strconv.Itoa(ports[2]),
		"--upload-rate", strconv.FormatInt(o.rate, 10))
	if srv.Stderr, err = os.Create(filepath.Join(dir, "server.log")); err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { srv.Process.Signal(os.Interrupt); srv.Wait() }()

	fmt.Printf("print server on %s; starting %d workstations, each port limited to %s (logs in %s)\n",
		server, o.peers, fmtRate(float64(o.rate)), dir)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, o.peers)
	ends := make([]time.Duration, o.peers)
	usage := make([]*syscall.Rusage, o.peers)
	for i := range o.peers {
		name := fmt.Sprintf("ws%02d", i+1)
		cmd := exec.CommandContext(ctx, self, "peer", "--server", server, "--target", filepath.Join(dir, name),
			"--keys", keys, "--name", name, "--listen", fmt.Sprintf("127.0.0.%d", 11+i), "--local", "--no-web-seed",
			"--rate", strconv.FormatInt(o.rate, 10), "--linger", "30s")
		logf, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			return err
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			return err
		}
		wg.Go(func() {
			err := cmd.Wait()
			ends[i] = time.Since(start)
			if cmd.ProcessState != nil {
				usage[i], _ = cmd.ProcessState.SysUsage().(*syscall.Rusage)
			}
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w (see %s)", name, err, logf.Name())
			}
			logf.Close()
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tty := term.IsTerminal(int(os.Stdout.Fd()))
	var last *statusSnapshot
	// A workstation is done when it holds the verified image (phase seeding),
	// not when its process exits after lingering for the others.
	finished := map[string]time.Duration{}
	for running := true; running; {
		select {
		case <-done:
			running = false
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		if ls, err := fetchStatus(ctx, server); err == nil {
			last = &statusSnapshot{ls.Summary.FromPeers, ls.Summary.FromServer, ls.Summary.ServerUp}
			for _, h := range ls.Hosts {
				if _, ok := finished[h.Name]; !ok && (h.Phase == "seeding" || h.Phase == "done") {
					finished[h.Name] = time.Since(start)
				}
			}
			if tty {
				fmt.Print("\033[H\033[2J")
				printStatus(os.Stdout, ls)
			}
		}
	}
	wall := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("demo: workstations failed: %w", err)
	}
	if tty {
		fmt.Println()
	}
	// Every workstation must hold exactly what the image holds.
	im, err := s.Image("demo")
	if err != nil {
		return err
	}
	ref := filepath.Join(dir, "reference")
	if err := runExtract(ctx, extractOptions{store: st, image: "demo", target: ref, jobs: 2}); err != nil {
		return err
	}
	for i := range o.peers {
		// .labseed: the record of the image installed (chunker.InstalledDir).
		diffs, err := treecmp.Compare(ref, filepath.Join(dir, fmt.Sprintf("ws%02d", i+1)), treecmp.Options{Ignore: []string{chunker.StateDirName}})
		if err != nil {
			return err
		}
		if len(diffs) > 0 {
			return fmt.Errorf("demo: ws%02d differs from the image: %v", i+1, diffs[:min(5, len(diffs))])
		}
	}
	limit := time.Duration(float64(fi.Size()) / float64(o.rate) * float64(time.Second))
	for i := range o.peers {
		if d, ok := finished[fmt.Sprintf("ws%02d", i+1)]; ok {
			ends[i] = d
		}
	}
	var first, lastEnd time.Duration = ends[0], 0
	for _, e := range ends {
		first, lastEnd = min(first, e), max(lastEnd, e)
	}
	fmt.Printf("\nall %d workstations hold the verified image (%d entries, checked entry by entry)\n", o.peers, im.Manifest.Entries)
	fmt.Printf("image %s (published %s), port speed %s\n", mib(fi.Size()), mib(im.Manifest.PayloadBytes), fmtRate(float64(o.rate)))
	fmt.Printf("first workstation held the image after %.1f s, the last after %.1f s (all processes ended after %.1f s)\n", first.Seconds(), lastEnd.Seconds(), wall.Seconds())
	fmt.Printf("physical limit (image size ÷ port rate): %.1f s; last ÷ limit = %.2f\n", limit.Seconds(), lastEnd.Seconds()/limit.Seconds())
	fmt.Printf("one server alone would need %d × %.1f s = %.1f s\n", o.peers, limit.Seconds(), float64(o.peers)*limit.Seconds())
	if last != nil && last.fromPeers+last.fromServer > 0 {
		fmt.Printf("bytes served by workstations to each other: %.0f%%; print server uploaded %.2f × the published image\n",
			100*float64(last.fromPeers)/float64(last.fromPeers+last.fromServer), float64(last.serverUp)/float64(im.Manifest.PayloadBytes))
	}
	var cpu time.Duration
	var rss float64
	for i, u := range usage {
		if u != nil {
			cpu += time.Duration(u.Utime.Nano() + u.Stime.Nano())
		}
		// Each workstation's own peak (VmHWM), from its last line: the
		// rusage of a child counts the memory of this process, which
		// started it (see peakRSS).
		rss = max(rss, peerPeakRSS(filepath.Join(dir, fmt.Sprintf("ws%02d.log", i+1))))
	}
	received := float64(o.peers) * float64(im.Manifest.PayloadBytes)
	fmt.Printf("workstation processes: peak RSS %.0f MiB, CPU %.1f s per GB received\n", rss, cpu.Seconds()/(received/1e9))
	return nil
}

// peerPeakRSS returns the peak RSS in MiB that labseed peer reported on
// the last line of its log (selfUsage), 0 if it did not.
func peerPeakRSS(log string) float64 {
	b, err := os.ReadFile(log)
	if err != nil {
		return 0
	}
	var mib float64
	for _, line := range strings.Split(string(b), "\n") {
		if i := strings.LastIndex(line, "peak RSS "); i >= 0 {
			fmt.Sscanf(line[i:], "peak RSS %f MiB", &mib)
		}
	}
	return mib
}

type statusSnapshot struct{ fromPeers, fromServer, serverUp uint64 }

func generateImage(name string, size int64) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	err = fixture.GenerateImage(f, fixture.ImageOptions{TotalBytes: size, Seed: 1, Gzip: true, NoDevices: os.Geteuid() != 0})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// freePorts returns n TCP ports that were free on 127.0.0.1 a moment ago
// (and whose UDP twins were too: gossip uses both).
func freePorts(n int) ([]int, error) {
	var ports []int
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		ports = append(ports, p)
	}
	return ports, nil
}
