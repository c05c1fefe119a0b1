package pxe

import (
	"errors"
	"net"
	"testing"
)

func TestSetHosts(t *testing.T) {
	s := newServer(t, fullConfig(t))
	if s.Leases()[0].IP != "10.78.0.21" || s.NextBoot(macB) {
		t.Fatalf("before: leases %v", s.Leases())
	}
	err := s.SetHosts([]Host{{MAC: macB, IP: net.IPv4(10, 78, 0, 22), Hostname: "ws22", Clone: true}})
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
	if s.reserved(net.IPv4(10, 78, 0, 21)) || !s.reserved(net.IPv4(10, 78, 0, 22)) {
		t.Fatal("reserved addresses not taken from the new table")
	}
	err = s.SetHosts([]Host{{MAC: macA}, {MAC: macA}})
	if !errors.Is(err, ErrConfig) || !s.NextBoot(macB) {
		t.Fatalf("duplicate MAC: %v (and the table must not change)", err)
	}
}
