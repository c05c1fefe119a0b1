package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/hosts"
	"github.com/labseed/labseed/internal/atomicfile"
)

var hostsCmd = &command{
	name:  "hosts",
	usage: "list|export [FILE]|import FILE|next-boot clone|local (--all | MAC... | --file FILE | --group GROUP) [--server HOST] [--store DIR | --admin-key FILE]",
	summary: `Manage the lab's hosts table on the running print server.
The table maps each machine's MAC to its host name and address (and any
per-host setting: printer_queue, display, image...; see docs/hosts.md). It
lives in the store as hosts.csv, next to the lab settings in lab.conf.
  list                  every host, its next boot, its last clone step and boot event
  export [FILE]         the table as CSV (to stdout, or FILE)
  import FILE           replace the table with FILE ("-": stdin); a table with
                        an error is refused whole, and the error names its line
  next-boot clone|local set what the next network boot of some hosts does:
                        clone re-images them, local boots their disk. A host
                        returns to local by itself once its clone is done.
                        --group names the hosts of a group (hosts.csv's
                        group column: a lab row, a room).
export, import and next-boot need the admin key: on the print server they
read STORE/keys/admin.key; elsewhere give --admin-key FILE (default
$LABSEED_ADMIN_KEY, then ~/.config/labseed/admin.key), a copy made with
'labseed keys admin FILE' on the print server. The workstations' lab.key
gives no right to change anything.`,
	example: `labseed hosts list
labseed hosts import lab1.csv
labseed hosts next-boot clone --all
labseed hosts next-boot clone 52:54:00:12:34:56 52:54:00:12:34:57
labseed hosts next-boot clone --group b104
labseed hosts next-boot local --file broken-ones.txt`,
	run: func(ctx context.Context, fs *flag.FlagSet, args []string) error {
		if len(args) == 0 {
			return errUsage
		}
		sub, args := args[0], args[1:]
		server := fs.String("server", "127.0.0.1", "print server `HOST[:PORT]` (port "+strconv.Itoa(api.DefaultPort)+" by default)")
		adminKey := addAdminKeyFlags(fs)
		selFlags := addSelectionFlags(fs, "next-boot")
		if isHelp(sub) {
			return parse(fs, []string{sub}, 0, 0)
		}
		var boot string
		if sub == "next-boot" {
			if len(args) == 0 || (args[0] != hosts.BootClone && args[0] != hosts.BootLocal) {
				return fmt.Errorf("next-boot: say clone or local first: %w", errUsage)
			}
			boot, args = args[0], args[1:]
		}
		// Flags may come before or after the operands.
		operands, err := parseInterleaved(fs, args)
		if err != nil {
			return err
		}
		c := api.NewClient(*server)
		switch sub {
		case "list":
			if len(operands) != 0 {
				return errUsage
			}
			bh, err := c.Hosts(ctx)
			if err != nil {
				return err
			}
			if len(bh) == 0 {
				fmt.Println("no hosts: import a table with 'labseed hosts import FILE', or let clones enrol themselves (enroll_range in lab.conf)")
				return nil
			}
			printMachines(os.Stdout, machineRows(bh, nil), time.Now())
			return nil
		case "export", "import", "next-boot":
		default:
			return fmt.Errorf("unknown hosts command %q: %w", sub, errUsage)
		}
		key, err := adminKey.read()
		if err != nil {
			return err
		}
		c.Auth = api.AdminAuth(key)
		switch sub {
		case "export":
			if len(operands) > 1 {
				return errUsage
			}
			if len(operands) == 0 || operands[0] == "-" {
				return c.ExportCSV(ctx, os.Stdout)
			}
			return exportTo(ctx, c, operands[0])
		case "import":
			if len(operands) != 1 {
				return errUsage
			}
			var in io.Reader = os.Stdin
			if operands[0] != "-" {
				f, err := os.Open(operands[0])
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			if err := c.ImportCSV(ctx, in); err != nil {
				return fmt.Errorf("%s: %w", operands[0], err)
			}
			bh, err := c.Hosts(ctx)
			if err != nil {
				return err
			}
			fmt.Printf("imported: the table has %d hosts\n", countTable(bh))
			return nil
		default: // next-boot
			sel, err := selFlags.parse(operands)
			if err != nil {
				return fmt.Errorf("next-boot: %w", err)
			}
			n, err := c.SetNextBoot(ctx, api.NextBootRequest{MACs: sel.macs, All: sel.all, Group: sel.group, Boot: boot})
			if err != nil {
				return err
			}
			fmt.Printf("%d hosts will boot %s next\n", n, boot)
			return nil
		}
	},
}

// countTable counts the hosts of the table (those with a host name).
func countTable(bh []api.BootHost) int {
	n := 0
	for _, h := range bh {
		if h.Hostname != "" {
			n++
		}
	}
	return n
}

// exportTo writes the table to name atomically, so an export over the file
// being edited never leaves half a table.
func exportTo(ctx context.Context, c *api.Client, name string) error {
	return atomicfile.WriteFunc(name, 0o644, func(w io.Writer) error { return c.ExportCSV(ctx, w) })
}
