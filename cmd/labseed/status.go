package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/internal/textsafe"
)

var statusCmd = &command{
	name:  "status",
	usage: "--server HOST[:PORT] [--watch] [--json]",
	summary: `Show the lab: one line per machine and a summary.
Each line: the machine's MAC, host name, address and next boot from the hosts
table; its stage (booted, identified, downloading, configured, done, failed);
its agent's percent, download and upload rate, connected peers and ETA; and
the last thing heard of it (a boot event, a clone step, or why it failed).
Workstations that are no machine of the table's follow. The summary:
workstations done, aggregate download rate, the share of bytes served by the
workstations rather than the print server, the machines by stage, and the
deploy task (labseed deploy) running or last run, its machines by state.
On a print server that follows another (serve --upstream): whom it follows,
with which image key, and each image's replication (refusals included). On
one that is followed: its followers and their replication.`,
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
	printMachines(w, machineRows(ls.Boot, ls.Hosts), ls.Time)
	sum := ls.Summary
	fmt.Fprintf(w, "lab: %d/%d done, %d failed, downloading %s in all, %.0f%% of bytes served by workstations, print server uploaded %s\n",
		sum.Done, sum.Hosts, sum.Failed, fmtRate(float64(sum.DownRate)), 100*sum.PeerShare, mib(int64(sum.ServerUp)))
	if line := stageCounts(ls.Boot); line != "" {
		fmt.Fprintln(w, "machines:", line)
	}
	if ls.Deploy != nil {
		fmt.Fprintln(w, deployLine(ls.Deploy, ls.Time))
	}
	if ls.BootError != "" {
		fmt.Fprintln(w, "hosts table (showing the last good one):", shownLong(ls.BootError))
	}
	if ls.Upstream != nil {
		printUpstream(w, ls.Upstream, ls.Time)
	}
	if len(ls.Followers) > 0 {
		printFollowers(w, ls.Followers, ls.Time)
	}
}

// machine is one row of the lab table: a machine's record (boot is nil for
// an agent that names no machine) and its agent, if any.
type machine struct {
	boot  *api.BootHost
	agent *api.HostStatus
}

// machineRows is one row per machine: every record of the print server
// (the hosts table's, then the others heard of), then the workstations of
// the gossip that are no machine's record (a labseed peer of its own).
func machineRows(boot []api.BootHost, gossip []api.HostStatus) []machine {
	var rows []machine
	seen := map[string]bool{}
	for i := range boot {
		b := &boot[i]
		seen[b.MAC] = true
		rows = append(rows, machine{boot: b, agent: b.Agent})
	}
	for i := range gossip {
		if h := &gossip[i]; h.MAC == "" || !seen[h.MAC] {
			rows = append(rows, machine{agent: h})
		}
	}
	return rows
}

// printMachines prints the lab table, one row per machine: who it is,
// where it is in its re-imaging, its agent's progress and the last thing
// heard of it.
func printMachines(w io.Writer, rows []machine, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	// A re-image by sync gets three more columns: the chunks its agent
	// found on the machine's disk, those it fetched, the paths it removed.
	syncing := slices.ContainsFunc(rows, func(m machine) bool { return m.agent != nil && m.agent.Status.Sync })
	syncHead := ""
	if syncing {
		syncHead = "LOCAL\tFETCHED\tREMOVED\t"
	}
	fmt.Fprintln(tw, "MAC\tHOST\tIP\tNEXT BOOT\tSTAGE\tPCT\t"+syncHead+"DOWN\tUP\tPEERS\tETA\tLAST")
	for _, m := range rows {
		mac, host, ip, next, stage, last := "-", "-", "-", "-", "-", "-"
		if b := m.boot; b != nil {
			mac, host, ip, next, stage = shown(b.MAC), dash(shown(b.Hostname)), dash(shown(b.IP)), dash(shown(b.NextBoot)), dash(shown(b.Stage))
			last = lastHeard(b, now)
		}
		pct, down, up, peers, eta := "-", "-", "-", "-", "-"
		if a := m.agent; a != nil {
			if host == "-" {
				host = dash(shown(a.Name))
			}
			if ip == "-" {
				if h, _, err := net.SplitHostPort(a.Addr); err == nil {
					ip = dash(shown(h))
				}
			}
			if m.boot == nil {
				stage = dash(shown(a.Phase))
				if a.Status.Error != "" {
					last = oneLine(a.Status.Error)
				}
			}
			s := a.Status
			pct, down, up, peers = fmt.Sprintf("%.1f%%", s.Percent), fmtRate(float64(s.DownRate)), fmtRate(float64(s.UpRate)), strconv.Itoa(s.Peers)
			if s.ETA > 0 {
				eta = (time.Duration(s.ETA) * time.Second).String()
			}
			// An agent gone while its machine should be at work says why
			// the machine is stuck; after done or failed it goes anyway.
			if a.State != api.MemberAlive && stage != api.StageDone && stage != api.StageFailed {
				stage += " (agent " + shown(a.State) + ")"
			}
		}
		cols := ""
		switch {
		case m.agent != nil && m.agent.Status.Sync:
			s := m.agent.Status
			cols = fmt.Sprintf("%d\t%d\t%d\t", s.ChunksLocal, s.ChunksFetched, s.FilesRemoved)
		case syncing && m.agent != nil:
			cols = fmt.Sprintf("-\t%d\t-\t", m.agent.Status.ChunksFetched)
		case syncing:
			cols = "-\t-\t-\t"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s%s\t%s\t%s\t%s\t%s\n", mac, host, ip, next, stage, pct, cols, down, up, peers, eta, last)
	}
	tw.Flush()
}

// lastHeard says what was last heard of b, and when: the failure, else its
// last clone report or network-boot event, whichever is later.
func lastHeard(b *api.BootHost, now time.Time) string {
	if b.Stage == api.StageFailed {
		return oneLine(b.Step + " failed: " + b.Error)
	}
	var what string
	var at time.Time
	if n := len(b.Clone); n > 0 {
		r := b.Clone[n-1]
		what, at = "clone "+r.Step+" "+r.State, r.Time
		// How this clone goes: a sync or a full clone and why, and what
		// the sync did (the clone's reports since its identify step).
		for i := n - 1; i >= 0; i-- {
			if d := b.Clone[i].Detail; d != "" {
				what += ": " + d
				break
			}
			if b.Clone[i].Step == "identify" {
				break
			}
		}
	}
	if n := len(b.Events); n > 0 && !b.Events[n-1].Time.Before(at) {
		e := b.Events[n-1]
		what, at = e.Kind+" "+e.Detail, e.Time
	}
	if what == "" {
		return "-"
	}
	return fmt.Sprintf("%s (%s ago)", oneLine(what), now.Sub(at).Round(time.Second))
}

// oneLine is s, from the print server, on one line of at most 80 bytes
// of printable text.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(shownLong(s)), " ")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

// stageCounts counts the machines of boot by stage, in stage order.
func stageCounts(boot []api.BootHost) string {
	n := map[string]int{}
	for _, b := range boot {
		n[b.Stage]++
	}
	var parts []string
	for _, st := range []string{api.StageBooted, api.StageIdentified, api.StageDownloading, api.StageConfigured, api.StageDone, api.StageFailed, ""} {
		if n[st] == 0 {
			continue
		}
		name := st
		if st == "" {
			name = "not heard of"
		}
		parts = append(parts, fmt.Sprintf("%d %s", n[st], name))
	}
	return strings.Join(parts, ", ")
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
