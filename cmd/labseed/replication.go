package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/labseed/labseed/api"
)

// printUpstream prints a follower's replication: whom it follows, with
// which key, and one line per image of the upstream.
func printUpstream(w io.Writer, u *api.UpstreamStatus, now time.Time) {
	contact := "never"
	if !u.Contact.IsZero() {
		contact = now.Sub(u.Contact).Round(time.Second).String() + " ago"
	}
	rate := ""
	if u.Rate > 0 {
		rate = ", capped at " + fmtRate(float64(u.Rate))
	}
	fmt.Fprintf(w, "following %s (image key %s), last answer %s%s; fetched %s, %d chunks, %d chunks reused\n",
		shown(u.Upstream), shown(u.Key), contact, rate, mib(u.BytesFetched), u.ChunksFetched, u.ChunksReused)
	if len(u.Siblings) > 0 || u.BytesFromFollowers > 0 || u.BytesToFollowers > 0 {
		sibs := make([]string, len(u.Siblings))
		for i, s := range u.Siblings {
			sibs[i] = shown(s)
		}
		fmt.Fprintf(w, "  sharing chunks with the other followers of the upstream (%s): got %s from them, served them %s\n",
			dash(strings.Join(sibs, ", ")), mib(u.BytesFromFollowers), mib(u.BytesToFollowers))
	}
	if u.Error != "" {
		fmt.Fprintln(w, "  upstream:", oneLine(u.Error))
	}
	if len(u.Images) == 0 {
		return
	}
	printReplications(w, "  ", "", u.Images)
}

// printReplications prints one line per image replication, each row
// starting with prefix and first (a follower's name).
func printReplications(w io.Writer, indent, first string, imgs []api.ImageReplication) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	head := indent
	if first != "" {
		head += "FOLLOWER\t"
	}
	fmt.Fprintln(tw, head+"IMAGE\tUPSTREAM\tHERE\tSTATE\tCHUNKS\tREUSED\tFETCHED\tERROR")
	for _, r := range imgs {
		row := indent
		if first != "" {
			row += first + "\t"
		}
		local := "-"
		if r.Local > 0 {
			local = "v" + strconv.Itoa(r.Local)
		}
		pct := ""
		if r.ChunksTotal > 0 {
			pct = fmt.Sprintf(" (%.0f%%)", 100*float64(r.Chunks)/float64(r.ChunksTotal))
		}
		fmt.Fprintf(tw, "%s%s\tv%d\t%s\t%s\t%d/%d%s\t%d\t%s\t%s\n", row, shown(r.Name), r.Version, local, dash(shown(r.State)),
			r.Chunks, r.ChunksTotal, pct, r.ChunksReused, mib(r.BytesFetched), dash(oneLine(r.Error)))
	}
	tw.Flush()
}

// printFollowers prints the print servers that follow this one.
func printFollowers(w io.Writer, fs []api.FollowerStatus, now time.Time) {
	fmt.Fprintf(w, "followers: %d\n", len(fs))
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  FOLLOWER\tADDRESS\tHEARD\tIMAGE\tUPSTREAM\tHERE\tSTATE\tCHUNKS\tFETCHED\tERROR")
	for _, f := range fs {
		addr := f.HTTPAddr
		if addr == "" {
			addr = f.Addr
		}
		heard := now.Sub(f.Heard).Round(time.Second).String() + " ago"
		if len(f.Status.Images) == 0 {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t-\t-\t-\t-\t-\t-\t%s\n", dash(shown(f.Name)), dash(shown(addr)), heard, dash(oneLine(f.Status.Error)))
		}
		for _, r := range f.Status.Images {
			local := "-"
			if r.Local > 0 {
				local = "v" + strconv.Itoa(r.Local)
			}
			errs := r.Error
			if errs == "" {
				errs = f.Status.Error
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\tv%d\t%s\t%s\t%d/%d\t%s\t%s\n", dash(shown(f.Name)), dash(shown(addr)), heard,
				shown(r.Name), r.Version, local, dash(shown(r.State)), r.Chunks, r.ChunksTotal, mib(r.BytesFetched), dash(oneLine(errs)))
		}
	}
	tw.Flush()
}
