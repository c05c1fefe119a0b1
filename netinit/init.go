package netinit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labseed/labseed/clone"
	"github.com/labseed/labseed/keys"
	"github.com/labseed/labseed/peer"
)

// Options are the labseed.* options of the kernel command line.
type Options struct {
	Server, Image, Disk string
	// Shell opens a shell on the console after a failure instead of
	// retrying after Retry.
	Shell bool
	Retry time.Duration
	// Linger is clone.Config.Linger (0: the default).
	Linger time.Duration
	// BootMAC is the MAC the machine booted from (BOOTIF=), "" if not given.
	BootMAC string
	Verbose bool
}

// Kernel command line parameters, as the print server's boot menu and
// lab.conf's boot_args write them.
const (
	ParamOnFailure = "labseed.on_failure" // retry (default) or shell
	ParamRetry     = "labseed.retry"      // seconds before a retry
	ParamLinger    = "labseed.linger"     // Go duration
	ParamVerbose   = "labseed.verbose"    // the clone's log on the console
)

// DefaultRetry is the pause before a failed clone is tried again.
const DefaultRetry = 60 * time.Second

// ParseOptions reads the options from the kernel command line's
// parameters. A bad value is an error that names it.
func ParseOptions(params map[string]string) (Options, error) {
	o := Options{
		Server: params[clone.ParamServer], Image: params[clone.ParamImage],
		Disk: params[clone.ParamDisk], Retry: DefaultRetry,
	}
	if o.Disk == "" {
		o.Disk = clone.DiskAuto
	}
	var errs []error
	switch v := params[ParamOnFailure]; v {
	case "", "retry":
	case "shell":
		o.Shell = true
	default:
		errs = append(errs, fmt.Errorf("%s=%q: say retry or shell", ParamOnFailure, v))
	}
	if v, ok := params[ParamRetry]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 86400 {
			errs = append(errs, fmt.Errorf("%s=%q: give seconds, 1 to 86400", ParamRetry, v))
		} else {
			o.Retry = time.Duration(n) * time.Second
		}
	}
	if v, ok := params[ParamLinger]; ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: give a duration such as 10m", ParamLinger, v))
		} else {
			o.Linger = d
		}
	}
	if v, ok := params["BOOTIF"]; ok {
		if t, mac, ok := strings.Cut(v, "-"); ok && t == "01" {
			o.BootMAC = strings.ReplaceAll(strings.ToLower(mac), "-", ":")
		}
	}
	_, o.Verbose = params[ParamVerbose]
	if o.Verbose && params[ParamVerbose] == "0" {
		o.Verbose = false
	}
	if o.Server == "" {
		errs = append(errs, fmt.Errorf("no %s= on the kernel command line: the print server's boot menu gives it; booted by hand, add %s=HOST", clone.ParamServer, clone.ParamServer))
	}
	return o, errors.Join(errs...)
}

// Config configures Run. Zero values mean the defaults of a real clone
// environment; tests replace the seams.
type Config struct {
	// Console is where everything for the person at the machine goes;
	// default every console the kernel writes to.
	Console io.Writer
	// KeysDir holds image.pub and lab.key; default /etc/labseed/keys.
	KeysDir string
	// CmdlinePath is the kernel command line; default /proc/cmdline.
	CmdlinePath string
	// LogFile receives the clone's whole log (the console gets its
	// warnings); default /run/labseed.log.
	LogFile string
	// Setup prepares the system (mounts, modules, network); default the
	// real one (PID 1 only). It returns what it wants said.
	Setup func(ctx context.Context, o Options, say func(string, ...any)) error
	// Clone runs the clone; default clone.Run.
	Clone func(context.Context, clone.Config) error
	// Shell runs a shell on the console until it exits; default busybox
	// sh on /dev/console. nil from the default when there is no shell.
	Shell func(ctx context.Context) error
	// Wait waits d after a failure, or less if the person at the console
	// asks for a shell (it then returns true); default: reads the console.
	Wait func(ctx context.Context, d time.Duration) (shell bool)
	// Attempts stops Run after that many failed attempts (tests); 0: never.
	Attempts int
}

// Run is the clone environment: it sets the system up, runs the clone,
// and after a failure says what happened and what to do, then tries again
// (after a pause, or after a shell on the console). It returns only when
// ctx ends, after Attempts failures, or if the clone returns without
// rebooting (clone.Config.NoReboot).
func Run(ctx context.Context, cfg Config) error {
	if cfg.Console == nil {
		cfg.Console = consoles()
	}
	if cfg.KeysDir == "" {
		cfg.KeysDir = keys.DefaultDir
	}
	if cfg.CmdlinePath == "" {
		cfg.CmdlinePath = "/proc/cmdline"
	}
	if cfg.LogFile == "" {
		cfg.LogFile = "/run/labseed.log"
	}
	if cfg.Setup == nil {
		cfg.Setup = setup
	}
	if cfg.Clone == nil {
		cfg.Clone = clone.Run
	}
	if cfg.Shell == nil {
		cfg.Shell = shell
	}
	if cfg.Wait == nil {
		cfg.Wait = waitConsole
	}
	say := func(format string, args ...any) {
		fmt.Fprintf(cfg.Console, "labseed: "+format+"\n", args...)
	}
	say("clone environment %s", banner())
	var lastErr error
	for attempt := 1; ; attempt++ {
		shellNow := false
		err := attemptOnce(ctx, cfg, say, &shellNow)
		if err == nil {
			return nil
		}
		lastErr = err
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if cfg.Attempts > 0 && attempt >= cfg.Attempts {
			return lastErr
		}
		if shellNow {
			say("opening a shell on the console; exit it to try again (the log is %s)", cfg.LogFile)
			if err := cfg.Shell(ctx); err != nil {
				say("no shell (%v): trying again in %s", err, DefaultRetry)
				cfg.Wait(ctx, DefaultRetry)
			}
		}
	}
}

// attemptOnce runs one try and, when it fails, says so and waits as the
// options say; *shellNow asks the caller for a shell.
func attemptOnce(ctx context.Context, cfg Config, say func(string, ...any), shellNow *bool) (err error) {
	defer func() {
		if r := recover(); r != nil { // PID 1 must not die: a panic is one more failure
			err = fmt.Errorf("internal error: %v", r)
			say("FAILED: %v", err)
			say("trying again in %s (press Enter for a shell)", DefaultRetry)
			*shellNow = cfg.Wait(ctx, DefaultRetry)
		}
	}()
	b, rerr := os.ReadFile(cfg.CmdlinePath)
	if rerr != nil {
		say("cannot read the kernel command line: %v", rerr)
	}
	params := clone.ParseCmdline(string(b))
	o, oerr := ParseOptions(params)
	fail := func(err error, what string) error {
		say("FAILED: %v", err)
		if what != "" {
			say("what to do: %s", what)
		}
		if o.Shell {
			*shellNow = true
			return err
		}
		say("trying again in %s (press Enter for a shell)", o.Retry)
		*shellNow = cfg.Wait(ctx, o.Retry)
		return err
	}
	if oerr != nil {
		if o.Retry == 0 {
			o.Retry = DefaultRetry
		}
		return fail(oerr, "fix the boot menu's kernel command line (lab.conf boot_args) and boot again")
	}
	if err := cfg.Setup(ctx, o, say); err != nil {
		return fail(err, "")
	}
	ccfg, closeLog, err := cloneConfig(cfg, o)
	if err != nil {
		return fail(err, "build the clone environment again on the print server: labseed netboot build")
	}
	say("cloning: print server %s, disk %s", o.Server, o.Disk)
	err = cfg.Clone(ctx, ccfg)
	closeLog()
	if err != nil {
		// clone has said what failed and reported it to the print server.
		return fail(err, "the error above says what failed; the print server shows it in 'labseed status'")
	}
	return nil
}

// cloneConfig is the clone's configuration from the options.
func cloneConfig(cfg Config, o Options) (c clone.Config, closeLog func(), err error) {
	closeLog = func() {}
	c = clone.Config{
		Config:  peer.Config{Server: o.Server, Image: o.Image, Linger: o.Linger, Progress: progress(cfg.Console)},
		Disk:    o.Disk,
		Console: cfg.Console, CmdlinePath: cfg.CmdlinePath,
	}
	ks, err := keys.ReadWorkstation(cfg.KeysDir)
	if err != nil {
		return c, closeLog, err
	}
	c.PublicKey, c.LabKey, c.IdentityKey = ks.PublicKey, ks.LabKey, ks.IdentityKey
	level := slog.LevelWarn
	if o.Verbose {
		level = slog.LevelInfo
	}
	var w io.Writer = cfg.Console
	if f, err := os.OpenFile(cfg.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
		w = &levelTee{file: f, console: cfg.Console, verbose: o.Verbose}
		level = slog.LevelInfo
		closeLog = func() { f.Close() }
	}
	c.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
	return c, closeLog, nil
}

// levelTee writes every log line to the file and, when verbose or for
// warnings and errors, to the console.
type levelTee struct {
	file    io.Writer
	console io.Writer
	verbose bool
}

func (t *levelTee) Write(p []byte) (int, error) {
	t.file.Write(p)
	if t.verbose || strings.Contains(string(p), "level=WARN") || strings.Contains(string(p), "level=ERROR") {
		t.console.Write(p)
	}
	return len(p), nil
}

// progress prints the download's progress on the console: a line every
// 10 s and at every phase change (a console is no terminal to redraw).
func progress(w io.Writer) func(peer.Progress) {
	var mu sync.Mutex
	var last time.Time
	var phase string
	return func(p peer.Progress) {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(last) < 10*time.Second && p.Phase.String() == phase {
			return
		}
		last, phase = time.Now(), p.Phase.String()
		line := fmt.Sprintf("labseed: %s %s %.1f%%, chunks %d/%d, %.1f Mbit/s, %d peers",
			p.Image, p.Phase, p.Percent, p.Chunks, p.ChunksTotal, p.DownRate*8/1e6, p.Peers)
		if p.ETA > 0 {
			line += ", ETA " + p.ETA.Round(time.Second).String()
		}
		fmt.Fprintln(w, line)
	}
}
