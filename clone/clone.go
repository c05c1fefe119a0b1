package clone

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/peer"
)

// Config configures a clone. Zero values mean the defaults.
type Config struct {
	// Config configures the agent that fetches the image: see
	// peer.Config for its fields and defaults. The differences:
	//
	//   - Server defaults to the kernel command line's labseed.server=.
	//   - Image defaults to the kernel command line's labseed.image=, then
	//     the host's image in the hosts table (api.Identity.Image), then
	//     the print server's only image.
	//   - PublicKey and LabKey (required unless Insecure, see "labseed
	//     keys export").
	//   - Name defaults to the host's name in the hosts table.
	//   - MAC is the machine's, as its reports name it: leave it empty.
	//   - Target and StateDir are the clone's (the mounted root and the
	//     agent's default staging in it): leave them empty.
	//   - Linger: the configuration and the bootloader are done while the
	//     agent lingers; the disk is unmounted when it returns.
	//   - Progress receives the agent's progress, about once a second,
	//     from a goroutine of the agent's; nil: a line on Console every
	//     10 s.
	//   - Logger also receives the clone's logs and the output of the
	//     commands run.
	//   - HTTPClient defaults to a client with a 30 s timeout.
	peer.Config
	// IdentityKey checks the print server's "who am I" answer when it is
	// not signed with the image key (keys.Workstation.IdentityKey: the
	// identity.pub of a print server that follows another one); nil:
	// PublicKey checks it.
	IdentityKey ed25519.PublicKey
	// Disk is the whole disk to re-image, e.g. /dev/sda; required. A
	// partition or a disk in use is refused. DiskAuto picks the machine's
	// only fixed disk (not removable, USB or virtual) and refuses to
	// guess between several.
	Disk string
	// Partition writes the lab's partition layout (root, then swap) even
	// when the disk has a partition table; without it an existing table
	// is kept and its first Linux and swap partitions are reused.
	Partition bool
	// Full formats the root file system even when it holds an image
	// labseed installed, which is otherwise synced: made exactly the new
	// image, only what differs fetched and written (labseed.full on the
	// kernel command line does the same). A root file system that does
	// not check clean, or holds no record of an image labseed installed,
	// is formatted anyway.
	Full bool
	// MACs are this machine's MAC addresses, the one it boots from first;
	// default those of its network interfaces (BOOTIF= of the kernel
	// command line first, then the interface that routes to the server).
	MACs []string
	// Mountpoint is where the new root file system is mounted; default
	// /mnt/labseed.
	Mountpoint string
	// NoReboot leaves the machine running after a successful clone. (A
	// failed clone never reboots: the error stays on the console.)
	NoReboot bool
	// Console receives one line per step, and the errors, for whoever
	// looks at the machine's screen; nil discards.
	Console io.Writer
	// CmdlinePath is the kernel command line's file; default /proc/cmdline.
	CmdlinePath string
	// Reboot restarts the machine after a successful clone unless
	// NoReboot; default sync(2) then reboot(2).
	Reboot func() error

	// afterFetch, if set, is called with the mount point once the image
	// is in it, before anything configures it: the tests compare the tree
	// with the image there.
	afterFetch func(root string) error
}

// The steps of a clone, as logged, shown and reported to the print server
// (api.Report.Step). A clone goes through them in this order.
const (
	StepNetwork    = "network"    // bring up the network, find the print server
	StepIdentify   = "identify"   // ask the print server who this machine is (a signed answer) and check the image's signed manifest
	StepDisk       = "disk"       // partition, make the file systems, mount the root
	StepFetch      = "fetch"      // download and extract the image (the agent)
	StepMount      = "mount"      // bind /proc, /sys, /dev, /dev/pts; a tmpfs on /run
	StepConfigure  = "configure"  // host name, network, printer, display, fstab, machine-id, SSH keys
	StepHooks      = "hooks"      // the lab's hook scripts, in the chroot
	StepBootloader = "bootloader" // the bootloader, in the chroot
	StepSeed       = "seed"       // wait for the agent, seeding to the rest of the lab
	StepUnmount    = "unmount"    // unmount everything, in reverse order
	StepDone       = "done"       // the final report
)

// StepError is the error of a failed step: Run's error when a clone fails.
type StepError struct {
	Step string // one of the Step constants
	Err  error
}

// Error says the step and why it failed.
func (e *StepError) Error() string { return "clone: " + e.Step + ": " + e.Err.Error() }

// Unwrap returns the step's error.
func (e *StepError) Unwrap() error { return e.Err }

// ErrNoServer is returned when no print server is given and the kernel
// command line names none.
var ErrNoServer = errors.New("clone: no print server: give --server, or boot with labseed.server=HOST on the kernel command line")

// DefaultMountpoint is where the new root is mounted by default.
const DefaultMountpoint = "/mnt/labseed"

// Run re-images cfg.Disk as this machine: it finds the print server, asks
// it who this machine is, partitions and formats the disk, downloads the
// image into it with the lab's swarm, configures the new system as this
// host, installs the bootloader, unmounts everything, reports to the print
// server and reboots. Every step is reported to the print server as it
// starts and when it fails; reports that do not get through are logged and
// do not stop the clone.
//
// Whatever happens, Run leaves nothing mounted, and running it again on the
// same disk works: a root file system holding an interrupted download of
// the same image is kept and the download resumes; anything else is
// formatted again (see the package documentation).
func Run(ctx context.Context, cfg Config) error {
	c, err := newCloner(cfg)
	if err != nil {
		return err
	}
	// A wrong disk is said at once, before the network and the print
	// server are waited for. "auto" is picked in the disk step, whose
	// failure is reported to the print server.
	if c.cfg.Disk != DiskAuto {
		if _, err := openDisk(c.cfg.Disk); err != nil {
			return fmt.Errorf("clone: %w", err)
		}
	}
	return c.run(ctx)
}

// cloner is one Run in progress.
type cloner struct {
	cfg    Config
	log    *slog.Logger
	client *api.Client
	mounts *mounts
	params map[string]string // the kernel command line's

	reportMAC string       // whose clone the reports are about
	id        api.Identity // from the print server
	image     string       // the image's name, "" for the server's only one
	disk      *disk
	sys       *system // the new system, once mounted

	agent    *peer.Agent // fetches the image into the mount point
	agentCfg peer.Config // its configuration
	resolved *peer.Image // the image installed, verified (identify)

	// How the root file system is prepared (the disk step): sync when it
	// holds an image labseed installed (installed, its record), otherwise
	// formatted, for the reason full says ("" when resumed).
	sync      bool
	installed *chunker.Installed
	full      string
	synced    *peer.SyncResult // what the sync did (fetch)

	agentMu   sync.Mutex
	agentDone chan error // the seeding session's result; nil when none runs
	stopAgent context.CancelFunc
	agentErr  error // once received from agentDone
}

func newCloner(cfg Config) (*cloner, error) {
	if cfg.Disk == "" {
		return nil, errors.New("clone: no disk: give the whole disk to re-image, e.g. --disk /dev/sda")
	}
	if !cfg.Insecure && (len(cfg.PublicKey) != ed25519.PublicKeySize || len(cfg.LabKey) != 32) {
		return nil, peer.ErrNoKeys
	}
	if cfg.Target != "" || cfg.StateDir != "" {
		return nil, errors.New("clone: the agent's Target and StateDir are the clone's mounted root: leave them empty (Mountpoint says where the root is mounted)")
	}
	if cfg.Mountpoint == "" {
		cfg.Mountpoint = DefaultMountpoint
	}
	mp, err := filepath.Abs(cfg.Mountpoint)
	if err != nil || mp == "/" {
		return nil, fmt.Errorf("clone: mount point %q: give a directory other than /", cfg.Mountpoint)
	}
	cfg.Mountpoint = mp
	if cfg.CmdlinePath == "" {
		cfg.CmdlinePath = "/proc/cmdline"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Console == nil {
		cfg.Console = io.Discard
	}
	c := &cloner{cfg: cfg, log: log.With("component", "clone")}
	c.mounts = &mounts{log: c.log}
	return c, nil
}

func (c *cloner) run(ctx context.Context) error {
	start := time.Now()
	err := c.steps(ctx)
	if err == nil {
		c.report(ctx, StepUnmount, api.StateRunning, "")
		c.say("unmounting")
	}
	if uerr := c.teardown(err != nil); uerr != nil {
		if err == nil {
			err = c.fail(ctx, StepUnmount, uerr)
		} else {
			c.log.Error("unmount after the failure", "err", uerr)
			err = errors.Join(err, uerr)
		}
	}
	if err != nil {
		c.say("FAILED: %v", err)
		c.say("the disk can be cloned again: run the same command (nothing is left mounted)")
		return err
	}
	how := "full clone"
	switch {
	case c.synced != nil:
		r := c.synced
		how = fmt.Sprintf("synced: %d of %d chunks found on the disk, %d fetched; %d entries unchanged, %d written, %d removed",
			r.Local, r.Chunks, r.Fetched, r.Entries.Unchanged, r.Entries.Written, r.Entries.Removed)
	case c.full != "":
		how = "full clone: " + c.full
	}
	c.reportDetail(ctx, StepDone, api.StateDone, "", how)
	c.log.Info("clone done", "host", c.id.Hostname, "disk", c.cfg.Disk, "seconds", time.Since(start).Seconds(), "how", how)
	c.say("done: %s is %s (%s), in %s; %s", c.cfg.Disk, c.id.Hostname, c.id.IP, time.Since(start).Round(time.Second), how)
	if c.cfg.NoReboot {
		return nil
	}
	c.say("rebooting")
	reboot := c.cfg.Reboot
	if reboot == nil {
		reboot = rebootNow
	}
	if err := reboot(); err != nil {
		return fmt.Errorf("clone: reboot: %w", err)
	}
	return nil
}

// steps runs every step up to the unmount; the first error stops them.
func (c *cloner) steps(ctx context.Context) error {
	steps := []struct {
		name string
		run  func(context.Context) error
	}{
		{StepNetwork, c.network},
		{StepIdentify, c.identify},
		{StepDisk, c.prepareDisk},
		{StepFetch, c.fetch},
		{StepMount, c.mountSystem},
		{StepConfigure, c.configure},
		{StepHooks, c.runHooks},
		{StepBootloader, c.bootloader},
		{StepSeed, c.seed},
	}
	for i, s := range steps {
		c.report(ctx, s.name, api.StateRunning, "")
		c.log.Info("step", "step", s.name)
		c.say("step %d/%d: %s", i+1, len(steps), s.name)
		if err := s.run(ctx); err != nil {
			return c.fail(ctx, s.name, err)
		}
	}
	return nil
}

// fail wraps err as step's error and reports it.
func (c *cloner) fail(ctx context.Context, step string, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("interrupted: %w", err)
	}
	se := &StepError{Step: step, Err: err}
	c.log.Error("step failed", "step", step, "err", err)
	c.report(ctx, step, api.StateFailed, err.Error())
	return se
}

// teardown stops the agent (when the clone failed) or waits for it, then
// unmounts everything. It runs whatever happened before.
func (c *cloner) teardown(failed bool) error {
	if failed {
		c.stopAgentNow()
	}
	c.waitAgent()
	if c.sys != nil {
		c.sys.close()
	}
	return c.mounts.unmountAll()
}

// say writes a line to the console.
func (c *cloner) say(format string, args ...any) {
	fmt.Fprintf(c.cfg.Console, "labseed clone: "+format+"\n", args...)
}

// report sends one step's state to the print server. It never fails the
// clone: a report that does not get through is logged.
func (c *cloner) report(ctx context.Context, step, state, msg string) {
	c.reportDetail(ctx, step, state, msg, "")
}

// reportDetail is report with a detail: what a step that goes well chose
// or did.
func (c *cloner) reportDetail(ctx context.Context, step, state, msg, detail string) {
	if c.client == nil || c.reportMAC == "" {
		return
	}
	const limit = 4000 // the server takes 4096 bytes of error
	if len(msg) > limit {
		msg = msg[:limit] + "..."
	}
	if len(detail) > 1000 {
		detail = detail[:1000] + "..."
	}
	// The done report takes the host off the clone boot: it is tried
	// again for a minute while the print server does not answer (a print
	// server restarting goes on with its deploy, and must hear of it).
	deadline := time.Now().Add(doneReportRetry)
	for {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		err := c.client.Report(rctx, c.reportMAC, api.Report{Step: step, State: state, Error: msg, Time: time.Now(), Detail: detail})
		cancel()
		if err == nil {
			return
		}
		var ae *api.APIError
		if state != api.StateDone || errors.As(err, &ae) || time.Now().After(deadline) {
			c.log.Warn("report to the print server", "step", step, "state", state, "err", err)
			return
		}
		c.log.Info("the print server does not answer: trying the done report again", "err", err)
		time.Sleep(2 * time.Second)
	}
}

// doneReportRetry is how long the done report is tried again while the
// print server does not answer.
const doneReportRetry = time.Minute

// lines turns a command's output into a short excerpt for an error: its
// last few lines.
func lines(out []byte) string {
	s := strings.TrimSpace(string(out))
	if s == "" {
		return ""
	}
	ls := strings.Split(s, "\n")
	if len(ls) > 8 {
		ls = append([]string{"..."}, ls[len(ls)-8:]...)
	}
	return ": " + strings.Join(ls, " / ")
}
