package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/internal/textsafe"
)

var statusCmd = &command{
	name:  "status",
	usage: "--server HOST[:PORT] [--watch] [--json]",
	summary: `Show the lab: one line per workstation and a summary.
Each line: host, phase, percent, chunks, download and upload rate, connected
peers, ETA; the summary: workstations done, aggregate download rate, and the
share of bytes served by the workstations rather than the print server.`,
	example: "labseed status --server 10.1.0.1 --watch",
	run: func(ctx context.Context, fs *flag.FlagSet, args []string) error {
		server := fs.String("server", "127.0.0.1", "print server `HOST[:PORT]` (port "+strconv.Itoa(api.DefaultPort)+" by default)")
		watch := fs.Bool("watch", false, "redraw every 2 seconds until interrupted")
		asJSON := fs.Bool("json", false, "print the status as JSON")
		if err := parse(fs, args, 0, 0); err != nil {
			return err
		}
		for {
			ls, err := fetchStatus(ctx, *server)
			if err != nil {
				return err
			}
			if *asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", " ")
				enc.Encode(ls)
			} else {
				if *watch {
					fmt.Print("\033[H\033[2J")
				}
				printStatus(os.Stdout, ls)
			}
			if !*watch {
				return nil
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(2 * time.Second):
			}
		}
	},
}

// fetchStatus asks the print server at addr (host or host:port) for the
// lab status.
func fetchStatus(ctx context.Context, addr string) (*api.LabStatus, error) {
	c := api.NewClient(addr)
	c.HTTP.Timeout = 10 * time.Second
	return c.Status(ctx)
}

func printStatus(w io.Writer, ls *api.LabStatus) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSTATE\tPHASE\tPCT\tCHUNKS\tDOWN\tUP\tPEERS\tFROM PEERS\tETA\tERROR")
	for _, h := range ls.Hosts {
		s := h.Status
		eta := "-"
		if s.ETA > 0 {
			eta = (time.Duration(s.ETA) * time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f%%\t%d/%d\t%s\t%s\t%d\t%.0f%%\t%s\t%s\n", shown(h.Name), shown(h.State), shown(h.Phase), s.Percent,
			s.Chunks, s.ChunksTotal, fmtRate(float64(s.DownRate)), fmtRate(float64(s.UpRate)), s.Peers,
			share(int64(s.FromPeers), int64(s.FromServer)), eta, shownLong(s.Error))
	}
	tw.Flush()
	sum := ls.Summary
	fmt.Fprintf(w, "lab: %d/%d done, %d failed, downloading %s in all, %.0f%% of bytes served by workstations, print server uploaded %s\n",
		sum.Done, sum.Hosts, sum.Failed, fmtRate(float64(sum.DownRate)), 100*sum.PeerShare, mib(int64(sum.ServerUp)))
	if ls.BootError != "" {
		fmt.Fprintln(w, "hosts table:", shownLong(ls.BootError))
	}
	if len(ls.Boot) > 0 {
		fmt.Fprintln(w)
		printBootHosts(w, ls.Boot, ls.Time)
	}
}

// printBootHosts prints the hosts table with each machine's last clone step
// and last network-boot event.
func printBootHosts(w io.Writer, bh []api.BootHost, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "MAC\tHOSTNAME\tIP\tNEXT BOOT\tCLONE\tLAST BOOT EVENT")
	for _, h := range bh {
		clone, event := "-", "-"
		if n := len(h.Clone); n > 0 {
			r := h.Clone[n-1]
			clone = shown(r.Step) + " " + shown(r.State)
			if r.Error != "" {
				clone += ": " + shownLong(r.Error)
			}
		}
		if n := len(h.Events); n > 0 {
			e := h.Events[n-1]
			event = fmt.Sprintf("%s %s (%s ago)", shown(e.Kind), shownLong(e.Detail), now.Sub(e.Time).Round(time.Second))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", shown(h.MAC), dash(shown(h.Hostname)), dash(shown(h.IP)), dash(shown(h.NextBoot)), clone, event)
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// shown and shownLong make a string from the print server fit for the
// terminal: control characters (escape sequences) replaced, one line,
// bounded. The print server cleans what it takes in; whatever answers in
// its place is not trusted with the terminal either.
func shown(s string) string     { return textsafe.Clean(s, 128) }
func shownLong(s string) string { return textsafe.Clean(s, 512) }
