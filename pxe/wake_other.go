//go:build !linux

package pxe

import (
	"errors"
	"net"
)

// openWakeUDP opens the UDP socket of the magic packets. Off Linux it is
// not bound to the interface (and the print server runs on Linux).
func openWakeUDP(iface string) (net.PacketConn, error) {
	return net.ListenPacket("udp4", "0.0.0.0:0")
}

// openWakeRaw: the raw 0x0842 frames are sent on Linux only.
func openWakeRaw(ifindex int) (rawSender, error) {
	return nil, errors.New("raw 0x0842 frames are sent on Linux only")
}
