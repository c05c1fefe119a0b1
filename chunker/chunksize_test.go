package chunker

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestChunkSizeTradeoff measures what the average chunk size trades
// (docs/BENCHMARKS.md): the published size ÷ the input of
// LABSEED_CHUNK_BENCH_IMAGE, and the share of the payload of
// LABSEED_CHUNK_BENCH_V2 in chunks LABSEED_CHUNK_BENCH_V1 does not have
// (what a re-image by sync fetches), for the averages (MiB) in
// LABSEED_CHUNK_BENCH_AVG (default 4,8,16; chunks of a quarter to 4 times
// the average), each against the default's (4 MiB) in the same run. It
// publishes every image once per average at the default level, minutes of
// both cores: run it under the heavy-test lock. The images of the lab
// bench (bench/mkimage.sh, bench/lab.sh --methods reimage):
//
//	LABSEED_CHUNK_BENCH_IMAGE=/var/cache/labseed-bench/debian.tar.gz \
//	LABSEED_CHUNK_BENCH_V1=/var/cache/labseed-bench/debian-clone.tar.gz \
//	LABSEED_CHUNK_BENCH_V2=/var/cache/labseed-bench/update-c1df4cd288d2d3fa.tar.gz \
//	go test -run TestChunkSizeTradeoff -v -timeout 30m ./chunker
func TestChunkSizeTradeoff(t *testing.T) {
	img := os.Getenv("LABSEED_CHUNK_BENCH_IMAGE")
	v1, v2 := os.Getenv("LABSEED_CHUNK_BENCH_V1"), os.Getenv("LABSEED_CHUNK_BENCH_V2")
	if img == "" && (v1 == "" || v2 == "") {
		t.Skip("set LABSEED_CHUNK_BENCH_IMAGE and/or LABSEED_CHUNK_BENCH_V1 and _V2 (tar.gz images)")
	}
	avgs := []int64{DefaultChunkAvg >> 20, 8, 16}
	if s := os.Getenv("LABSEED_CHUNK_BENCH_AVG"); s != "" {
		avgs = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.ParseInt(f, 10, 64)
			if err != nil || n < 1 {
				t.Fatalf("LABSEED_CHUNK_BENCH_AVG: %q", f)
			}
			avgs = append(avgs, n)
		}
	}
	publish := func(path string, avg int64) (*Manifest, float64) {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		a := avg << 20
		var payload countingWriter
		m, _, err := Publish(t.Context(), f, &payload, Config{Name: "bench", ChunkMin: a / 4, ChunkAvg: a, ChunkMax: a * 4})
		if err != nil {
			t.Fatal(err)
		}
		return m, float64(payload.n) / float64(st.Size())
	}
	var baseSize, baseFetch float64
	for _, avg := range avgs {
		if img != "" {
			m, r := publish(img, avg)
			if baseSize == 0 {
				baseSize = r
			}
			t.Logf("average %2d MiB: %4d chunks, published %.4f of the input (%.3f x the %d MiB average's)",
				avg, len(m.Chunks), r, r/baseSize, avgs[0])
		}
		if v1 != "" && v2 != "" {
			m1, _ := publish(v1, avg)
			m2, _ := publish(v2, avg)
			have := map[string]bool{}
			for _, c := range m1.Chunks {
				have[c.SHA256] = true
			}
			var changed, total int64
			n := 0
			for _, c := range m2.Chunks {
				total += c.Size
				if !have[c.SHA256] {
					changed += c.Size
					n++
				}
			}
			if baseFetch == 0 {
				baseFetch = float64(changed)
			}
			t.Logf("average %2d MiB: re-image v1 -> v2 fetches %d of %d chunks, %d bytes, %.3f of the payload (%.3f x the %d MiB average's)",
				avg, n, len(m2.Chunks), changed, float64(changed)/float64(total), float64(changed)/baseFetch, avgs[0])
		}
	}
}

// countingWriter counts the bytes written to it.
type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }
