package pxe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// openWakeUDP opens the UDP socket of the magic packets: broadcast
// allowed, bound to the lab interface so that a directed broadcast leaves
// there whatever the routes say (SO_BINDTODEVICE needs CAP_NET_RAW before
// Linux 5.7; without it the datagrams follow the routes).
func openWakeUDP(iface string) (net.PacketConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1); serr != nil {
				serr = fmt.Errorf("SO_BROADCAST: %w", serr)
				return
			}
			unix.BindToDevice(int(fd), iface)
		})
		return errors.Join(err, serr)
	}}
	return lc.ListenPacket(context.Background(), "udp4", "0.0.0.0:0")
}

// packetSender is an AF_PACKET datagram socket that sends EtherTypeWake
// frames to the Ethernet broadcast address of one interface (the kernel
// writes the Ethernet header, with the interface's MAC as the source).
type packetSender struct {
	fd int
	to unix.SockaddrLinklayer
}

// htons is the EtherType in network byte order, as AF_PACKET takes it.
func htons(v uint16) uint16 { return v<<8 | v>>8 }

// openWakeRaw opens the raw socket of the 0x0842 frames on the interface
// with index ifindex. It needs CAP_NET_RAW, and AF_PACKET (a systemd unit
// may restrict the address families).
func openWakeRaw(ifindex int) (rawSender, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(EtherTypeWake)))
	if err != nil {
		return nil, fmt.Errorf("AF_PACKET socket (needs root or CAP_NET_RAW, and AF_PACKET allowed): %w", err)
	}
	s := &packetSender{fd: fd, to: unix.SockaddrLinklayer{Protocol: htons(EtherTypeWake), Ifindex: ifindex, Halen: 6}}
	copy(s.to.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	return s, nil
}

// Send sends one frame with payload.
func (s *packetSender) Send(payload []byte) error {
	return unix.Sendto(s.fd, payload, 0, &s.to)
}

// Close closes the socket.
func (s *packetSender) Close() error { return unix.Close(s.fd) }
