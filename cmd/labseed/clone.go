package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/clone"
	"github.com/labseed/labseed/keys"
	"github.com/labseed/labseed/peer"
)

var cloneCmd = &command{
	name:  "clone",
	usage: "--disk /dev/sdX|auto [--server HOST[:PORT]] [--keys DIR] [--partition] [--full] [--no-reboot]",
	summary: `Re-image this workstation's disk as this machine and reboot into it.
Run from the network-booted clone environment. It finds the print server
(--server, or labseed.server= on the kernel command line), asks it who this
machine is by its MACs (the hosts table: host name, address, printer...),
partitions the disk with the lab's layout (with --partition, or when it has
no partition table; otherwise its Linux and swap partitions are reused),
makes the file systems, fetches the image from the lab's swarm into them
(a root file system that checks clean and holds an image labseed installed
is synced instead: made exactly the new image, only the chunks its disk
lacks fetched, only what differs written; --full, or labseed.full on the
kernel command line, formats it anyway),
writes the host's configuration (hostname, hosts, network, printcap, fstab,
machine-id, SSH host keys, the lab's templates), runs the lab's hooks,
installs the bootloader, unmounts everything and reports each step to the
print server ('labseed hosts list'). A failed clone leaves nothing mounted
and does not reboot: run the same command again.`,
	example: `labseed clone --disk /dev/sda --server 10.1.0.1
labseed clone --disk /dev/nvme0n1 --partition --no-reboot`,
	run: func(ctx context.Context, fs *flag.FlagSet, args []string) error {
		var cfg clone.Config
		var keyDir, macs string
		var verbose bool
		fs.StringVar(&cfg.Disk, "disk", "", "the whole `DISK` to re-image, e.g. /dev/sda; auto: the machine's only fixed disk")
		fs.StringVar(&cfg.Server, "server", "", "print server `HOST[:PORT]` (default labseed.server= of the kernel command line; port "+strconv.Itoa(api.DefaultPort)+")")
		fs.StringVar(&keyDir, "keys", keys.DefaultDir, "`DIR` with image.pub and lab.key from 'labseed keys export'")
		fs.BoolVar(&cfg.Partition, "partition", false, "write the lab's partition layout even if the disk has a partition table")
		fs.BoolVar(&cfg.Full, "full", false, "format the root file system even when it holds an image labseed installed (which is otherwise synced)")
		fs.StringVar(&cfg.Image, "image", "", "image `NAME` (default labseed.image= of the kernel command line, then the host's in the hosts table, then the only one)")
		fs.StringVar(&cfg.Mountpoint, "mountpoint", clone.DefaultMountpoint, "`DIR` to mount the new system on")
		fs.BoolVar(&cfg.NoReboot, "no-reboot", false, "do not reboot after a successful clone")
		fs.DurationVar(&cfg.Linger, "linger", peer.DefaultLinger, "keep seeding up to `DURATION` for the rest of the lab once the image is in (0: do not)")
		fs.StringVar(&macs, "mac", "", "this machine's `MACs`, comma-separated, the boot one first (default: its interfaces')")
		fs.BoolVar(&cfg.Insecure, "insecure", false, "run without keys: no signature check, unencrypted gossip")
		fs.BoolVar(&cfg.Local, "local", false, "fast gossip timers for a lab on one machine (tests)")
		fs.BoolVar(&verbose, "v", false, "log debug detail")
		if err := parse(fs, args, 0, 0); err != nil {
			return err
		}
		if cfg.Disk == "" {
			return errUsage
		}
		if macs != "" {
			cfg.MACs = strings.Split(macs, ",")
		}
		if !cfg.Insecure {
			w, err := keys.ReadWorkstation(keyDir)
			if err != nil {
				return err
			}
			cfg.PublicKey, cfg.LabKey, cfg.IdentityKey = w.PublicKey, w.LabKey, w.IdentityKey
		}
		if cfg.Linger == 0 {
			cfg.Linger = -1 // --linger 0: not at all
		}
		cfg.Logger = logger(verbose)
		cfg.Console = os.Stdout
		cfg.Progress = progressPrinter()
		limitMemory(workstationMemory)
		err := clone.Run(ctx, cfg)
		if errors.Is(err, context.Canceled) {
			return fmt.Errorf("interrupted (nothing is left mounted); run the same command again: %w", err)
		}
		return err
	},
}
