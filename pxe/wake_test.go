package pxe

import (
	"bytes"
	"encoding/hex"
	"net"
	"strings"
	"testing"
)

// TestMagicPacket checks the packet's bytes against the format written out
// by hand: six 0xFF, then the MAC sixteen times, 102 bytes.
func TestMagicPacket(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	p, err := MagicPacket(mac)
	if err != nil {
		t.Fatal(err)
	}
	want := "ffffffffffff" + strings.Repeat("525400123456", 16)
	if got := hex.EncodeToString(p); got != want {
		t.Fatalf("magic packet\n got %s\nwant %s", got, want)
	}
	if len(p) != 102 || MagicPacketSize != 102 {
		t.Fatalf("%d bytes, MagicPacketSize %d, want 102", len(p), MagicPacketSize)
	}
	if _, err := MagicPacket(net.HardwareAddr{1, 2, 3}); err == nil {
		t.Fatal("a 3-byte address made a magic packet")
	}
}

func TestFindMagic(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	p, _ := MagicPacket(mac)
	for _, tc := range []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"alone", p, true},
		{"in a UDP payload", append([]byte("\x00\x09\x00\x09junk"), p...), true},
		{"after a longer run of 0xff", append([]byte{0xff, 0xff, 0xff}, p...), true},
		{"with trailing bytes", append(bytes.Clone(p), 1, 2, 3), true},
		{"cut short", p[:101], false},
		{"one copy wrong", func() []byte { b := bytes.Clone(p); b[50] ^= 1; return b }(), false},
		{"no sync", p[1:], false},
		{"empty", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := FindMagic(tc.b)
			if ok != tc.ok || (ok && got.String() != mac.String()) {
				t.Fatalf("FindMagic = %v, %v; want ok=%v", got, ok, tc.ok)
			}
		})
	}
}

func TestDirectedBroadcast(t *testing.T) {
	nets := func(cidrs ...string) []net.Addr {
		var out []net.Addr
		for _, c := range cidrs {
			ip, n, err := net.ParseCIDR(c)
			if err != nil {
				t.Fatal(err)
			}
			n.IP = ip
			out = append(out, n)
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		addrs []net.Addr
		ip    string
		want  string
	}{
		{"a /24", nets("10.1.0.1/24"), "", "10.1.0.255"},
		{"a /22", nets("10.1.1.1/22"), "", "10.1.3.255"},
		{"the network holding ip", nets("192.168.1.1/24", "10.1.0.1/16"), "10.1.0.1", "10.1.255.255"},
		{"IPv6 skipped", nets("fd00::1/64", "10.1.0.1/24"), "", "10.1.0.255"},
		{"a /32", nets("10.1.0.1/32"), "", "255.255.255.255"},
		{"none", nets("fd00::1/64"), "", ""},
		{"ip elsewhere", nets("10.1.0.1/24"), "10.2.0.1", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := directedBroadcast(tc.addrs, net.ParseIP(tc.ip))
			if tc.want == "" {
				if err == nil {
					t.Fatalf("got %s, want an error", got)
				}
				return
			}
			if err != nil || got.String() != tc.want {
				t.Fatalf("got %v, %v; want %s", got, err, tc.want)
			}
		})
	}
}
