package pxe

import (
	"errors"
	"net"
	"testing"
)

// TestSetHosts: the server follows a change of its hosts table at once.
func TestSetHosts(t *testing.T) {
	cfg := fullConfig(t)
	hosts := cfg.Hosts.(*HostTable)
	s := newServer(t, cfg)
	if s.Leases()[0].IP != "10.78.0.21" || s.NextBoot(macB) {
		t.Fatalf("before: leases %v", s.Leases())
	}
	err := hosts.Set([]Host{{MAC: macB, IP: net.IPv4(10, 78, 0, 22), Hostname: "ws22", Clone: true}})
	if err != nil {
		t.Fatal(err)
	}
	if l := s.Leases(); len(l) != 1 || l[0].IP != "10.78.0.22" || !l[0].Static {
		t.Fatalf("after: leases %v", l)
	}
	if !s.NextBoot(macB) || s.NextBoot(macA) || !s.Menu(macB).Clone {
		t.Fatal("next-boot marks not taken from the new table")
	}
	// The old host's address is no longer reserved; the new one's is.
	if r := s.reserved(); r["10.78.0.21"] || !r["10.78.0.22"] {
		t.Fatal("reserved addresses not taken from the new table")
	}
	err = hosts.Set([]Host{{MAC: macA}, {MAC: macA}})
	if !errors.Is(err, ErrConfig) || !s.NextBoot(macB) {
		t.Fatalf("duplicate MAC: %v (and the table must not change)", err)
	}
}

func TestEventLogBounded(t *testing.T) {
	l := newEventLog(4)
	mac := func(i int) net.HardwareAddr { return net.HardwareAddr{2, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)} }
	l.add(mac(0), Event{Kind: EventScript})
	for i := 1; i < maxEventHosts+100; i++ {
		l.add(mac(i), Event{Kind: EventIgnored})
		if i%1000 == 0 {
			l.add(mac(0), Event{Kind: EventScript}) // heard from again: kept
		}
	}
	if n := len(l.rings); n != maxEventHosts {
		t.Fatalf("%d MACs kept, want %d", n, maxEventHosts)
	}
	if l.get(mac(0)) == nil {
		t.Error("a MAC heard from recently was forgotten")
	}
	if l.get(mac(1)) != nil {
		t.Error("the MAC heard from least recently was kept")
	}
}
