package pxe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// rawConn is the DHCP socket of Config.NoBind: a net.PacketConn that
// never binds the UDP port, so that another DHCP server on this host
// (dnsmasq, ISC dhcpd, Kea) keeps port 67 to itself. It is one raw IPv4
// socket for protocol UDP: the kernel gives it a copy of every UDP
// datagram this host receives, and a socket filter keeps those to the DHCP
// port. Replies are written with IP_HDRINCL, from ServerIP and the DHCP
// port, so they look exactly like the replies of a bound socket (iPXE
// drops replies that do not come from port 67).
type rawConn struct {
	c     *net.IPConn
	rc    syscall.RawConn
	src   net.IP // ServerIP: source of the replies
	port  int    // the DHCP port, 67
	local *net.UDPAddr
	buf   []byte // ReadFrom's packet buffer: one reader at a time
}

// dhcpPortFilter is a classic BPF program for a raw IPv4 socket (the
// packet starts at the IP header): accept unfragmented UDP to port.
func dhcpPortFilter(port int) []unix.SockFilter {
	return []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 9},                      // A = protocol
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 6, K: 17},      // UDP?
		{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 6},                      // A = flags, fragment offset
		{Code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, Jt: 4, Jf: 0, K: 0x1fff}, // a later fragment?
		{Code: unix.BPF_LDX | unix.BPF_B | unix.BPF_MSH, K: 0},                     // X = IP header length
		{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_IND, K: 2},                      // A = UDP destination port
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: uint32(port)},
		{Code: unix.BPF_RET | unix.BPF_K, K: 0xffff}, // accept the whole packet
		{Code: unix.BPF_RET | unix.BPF_K, K: 0},      // drop
	}
}

// listenRawDHCP opens the raw DHCP socket on iface ("" = all interfaces)
// for port; replies leave from src. It needs CAP_NET_RAW.
func listenRawDHCP(iface string, port int, src net.IP) (net.PacketConn, error) {
	filter := dhcpPortFilter(port)
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			s := int(fd)
			if iface != "" {
				if serr = unix.BindToDevice(s, iface); serr != nil {
					serr = fmt.Errorf("bind to interface %q: %w", iface, serr)
					return
				}
			}
			prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
			if serr = unix.SetsockoptSockFprog(s, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); serr != nil {
				serr = fmt.Errorf("attach socket filter: %w", serr)
				return
			}
			if serr = unix.SetsockoptInt(s, unix.IPPROTO_IP, unix.IP_HDRINCL, 1); serr != nil {
				serr = fmt.Errorf("IP_HDRINCL: %w", serr)
				return
			}
			if serr = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_BROADCAST, 1); serr != nil {
				serr = fmt.Errorf("SO_BROADCAST: %w", serr)
			}
		})
		return errors.Join(err, serr)
	}}
	pc, err := lc.ListenPacket(context.Background(), "ip4:udp", "0.0.0.0")
	if err != nil {
		return nil, fmt.Errorf("pxe: open raw DHCP socket for port %d on interface %q (NoBind needs root or CAP_NET_RAW): %w", port, iface, err)
	}
	c := pc.(*net.IPConn)
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("pxe: raw DHCP socket: %w", err)
	}
	return &rawConn{c: c, rc: rc, src: src.To4(), port: port, local: &net.UDPAddr{IP: net.IPv4zero, Port: port}, buf: make([]byte, 65536)}, nil
}

// ReadFrom returns the next DHCP datagram to the port, skipping packets
// that are not (fragments, bad checksums). Only one goroutine may call
// it at a time.
func (r *rawConn) ReadFrom(b []byte) (int, net.Addr, error) {
	buf := r.buf
	for {
		var n int
		var rerr error
		err := r.rc.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, 0)
			return !errors.Is(rerr, unix.EAGAIN)
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			return 0, nil, err
		}
		payload, from, perr := parseUDP4(buf[:n], r.port)
		if perr != nil {
			continue
		}
		return copy(b, payload), from, nil
	}
}

// WriteTo sends b as a UDP datagram from ServerIP and the DHCP port to
// addr, a *net.UDPAddr.
func (r *rawConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, fmt.Errorf("pxe: raw DHCP socket: destination %v is not a UDP address", addr)
	}
	pkt, err := buildUDP4(r.src, ua.IP, r.port, ua.Port, b)
	if err != nil {
		return 0, err
	}
	if _, err := r.c.WriteTo(pkt, &net.IPAddr{IP: ua.IP}); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Close closes the socket; a blocked ReadFrom returns.
func (r *rawConn) Close() error { return r.c.Close() }

// LocalAddr is 0.0.0.0:port: the port read, never bound.
func (r *rawConn) LocalAddr() net.Addr { return r.local }

// SetDeadline sets the raw socket's read and write deadlines.
func (r *rawConn) SetDeadline(t time.Time) error { return r.c.SetDeadline(t) }

// SetReadDeadline sets the raw socket's read deadline.
func (r *rawConn) SetReadDeadline(t time.Time) error { return r.c.SetReadDeadline(t) }

// SetWriteDeadline sets the raw socket's write deadline.
func (r *rawConn) SetWriteDeadline(t time.Time) error { return r.c.SetWriteDeadline(t) }
