package pxe

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// FuzzDHCP feeds arbitrary datagrams to the request handling of both
// modes and both ports: it must never panic, and whatever it answers must
// be a BOOTREPLY that encodes.
func FuzzDHCP(f *testing.F) {
	for _, p := range []pkt{
		{vendor: "PXEClient:Arch:00000:UNDI:002001", arch: u16(0)},
		{vendor: "PXEClient", arch: u16(9), ipxe: true, uuid: make([]byte, 17)},
		{typ: dhcpv4.MessageTypeRequest, vendor: "HTTPClient", arch: u16(16), ciaddr: net.IPv4(10, 78, 0, 9)},
	} {
		f.Add(p.build(f).ToBytes(), false)
	}
	proxy := newServer(f, testConfig(f))
	cfg := testConfig(f)
	cfg.Mode = ModeDHCP
	cfg.DHCP.PoolStart, cfg.DHCP.PoolEnd = net.IPv4(10, 78, 0, 100), net.IPv4(10, 78, 0, 200)
	cfg.Hosts = table(f, Host{MAC: macA, IP: net.IPv4(10, 78, 0, 21)})
	full := newServer(f, cfg)
	f.Fuzz(func(t *testing.T, b []byte, port4011 bool) {
		for _, s := range []*Server{proxy, full} {
			_, resp, err := s.decide(b, port4011)
			if err != nil || resp == nil {
				continue
			}
			if resp.OpCode != dhcpv4.OpcodeBootReply {
				t.Fatalf("reply opcode %v", resp.OpCode)
			}
			if _, err := dhcpv4.FromBytes(resp.ToBytes()); err != nil {
				t.Fatalf("reply does not decode: %v", err)
			}
		}
	})
}

// FuzzParseUDP4 feeds arbitrary packets to the NoBind socket's decoder:
// it must never panic, and what it accepts must survive a rebuild.
func FuzzParseUDP4(f *testing.F) {
	payload := pkt{vendor: "PXEClient", arch: u16(0)}.build(f).ToBytes()
	good, err := buildUDP4(net.IPv4(10, 78, 0, 50), net.IPv4bcast, 68, 67, payload)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:30])
	f.Add([]byte{0x4f, 0, 0, 40})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, from, err := parseUDP4(b, 67)
		if err != nil {
			return
		}
		if from == nil || from.IP.To4() == nil || len(got) > len(b) {
			t.Fatalf("accepted with from %v, %d of %d bytes", from, len(got), len(b))
		}
		p, err := buildUDP4(from.IP, net.IPv4(10, 78, 0, 1), from.Port, 67, got)
		if err != nil {
			t.Fatal(err)
		}
		if again, _, err := parseUDP4(p, 67); err != nil || string(again) != string(got) {
			t.Fatalf("rebuilt datagram: %v", err)
		}
	})
}

// FuzzCleanBootPath checks that no accepted name can leave the boot
// directory.
func FuzzCleanBootPath(f *testing.F) {
	for _, s := range []string{"undionly.kpxe", "../../etc/passwd", "/a/../../b", "a\\..\\b", "pxelinux.cfg/01-52-54-00-12-34-56"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		p, err := CleanBootPath(name)
		if err != nil {
			if !errors.Is(err, ErrBadPath) {
				t.Fatalf("error %v is not ErrBadPath", err)
			}
			return
		}
		if p == "" || strings.HasPrefix(p, "/") || strings.Contains(p, "\x00") || strings.Contains(p, "\\") {
			t.Fatalf("CleanBootPath(%q) = %q", name, p)
		}
		for _, el := range strings.Split(p, "/") {
			if el == ".." || el == "." || el == "" {
				t.Fatalf("CleanBootPath(%q) = %q has element %q", name, p, el)
			}
		}
	})
}
