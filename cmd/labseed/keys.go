package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/labseed/labseed/store"
)

var keysCmd = &command{
	name:  "keys",
	usage: "export [--store DIR] OUTDIR",
	summary: `Write the keys a workstation needs into OUTDIR.
They are image.pub (checks image signatures) and lab.key (joins the lab's
encrypted gossip). Put OUTDIR into the
netboot image and give it to 'labseed peer --keys'. The signing key stays in the
store. Keys are created if the store has none yet.`,
	example: "labseed keys export /srv/netboot/labseed-keys",
	run: func(ctx context.Context, fs *flag.FlagSet, args []string) error {
		if len(args) == 0 || args[0] != "export" {
			return errUsage
		}
		dir := fs.String("store", defaultStore, "image store `DIR`")
		if err := parse(fs, args[1:], 1, 1); err != nil {
			return err
		}
		s, err := store.Open(*dir)
		if err != nil {
			return err
		}
		files, err := s.ExportKeys(fs.Arg(0))
		if err != nil {
			return err
		}
		for _, f := range files {
			fmt.Println("wrote", f)
		}
		return nil
	},
}
