package main

import (
	"context"
	"flag"
	"fmt"
)

var verifyCmd = &command{
	name:  "verify",
	usage: "[--store DIR] NAME",
	summary: `Check an image in the store, byte by byte.
It checks the manifest's signature, every chunk's SHA-256, every torrent piece
and the infohash, and exits non-zero naming what is damaged.`,
	example: "labseed verify lab1",
	run: func(ctx context.Context, fs *flag.FlagSet, args []string) error {
		dir := fs.String("store", defaultStore, "image store `DIR`")
		if err := parse(fs, args, 1, 1); err != nil {
			return err
		}
		s, err := openExistingStore(*dir)
		if err != nil {
			return err
		}
		im, err := s.Image(fs.Arg(0))
		if err != nil {
			return err
		}
		m := im.Manifest
		b := newBar(m.PayloadBytes, "verify "+m.Name)
		err = im.Verify(ctx, b.set)
		b.done()
		if err != nil {
			return err
		}
		fmt.Printf("%s v%d is intact: signature good, %d chunks and %s checked\n", m.Name, m.Version, len(m.Chunks), mib(m.PayloadBytes))
		return nil
	},
}
