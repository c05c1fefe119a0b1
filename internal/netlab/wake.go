//go:build linux

package netlab

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// InNetns runs f on an OS thread in the network namespace ns (made with
// "ip netns add"): the sockets f opens belong to ns, and stay there when
// used from other goroutines afterwards.
func InNetns(ns string, f func() error) error {
	target, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		return fmt.Errorf("netns %s: %w", ns, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		// The thread is left locked (and so ends with the goroutine) if
		// it cannot go back to its own namespace.
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer self.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// WakeFrame is a magic packet as a network card sees it.
type WakeFrame struct {
	MAC  net.HardwareAddr // the machine it wakes
	Kind string           // "udp" (a UDP datagram, Dst its IP destination and port) or "raw" (an 0x0842 frame)
	Dst  string
	Src  net.HardwareAddr // the sender's MAC
}

// WakeListener reads every frame an interface receives, as a switched-off
// machine's network card does, and picks out the magic packets for the
// MACs it watches (written out here by hand, not with package pxe: the
// test's card is independent of the sender).
type WakeListener struct {
	fd    int
	watch map[string][]byte // MAC -> its magic packet
}

// ListenWake opens a packet socket on iface of the current network
// namespace (see InNetns) that watches for magic packets of macs. It
// needs root.
func ListenWake(iface string, macs ...net.HardwareAddr) (*WakeListener, error) {
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, err
	}
	all := uint16(unix.ETH_P_ALL)
	proto := all<<8 | all>>8
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
	if err != nil {
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifc.Index}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind packet socket to %s: %w", iface, err)
	}
	l := &WakeListener{fd: fd, watch: map[string][]byte{}}
	for _, m := range macs {
		p := bytes.Repeat([]byte{0xff}, 6)
		for range 16 {
			p = append(p, m...)
		}
		l.watch[m.String()] = p
	}
	return l, nil
}

// Next returns the next magic packet of a watched MAC, waiting at most d;
// os.ErrDeadlineExceeded when none came.
func (l *WakeListener) Next(d time.Duration) (WakeFrame, error) {
	deadline := time.Now().Add(d)
	buf := make([]byte, 65536)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return WakeFrame{}, os.ErrDeadlineExceeded
		}
		tv := unix.NsecToTimeval(left.Nanoseconds())
		unix.SetsockoptTimeval(l.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		n, _, err := unix.Recvfrom(l.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return WakeFrame{}, err
		}
		if f, ok := l.match(buf[:n]); ok {
			return f, nil
		}
	}
}

// match parses an Ethernet frame: an 0x0842 frame, or an IPv4 UDP
// datagram, holding the magic packet of a watched MAC.
func (l *WakeListener) match(b []byte) (WakeFrame, bool) {
	if len(b) < 14 {
		return WakeFrame{}, false
	}
	f := WakeFrame{Src: net.HardwareAddr(bytes.Clone(b[6:12]))}
	payload := b[14:]
	switch binary.BigEndian.Uint16(b[12:14]) {
	case 0x0842:
		f.Kind, f.Dst = "raw", net.HardwareAddr(b[0:6]).String()
	case 0x0800:
		if len(payload) < 28 || payload[9] != 17 {
			return WakeFrame{}, false
		}
		ihl := int(payload[0]&0x0f) * 4
		if len(payload) < ihl+8 {
			return WakeFrame{}, false
		}
		f.Kind = "udp"
		f.Dst = fmt.Sprintf("%s:%d", net.IP(payload[16:20]), binary.BigEndian.Uint16(payload[ihl+2:ihl+4]))
		payload = payload[ihl+8:]
	default:
		return WakeFrame{}, false
	}
	for mac, p := range l.watch {
		if bytes.Contains(payload, p) {
			f.MAC, _ = net.ParseMAC(mac)
			return f, true
		}
	}
	return WakeFrame{}, false
}

// Close closes the socket.
func (l *WakeListener) Close() error { return unix.Close(l.fd) }
