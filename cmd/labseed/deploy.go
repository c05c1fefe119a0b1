package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/labseed/labseed/api"
	"golang.org/x/term"
)

var deployCmd = &command{
	name: "deploy",
	usage: "[--server HOST] --image NAME (--all | MAC... | --file FILE | --group GROUP) [--wave N] [--wave-timeout D] [--wake-tries N] [--at TIME] [--detach] [--store DIR | --admin-key FILE]\n" +
		"       labseed deploy status [--server HOST] [--json]\n" +
		"       labseed deploy cancel [--server HOST] [--store DIR | --admin-key FILE]",
	summary: `Re-image machines with nobody at the desks: mark, wake in waves, follow, report.
The print server runs the deploy, not this command: it marks the machines to
be re-imaged with the image at their next network boot, then wakes them
with Wake-on-LAN in waves: at most --wave machines are woken but not yet
booted at any moment (a machine counts as booted at its first network-boot
event or clone report). A machine not heard of within --wave-timeout is
woken again, up to --wake-tries times, then counted "never booted". The
deploy is kept in the store: a restart of 'labseed serve' goes on from
where it was, and Ctrl-C, a closed laptop or --detach leave it running.
This command follows it live (the lab table and a deploy line) and ends
with a summary per machine: done, failed (the step and its error), or never
booted (with the likely causes). Its exit status is 0 only when every
machine is done. Running the same command again follows the running deploy.
  status   the current deploy (or the last one): its machines, or the summary
           once it ended; --json prints the print server's answer. Its exit
           status is 1 for a deploy that ended with a machine not done.
  cancel   stop it: the machines not booted yet go back to booting their
           disk; those already cloning finish.
--at starts it later: 22:00 (today, or tomorrow once past), "2025-03-01 22:00"
or RFC 3339, in this machine's time zone. Starting and cancelling need the
admin key, as 'labseed hosts next-boot' does (--store on the print server,
else --admin-key FILE, $LABSEED_ADMIN_KEY or ~/.config/labseed/admin.key).
The machines' firmware needs Wake-on-LAN on and network boot first (README).`,
	example: `labseed deploy --image lab1 --all
labseed deploy --server 10.1.0.1 --image lab1 --group b104 --wave 20 --at 22:00 --detach
labseed deploy status --server 10.1.0.1
labseed deploy cancel --server 10.1.0.1`,
	run: func(ctx context.Context, fs *flag.FlagSet, args []string) error {
		sub := ""
		if len(args) > 0 && (args[0] == "status" || args[0] == "cancel") {
			sub, args = args[0], args[1:]
		}
		server := fs.String("server", "127.0.0.1", "print server `HOST[:PORT]` (port "+strconv.Itoa(api.DefaultPort)+" by default)")
		adminKey := addAdminKeyFlags(fs)
		switch sub {
		case "status":
			asJSON := fs.Bool("json", false, "print the deploy as JSON, every machine with its state")
			if err := parse(fs, args, 0, 0); err != nil {
				return err
			}
			return deployStatus(ctx, api.NewClient(*server), *asJSON)
		case "cancel":
			if err := parse(fs, args, 0, 0); err != nil {
				return err
			}
			key, err := adminKey.read()
			if err != nil {
				return err
			}
			c := api.NewClient(*server)
			c.Auth = api.AdminAuth(key)
			d, err := c.CancelDeploy(ctx)
			if err != nil {
				return err
			}
			fmt.Printf("deploy %s of %s cancelled: %d machines not booted yet will boot their disk; %d booted go on cloning\n",
				shown(d.ID), shown(d.Image), d.Counts.Cancelled, d.Counts.Booted+d.Counts.Cloning)
			return nil
		}
		image := fs.String("image", "", "the image `NAME` to install ('labseed images' lists them)")
		selFlags := addSelectionFlags(fs, "the machines to re-image")
		wave := fs.Int("wave", 10, "at most `N` machines woken but not yet booted at once")
		waveTimeout := fs.Duration("wave-timeout", 90*time.Second, "wake a machine again when not heard of within `D`")
		wakeTries := fs.Int("wake-tries", 3, "wake a machine at most `N` times, then count it never booted")
		at := fs.String("at", "", "start at `TIME`: 22:00, \"2025-03-01 22:00\" or RFC 3339 (default now)")
		detach := fs.Bool("detach", false, "start the deploy and return at once (labseed deploy status follows it)")
		operands, err := parseInterleaved(fs, args)
		if err != nil {
			return err
		}
		if *image == "" {
			return fmt.Errorf("which image? give --image NAME: %w", errUsage)
		}
		sel, err := selFlags.parse(operands)
		if err != nil {
			return err
		}
		if *wave < 1 || *wakeTries < 1 || *waveTimeout < time.Second {
			return fmt.Errorf("--wave and --wake-tries must be at least 1, --wave-timeout at least 1s: %w", errUsage)
		}
		req := api.DeployRequest{Image: *image, MACs: sel.macs, All: sel.all, Group: sel.group,
			Wave: *wave, WaveTimeout: waveTimeout.Seconds(), WakeTries: *wakeTries}
		if *at != "" {
			if req.At, err = parseAt(*at, time.Now()); err != nil {
				return err
			}
		}
		key, err := adminKey.read()
		if err != nil {
			return err
		}
		c := api.NewClient(*server)
		c.Auth = api.AdminAuth(key)
		d, err := c.StartDeploy(ctx, req)
		if err != nil {
			return err
		}
		if d.Attached {
			fmt.Printf("the same deploy runs already (%s, since %s): following it\n", shown(d.ID), d.Created.Local().Format("15:04:05"))
		} else {
			fmt.Printf("deploy %s: %s onto %d machines, waves of %d, woken again after %s up to %d times\n",
				shown(d.ID), shown(d.Image), len(d.Machines), d.Wave, time.Duration(d.WaveTimeout*float64(time.Second)), d.WakeTries)
		}
		if *detach {
			fmt.Printf("it runs on the print server: 'labseed deploy status --server %s' shows it\n", *server)
			return nil
		}
		c.Auth = nil
		return followDeploy(ctx, c, *server)
	},
}

// parseAt reads --at as a time in this machine's time zone: "HH:MM" (the
// next such time from now), "YYYY-MM-DD HH:MM" or RFC 3339.
func parseAt(s string, now time.Time) (time.Time, error) {
	for _, layout := range []string{"15:04", "15:04:05"} {
		if t, err := time.ParseInLocation(layout, s, now.Location()); err == nil {
			at := time.Date(now.Year(), now.Month(), now.Day(), t.Hour(), t.Minute(), t.Second(), 0, now.Location())
			if !at.After(now) {
				at = at.AddDate(0, 0, 1)
			}
			return at, nil
		}
	}
	for _, layout := range []string{"2006-01-02 15:04", "2006-01-02 15:04:05", "2006-01-02T15:04"} {
		if t, err := time.ParseInLocation(layout, s, now.Location()); err == nil {
			return t, nil
		}
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--at %q: give 22:00, \"2025-03-01 22:00\" or an RFC 3339 time", s)
}

// errNotAllDone is the error of a deploy that ended with a machine not
// done: the exit status is 1, the summary has said why.
var errNotAllDone = errors.New("not every machine was re-imaged (see the summary above)")

// followDeploy shows the deploy live until it ends, then its summary. On
// a terminal the lab table and the deploy line are redrawn every 2 s;
// otherwise the deploy line is printed when it changes.
func followDeploy(ctx context.Context, c *api.Client, server string) error {
	tty := term.IsTerminal(int(os.Stdout.Fd()))
	last := ""
	for {
		d, err := c.Deploy(ctx)
		if ctx.Err() != nil {
			return fmt.Errorf("stopped following; the deploy goes on on the print server ('labseed deploy status --server %s' shows it)", server)
		}
		if err != nil {
			// The print server may be restarting: it goes on from where
			// it was.
			fmt.Fprintf(os.Stderr, "labseed deploy: %v (trying again)\n", err)
		} else if d.Over() {
			if tty {
				fmt.Print("\033[H\033[2J")
			}
			printDeploySummary(os.Stdout, d, time.Now())
			if !allDone(d) {
				return errNotAllDone
			}
			return nil
		} else if tty {
			if ls, err := c.Status(ctx); err == nil {
				fmt.Print("\033[H\033[2J")
				printMachines(os.Stdout, machineRows(ls.Boot, ls.Hosts), ls.Time)
				fmt.Println(deployLine(d, time.Now()))
			}
		} else if line := deployLine(d, time.Time{}); line != last {
			fmt.Println(time.Now().Format("15:04:05"), line)
			last = line
		}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}

// allDone reports whether every machine of d is done.
func allDone(d *api.Deploy) bool {
	return d.State == api.DeployFinished && d.Counts.Done == machinesOf(d) && d.Counts.Done > 0
}

// machinesOf counts the machines of d (in the lab status, d has only the
// counts).
func machinesOf(d *api.Deploy) int {
	n := d.Counts
	return n.Waiting + n.Woken + n.Booted + n.Cloning + n.Done + n.Failed + n.NeverBooted + n.Cancelled
}

// deployStatus prints the current or last deploy.
func deployStatus(ctx context.Context, c *api.Client, asJSON bool) error {
	d, err := c.Deploy(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", " ")
		enc.Encode(d)
	} else if d.Over() {
		printDeploySummary(os.Stdout, d, time.Now())
	} else {
		fmt.Println(deployLine(d, time.Now()))
		printDeployMachines(os.Stdout, d, time.Now())
	}
	if d.Over() && !allDone(d) {
		return errNotAllDone
	}
	return nil
}

// deployLine is the one line of a deploy: its state and its machines by
// state. now, when not zero, adds how long it has been running.
func deployLine(d *api.Deploy, now time.Time) string {
	n := d.Counts
	var b strings.Builder
	fmt.Fprintf(&b, "deploy %s of %s: %s", shown(d.ID), shown(d.Image), shown(d.State))
	switch {
	case d.State == api.DeployScheduled:
		fmt.Fprintf(&b, " for %s", d.At.Local().Format("2006-01-02 15:04"))
		if !now.IsZero() {
			fmt.Fprintf(&b, " (in %s)", d.At.Sub(now).Round(time.Minute))
		}
		fmt.Fprintf(&b, ", %d machines", machinesOf(d))
		return b.String()
	case !now.IsZero() && !d.Started.IsZero() && d.Ended.IsZero():
		fmt.Fprintf(&b, " %s", now.Sub(d.Started).Round(time.Second))
	}
	fmt.Fprintf(&b, ": %d waiting, %d woken, %d booted, %d cloning, %d done, %d failed, %d never booted",
		n.Waiting, n.Woken, n.Booted, n.Cloning, n.Done, n.Failed, n.NeverBooted)
	if n.Cancelled > 0 {
		fmt.Fprintf(&b, ", %d cancelled", n.Cancelled)
	}
	fmt.Fprintf(&b, " (waves of %d)", d.Wave)
	if d.WakeError != "" {
		fmt.Fprintf(&b, "; the last wake failed: %s", oneLine(d.WakeError))
	}
	return b.String()
}

// printDeployMachines prints the machines of a running deploy.
func printDeployMachines(w io.Writer, d *api.Deploy, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "MAC\tHOST\tSTATE\tWOKEN\tSINCE")
	for _, m := range d.Machines {
		since := "-"
		switch {
		case !m.Ended.IsZero():
			since = m.Ended.Local().Format("15:04:05")
		case !m.Booted.IsZero():
			since = m.Booted.Local().Format("15:04:05")
		case !m.LastWoken.IsZero():
			since = m.LastWoken.Local().Format("15:04:05")
		}
		state := shown(m.State)
		if m.State == api.MachineFailed {
			state += ": " + oneLine(m.Step+": "+m.Error)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", shown(m.MAC), dash(shown(m.Hostname)), state, m.Woken, since)
	}
	tw.Flush()
}

// The likely causes of a machine that never booted, as the summary says
// them.
const neverBootedCauses = "switched off at the wall (or the power strip), Wake-on-LAN off in its firmware, " +
	"or already running an operating system (a magic packet does not restart a running machine)"

// printDeploySummary prints the end of a deploy: a line, then each machine
// with its result and what it means.
func printDeploySummary(w io.Writer, d *api.Deploy, now time.Time) {
	n := d.Counts
	took := ""
	if !d.Started.IsZero() && !d.Ended.IsZero() {
		took = " in " + d.Ended.Sub(d.Started).Round(time.Second).String()
	}
	fmt.Fprintf(w, "deploy %s of %s %s%s: %d of %d machines done, %d failed, %d never booted",
		shown(d.ID), shown(d.Image), shown(d.State), took, n.Done, machinesOf(d), n.Failed, n.NeverBooted)
	if n.Cancelled > 0 {
		fmt.Fprintf(w, ", %d cancelled", n.Cancelled)
	}
	fmt.Fprintln(w)
	if d.Error != "" {
		fmt.Fprintln(w, "it could not start:", oneLine(d.Error))
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "MAC\tHOST\tRESULT\tDETAIL")
	for _, m := range d.Machines {
		detail := ""
		switch m.State {
		case api.MachineDone:
			if !m.Ended.IsZero() && !m.FirstWoken.IsZero() {
				detail = fmt.Sprintf("in %s from its first wake", m.Ended.Sub(m.FirstWoken).Round(time.Second))
			} else if !m.Ended.IsZero() && !m.Booted.IsZero() {
				detail = fmt.Sprintf("in %s from its boot", m.Ended.Sub(m.Booted).Round(time.Second))
			}
		case api.MachineFailed:
			detail = oneLine("step " + m.Step + ": " + m.Error)
		case api.MachineNeverBooted:
			detail = fmt.Sprintf("woken %d times, never heard of", m.Woken)
		case api.MachineCancelled:
			detail = "not woken (or not booted) when the deploy was cancelled"
		default:
			detail = "was " + shown(m.State) + " when the deploy ended"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", shown(m.MAC), dash(shown(m.Hostname)), shown(strings.ReplaceAll(m.State, "-", " ")), detail)
	}
	tw.Flush()
	if n.NeverBooted > 0 {
		fmt.Fprintln(w, "never booted: the likely causes are, in order:", neverBootedCauses+".",
			"These machines are still marked for a clone: they re-image at their next network boot",
			"('labseed hosts next-boot local MAC...' undoes it).")
	}
	if n.Failed > 0 {
		fmt.Fprintln(w, "failed: the clone stopped at that step; the machine's screen shows the error, and the clone environment tries again after 60 s (on_failure = retry)."+
			" 'labseed status' shows it if it does.")
	}
}
