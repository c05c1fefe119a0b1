package chunker

import (
	"crypto/sha256"
	"testing"
	"time"

	"lukechampine.com/blake3"
)

// BenchmarkRawHash compares the hash of format 3's raw_blake3 with
// SHA-256 on a 4 MiB buffer (about a chunk's tar), in the same run:
//
//	go test -run '^$' -bench BenchmarkRawHash ./chunker
//
// It reports each one's MB/s and blake3/sha256, the ratio of their times.
func BenchmarkRawHash(b *testing.B) {
	buf := make([]byte, 4<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	var spent [2]time.Duration
	for range b.N {
		start := time.Now()
		blake3.Sum256(buf)
		spent[0] += time.Since(start)
		start = time.Now()
		sha256.Sum256(buf)
		spent[1] += time.Since(start)
	}
	mbps := func(d time.Duration) float64 { return float64(len(buf)) * float64(b.N) / d.Seconds() / 1e6 }
	b.ReportMetric(mbps(spent[0]), "blake3-MB/s")
	b.ReportMetric(mbps(spent[1]), "sha256-MB/s")
	b.ReportMetric(spent[0].Seconds()/spent[1].Seconds(), "blake3/sha256")
}
