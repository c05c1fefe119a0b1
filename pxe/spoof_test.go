package pxe

import (
	"net"
	"os"
	"runtime"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// TestSpoofedProxyRequestsBounded is the PXE part of finding 6 of issue
// 19 as an attack: 300 000 proxyDHCP requests on port 4011 (20 000
// without LABSEED_LONG), each from a made-up MAC claiming a made-up client
// address, as anyone on the LAN can send. The address-to-MAC map stays
// within its bound (before: one entry per request, 300 000 entries and
// +48 MiB), the boot events within theirs, and a real client learnt last
// is still known.
func TestSpoofedProxyRequestsBounded(t *testing.T) {
	s := newServer(t, testConfig(t))
	n := 20000
	if os.Getenv("LABSEED_LONG") != "" {
		n = 300000
	}
	// The replies go to a loopback port nobody listens on (the claimed
	// addresses are made up: nothing is sent to them).
	sink := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range n {
		mac := net.HardwareAddr{0x02, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
		ip := net.IPv4(10, byte(i>>16), byte(i>>8), byte(i))
		req := pkt{typ: dhcpv4.MessageTypeRequest, mac: mac, vendor: "PXEClient:Arch:00000:UNDI:002001", arch: u16(0), ciaddr: ip}.build(t)
		s.handlePacket(req.ToBytes(), sink, true)
	}
	real := pkt{typ: dhcpv4.MessageTypeRequest, mac: macA, vendor: "PXEClient:Arch:00000:UNDI:002001", arch: u16(0), ciaddr: net.IPv4(10, 78, 0, 50)}.build(t)
	s.handlePacket(real.ToBytes(), sink, true)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	s.mu.Lock()
	size := len(s.ipMAC)
	s.mu.Unlock()
	s.events.mu.Lock()
	evs := len(s.events.rings)
	s.events.mu.Unlock()
	t.Logf("%d spoofed requests: %d addresses kept, %d MACs with events, heap %+d KiB", n, size, evs,
		(int64(after.HeapInuse)-int64(before.HeapInuse))>>10)
	if size > maxIPMACs {
		t.Errorf("%d addresses kept, bound %d", size, maxIPMACs)
	}
	if got := s.macForIP(net.IPv4(10, 78, 0, 50)); got.String() != macA.String() {
		t.Errorf("the real client's address gives %v, want %v", got, macA)
	}
	if size < n && size < maxIPMACs/2 {
		t.Errorf("only %d addresses kept: the requests were not taken", size)
	}
}
