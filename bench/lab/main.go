// Command lab writes the small synthetic image that bench/lab.sh uses for its
// smoke run (and for any run given --image gen:SIZE): a Debian-like root
// filesystem tar.gz made by internal/fixture.GenerateImage, the same bytes for
// the same size and seed. With -update it writes the next version of an
// image instead, a few of its Debian packages "upgraded" (the re-image
// method of bench/lab.sh).
//
//	go run ./bench/lab -out /var/tmp/small.tar.gz -size 24 -seed 1
//	go run ./bench/lab -update openssh-server,libssl3 -in v1.tar.gz -out v2.tar.gz
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/labseed/labseed/internal/fixture"
)

func main() {
	out := flag.String("out", "", "write the image to `FILE` (.tar.gz)")
	sizeMiB := flag.Int64("size", 24, "sum of the regular files' sizes in `MiB`")
	seed := flag.Uint64("seed", 1, "image `SEED`: same size and seed, same bytes")
	upd := flag.String("update", "", "write the next version of -in, these comma-separated Debian `PACKAGES` upgraded")
	in := flag.String("in", "", "with -update, the image `FILE` (.tar.gz) to update")
	flag.Parse()
	if *out == "" || flag.NArg() != 0 || (*upd != "") != (*in != "") {
		fmt.Fprintln(os.Stderr, "usage: go run ./bench/lab -out FILE.tar.gz [-size MiB] [-seed N]\n       go run ./bench/lab -update PKG,... -in IMAGE.tar.gz -out NEXT.tar.gz")
		os.Exit(2)
	}
	if *upd != "" {
		if err := update(*in, *out, strings.Split(*upd, ",")); err != nil {
			fmt.Fprintln(os.Stderr, "bench/lab:", err)
			os.Exit(1)
		}
		return
	}
	if err := write(*out, *sizeMiB<<20, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "bench/lab:", err)
		os.Exit(1)
	}
}

// write generates the image into a temporary file beside out and renames it,
// so that out is either absent or complete.
func write(out string, total int64, seed uint64) error {
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	err = fixture.GenerateImage(bw, fixture.ImageOptions{TotalBytes: total, Seed: seed, Gzip: true})
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, out)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("generate %s: %w", out, err)
	}
	return nil
}
