package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/internal/fixture"
	"github.com/labseed/labseed/store"
	"github.com/labseed/labseed/treecmp"
)

var demoCmd = &command{
	name:  "demo",
	usage: "[--image FILE] [--size BYTES] [--keep DIR]",
	summary: `Show labseed at work on this machine, with nothing to set up.
It generates a realistic root-filesystem image (or uses --image), publishes it
into a throw-away store, extracts it with its chunks in a random order, as they
arrive from a swarm, and checks the result against the image entry by entry.`,
	example: "labseed demo\nlabseed demo --image /srv/images/lab1.tar.gz",
	run: func(ctx context.Context, fs *flag.FlagSet, args []string) error {
		var o demoOptions
		fs.StringVar(&o.image, "image", "", "image tarball `FILE` to use instead of a generated one")
		fs.Int64Var(&o.size, "size", 256<<20, "bytes of files in the generated image")
		fs.StringVar(&o.keep, "keep", "", "work in `DIR` and keep it, instead of a temporary directory")
		if err := parse(fs, args, 0, 0); err != nil {
			return err
		}
		return runDemo(ctx, o)
	},
}

type demoOptions struct {
	image, keep string
	size        int64
}

func runDemo(ctx context.Context, o demoOptions) error {
	dir := o.keep
	if dir == "" {
		d, err := os.MkdirTemp("", "labseed-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	img := o.image
	if img == "" {
		img = filepath.Join(dir, "image.tar.gz")
		fmt.Printf("generating a %s root-filesystem image in %s\n", mib(o.size), img)
		f, err := os.Create(img)
		if err != nil {
			return err
		}
		err = fixture.GenerateImage(f, fixture.ImageOptions{TotalBytes: o.size, Seed: 1, Gzip: true})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	st := filepath.Join(dir, "store")
	if err := runPublish(ctx, publishOptions{store: st, name: "demo", image: img, level: chunker.DefaultLevel}); err != nil {
		return err
	}
	target := filepath.Join(dir, "target")
	start := time.Now()
	if err := runExtract(ctx, extractOptions{store: st, image: "demo", target: target, jobs: 2, shuffle: true}); err != nil {
		return err
	}
	took := time.Since(start)
	s, err := store.Open(st)
	if err != nil {
		return err
	}
	im, err := s.Image("demo")
	if err != nil {
		return err
	}
	if err := im.Verify(ctx, nil); err != nil {
		return err
	}
	ents, err := treecmp.Scan(target, treecmp.Options{})
	if err != nil {
		return err
	}
	if len(ents) < im.Manifest.Entries {
		return fmt.Errorf("demo: the target holds %d entries, the image %d", len(ents), im.Manifest.Entries)
	}
	fmt.Printf("demo done: %d entries extracted in %.1f s from %d chunks applied in random order; the image verifies\n",
		len(ents), took.Seconds(), len(im.Manifest.Chunks))
	return nil
}
