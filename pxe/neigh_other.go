//go:build !linux

package pxe

import "net"

// neighbourMAC is not implemented outside Linux: TFTP events are then only
// attributed to clients whose address was learned from DHCP.
func neighbourMAC(ip net.IP) net.HardwareAddr { return nil }
