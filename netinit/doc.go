// Package netinit is the init (PID 1) of labseed's clone environment, the
// initrd that "labseed netboot build" makes: it mounts /proc, /sys and
// /dev, loads the kernel modules of the machine's devices, brings up the
// network with DHCP, reads the labseed.* options of the kernel command
// line and runs the clone on the machine's disk. When the clone fails it
// says why on the console and, as the lab chose (labseed.on_failure=),
// tries again after a pause or opens a shell; it never hangs silently and
// never reboots in a loop.
//
// Kernel command line options it reads (the print server's boot menu
// passes them; lab.conf's boot_args adds more):
//
//	labseed.server=HOST[:PORT]  the print server (required)
//	labseed.image=NAME          the image (default: the host's)
//	labseed.disk=/dev/NAME      the disk (default: the only fixed disk)
//	labseed.on_failure=retry|shell  after a failure (default retry)
//	labseed.retry=SECONDS       the pause before a retry (default 60)
//	labseed.linger=DURATION     seeding to the lab after the clone (default 10m)
//	labseed.verbose             the clone's log on the console
//	BOOTIF=01-aa-bb-cc-dd-ee-ff the interface booted from (iPXE's menu sets it)
//
// It is part of the workstation side: it never imports seeder, pxe, store
// or metrics.
package netinit
