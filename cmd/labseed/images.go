package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/labseed/labseed/store"
)

var imagesCmd = &command{
	name:    "images",
	usage:   "[--store DIR]",
	summary: "List the images in the store: name, version, size, chunks, when published.",
	example: "labseed images",
	run: func(ctx context.Context, fs *flag.FlagSet, args []string) error {
		dir := fs.String("store", defaultStore, "image store `DIR`")
		if err := parse(fs, args, 0, 0); err != nil {
			return err
		}
		s, err := store.Open(*dir)
		if err != nil {
			return err
		}
		imgs, err := s.Images()
		if err != nil {
			return err
		}
		if len(imgs) == 0 {
			fmt.Printf("no images in %s; publish one with: labseed publish --store %s IMAGE.tar.gz\n", *dir, *dir)
			return nil
		}
		tw := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tVERSION\tPUBLISHED\tINPUT\tFILES\tCHUNKS\tPUBLISHED AT\tINFOHASH")
		for _, im := range imgs {
			m := im.Manifest
			fmt.Fprintf(tw, "%s\tv%d\t%s\t%s\t%s\t%d\t%s\t%s\n", m.Name, m.Version, mib(m.PayloadBytes),
				mib(m.InputBytes), mib(m.FileBytes), len(m.Chunks), m.Created.Local().Format("2006-01-02 15:04"), m.InfoHash)
		}
		return tw.Flush()
	},
}
