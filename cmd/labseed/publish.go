package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/store"
)

var publishCmd = &command{
	name:  "publish",
	usage: "[--store DIR] [--name NAME] [--level N] [--chunk-size MIB] [--order packages|input] IMAGE",
	summary: `Chunk, compress and sign a root-filesystem tarball into the store.
IMAGE is a .tar, .tar.gz (pigz's multi-member gzip too) or .tar.zst made from
the master machine, e.g. with: tar --xattrs --numeric-owner -C /mnt/master -czf IMAGE .
Use - to read it from standard input. Each publish of a NAME makes a new
version; chunks unchanged since the previous version stay the same, so peers
that hold them need not fetch them again, and publish takes them from the
store instead of compressing them again (a next version publishes in a
fraction of the first one's time). The store's signing key and lab key are
created on the first publish.`,
	example: `labseed publish --name lab1 /srv/images/lab1.tar.gz
ssh master 'tar --xattrs --numeric-owner -C / --one-file-system -cf - .' | labseed publish --name lab1 -`,
	run: func(ctx context.Context, fs *flag.FlagSet, args []string) error {
		var o publishOptions
		fs.StringVar(&o.store, "store", defaultStore, "image store `DIR`")
		fs.StringVar(&o.name, "name", "", "image `NAME` (default: IMAGE's file name without .tar.gz)")
		fs.IntVar(&o.level, "level", 0, "compression level `N` (default "+strconv.Itoa(publishLevel)+
			" with the zstd program, "+strconv.Itoa(chunker.DefaultLevel)+" without):\n"+
			"1-4: built-in encoder (4: ~20 MB/s of tar per core);\n"+
			"5-19: the zstd program, Debian package zstd (19: smallest, ~2.8 MB/s per core,\n"+
			"10 % smaller than 4 on a Debian image; see docs/BENCHMARKS.md)")
		fs.Float64Var(&o.chunkMiB, "chunk-size", 0, "average uncompressed chunk size in `MIB` (chunks of a quarter to 4 times it;\n"+
			"default the chunker's): smaller chunks cost a little compression and make a\n"+
			"re-image by sync fetch less, a changed file costing its whole chunk")
		fs.StringVar(&o.order, "order", "packages", "the `ORDER` entries are chunked in: packages (directories, then each Debian\n"+
			"package's files together, then the rest: an upgraded package changes few chunks;\n"+
			"the tar is spooled in the store meanwhile) or input (the tarball's order)")
		if err := parse(fs, args, 1, 1); err != nil {
			return err
		}
		o.image = fs.Arg(0)
		return runPublish(ctx, o)
	},
}

type publishOptions struct {
	store, name, image string
	order              string  // packages or input; "": packages
	level              int     // 0: publishLevel, or chunker.DefaultLevel without the zstd program
	chunkMiB           float64 // 0: the chunker's default
}

// publishLevel is labseed publish's default compression level when the zstd
// program is installed: on the Debian benchmark image it publishes 0.78 of
// the input against level 4's 0.83, for 4.3 times level 4's CPU time
// (about 2 minutes per GB of tar on two cores; docs/BENCHMARKS.md). Every workstation of every clone fetches the
// payload; publish runs once per image version.
const publishLevel = 16

// defaultLevel returns publishLevel, or chunker.DefaultLevel (built in) with
// a warning on stderr when the zstd program is not installed.
func defaultLevel() int {
	if err := chunker.CheckLevel(publishLevel); err != nil {
		fmt.Fprintf(os.Stderr, "labseed publish: warning: the zstd program is not installed (apt-get install zstd): "+
			"compressing at level %d, which publishes about 6 %% more bytes than level %d\n", chunker.DefaultLevel, publishLevel)
		return chunker.DefaultLevel
	}
	return publishLevel
}

func runPublish(ctx context.Context, o publishOptions) error {
	if o.level == 0 {
		o.level = defaultLevel()
	}
	if err := chunker.CheckLevel(o.level); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if o.chunkMiB != 0 && (o.chunkMiB < 0.25 || o.chunkMiB*4 > chunker.MaxChunkRawSize/2/(1<<20)) {
		return fmt.Errorf("publish: --chunk-size %g: give 0.25 to %d MiB", o.chunkMiB, chunker.MaxChunkRawSize/8/(1<<20))
	}
	if o.order == "" {
		o.order = "packages"
	}
	if o.order != "packages" && o.order != "input" {
		return fmt.Errorf("publish: --order %q: give packages or input", o.order)
	}
	in, size := os.Stdin, int64(-1)
	if o.image != "-" {
		f, err := os.Open(o.image)
		if err != nil {
			return err
		}
		defer f.Close()
		// Ctrl-C ends a read that waits (a named pipe, a stalled
		// network file system): the input is closed under it.
		defer context.AfterFunc(ctx, func() { f.Close() })()
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			size = st.Size()
		}
		in = f
	}
	if o.name == "" {
		if o.image == "-" {
			return fmt.Errorf("publish: give --name when reading the image from standard input")
		}
		o.name = imageName(o.image)
	}
	s, err := store.Open(o.store)
	if err != nil {
		return err
	}
	limitMemory(256 << 20)
	b := newBar(size, "publish "+o.name)
	start := time.Now()
	cfg := chunker.Config{Name: o.name, Level: o.level, Progress: b.set, InputOrder: o.order == "input"}
	if o.chunkMiB != 0 {
		avg := int64(o.chunkMiB * (1 << 20))
		cfg.ChunkMin, cfg.ChunkAvg, cfg.ChunkMax = avg/4, avg, avg*4
	}
	im, err := s.Publish(ctx, in, cfg)
	b.done()
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("publish %s: interrupted: nothing was published, the store holds what it held before; run the same command again", o.image)
	}
	if err != nil {
		return fmt.Errorf("publish %s: %w", o.image, err)
	}
	m := im.Manifest
	secs := time.Since(start).Seconds()
	reused := ""
	if im.Reused > 0 {
		reused = fmt.Sprintf(" (%d already in the store, not compressed again)", im.Reused)
	}
	fmt.Printf("published %s v%d: %d chunks%s, %d entries, input %s, published %s (%.3f of input), %.1f s, infohash %s\n",
		m.Name, m.Version, len(m.Chunks), reused, m.Entries, mib(m.InputBytes), mib(m.PayloadBytes),
		float64(m.PayloadBytes)/float64(m.InputBytes), secs, m.InfoHash)
	return nil
}

// imageName derives an image name from a tarball's file name.
func imageName(p string) string {
	n := filepath.Base(p)
	for _, ext := range []string{".gz", ".tgz", ".zst", ".tar"} {
		n = strings.TrimSuffix(n, ext)
	}
	var b strings.Builder
	for _, r := range n {
		if r < 128 && (r == '.' || r == '_' || r == '-' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	return strings.TrimLeft(b.String(), ".-_")
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
