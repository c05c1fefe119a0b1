package pxe

import (
	"encoding/binary"
	"errors"
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

func TestUDP4RoundTrip(t *testing.T) {
	payload := pkt{vendor: "PXEClient", arch: u16(0)}.build(t).ToBytes()
	src, dst := net.IPv4(10, 78, 0, 1), net.IPv4bcast
	p, err := buildUDP4(src, dst, 67, 68, payload)
	if err != nil {
		t.Fatal(err)
	}
	if sum16(0, p[:ipv4HeaderLen]) != 0xffff {
		t.Error("IPv4 header checksum does not verify")
	}
	got, from, err := parseUDP4(p, 68)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(payload) || from.String() != "10.78.0.1:67" {
		t.Errorf("parsed %d bytes from %s", len(got), from)
	}
	if _, err := dhcpv4.FromBytes(got); err != nil {
		t.Errorf("payload does not decode: %v", err)
	}

	mutate := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), p...)) }
	tests := []struct {
		name    string
		pkt     []byte
		notOurs bool // errNotOurs, else another error
	}{
		{"other port", p, true},
		{"corrupted payload", mutate(func(b []byte) []byte { b[40] ^= 0x55; return b }), false},
		{"later fragment", mutate(func(b []byte) []byte { b[7] = 1; return b }), true},
		{"more fragments", mutate(func(b []byte) []byte { b[6] = 0x20; return b }), true},
		{"TCP", mutate(func(b []byte) []byte { b[9] = 6; return b }), true},
		{"truncated", p[:len(p)-10], false},
		{"IPv6", mutate(func(b []byte) []byte { b[0] = 0x60; return b }), false},
		{"short UDP length", mutate(func(b []byte) []byte { binary.BigEndian.PutUint16(b[24:26], 4); return b }), false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := 68
			if tt.name == "other port" {
				port = 67
			}
			_, _, err := parseUDP4(tt.pkt, port)
			if err == nil || errors.Is(err, errNotOurs) != tt.notOurs {
				t.Errorf("err %v, want errNotOurs %v", err, tt.notOurs)
			}
		})
	}
	// A zero checksum means "none" (RFC 768) and is accepted.
	none := mutate(func(b []byte) []byte { b[26], b[27] = 0, 0; return b })
	if _, _, err := parseUDP4(none, 68); err != nil {
		t.Errorf("datagram without checksum: %v", err)
	}
}

// knownUDPChecksum was computed independently (RFC 1071 in Python, struct
// and sum) for the datagram below.
const knownUDPChecksum = 0xb65f

func TestUDP4KnownChecksum(t *testing.T) {
	// 10.78.0.10:40000 -> 10.78.0.1:67, payload "labseed\n"
	p, err := buildUDP4(net.IPv4(10, 78, 0, 10), net.IPv4(10, 78, 0, 1), 40000, 67, []byte("labseed\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := binary.BigEndian.Uint16(p[26:28]); got != knownUDPChecksum {
		t.Errorf("UDP checksum %#04x, want %#04x", got, knownUDPChecksum)
	}
}
