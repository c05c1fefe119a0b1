package pxe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"
)

// Wake-on-LAN. A machine switched off with Wake-on-LAN enabled in its
// firmware keeps its network card listening; it powers on when a frame
// reaches it that holds the magic packet for its MAC anywhere in its
// payload. The print server sends it two ways, because switches, NICs and
// firmwares differ in what they let through: a UDP datagram to the lab
// network's directed broadcast address (port 9, "discard"), and a raw
// Ethernet frame of type 0x0842 (the EtherType of Wake-on-LAN) to the
// Ethernet broadcast address. Each is sent WakeConfig.Repeat times: a
// datagram nobody acknowledges may be lost.

// MagicPacketSize is the size of a magic packet: 6 bytes 0xFF, then the
// MAC 16 times.
const MagicPacketSize = 6 + 16*6

// EtherTypeWake is the EtherType of a raw Wake-on-LAN frame.
const EtherTypeWake = 0x0842

// MagicPacket returns the magic packet that wakes mac (6 bytes).
func MagicPacket(mac net.HardwareAddr) ([]byte, error) {
	if len(mac) != 6 {
		return nil, fmt.Errorf("pxe: wake: %q is not an Ethernet MAC address", mac)
	}
	p := make([]byte, 0, MagicPacketSize)
	p = append(p, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	for range 16 {
		p = append(p, mac...)
	}
	return p, nil
}

// FindMagic looks for a magic packet in b, as a network card does in
// every frame it receives: six bytes 0xFF followed by sixteen copies of a
// MAC. It returns the MAC it wakes; ok is false when b holds none.
func FindMagic(b []byte) (mac net.HardwareAddr, ok bool) {
	sync := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	for off := 0; off+MagicPacketSize <= len(b); off++ {
		if !bytes.Equal(b[off:off+6], sync) {
			continue
		}
		m := b[off+6 : off+12]
		good := true
		for k := 1; k < 16 && good; k++ {
			good = bytes.Equal(b[off+6+6*k:off+12+6*k], m)
		}
		if good {
			return net.HardwareAddr(bytes.Clone(m)), true
		}
	}
	return nil, false
}

// WakeConfig configures Wake. Zero values mean the defaults.
type WakeConfig struct {
	// Interface is the lab network's interface, where the packets leave
	// (LabInterface finds it); required.
	Interface string
	// IP is the print server's address on the lab network; the directed
	// broadcast address is that of the interface's network holding it.
	// Default: the interface's first IPv4 address.
	IP net.IP
	// Port is the UDP port of the datagrams; default 9.
	Port int
	// Repeat is how many times each packet is sent; default 3.
	Repeat int
	// Gap is the pause between two rounds of sends; default 100 ms.
	Gap time.Duration
	// NoRaw sends only the UDP datagrams, not the 0x0842 frames.
	NoRaw bool
	// Logger receives a debug line per round; nil discards.
	Logger *slog.Logger
}

// WakeResult says how the magic packets were sent.
type WakeResult struct {
	// Interface is where they left, Broadcast the directed broadcast
	// address the UDP datagrams went to (and Port their port).
	Interface string
	Broadcast net.IP
	Port      int
	// Raw is true when the 0x0842 frames were sent too; RawError says
	// why not otherwise (no CAP_NET_RAW, AF_PACKET not allowed, not Linux).
	Raw      bool
	RawError string
	// Sent counts the packets sent, both kinds.
	Sent int
}

// ErrWake is wrapped by Wake's errors.
var ErrWake = errors.New("pxe: wake")

// Wake sends the magic packets of macs from the lab interface: to each
// MAC a UDP datagram to the interface network's directed broadcast
// address and, where the socket allows (root or CAP_NET_RAW, and
// AF_PACKET, on Linux), a raw 0x0842 Ethernet broadcast frame; the whole
// round cfg.Repeat times, cfg.Gap apart. It fails when no UDP datagram
// could be sent; a raw socket that cannot be opened is said in
// WakeResult.RawError, and the datagrams still go.
func Wake(ctx context.Context, cfg WakeConfig, macs []net.HardwareAddr) (WakeResult, error) {
	if cfg.Port == 0 {
		cfg.Port = 9
	}
	if cfg.Repeat <= 0 {
		cfg.Repeat = 3
	}
	if cfg.Gap <= 0 {
		cfg.Gap = 100 * time.Millisecond
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	res := WakeResult{Interface: cfg.Interface, Port: cfg.Port}
	if cfg.Interface == "" {
		return res, fmt.Errorf("%w: no lab interface", ErrWake)
	}
	ifc, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return res, fmt.Errorf("%w: lab interface %q: %v", ErrWake, cfg.Interface, err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return res, fmt.Errorf("%w: addresses of %s: %v", ErrWake, cfg.Interface, err)
	}
	if res.Broadcast, err = directedBroadcast(addrs, cfg.IP); err != nil {
		return res, fmt.Errorf("%w: %s: %v", ErrWake, cfg.Interface, err)
	}
	packets := make([][]byte, len(macs))
	for i, mac := range macs {
		if packets[i], err = MagicPacket(mac); err != nil {
			return res, err
		}
	}
	udp, err := openWakeUDP(cfg.Interface)
	if err != nil {
		return res, fmt.Errorf("%w: UDP socket on %s: %v", ErrWake, cfg.Interface, err)
	}
	defer udp.Close()
	var raw rawSender
	if !cfg.NoRaw {
		if raw, err = openWakeRaw(ifc.Index); err != nil {
			res.RawError = err.Error()
			log.Debug("wake: no raw 0x0842 frames, UDP only", "interface", cfg.Interface, "err", err)
		} else {
			defer raw.Close()
			res.Raw = true
		}
	}
	dst := &net.UDPAddr{IP: res.Broadcast, Port: cfg.Port}
	for round := range cfg.Repeat {
		if round > 0 {
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(cfg.Gap):
			}
		}
		for _, p := range packets {
			if _, err := udp.WriteTo(p, dst); err != nil {
				return res, fmt.Errorf("%w: send to %s on %s: %v", ErrWake, dst, cfg.Interface, err)
			}
			res.Sent++
			if raw != nil {
				if err := raw.Send(p); err != nil {
					return res, fmt.Errorf("%w: send a 0x0842 frame on %s: %v", ErrWake, cfg.Interface, err)
				}
				res.Sent++
			}
		}
		log.Debug("wake: magic packets sent", "interface", cfg.Interface, "broadcast", dst, "raw", raw != nil, "macs", len(macs), "round", round+1)
	}
	return res, nil
}

// rawSender sends the payload of an Ethernet broadcast frame of type
// EtherTypeWake on one interface.
type rawSender interface {
	Send(payload []byte) error
	Close() error
}

// directedBroadcast is the broadcast address of the IPv4 network among
// addrs that holds ip (any when ip is nil); 255.255.255.255 for a /31 or
// /32, which have none.
func directedBroadcast(addrs []net.Addr, ip net.IP) (net.IP, error) {
	ip = ip.To4()
	if ip != nil && ip.IsUnspecified() {
		ip = nil
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok || n.IP.To4() == nil || (ip != nil && !n.Contains(ip)) {
			continue
		}
		mask := n.Mask
		if len(mask) == 16 {
			mask = mask[12:]
		}
		if ones, _ := mask.Size(); ones >= 31 {
			return net.IPv4bcast.To4(), nil
		}
		b := make(net.IP, 4)
		for i, x := range n.IP.To4() {
			b[i] = x | ^mask[i]
		}
		return b, nil
	}
	if ip != nil {
		return nil, fmt.Errorf("no IPv4 network holding %s", ip)
	}
	return nil, errors.New("no IPv4 address: the magic packets go to the lab network's broadcast address")
}
