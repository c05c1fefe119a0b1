package clone

import (
	"strings"
	"testing"
)

func TestPickDisk(t *testing.T) {
	const pci = "/sys/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/"
	sda := blockDev{Name: "sda", Sys: pci + "sda", Size: 500e9}
	nvme := blockDev{Name: "nvme0n1", Sys: "/sys/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1", Size: 256e9}
	loop := blockDev{Name: "loop0", Sys: "/sys/devices/virtual/block/loop0", Size: 1e9}
	zram := blockDev{Name: "zram0", Sys: "/sys/devices/virtual/block/zram0", Size: 4e9}
	cdrom := blockDev{Name: "sr0", Sys: pci + "sr0", Size: 0, Removable: true}
	stick := blockDev{Name: "sdb", Sys: "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0/host6/target6:0:0/6:0:0:0/block/sdb", Size: 32e9}
	card := blockDev{Name: "mmcblk0", Sys: "/sys/devices/platform/sdhci/mmc_host/mmc0/mmc0:0001/block/mmcblk0", Size: 16e9, Removable: true}
	ro := blockDev{Name: "sdc", Sys: pci + "sdc", Size: 1e9, ReadOnly: true}
	empty := blockDev{Name: "sdd", Sys: pci + "sdd"}
	for _, tc := range []struct {
		name string
		devs []blockDev
		want string
		errs []string // substrings of the error
	}{
		{"one SATA disk", []blockDev{sda}, "/dev/sda", nil},
		{"NVMe among loops, CD and stick", []blockDev{loop, cdrom, nvme, stick, zram}, "/dev/nvme0n1", nil},
		{"a disk and a card reader", []blockDev{card, sda, ro, empty}, "/dev/sda", nil},
		{"two disks: refused", []blockDev{sda, nvme}, "", []string{"2 disks", "/dev/nvme0n1 (256 GB)", "/dev/sda (500 GB)", "labseed.disk="}},
		{"no disk, only others", []blockDev{loop, cdrom, stick}, "", []string{"no disk", "loop0 (virtual)", "sr0 (removable)", "sdb (USB)", "driver"}},
		{"nothing at all", nil, "", []string{"shows no block device"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pickDisk(tc.devs)
			if got != tc.want {
				t.Errorf("pickDisk = %q, want %q", got, tc.want)
			}
			if (err != nil) != (tc.errs != nil) {
				t.Fatalf("err = %v", err)
			}
			for _, s := range tc.errs {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
}
