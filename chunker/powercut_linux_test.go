package chunker

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/labseed/labseed/internal/ext4test"
	"github.com/labseed/labseed/internal/fixture"
	"github.com/labseed/labseed/treecmp"
)

// TestPowerCut extracts an image onto a real ext4 file system, cuts the
// power at one of several points (the shutdown ioctl that commits the
// journal and drops the data not yet written back), mounts the file system
// again and resumes. The tree must then equal GNU tar's extraction of the
// same tarball, or the resume must fail with an error: never report
// success over zero-length files, partial files or wrong modes.
func TestPowerCut(t *testing.T) {
	if os.Getenv("LABSEED_LONG") != "1" {
		t.Skip("power-cut test on an ext4 loop device: set LABSEED_LONG=1 (needs root, e2fsprogs, GNU tar)")
	}
	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("GNU tar not installed")
	}
	if os.Geteuid() != 0 {
		t.Skip("an ext4 loop device needs root")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := fixture.BuildRootTree(src, fixture.RootTreeOptions{BigFileSize: 3 << 20, Privileged: true}); err != nil {
		t.Fatal(err)
	}
	tgz := filepath.Join(dir, "image.tar.gz")
	run(t, "tar", "--xattrs", "--numeric-owner", "-C", src, "-czf", tgz, ".")
	want := filepath.Join(dir, "want")
	os.Mkdir(want, 0o755)
	run(t, "tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-C", want, "-xzf", tgz)
	in, err := os.ReadFile(tgz)
	if err != nil {
		t.Fatal(err)
	}
	m, payload := publish(t, in, smallChunks)
	n := len(m.Chunks)
	// Small sync batches, so that a cut finds some chunks synced and
	// recorded and others applied and waiting for the next sync.
	cfg := ApplyConfig{SyncBytes: m.TarBytes / 10}
	order := rand.New(rand.NewPCG(5, 6)).Perm(n)
	opts := treecmp.Options{Ignore: []string{StateDirName, "lost+found"}}

	type point struct {
		name    string
		applied int  // chunks applied before the cut
		finish  bool // Finish ran before the cut
		cleanup bool // Cleanup ran before the cut
	}
	points := []point{
		{name: "after 1 chunk", applied: 1},
		{name: "after a quarter", applied: n / 4},
		{name: "after half", applied: n / 2},
		{name: "after 90 percent", applied: n * 9 / 10},
		{name: "every chunk applied", applied: n},
		{name: "after Finish", applied: n, finish: true},
		{name: "after Cleanup", applied: n, finish: true, cleanup: true},
	}
	for _, p := range points {
		t.Run(p.name, func(t *testing.T) {
			fs := ext4test.New(t, 256<<20)
			ctx := context.Background()
			cfg := cfg
			cfg.Target = fs.Dir
			a, err := NewApplier(m, cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, i := range order[:p.applied] {
				if err := a.Apply(ctx, i, chunk(m, payload, i)); err != nil {
					t.Fatalf("Apply(%d): %v", i, err)
				}
			}
			if p.finish {
				if err := a.Finish(ctx); err != nil {
					t.Fatalf("Finish: %v", err)
				}
			}
			if p.cleanup {
				if err := a.Cleanup(); err != nil {
					t.Fatalf("Cleanup: %v", err)
				}
			}
			fs.PowerCut(t)
			a.Close() // fails to write anything: the file system is down
			fs.Unmount(t)
			fs.Remount(t)

			resumed := "no state left: the extraction had reported done"
			if _, err := os.Stat(filepath.Join(fs.Dir, StateDirName)); err == nil {
				kept, err := resume(m, payload, cfg, order)
				if err != nil {
					// Failing loudly is safe, but the state written before the
					// cut should let the resume finish.
					t.Fatalf("resume after the power cut failed: %v", err)
				}
				resumed = fmt.Sprintf("resumed with %d of %d chunks recorded as applied and reported done", kept, p.applied)
			}
			diffs, err := treecmp.Compare(want, fs.Dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			for i, d := range diffs {
				if i == 20 {
					t.Errorf("... and %d more differences", len(diffs)-i)
					break
				}
				t.Errorf("%s, but GNU tar vs labseed: %s", resumed, d)
			}
			if len(diffs) == 0 {
				t.Logf("%s: tree exact", resumed)
			}
		})
	}
}

// resume runs a new Applier over an interrupted extraction, as a restarted
// clone does, and returns how many chunks it found applied and its error.
func resume(m *Manifest, payload []byte, cfg ApplyConfig, order []int) (int, error) {
	ctx := context.Background()
	a, err := NewApplier(m, cfg)
	if err != nil {
		return 0, err
	}
	defer a.Close()
	kept, _ := a.Progress()
	err = resumeRest(ctx, a, payload, order)
	return kept, err
}

func resumeRest(ctx context.Context, a *Applier, payload []byte, order []int) error {
	m := a.Manifest()
	for _, i := range order {
		if err := a.Apply(ctx, i, chunk(m, payload, i)); err != nil {
			return fmt.Errorf("Apply(%d): %w", i, err)
		}
	}
	if err := a.Finish(ctx); err != nil {
		return fmt.Errorf("Finish: %w", err)
	}
	if err := a.Cleanup(); err != nil {
		return fmt.Errorf("Cleanup: %w", err)
	}
	return nil
}

// BenchmarkApplySync measures what syncing costs: it extracts a 256 MiB
// generated image onto ext4 on a loop device writing to the machine's disk
// with direct I/O, and reports the time of each way of syncing relative
// to no sync at all (the labseed before syncs: fast to return, with the
// data still in the page cache) and to a single syncfs at the end (the
// least any durable extraction costs):
//
//	go test -run '^$' -bench BenchmarkApplySync -benchtime 3x ./chunker
//
// Needs root; the image is generated once per run.
func BenchmarkApplySync(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("an ext4 loop device needs root")
	}
	var buf bytes.Buffer
	if err := fixture.GenerateImage(&buf, fixture.ImageOptions{TotalBytes: 256 << 20, Seed: 9, Gzip: true}); err != nil {
		b.Fatal(err)
	}
	m, payload := publish(b, buf.Bytes(), Config{Name: "bench"})
	noSync := func(*os.File) error { return nil }
	variants := []struct {
		name      string
		syncBytes int64
		never     bool // no sync until the end (the old code when finalSync)
		finalSync bool // one syncfs after Cleanup
	}{
		{name: "nosync", never: true},
		{name: "final", never: true, finalSync: true},
		{name: "batch", syncBytes: DefaultSyncBytes},
		{name: "chunk", syncBytes: 1},
	}
	total := make([]time.Duration, len(variants))
	ctx := context.Background()
	for range b.N {
		for k, v := range variants {
			b.StopTimer()
			fs := ext4test.NewDirectIO(b, 2<<30)
			a, err := NewApplier(m, ApplyConfig{Target: fs.Dir, SyncBytes: v.syncBytes})
			if err != nil {
				b.Fatal(err)
			}
			if v.never {
				a.syncFS = noSync
			}
			b.StartTimer()
			start := time.Now()
			for i := range m.Chunks {
				if err := a.Apply(ctx, i, chunk(m, payload, i)); err != nil {
					b.Fatal(err)
				}
			}
			if err := a.Finish(ctx); err != nil {
				b.Fatal(err)
			}
			if err := a.Cleanup(); err != nil {
				b.Fatal(err)
			}
			if v.finalSync {
				if err := syncFS(a.targetDir); err != nil {
					b.Fatal(err)
				}
			}
			total[k] += time.Since(start)
			b.StopTimer()
			a.Close()
			fs.Unmount(b)
		}
	}
	for k, v := range variants {
		b.ReportMetric(total[k].Seconds()/float64(b.N), v.name+"-s")
		if k > 0 {
			b.ReportMetric(total[k].Seconds()/total[0].Seconds(), v.name+"/nosync")
		}
		if k > 1 {
			b.ReportMetric(total[k].Seconds()/total[1].Seconds(), v.name+"/final")
		}
	}
	b.Logf("%d chunks, %d MiB of tar", len(m.Chunks), m.TarBytes>>20)
}
