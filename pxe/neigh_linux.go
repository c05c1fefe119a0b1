package pxe

import (
	"bufio"
	"net"
	"os"
	"strings"
)

// neighbourMAC looks ip up in the kernel's ARP table, nil if absent.
func neighbourMAC(ip net.IP) net.HardwareAddr {
	f, err := os.Open("/proc/net/arp")
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// IP address  HW type  Flags  HW address  Mask  Device
		fs := strings.Fields(sc.Text())
		if len(fs) >= 4 && fs[0] == ip.String() {
			if hw, err := net.ParseMAC(fs[3]); err == nil && hw.String() != "00:00:00:00:00:00" {
				return hw
			}
		}
	}
	return nil
}
