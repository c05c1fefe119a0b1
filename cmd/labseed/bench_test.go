package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The image-format benchmarks run on a real Debian root filesystem, made by
// bench/mkimage.sh (cached in /var/cache/labseed-bench), or the tarball named
// by LABSEED_BENCH_IMAGE. Each prints its figure and its ratio to a baseline
// measured in the same run:
//
//	bench/mkimage.sh && go test -run '^$' -bench . -benchtime 1x ./cmd/labseed
func benchImage(b *testing.B) string {
	img := os.Getenv("LABSEED_BENCH_IMAGE")
	if img == "" {
		img = "/var/cache/labseed-bench/debian.tar.gz"
	}
	if _, err := os.Stat(img); err != nil {
		b.Skipf("no benchmark image (%v): run bench/mkimage.sh or set LABSEED_BENCH_IMAGE", err)
	}
	return img
}

// measure runs a command and returns its wall time and peak RSS in MiB.
func measure(b *testing.B, name string, args ...string) (time.Duration, float64) {
	b.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = nil, os.Stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	wall := time.Since(start)
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return wall, float64(ru.Maxrss) / 1024
}

func report(b *testing.B, what string, got, base time.Duration, rss float64) {
	ratio := got.Seconds() / base.Seconds()
	b.ReportMetric(got.Seconds(), "s")
	b.ReportMetric(base.Seconds(), "s_baseline")
	b.ReportMetric(ratio, "x_baseline")
	b.ReportMetric(rss, "MiB_peak_rss")
	fmt.Printf("%s: %.2f s, baseline %.2f s, ratio %.2f, peak RSS %.0f MiB\n", what, got.Seconds(), base.Seconds(), ratio, rss)
}

// BenchmarkPublish compares publish at the default level with
// "gzip -dc IMAGE > /dev/null" and reports the published size ÷ input size.
func BenchmarkPublish(b *testing.B) {
	img := benchImage(b)
	fi, _ := os.Stat(img)
	for b.Loop() {
		st := b.TempDir()
		base, _ := measure(b, "sh", "-c", "gzip -dc "+img+" > /dev/null")
		wall, rss := measure(b, labseedBin, "publish", "--store", st, "--name", "bench", img)
		payload, _ := filepath.Glob(filepath.Join(st, "images", "bench", "v1", "*.chunks"))
		pi, err := os.Stat(payload[0])
		if err != nil {
			b.Fatal(err)
		}
		size := float64(pi.Size()) / float64(fi.Size())
		b.ReportMetric(size, "x_input_size")
		fmt.Printf("publish: published %d bytes of %d input, %.3f of input\n", pi.Size(), fi.Size(), size)
		report(b, "publish vs gzip -dc", wall, base, rss)
	}
}

// BenchmarkPublishNextVersion publishes the image, then its next version
// (LABSEED_BENCH_NEXT_IMAGE: the same image with some packages upgraded,
// as bench/lab.sh --methods reimage makes) into the same store, at the
// default level, and compares the second publish, which takes the chunks
// the versions share from the store, with "gzip -dc NEXT > /dev/null" and
// with the first publish:
//
//	LABSEED_BENCH_IMAGE=/var/cache/labseed-bench/debian-clone-systemd.tar.gz \
//	LABSEED_BENCH_NEXT_IMAGE=/var/cache/labseed-bench/update-e345d5aec2039280.tar.gz \
//	go test -run '^$' -bench PublishNextVersion -benchtime 1x ./cmd/labseed
func BenchmarkPublishNextVersion(b *testing.B) {
	img := benchImage(b)
	next := os.Getenv("LABSEED_BENCH_NEXT_IMAGE")
	if next == "" {
		b.Skip("set LABSEED_BENCH_NEXT_IMAGE to a next version of the benchmark image (bench/lab.sh --methods reimage makes one)")
	}
	for b.Loop() {
		st := b.TempDir()
		first, _ := measure(b, labseedBin, "publish", "--store", st, "--name", "bench", img)
		base, _ := measure(b, "sh", "-c", "gzip -dc "+next+" > /dev/null")
		wall, rss := measure(b, labseedBin, "publish", "--store", st, "--name", "bench", next)
		b.ReportMetric(wall.Seconds()/first.Seconds(), "x_first_publish")
		fmt.Printf("first publish %.2f s; the next version's %.2f s, %.2f of it\n", first.Seconds(), wall.Seconds(), wall.Seconds()/first.Seconds())
		report(b, "next version's publish vs gzip -dc", wall, base, rss)
	}
}

// benchDiskSize is the size of freshFS's file systems (sparse files).
var benchDiskSize = "8G"

// freshFS returns an empty directory on a new ext4 file system, as a
// workstation's disk is after mkfs, so that neither tool pays for the
// deletions of an earlier run. Without root it falls back to a temporary
// directory.
func freshFS(b *testing.B) string {
	b.Helper()
	dir := b.TempDir()
	if os.Geteuid() != 0 {
		return dir
	}
	img := filepath.Join(dir, "fs.img")
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	for _, c := range [][]string{{"truncate", "-s", benchDiskSize, img}, {"mkfs.ext4", "-q", "-F", img}, {"mount", "-o", "loop", img, mnt}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			b.Fatalf("%v: %v %s", c, err, out)
		}
	}
	b.Cleanup(func() { exec.Command("umount", mnt).Run() })
	return filepath.Join(mnt, "t")
}

// BenchmarkExtract compares extract with "tar -xzf IMAGE", each into an
// empty, new ext4 file system.
func BenchmarkExtract(b *testing.B) {
	img := benchImage(b)
	st := b.TempDir()
	if out, err := exec.Command(labseedBin, "publish", "--store", st, "--name", "bench", img).CombinedOutput(); err != nil {
		b.Fatalf("publish: %v %s", err, out)
	}
	for b.Loop() {
		ref, got := freshFS(b), freshFS(b)
		os.Mkdir(ref, 0o755)
		base, _ := measure(b, "tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-C", ref, "-xzf", img)
		wall, rss := measure(b, labseedBin, "extract", "--store", st, "--image", "bench", "--target", got)
		report(b, "extract vs tar -xzf", wall, base, rss)
		b.ReportMetric(base.Seconds()/wall.Seconds(), "x_faster")
	}
}

// BenchmarkSwarm runs 'labseed demo' (a print server and 8 workstations on
// loopback, each port limited to 100 Mbit/s) and reports the last
// workstation's time against the physical limit (image size ÷ port rate,
// measured in the same run), the print server's upload ÷ the image, the
// workstations' peak RSS and their CPU time per GB received.
// LABSEED_BENCH_SWARM_IMAGE runs it on another image (e.g. the Debian one).
func BenchmarkSwarm(b *testing.B) {
	args := []string{"demo", "--peers", "8", "--link", "100mbit"}
	if img := os.Getenv("LABSEED_BENCH_SWARM_IMAGE"); img != "" {
		args = append(args, "--image", img)
	}
	// b.N, not b.Loop: Go 1.26.8's compiler crashes (internal compiler
	// error in sync/atomic) on this loop body under b.Loop's instrumentation.
	for range b.N {
		out, err := exec.Command(labseedBin, args...).CombinedOutput()
		if err != nil {
			b.Fatalf("demo: %v\n%s", err, out)
		}
		var last, limit, serverUp, rss, cpu float64
		for _, line := range strings.Split(string(out), "\n") {
			switch {
			case strings.HasPrefix(line, "first workstation"):
				fmt.Sscanf(line[strings.Index(line, "the last after")+len("the last after"):], "%f", &last)
			case strings.HasPrefix(line, "physical limit"):
				fmt.Sscanf(line[strings.Index(line, ": ")+2:], "%f", &limit)
			case strings.Contains(line, "print server uploaded"):
				fmt.Sscanf(line[strings.Index(line, "uploaded")+len("uploaded"):], "%f", &serverUp)
			case strings.HasPrefix(line, "workstation processes"):
				fmt.Sscanf(line, "workstation processes: peak RSS %f MiB, CPU %f s per GB received", &rss, &cpu)
			}
		}
		if last == 0 || limit == 0 {
			b.Fatalf("could not read the demo's summary:\n%s", out)
		}
		b.ReportMetric(last, "s_last")
		b.ReportMetric(limit, "s_limit")
		b.ReportMetric(last/limit, "x_limit")
		b.ReportMetric(serverUp, "x_image_server_upload")
		b.ReportMetric(rss, "MiB_peer_rss")
		b.ReportMetric(cpu, "cpu_s_per_GB")
		fmt.Printf("swarm: last workstation %.1f s, limit %.1f s, ratio %.2f, server uploaded %.2f × image, peer RSS %.0f MiB, %.1f CPU s/GB\n",
			last, limit, last/limit, serverUp, rss, cpu)
	}
}
