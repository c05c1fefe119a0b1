package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/labseed/labseed/store"
)

// BenchmarkPeerCPU measures what one workstation costs in CPU (issue 17,
// goal 3): one 'labseed peer' receiving the image, unthrottled, from a
// print server on loopback ('labseed serve --local', the demo's), into a
// new ext4 file system on a loop device, as a workstation after mkfs. It
// reports the peer's CPU seconds (user + system, its rusage) per GB
// received, and as baselines, each into its own new ext4 file system in
// the same run:
//
//   - "zstd -dc PAYLOAD | tar -xi" then "sync -f": the same compressed
//     bytes decompressed and written as files by the usual tools, the floor
//     for decompressing and writing files (the payload's tar fragments
//     concatenated; -i reads past each fragment's end);
//   - 'labseed extract --jobs 1' from the store: labseed's own
//     decompress-and-apply without the network and the swarm;
//   - a probe, dd of 512 MiB of zeros: what the kernel charges for
//     writing page cache at that moment, which on a virtual machine
//     varies several-fold with the host (docs/BENCHMARKS.md).
//
// Run as root (loop devices), under the heavy lock:
//
//	flock /tmp/labseed-heavy.lock go test -run '^$' -bench PeerCPU -benchtime 1x ./cmd/labseed
//
// LABSEED_BENCH_PEER_IMAGE: the image (default the Debian clone image);
// LABSEED_BENCH_STORE: a store directory to publish into once and reuse
// (image "bench"); LABSEED_BENCH_OLD_BIN: another labseed binary measured
// in the same run (before and after a change); LABSEED_BENCH_PROFILE_DIR:
// write each peer's CPU profile there (LABSEED_CPUPROFILE).
func BenchmarkPeerCPU(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: each run extracts into a new ext4 file system on a loop device")
	}
	img := os.Getenv("LABSEED_BENCH_PEER_IMAGE")
	if img == "" {
		img = "/var/cache/labseed-bench/debian-clone-systemd.tar.gz"
	}
	if _, err := os.Stat(img); err != nil {
		b.Skipf("no benchmark image (%v): run bench/mkimage.sh or set LABSEED_BENCH_PEER_IMAGE", err)
	}
	st := os.Getenv("LABSEED_BENCH_STORE")
	if st == "" {
		st = filepath.Join(b.TempDir(), "store")
	}
	im, keyDir := benchStore(b, st, img)
	payload, _ := filepath.Glob(filepath.Join(st, "images", "bench", "current", "*.chunks"))
	if len(payload) != 1 {
		b.Fatalf("no payload in %s", st)
	}
	gb := float64(im.Manifest.PayloadBytes) / 1e9

	bins := []struct{ name, path string }{{"new", labseedBin}}
	if old := os.Getenv("LABSEED_BENCH_OLD_BIN"); old != "" {
		bins = append(bins, struct{ name, path string }{"old", old})
	}
	profDir := os.Getenv("LABSEED_BENCH_PROFILE_DIR")
	run := 0
	for range b.N {
		run++
		// How much the kernel charges for writing page cache right now:
		// on a virtual machine it varies with the host (docs/BENCHMARKS.md).
		probe := freshFS(b)
		os.Mkdir(probe, 0o755)
		pc, _ := cpuOf(b, nil, "sh", "-c", fmt.Sprintf("dd if=/dev/zero of=%q bs=1M count=512 status=none && sync -f %q", filepath.Join(probe, "zero"), probe))
		fmt.Printf("probe dd 512 MiB of zeros: %.2f CPU-s (system %.2f), %.1f CPU-s per GB written\n", pc.cpu, pc.sys, pc.cpu/(512<<20)*1e9)
		dir := freshFS(b)
		os.Mkdir(dir, 0o755)
		floor, _ := cpuOf(b, nil, "sh", "-c", fmt.Sprintf("zstd -dc %q | tar --xattrs --xattrs-include='*' --numeric-owner -xi -C %q 2>/dev/null && sync -f %q", payload[0], dir, dir))
		ext, _ := cpuOf(b, nil, labseedBin, "extract", "--store", st, "--image", "bench", "--jobs", "1", "--target", freshFS(b))
		fmt.Printf("baseline zstd -dc | tar -xi: %.2f CPU-s (user %.2f, system %.2f), %.1f CPU-s per GB of payload\n", floor.cpu, floor.user, floor.sys, floor.cpu/gb)
		fmt.Printf("baseline labseed extract --jobs 1: %.2f CPU-s (user %.2f, system %.2f), %.1f CPU-s per GB, %.2f x zstd|tar\n", ext.cpu, ext.user, ext.sys, ext.cpu/gb, ext.cpu/floor.cpu)
		b.ReportMetric(floor.cpu/gb, "cpu_s_per_GB_zstd_tar")
		for _, bin := range bins {
			var env []string
			if profDir != "" {
				env = append(env, "LABSEED_CPUPROFILE="+filepath.Join(profDir, fmt.Sprintf("peer-%s-%d-%%p.prof", bin.name, run)))
			}
			// Alone: every piece dealt by the print server over HTTP.
			server, stop := startServer(b, st)
			u := runPeers(b, env, bin.path, server, keyDir, fmt.Sprintf("cpu-%s-%d", bin.name, run), 1)[0]
			stop()
			per := u.cpu / gb
			fmt.Printf("peer alone (%s): %.1f s wall, %.2f CPU-s (user %.2f, system %.2f), %.1f CPU-s per GB received, %.2f x zstd|tar, %.2f x extract; user %.2f x extract's\n",
				bin.name, u.wall, u.cpu, u.user, u.sys, per, u.cpu/floor.cpu, u.cpu/ext.cpu, u.user/ext.user)
			b.ReportMetric(per, "cpu_s_per_GB_"+bin.name)
			b.ReportMetric(u.cpu/floor.cpu, "x_zstd_tar_"+bin.name)
			// A pair started together: each takes from the other over
			// BitTorrent what the print server dealt the other, and
			// uploads as much: a lab's path.
			var sum float64
			server, stop = startServer(b, st)
			pair := runPeers(b, env, bin.path, server, keyDir, fmt.Sprintf("cpu-%s-%d-pair", bin.name, run), 2)
			stop()
			for i, u := range pair {
				sum += u.cpu
				fmt.Printf("peer %d of a pair (%s): %.1f s wall, %.2f CPU-s (user %.2f, system %.2f), %.1f CPU-s per GB received, %.0f %% from the other\n",
					i+1, bin.name, u.wall, u.cpu, u.user, u.sys, u.cpu/gb, u.fromPeers)
			}
			fmt.Printf("pair (%s): %.1f CPU-s per GB received per workstation, %.2f x zstd|tar\n", bin.name, sum/2/gb, sum/2/floor.cpu)
			b.ReportMetric(sum/2/gb, "cpu_s_per_GB_pair_"+bin.name)
		}
	}
}

// startServer starts 'labseed serve --local' on a store, on loopback, and
// returns its address and the function that stops it. Each run
// of peers gets its own: a print server refuses for 20 s to deal again to
// an address whose earlier deals did not arrive (all peers here come from
// 127.0.0.1).
func startServer(b *testing.B, st string) (string, func()) {
	b.Helper()
	ports, err := freePorts(3)
	if err != nil {
		b.Fatal(err)
	}
	server := "127.0.0.1:" + strconv.Itoa(ports[0])
	srv := exec.Command(labseedBin, "serve", "--store", st, "--listen", "127.0.0.1", "--local",
		"--http-port", strconv.Itoa(ports[0]), "--gossip-port", strconv.Itoa(ports[1]), "--torrent-port", strconv.Itoa(ports[2]))
	srvLog := filepath.Join(b.TempDir(), "serve.log")
	if srv.Stderr, err = os.Create(srvLog); err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	var once sync.Once
	stop := func() { once.Do(func() { srv.Process.Signal(os.Interrupt); srv.Wait() }) }
	b.Cleanup(stop)
	for i := 0; ; i++ {
		if _, err := fetchStatus(context.Background(), server); err == nil {
			return server, stop
		} else if i == 100 {
			stop()
			b.Fatalf("print server not up: %v (see %s)", err, srvLog)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// benchStore returns the image "bench" of the store st and a directory
// with the store's workstation keys. It publishes img into st first
// (with publishArgs), unless st holds the image already: a store reused
// between runs (a large image takes minutes to publish).
func benchStore(b *testing.B, st, img string, publishArgs ...string) (*store.Image, string) {
	b.Helper()
	s, err := store.Open(st)
	if err == nil {
		_, err = s.Image("bench")
	}
	if err != nil {
		args := append([]string{"publish", "--store", st, "--name", "bench"}, publishArgs...)
		start := time.Now()
		if out, err := exec.Command(labseedBin, append(args, img)...).CombinedOutput(); err != nil {
			b.Fatalf("publish %s: %v %s", img, err, out)
		}
		fmt.Printf("published %s in %.1f s\n", img, time.Since(start).Seconds())
		if s, err = store.Open(st); err != nil {
			b.Fatal(err)
		}
	}
	im, err := s.Image("bench")
	if err != nil {
		b.Fatal(err)
	}
	keyDir := filepath.Join(b.TempDir(), "keys")
	if _, err := s.ExportKeys(keyDir); err != nil {
		b.Fatal(err)
	}
	fmt.Printf("image %s: %d chunks, payload %d B, level %d\n", img, len(im.Manifest.Chunks), im.Manifest.PayloadBytes, im.Manifest.Level)
	return im, keyDir
}

// cpuUse is what a process cost: seconds, and for a peer the share of
// bytes it got from the other workstations and its peak RSS in MiB.
type cpuUse struct{ wall, cpu, user, sys, fromPeers, rss float64 }

// runPeers runs n 'labseed peer' processes at once, each into a new ext4
// file system, and returns their CPU use and the share of bytes each got
// from the other workstations.
func runPeers(b *testing.B, env []string, bin, server, keyDir, name string, n int) []cpuUse {
	b.Helper()
	res := make([]cpuUse, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	syscall.Sync() // the earlier runs' writeback out of the way
	for i := range n {
		cmd := exec.Command(bin, "peer", "--server", server, "--target", freshFS(b), "--keys", keyDir,
			"--name", fmt.Sprintf("%s-%d", name, i+1), "--listen", fmt.Sprintf("127.0.0.%d", 11+i), "--local", "--no-web-seed", "--linger", "60s")
		cmd.Env = append(os.Environ(), env...)
		wg.Go(func() {
			start := time.Now()
			out, err := cmd.CombinedOutput()
			if err == nil && !strings.Contains(string(out), "holds the verified image") {
				err = errors.New("no \"holds the verified image\"")
			}
			if err != nil {
				errs[i] = fmt.Errorf("peer %d: %v\n%s", i+1, err, out)
				return
			}
			ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
			u := cpuUse{wall: time.Since(start).Seconds(), user: float64(ru.Utime.Nano()) / 1e9, sys: float64(ru.Stime.Nano()) / 1e9}
			u.cpu = u.user + u.sys
			if k := strings.LastIndex(string(out), "from peers "); k >= 0 {
				fmt.Sscanf(string(out[k:]), "from peers %f%%", &u.fromPeers)
			}
			if k := strings.LastIndex(string(out), "peak RSS "); k >= 0 {
				fmt.Sscanf(string(out[k:]), "peak RSS %f MiB", &u.rss)
			}
			res[i] = u
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	return res
}

// cpuOf runs a command and returns its wall time and the CPU time of it and
// the children it waited for, and its combined output.
func cpuOf(b *testing.B, env []string, name string, args ...string) (cpuUse, string) {
	b.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	syscall.Sync() // the earlier runs' writeback out of the way
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	u := cpuUse{wall: time.Since(start).Seconds(), user: float64(ru.Utime.Nano()) / 1e9, sys: float64(ru.Stime.Nano()) / 1e9}
	u.cpu = u.user + u.sys
	return u, string(out)
}
