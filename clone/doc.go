// Package clone is the workstation's whole re-imaging run behind
// "labseed clone": from a network-booted system, it re-images a local disk
// as this machine and reboots into it.
//
// Run goes through these steps (the Step constants), each logged, shown on
// Config.Console and reported to the print server (api.Report):
//
//  1. network: find the print server (Config.Server, or labseed.server= on
//     the kernel command line) and, if it cannot be routed to, bring the
//     network up with the system's DHCP client.
//  2. identify: ask the print server who this machine is by its MACs
//     (api.Identity: host name, address, printer, partition sizes,
//     bootloader, the lab's templates and hooks), and which image it gets:
//     the image's signed manifest is fetched and verified
//     (peer.Agent.Resolve) before the disk is touched.
//  3. disk: with Config.Partition, or when the disk has no partition table,
//     write the lab's layout with sfdisk (an MBR: root, then swap; see
//     layoutScript); otherwise keep the table and reuse its first Linux and
//     swap partitions. Make the root file system (ext4 by default) and the
//     swap, and mount the root on Config.Mountpoint.
//  4. fetch: the peer agent fetches the image into the mounted root
//     (peer.Agent.Fetch) until it is extracted; it keeps seeding to the
//     rest of the lab meanwhile.
//  5. mount: bind /proc, /sys, /dev, /dev/pts into the new system, a tmpfs
//     on its /run.
//  6. configure: write the configuration files from templates
//     (TemplateData): hostname, hosts, fstab with the new UUIDs, the network
//     configuration of the system the image uses (ifupdown,
//     systemd-networkd or NetworkManager, detected), printcap, the X
//     display mode; a fresh machine-id and new SSH host keys.
//  7. hooks: the lab's hook scripts, in the new system's chroot.
//  8. bootloader: grub (default), extlinux, lilo, none, or a command.
//  9. seed: wait for the agent's seeding (peer.Session.Seed: it stops
//     when the lab is done or after Config.Linger).
//  10. unmount everything in reverse order, report "done", reboot.
//
// The templates shipped are in templates/ (embedded); the print server's
// templates (STORE/templates/all/PATH and STORE/templates/IMAGE/PATH)
// replace them by path in the new system, and add files of their own; an
// empty one stops the shipped file from being written.
//
// # Running it again
//
// Whatever fails, Run unmounts everything (lazily when something stays
// busy), also when its context is cancelled, and reports the step that
// failed; the next Run on the same disk works. The root file system is
// kept only when it holds the agent's staging data of an interrupted
// download of the very image this clone installs, and was not configured
// yet: the download then resumes where it stopped. Anything else (a
// finished image, another image, a tree already configured or half-run
// hooks) is formatted again, so that the configuration and the hooks always
// meet the image as published.
//
// Usage:
//
//	err := clone.Run(ctx, clone.Config{
//		Config: peer.Config{Server: "10.1.0.1", PublicKey: pub, LabKey: labKey, Logger: logger},
//		Disk:   "/dev/sda", Console: os.Stdout,
//	})
//
// The package is Linux-only and needs root.
package clone
