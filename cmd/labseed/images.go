package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/labseed/labseed/follow"
)

var imagesCmd = &command{
	name:  "images",
	usage: "[--store DIR]",
	summary: `List the images in the store: name, version, size, chunks, when published.
ORIGIN is "here" for an image published on this print server, else the
upstream print server it was replicated from (labseed serve --upstream). On a
follower, the replication follows: whom it follows, the image key it trusts,
and every image of the upstream with its state (replicating with its chunks,
complete, or refused: not signed with that key).`,
	example: "labseed images",
	run: func(ctx context.Context, fs *flag.FlagSet, args []string) error {
		dir := fs.String("store", defaultStore, "image store `DIR`")
		if err := parse(fs, args, 0, 0); err != nil {
			return err
		}
		s, err := openExistingStore(*dir)
		if err != nil {
			return err
		}
		imgs, err := s.Images()
		if err != nil {
			return err
		}
		up, err := follow.ReadState(s.Dir())
		if err != nil {
			return err
		}
		if len(imgs) == 0 && up == nil {
			fmt.Printf("no images in %s; publish one with: labseed publish --store %s IMAGE.tar.gz\n", *dir, *dir)
			return nil
		}
		if len(imgs) > 0 {
			tw := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSION\tPUBLISHED\tINPUT\tFILES\tCHUNKS\tPUBLISHED AT\tORIGIN\tINFOHASH")
			for _, im := range imgs {
				m := im.Manifest
				origin := im.Origin()
				if origin == "" {
					origin = "here"
				}
				fmt.Fprintf(tw, "%s\tv%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", m.Name, m.Version, mib(m.PayloadBytes),
					mib(m.InputBytes), mib(m.FileBytes), len(m.Chunks), m.Created.Local().Format("2006-01-02 15:04"), shown(origin), m.InfoHash)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
		if up != nil {
			printUpstream(os.Stdout, up, time.Now())
		}
		return nil
	},
}
