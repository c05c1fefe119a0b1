package hosts

import "time"

// Identity is what the print server tells a workstation about itself when it
// asks "who am I" with its MAC addresses: everything "labseed clone" needs to
// partition the disk and configure the new system as that host.
type Identity struct {
	// MAC is the address the host is known by in the hosts table.
	MAC string `json:"mac"`
	// Hostname is the host's short name; Domain the lab's DNS domain.
	Hostname string `json:"hostname"`
	Domain   string `json:"domain,omitempty"`
	// IP is the host's static IPv4 address and Prefix its network's prefix
	// length (24 for 255.255.255.0).
	IP     string `json:"ip"`
	Prefix int    `json:"prefix"`
	// Gateway and DNS of the lab network; optional.
	Gateway string   `json:"gateway,omitempty"`
	DNS     []string `json:"dns,omitempty"`
	// PrinterQueue and PrinterServer are the host's printer (/etc/printcap).
	PrinterQueue  string `json:"printer_queue,omitempty"`
	PrinterServer string `json:"printer_server,omitempty"`
	// Display is the X display mode, e.g. "1920x1080"; empty: leave X alone.
	Display string `json:"display,omitempty"`
	// Image is the image to install; empty: the print server's only image.
	Image string `json:"image,omitempty"`
	// Filesystem of the root partition: "ext4" (default), "ext3" or "xfs".
	Filesystem string `json:"filesystem"`
	// SwapMiB is the swap partition's size (0: no swap partition); RootMiB
	// the root partition's (0: the rest of the disk).
	SwapMiB int `json:"swap_mib"`
	RootMiB int `json:"root_mib,omitempty"`
	// Bootloader is "grub" (default), "extlinux", "lilo", "none", or a
	// shell command run in the new system's chroot (text/template with
	// .Disk, the whole disk's device, and .Root, the root partition's).
	Bootloader string `json:"bootloader"`
	// NextBoot is the host's next network boot, BootLocal or BootClone.
	NextBoot string `json:"next_boot,omitempty"`
	// Enrolled is true when this very request added the host to the table.
	Enrolled bool `json:"enrolled,omitempty"`
	// Keep lists the paths a re-image by sync leaves as they are
	// (lab.conf keep), absolute, e.g. /home.
	Keep []string `json:"keep,omitempty"`
	// BootArgs (boot_args) and OnFailure (on_failure: "retry" or
	// "shell", "" for the default) go on the kernel command line of the
	// host's clone environment. The print server's boot menu uses them;
	// they are not sent to the workstation.
	BootArgs  string `json:"-"`
	OnFailure string `json:"-"`
	// Groups are the host's groups (hosts.csv's group column), for the
	// print server's own use; not sent to the workstation.
	Groups []string `json:"-"`
	// Vars holds every other lab setting and per-host column, by name, for
	// the lab's own templates.
	Vars map[string]string `json:"vars,omitempty"`
	// Templates are the lab's and the image's configuration templates,
	// by path in the new system ("etc/hosts"); they replace the shipped ones.
	Templates map[string]string `json:"templates,omitempty"`
	// Hooks are the lab's hook scripts, run in the new system's chroot after
	// the configuration, in this order.
	Hooks []Hook `json:"hooks,omitempty"`
}

// Hook is one lab hook script.
type Hook struct {
	Name   string `json:"name"`
	Script string `json:"script"`
}

// The states a clone reports.
const (
	StateRunning = "running"
	StateDone    = "done"
	StateFailed  = "failed"
)

// Report is one step of a host's clone as reported to the print server.
// A report with State StateDone ends the clone: the host's next boot
// returns to its local disk.
type Report struct {
	Step  string    `json:"step"`  // "identify", "disk", "fetch", "configure", "bootloader", ...
	State string    `json:"state"` // StateRunning, StateDone or StateFailed
	Error string    `json:"error,omitempty"`
	Time  time.Time `json:"time"`
	// Detail says more about a step that went well (a sync or a full clone).
	Detail string `json:"detail,omitempty"`
}
