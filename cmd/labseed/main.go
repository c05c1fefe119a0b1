// Command labseed re-images computer labs: a print server seeds a master image
// and the workstations fetch it in chunks from it and from each other.
// Run "labseed help" for the commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/labseed/labseed/store"
)

// command is one labseed subcommand.
type command struct {
	name    string
	summary string
	usage   string // arguments after the command name
	example string
	// run parses args with fs (already holding the common flags) and runs.
	run func(ctx context.Context, fs *flag.FlagSet, args []string) error
}

var commands = []*command{
	publishCmd,
	imagesCmd,
	verifyCmd,
	extractCmd,
	keysCmd,
	hostsCmd,
	wakeCmd,
	deployCmd,
	cloneCmd,
	serveCmd,
	peerCmd,
	statusCmd,
	dashboardCmd,
	demoCmd,
	netbootCmd,
}

const defaultStore = "/var/lib/labseed"

// isHelp reports whether arg asks for the help (where a command with
// subcommands expects one): the help then shows its flags too.
func isHelp(arg string) bool { return arg == "-h" || arg == "-help" || arg == "--help" }

// openExistingStore opens the store in dir for a command that reads it
// (images, extract, verify, netboot build): a directory that is not there
// is refused, not made (a mistyped --store would be a new, empty store
// with keys of its own).
func openExistingStore(dir string) (*store.Store, error) {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("no image store in %s: give the print server's store with --store (default %s); 'labseed publish' or 'labseed serve' makes one", dir, defaultStore)
	}
	return store.Open(dir)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first Ctrl-C (or SIGTERM) stops the command cleanly; a second
	// one, if that takes too long, kills it as without labseed's handler.
	context.AfterFunc(ctx, stop)
	// LABSEED_CPUPROFILE=FILE writes a CPU profile (go tool pprof) of this
	// process: how the figures in docs/BENCHMARKS.md were explained. "%p"
	// in FILE is replaced by the process ID and "%c" by the command, so
	// that every process of a demo or a lab bench writes its own
	// (LABSEED_MEMPROFILE too).
	if f := profilePath("LABSEED_CPUPROFILE"); f != "" {
		if out, err := os.Create(f); err == nil {
			pprof.StartCPUProfile(out)
			defer pprof.StopCPUProfile()
		}
	}
	err := run(ctx, os.Args[1:])
	stop()
	pprof.StopCPUProfile()
	if f := profilePath("LABSEED_MEMPROFILE"); f != "" {
		if out, err := os.Create(f); err == nil {
			pprof.Lookup("allocs").WriteTo(out, 0)
			out.Close()
		}
	}
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "labseed:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

func run(ctx context.Context, args []string) error {
	// In the clone environment labseed is also /init (PID 1) and the
	// kernel's /sbin/modprobe (labseed netboot build makes the links).
	switch filepath.Base(os.Args[0]) {
	case "init":
		if os.Getpid() == 1 {
			args = []string{"netboot", "init"}
		}
	case "modprobe":
		args = append([]string{"netboot", "modprobe"}, args...)
	}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			if c := find(args[1]); c != nil {
				return runCommand(ctx, c, []string{"--help"})
			}
		}
		usage(os.Stdout)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	c := find(args[0])
	if c == nil {
		fmt.Fprintf(os.Stderr, "labseed: unknown command %q\n\n", args[0])
		usage(os.Stderr)
		return errUsage
	}
	return runCommand(ctx, c, args[1:])
}

func find(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func runCommand(ctx context.Context, c *command, args []string) error {
	fs := flag.NewFlagSet("labseed "+c.name, flag.ContinueOnError)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "usage: labseed %s %s\n\n%s\n", c.name, c.usage, c.summary)
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintf(out, "\nflags:\n")
			fs.PrintDefaults()
		}
		fmt.Fprintf(out, "\nexample:\n%s\n", indent(c.example))
	}
	err := c.run(ctx, fs, args)
	if errors.Is(err, errUsage) {
		fs.Usage()
	}
	return err
}

func usage(w io.Writer) {
	fmt.Fprint(w, `labseed re-images whole computer labs. The print server of each lab seeds a
master image; network-booted workstations fetch it in chunks from the print
server and from each other, extracting each chunk while the rest downloads.

usage: labseed COMMAND [flags] [args]

commands:
`)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, firstLine(c.summary))
	}
	tw.Flush()
	fmt.Fprint(w, `
A lab, on the print server:
  labseed publish --name lab1 /srv/images/lab1.tar.gz
  labseed netboot build                             (the clone environment, from the image's kernel)
  labseed serve --listen 10.1.0.1 --pxe proxy --image lab1
  labseed hosts import lab1.csv                     (or let the machines enrol themselves)
  labseed deploy --image lab1 --all                 (marks, wakes in waves, follows, reports)
every workstation boots from the network into the clone environment, which runs
  labseed clone --disk auto                         (server from the kernel command line)
and reboots into its new system; watch it with: labseed status --watch
Try it all on this machine first: labseed demo

Run "labseed help COMMAND" for a command's flags and an example.
`)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n  ")
}

// parse parses flags and checks the number of positional arguments.
func parse(fs *flag.FlagSet, args []string, minArgs, maxArgs int) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if n := fs.NArg(); n < minArgs || n > maxArgs {
		return errUsage
	}
	return nil
}

// profilePath returns the profile file named by environment variable env,
// with "%p" replaced by the process ID and "%c" by the command.
func profilePath(env string) string {
	f := os.Getenv(env)
	cmd := "none"
	if len(os.Args) > 1 {
		cmd = os.Args[1]
	}
	return strings.NewReplacer("%p", strconv.Itoa(os.Getpid()), "%c", cmd).Replace(f)
}

// workstationMemory is the soft memory limit of the workstation agent
// (labseed peer, clone, the clone environment's init). Its live heap is
// at most about 80 MiB (the decompressed chunks being applied, 34 MiB at
// most at once unless one larger chunk is applied alone, their
// compressed bytes, the torrent client's buffers, and for an image of a
// hundred thousand directories their names); the peak RSS is the limit
// plus about 25 MiB of the labseed binary's code, under the 192 MiB a
// workstation may take (docs/BENCHMARKS.md).
const workstationMemory = 144 << 20

// limitMemory sets a soft memory limit for the Go heap, unless GOMEMLIMIT is
// set: the garbage collector then works harder instead of letting the
// process grow, which keeps peak memory flat whatever the image size.
func limitMemory(bytes int64) {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(bytes)
	}
}

// logger returns the logger for commands: text to stderr, debug if verbose.
func logger(verbose bool) *slog.Logger {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}
