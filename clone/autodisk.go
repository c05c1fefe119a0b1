package clone

import (
	"fmt"
	"slices"
	"strings"
)

// DiskAuto as Config.Disk picks the machine's disk: its only fixed disk.
const DiskAuto = "auto"

// ParamDisk on the kernel command line names the disk to re-image when
// the clone environment cannot pick it (several fixed disks).
const ParamDisk = "labseed.disk"

// blockDev is a block device as sysfs shows it, for picking the disk.
type blockDev struct {
	Name      string // kernel name, sda
	Sys       string // its device path under /sys/devices
	Size      int64  // bytes
	Removable bool
	ReadOnly  bool
}

// why returns why dev cannot be the disk to re-image, "" if it can.
func (d blockDev) why() string {
	switch {
	case strings.Contains(d.Sys, "/virtual/"):
		return "virtual" // loop, ram, zram, dm-*, md*
	case d.Removable:
		return "removable"
	case strings.Contains(d.Sys, "/usb"):
		return "USB"
	case d.ReadOnly:
		return "read-only"
	case d.Size == 0:
		return "no medium"
	}
	return ""
}

// pickDisk returns the device node of the only disk of devs that can be
// re-imaged. With none or several it refuses, naming them: guessing
// between two disks could wipe the wrong one.
func pickDisk(devs []blockDev) (string, error) {
	var fixed, others []string
	for _, d := range devs {
		if w := d.why(); w != "" {
			others = append(others, fmt.Sprintf("%s (%s)", d.Name, w))
			continue
		}
		fixed = append(fixed, fmt.Sprintf("/dev/%s (%s)", d.Name, sizeString(d.Size)))
	}
	slices.Sort(fixed)
	switch len(fixed) {
	case 1:
		dev, _, _ := strings.Cut(fixed[0], " ")
		return dev, nil
	case 0:
		seen := "the kernel shows no block device"
		if len(others) > 0 {
			seen = "the kernel shows only " + strings.Join(others, ", ")
		}
		return "", fmt.Errorf("no disk to re-image: %s; if the machine has a disk, its controller's driver is missing from the clone environment (labseed netboot build --help)", seen)
	}
	return "", fmt.Errorf("%d disks: %s; labseed will not guess which to wipe: give it with %s=/dev/NAME (lab.conf or the host's boot_args) or --disk", len(fixed), strings.Join(fixed, ", "), ParamDisk)
}

// sizeString writes a disk size as disk makers do (decimal units).
func sizeString(b int64) string {
	switch {
	case b >= 1e12:
		return fmt.Sprintf("%.1f TB", float64(b)/1e12)
	case b >= 1e9:
		return fmt.Sprintf("%.0f GB", float64(b)/1e9)
	}
	return fmt.Sprintf("%.0f MB", float64(b)/1e6)
}
