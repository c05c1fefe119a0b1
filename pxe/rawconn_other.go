//go:build !linux

package pxe

import (
	"fmt"
	"net"
)

// listenRawDHCP is Linux-only: Config.NoBind uses a raw IPv4 socket with a
// Linux socket filter.
func listenRawDHCP(iface string, port int, src net.IP) (net.PacketConn, error) {
	return nil, fmt.Errorf("%w: NoBind (reading DHCP without binding port %d) is only implemented on Linux", ErrConfig, port)
}
