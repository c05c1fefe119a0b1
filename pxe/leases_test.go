package pxe

import (
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

func fullConfig(t *testing.T) Config {
	cfg := testConfig(t)
	cfg.Mode = ModeDHCP
	cfg.DHCP.Gateway = net.IPv4(10, 78, 0, 254)
	cfg.DHCP.DNS = []net.IP{net.IPv4(10, 78, 0, 253)}
	cfg.DHCP.PoolStart = net.IPv4(10, 78, 0, 100)
	cfg.DHCP.PoolEnd = net.IPv4(10, 78, 0, 101)
	cfg.DHCP.LeaseFile = filepath.Join(t.TempDir(), "leases.json")
	cfg.Hosts = table(t, Host{MAC: macA, IP: net.IPv4(10, 78, 0, 21), Hostname: "ws21", DNS: []net.IP{net.IPv4(9, 9, 9, 9)}})
	now := time.Date(2025, 9, 1, 8, 0, 0, 0, time.UTC)
	cfg.Now = func() time.Time { return now }
	return cfg
}

func TestFullDHCPStatic(t *testing.T) {
	s := newServer(t, fullConfig(t))
	offer, reason := s.handleDHCP(pkt{vendor: "PXEClient", arch: u16(7)}.build(t), false)
	if offer == nil {
		t.Fatalf("no offer: %s", reason)
	}
	if offer.MessageType() != dhcpv4.MessageTypeOffer || !offer.YourIPAddr.Equal(net.IPv4(10, 78, 0, 21)) {
		t.Fatalf("got %s yiaddr %s", offer.MessageType(), offer.YourIPAddr)
	}
	if offer.HostName() != "ws21" || !offer.Router()[0].Equal(net.IPv4(10, 78, 0, 254)) || !offer.DNS()[0].Equal(net.IPv4(9, 9, 9, 9)) {
		t.Errorf("hostname %q router %v dns %v", offer.HostName(), offer.Router(), offer.DNS())
	}
	if offer.BootFileName != "ipxe.efi" || !offer.ServerIPAddr.Equal(net.IPv4(10, 78, 0, 1)) {
		t.Errorf("boot file %q next-server %s", offer.BootFileName, offer.ServerIPAddr)
	}
	ack, reason := s.handleDHCP(pkt{typ: dhcpv4.MessageTypeRequest, reqIP: net.IPv4(10, 78, 0, 21), server: net.IPv4(10, 78, 0, 1)}.build(t), false)
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || ack.BootFileName != "" {
		t.Fatalf("request: %v %s", ack, reason)
	}
	nak, _ := s.handleDHCP(pkt{typ: dhcpv4.MessageTypeRequest, reqIP: net.IPv4(10, 78, 0, 99)}.build(t), false)
	if nak == nil || nak.MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("wrong address not NAKed: %v", nak)
	}
	if r, _ := s.handleDHCP(pkt{typ: dhcpv4.MessageTypeRequest, reqIP: net.IPv4(10, 78, 0, 21), server: net.IPv4(10, 78, 0, 2)}.build(t), false); r != nil {
		t.Errorf("answered a request for another server: %s", r.Summary())
	}
	// Arch 11 still gets its address, just no boot file.
	r, _ := s.handleDHCP(pkt{vendor: "PXEClient", arch: u16(11)}.build(t), false)
	if r == nil || r.BootFileName != "" || !r.YourIPAddr.Equal(net.IPv4(10, 78, 0, 21)) {
		t.Errorf("arch 11: %v", r)
	}
}

func TestFullDHCPPoolPersisted(t *testing.T) {
	cfg := fullConfig(t)
	s := newServer(t, cfg)
	macs := []net.HardwareAddr{macB, {2, 0, 0, 0, 0, 2}, {2, 0, 0, 0, 0, 3}}
	var got []net.IP
	for _, m := range macs[:2] {
		offer, reason := s.handleDHCP(pkt{mac: m}.build(t), false)
		if offer == nil {
			t.Fatalf("%s: no offer: %s", m, reason)
		}
		ack, reason := s.handleDHCP(pkt{mac: m, typ: dhcpv4.MessageTypeRequest, reqIP: offer.YourIPAddr, server: cfg.ServerIP}.build(t), false)
		if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
			t.Fatalf("%s: no ack: %s", m, reason)
		}
		got = append(got, ack.YourIPAddr)
	}
	if !got[0].Equal(net.IPv4(10, 78, 0, 100)) || !got[1].Equal(net.IPv4(10, 78, 0, 101)) {
		t.Errorf("pool addresses %v", got)
	}
	if r, _ := s.handleDHCP(pkt{mac: macs[2]}.build(t), false); r != nil {
		t.Errorf("pool exhausted but offered %s", r.YourIPAddr)
	}
	s.Close()

	// A restarted server knows the leases from the file.
	s2 := newServer(t, cfg)
	if n := len(s2.Leases()); n != 3 {
		t.Errorf("leases after restart: %+v", s2.Leases())
	}
	offer, _ := s2.handleDHCP(pkt{mac: macB}.build(t), false)
	if offer == nil || !offer.YourIPAddr.Equal(got[0]) {
		t.Errorf("restarted server offers %v to %s, want %s", offer, macB, got[0])
	}
	s2.handleDHCP(pkt{mac: macB, typ: dhcpv4.MessageTypeRelease, ciaddr: got[0]}.build(t), false)
	if n := len(s2.Leases()); n != 2 {
		t.Errorf("leases after release: %+v", s2.Leases())
	}
}

func TestFullDHCPUnknownMACNoPool(t *testing.T) {
	cfg := fullConfig(t)
	cfg.DHCP.PoolStart, cfg.DHCP.PoolEnd = nil, nil
	s := newServer(t, cfg)
	if r, reason := s.handleDHCP(pkt{mac: macB, vendor: "PXEClient"}.build(t), false); r != nil || reason == "" {
		t.Errorf("unknown MAC answered: %v", r)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config) error
	}{
		{"no server IP", func(c *Config) error { c.ServerIP = nil; return nil }},
		{"bad mode", func(c *Config) error { c.Mode = "full"; return nil }},
		{"half pool", func(c *Config) error { c.DHCP.PoolStart = net.IPv4(10, 78, 0, 10); return nil }},
		{"reversed pool", func(c *Config) error {
			c.DHCP.PoolStart, c.DHCP.PoolEnd = net.IPv4(10, 78, 0, 10), net.IPv4(10, 78, 0, 9)
			return nil
		}},
		{"short MAC", func(c *Config) (err error) {
			c.Hosts, err = NewHostTable(Host{MAC: net.HardwareAddr{1, 2}})
			return err
		}},
		{"duplicate MAC", func(c *Config) (err error) { c.Hosts, err = NewHostTable(Host{MAC: macA}, Host{MAC: macA}); return err }},
		{"bad blksize", func(c *Config) error { c.TFTPBlockSize = 100; return nil }},
		{"NoBind in full DHCP mode", func(c *Config) error { c.Mode, c.NoBind = ModeDHCP, true; return nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			err := tt.mod(&cfg)
			if err == nil {
				_, err = New(cfg)
			}
			if !errors.Is(err, ErrConfig) {
				t.Errorf("the config was not refused: %v", err)
			}
		})
	}
}
