package pxe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
)

// The IPv4 and UDP header arithmetic of Config.NoBind, kept apart from the
// raw socket so that it is tested on bytes.

const (
	ipv4HeaderLen = 20
	udpHeaderLen  = 8
	protoUDP      = 17
)

// errNotOurs is returned by parseUDP4 for a well-formed packet that is not
// for the snooped port (the socket filter should have dropped it).
var errNotOurs = errors.New("pxe: not a UDP datagram for the DHCP port")

// parseUDP4 reads an IPv4 packet as a raw socket delivers it (IP header
// first) and returns the UDP payload and its sender, if the packet is an
// unfragmented UDP datagram to port with a valid UDP checksum (or none).
func parseUDP4(pkt []byte, port int) (payload []byte, from *net.UDPAddr, err error) {
	if len(pkt) < ipv4HeaderLen || pkt[0]>>4 != 4 {
		return nil, nil, fmt.Errorf("pxe: not an IPv4 packet (%d bytes)", len(pkt))
	}
	ihl := int(pkt[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(pkt[2:4]))
	if ihl < ipv4HeaderLen || total < ihl+udpHeaderLen || total > len(pkt) {
		return nil, nil, fmt.Errorf("pxe: bad IPv4 header (header %d, total %d, have %d bytes)", ihl, total, len(pkt))
	}
	if pkt[9] != protoUDP || binary.BigEndian.Uint16(pkt[6:8])&0x3fff != 0 {
		return nil, nil, errNotOurs // another protocol, or a fragment
	}
	src, dst := net.IP(pkt[12:16]), net.IP(pkt[16:20])
	udp := pkt[ihl:total]
	if int(binary.BigEndian.Uint16(udp[2:4])) != port {
		return nil, nil, errNotOurs
	}
	ulen := int(binary.BigEndian.Uint16(udp[4:6]))
	if ulen < udpHeaderLen || ulen > len(udp) {
		return nil, nil, fmt.Errorf("pxe: bad UDP length %d (%d bytes after the IP header)", ulen, len(udp))
	}
	udp = udp[:ulen]
	if binary.BigEndian.Uint16(udp[6:8]) != 0 && udpChecksum(src, dst, udp) != 0 {
		return nil, nil, fmt.Errorf("pxe: bad UDP checksum from %s", src)
	}
	from = &net.UDPAddr{IP: append(net.IP(nil), src...), Port: int(binary.BigEndian.Uint16(udp[0:2]))}
	return udp[udpHeaderLen:], from, nil
}

// buildUDP4 returns an IPv4 packet (no options, TTL 64) carrying payload
// from src:sport to dst:dport, with both checksums set.
func buildUDP4(src, dst net.IP, sport, dport int, payload []byte) ([]byte, error) {
	src, dst = src.To4(), dst.To4()
	if src == nil || dst == nil {
		return nil, fmt.Errorf("pxe: build UDP packet: %v -> %v is not IPv4", src, dst)
	}
	total := ipv4HeaderLen + udpHeaderLen + len(payload)
	if total > 0xffff {
		return nil, fmt.Errorf("pxe: build UDP packet: %d bytes of payload", len(payload))
	}
	p := make([]byte, total)
	p[0] = 0x45 // version 4, 5 words
	binary.BigEndian.PutUint16(p[2:4], uint16(total))
	p[8] = 64 // TTL
	p[9] = protoUDP
	copy(p[12:16], src)
	copy(p[16:20], dst)
	binary.BigEndian.PutUint16(p[10:12], ^sum16(0, p[:ipv4HeaderLen]))
	u := p[ipv4HeaderLen:]
	binary.BigEndian.PutUint16(u[0:2], uint16(sport))
	binary.BigEndian.PutUint16(u[2:4], uint16(dport))
	binary.BigEndian.PutUint16(u[4:6], uint16(udpHeaderLen+len(payload)))
	copy(u[udpHeaderLen:], payload)
	c := udpChecksum(src, dst, u)
	if c == 0 {
		c = 0xffff // 0 means "no checksum" (RFC 768)
	}
	binary.BigEndian.PutUint16(u[6:8], c)
	return p, nil
}

// udpChecksum is the UDP checksum of udp (header and payload) with the
// IPv4 pseudo header: 0 for a datagram whose checksum field is correct.
func udpChecksum(src, dst net.IP, udp []byte) uint16 {
	var pseudo [12]byte
	copy(pseudo[0:4], src.To4())
	copy(pseudo[4:8], dst.To4())
	pseudo[9] = protoUDP
	binary.BigEndian.PutUint16(pseudo[10:12], uint16(len(udp)))
	return ^sum16(sum16(0, pseudo[:]), udp)
}

// sum16 adds b to the one's-complement sum s (RFC 1071), folded.
func sum16(s uint16, b []byte) uint16 {
	acc := uint32(s)
	for len(b) >= 2 {
		acc += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint32(b[0]) << 8
	}
	for acc > 0xffff {
		acc = acc>>16 + acc&0xffff
	}
	return uint16(acc)
}
