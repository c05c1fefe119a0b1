package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkPeerRSS measures a workstation's peak RSS against the size of
// the image (issue 17, goal 4: at most 192 MiB with a 4 GB image): one
// 'labseed peer' fetching the image, unthrottled, from a print server on
// loopback ('labseed serve --local'), into a new ext4 file system on a
// loop device, first with the baseline image, then with the large one, in
// the same run. It prints each peer's peak RSS (VmHWM, from its last line)
// and the large image's ÷ the baseline's. Run as root, under the heavy
// lock, with a large image, e.g. one of 4 GiB made by the fixture
// generator:
//
//	go run ./bench/lab -size 4096 -out /var/tmp/gen-4096.tar.gz
//	flock /tmp/labseed-heavy.lock env LABSEED_BENCH_RSS_IMAGE=/var/tmp/gen-4096.tar.gz \
//	    go test -run '^$' -bench PeerRSS -benchtime 1x -timeout 30m ./cmd/labseed
//
// LABSEED_BENCH_RSS_IMAGE: the large image (the benchmark skips without
// it); LABSEED_BENCH_RSS_BASE: the baseline image (default the Debian
// image of bench/mkimage.sh); LABSEED_LEVEL: the publish --level of both
// (default publish's own); LABSEED_BENCH_RSS_STORES: a directory to
// publish both into once (its base and large stores) and reuse: a 4 GiB
// image takes about 9 minutes to publish at level 4 on 2 cores.
func BenchmarkPeerRSS(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: each peer extracts into a new ext4 file system on a loop device")
	}
	large := os.Getenv("LABSEED_BENCH_RSS_IMAGE")
	if large == "" {
		b.Skip("set LABSEED_BENCH_RSS_IMAGE to a large image, e.g. go run ./bench/lab -size 4096 -out FILE")
	}
	// A 4 GiB tree (fixture files) and the pieces the peer keeps while
	// it applies them did not fit in 8G.
	benchDiskSize = "24G"
	b.Cleanup(func() { benchDiskSize = "8G" })
	base := os.Getenv("LABSEED_BENCH_RSS_BASE")
	if base == "" {
		base = "/var/cache/labseed-bench/debian.tar.gz"
	}
	type published struct {
		img, store, keys string
		payload          int64
	}
	var imgs []published
	stores := os.Getenv("LABSEED_BENCH_RSS_STORES")
	if stores == "" {
		stores = b.TempDir()
	}
	for k, img := range []string{base, large} {
		if _, err := os.Stat(img); err != nil {
			b.Skipf("no benchmark image (%v)", err)
		}
		var args []string
		if l := os.Getenv("LABSEED_LEVEL"); l != "" {
			args = []string{"--level", l}
		}
		st := filepath.Join(stores, []string{"base", "large"}[k])
		im, keys := benchStore(b, st, img, args...)
		imgs = append(imgs, published{img, st, keys, im.Manifest.PayloadBytes})
	}
	for i := range b.N {
		var rss [2]float64
		for k, p := range imgs {
			server, stop := startServer(b, p.store)
			u := runPeers(b, nil, labseedBin, server, p.keys, fmt.Sprintf("rss-%d-%d", i+1, k), 1)[0]
			stop()
			rss[k] = u.rss
			fmt.Printf("peer, %s (payload %.2f GB): %.1f s wall, %.1f CPU-s, peak RSS %.0f MiB\n",
				p.img, float64(p.payload)/1e9, u.wall, u.cpu, u.rss)
		}
		fmt.Printf("peak RSS with the large image: %.0f MiB, baseline %.0f MiB, ratio %.2f\n", rss[1], rss[0], rss[1]/rss[0])
		b.ReportMetric(rss[1], "MiB_peak_rss")
		b.ReportMetric(rss[0], "MiB_peak_rss_baseline")
		b.ReportMetric(rss[1]/rss[0], "x_baseline")
	}
}
