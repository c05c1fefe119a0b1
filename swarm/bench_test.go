package swarm

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/anacrolix/torrent"
)

// BenchmarkRateLimitedTransfer transfers 8 MiB at 4 MiB/s, limited by the
// seeder's UploadRate or by the leecher's DownloadRate, and reports the
// measured rate and its ratio to the configured one (1.00 is exact; the
// 256 KiB RateBurst allows ~3% over on 8 MiB).
func BenchmarkRateLimitedTransfer(b *testing.B) {
	const (
		size = 8 << 20
		rate = 4 << 20
	)
	src := writePayload(b, b.TempDir(), "image.payload", size, 5)
	mi := makeTorrent(b, src)
	for _, bc := range []struct {
		name            string
		seeder, leecher Config
	}{
		{"UploadRate", Config{UploadRate: rate}, Config{}},
		{"DownloadRate", Config{}, Config{DownloadRate: rate}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			seeder := newTestClient(b, bc.seeder, nil)
			seeder.add(b, mi, Files{Path: src, ReadOnly: true})
			var total time.Duration
			runs := 0
			for b.Loop() {
				ctx, cancel := context.WithTimeout(b.Context(), time.Minute)
				leecher := newTestClient(b, bc.leecher, nil)
				tor := leecher.add(b, mi, Files{Path: filepath.Join(b.TempDir(), "image.payload")})
				start := time.Now()
				tor.AddPeers([]torrent.PeerInfo{seeder.peerInfo()})
				tor.DownloadAll()
				waitComplete(ctx, b, tor, leecher, seeder)
				total += time.Since(start)
				runs++
				cancel()
				leecher.cl.Close()
			}
			measured := float64(size*runs) / total.Seconds()
			b.ReportMetric(measured/(1<<20), "MiB/s")
			b.ReportMetric(measured/rate, "ratio")
			b.Logf("%d × 8 MiB with %s 4 MiB/s: measured %.2f MiB/s, %.3f × the configured rate", runs, bc.name, measured/(1<<20), measured/rate)
		})
	}
}
