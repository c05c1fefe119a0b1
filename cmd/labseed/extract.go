package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"time"

	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/keys"
	"github.com/labseed/labseed/store"
)

var extractCmd = &command{
	name:  "extract",
	usage: "[--store DIR] --image NAME --target DIR [--pub-key FILE]",
	summary: `Extract a published image from the store into a directory.
The result is exact: owners, modes, setuid bits, mtimes, hard links, device
nodes, xattrs. TARGET must be
empty (as after mkfs) or hold an interrupted extraction of the same image,
which then resumes. It uses the same chunk applier as the workstations.`,
	example: `mkfs.ext4 /dev/sdb1 && mount /dev/sdb1 /mnt/target
labseed extract --image lab1 --target /mnt/target`,
	run: func(ctx context.Context, fs *flag.FlagSet, args []string) error {
		var o extractOptions
		fs.StringVar(&o.store, "store", defaultStore, "image store `DIR`")
		fs.StringVar(&o.image, "image", "", "image `NAME` (required)")
		fs.StringVar(&o.target, "target", "", "target `DIR` (required)")
		fs.StringVar(&o.pubKey, "pub-key", "", "check the signature with this public key `FILE` instead of the store's own")
		fs.IntVar(&o.jobs, "jobs", runtime.GOMAXPROCS(0), "chunks applied in parallel")
		fs.BoolVar(&o.shuffle, "shuffle", false, "apply chunks in random order, as they arrive from a swarm (for testing)")
		if err := parse(fs, args, 0, 0); err != nil {
			return err
		}
		if o.image == "" || o.target == "" {
			return errUsage
		}
		return runExtract(ctx, o)
	},
}

type extractOptions struct {
	store, image, target, pubKey string
	jobs                         int
	shuffle                      bool
}

func runExtract(ctx context.Context, o extractOptions) error {
	s, err := openExistingStore(o.store)
	if err != nil {
		return err
	}
	im, err := s.Image(o.image)
	if err != nil {
		return err
	}
	if o.pubKey != "" {
		pub, err := keys.ReadPublicKey(o.pubKey)
		if err != nil {
			return err
		}
		if im, err = store.LoadImage(im.Dir, pub); err != nil {
			return err
		}
	}
	m := im.Manifest
	// Each job holds a chunk (up to 16 MiB by default, 32 with publish
	// --chunk-size 8) and its compressed bytes.
	limitMemory(int64(32+40*max(o.jobs, 1)) << 20)
	a, err := chunker.NewApplier(m, chunker.ApplyConfig{Target: o.target})
	if err != nil {
		return err
	}
	defer a.Close()
	var order []int
	if o.shuffle {
		order = rand.Perm(len(m.Chunks))
	}
	b := newBar(m.TarBytes, "extract "+m.Name)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				_, n := a.Progress()
				b.set(n)
			case <-stop:
				return
			}
		}
	})
	start := time.Now()
	err = im.Extract(ctx, a, order, o.jobs)
	close(stop)
	wg.Wait()
	b.done()
	if err != nil {
		return fmt.Errorf("extract %s into %s: %w", m.Name, o.target, err)
	}
	if err := a.Cleanup(); err != nil {
		return err
	}
	fmt.Printf("extracted %s v%d into %s: %d entries, %s of files, %.1f s\n",
		m.Name, m.Version, o.target, m.Entries, mib(m.FileBytes), time.Since(start).Seconds())
	return nil
}
