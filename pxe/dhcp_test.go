package pxe

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

func TestProxyHandler(t *testing.T) {
	s := newServer(t, testConfig(t))
	uuid := append([]byte{0}, bytes.Repeat([]byte{0xab}, 16)...)
	tests := []struct {
		name     string
		req      pkt
		proxy    bool // received on port 4011
		want     dhcpv4.MessageType
		file     string // "" with want None: no answer
		vendor   string
		opt43    bool
		echoUUID bool
	}{
		{name: "BIOS arch 0", req: pkt{vendor: "PXEClient:Arch:00000:UNDI:002001", arch: u16(0)},
			want: dhcpv4.MessageTypeOffer, file: "undionly.kpxe", vendor: "PXEClient", opt43: true},
		{name: "UEFI arch 7", req: pkt{vendor: "PXEClient:Arch:00007:UNDI:003016", arch: u16(7)},
			want: dhcpv4.MessageTypeOffer, file: "ipxe.efi", vendor: "PXEClient", opt43: true},
		{name: "UEFI arch 9 like 7", req: pkt{vendor: "PXEClient", arch: u16(9)},
			want: dhcpv4.MessageTypeOffer, file: "ipxe.efi", vendor: "PXEClient", opt43: true},
		{name: "arch from option 60 only", req: pkt{vendor: "PXEClient:Arch:00007:UNDI:003016"},
			want: dhcpv4.MessageTypeOffer, file: "ipxe.efi", vendor: "PXEClient", opt43: true},
		{name: "no arch at all is BIOS", req: pkt{vendor: "PXEClient"},
			want: dhcpv4.MessageTypeOffer, file: "undionly.kpxe", vendor: "PXEClient", opt43: true},
		{name: "option 97 echoed", req: pkt{vendor: "PXEClient", arch: u16(0), uuid: uuid},
			want: dhcpv4.MessageTypeOffer, file: "undionly.kpxe", vendor: "PXEClient", opt43: true, echoUUID: true},
		{name: "EFI IA32 unsupported", req: pkt{vendor: "PXEClient", arch: u16(6)}},
		{name: "ARM64 unsupported", req: pkt{vendor: "PXEClient", arch: u16(11)}},
		{name: "non-PXE client ignored", req: pkt{arch: u16(0)}},
		{name: "other vendor class ignored", req: pkt{vendor: "MSFT 5.0"}},
		{name: "iPXE BIOS gets script", req: pkt{vendor: "PXEClient:Arch:00000:UNDI:002001", arch: u16(0), ipxe: true},
			want: dhcpv4.MessageTypeOffer, file: "http://10.78.0.1:7480/pxe/ipxe/bios/52-54-00-12-34-56", vendor: "PXEClient"},
		{name: "iPXE EFI (arch 9) gets UEFI script", req: pkt{vendor: "PXEClient:Arch:00009:UNDI:003010", arch: u16(9), ipxe: true},
			want: dhcpv4.MessageTypeOffer, file: "http://10.78.0.1:7480/pxe/ipxe/uefi/52-54-00-12-34-56", vendor: "PXEClient"},
		{name: "iPXE RFC 3004 user class", req: pkt{vendor: "PXEClient", arch: u16(7), ipxe: true, rfcUser: true},
			want: dhcpv4.MessageTypeOffer, file: "http://10.78.0.1:7480/pxe/ipxe/uefi/52-54-00-12-34-56", vendor: "PXEClient"},
		{name: "UEFI HTTP boot", req: pkt{vendor: "HTTPClient:Arch:00016:UNDI:003001", arch: u16(16)},
			want: dhcpv4.MessageTypeOffer, file: "http://10.78.0.1:7480/pxe/boot/ipxe.efi", vendor: "HTTPClient"},
		{name: "REQUEST on 67 is the real server's", req: pkt{typ: dhcpv4.MessageTypeRequest, vendor: "PXEClient", arch: u16(0)}},
		{name: "REQUEST on 4011 acked", proxy: true,
			req:  pkt{typ: dhcpv4.MessageTypeRequest, vendor: "PXEClient", arch: u16(7), ciaddr: net.IPv4(10, 78, 0, 50), uuid: uuid},
			want: dhcpv4.MessageTypeAck, file: "ipxe.efi", vendor: "PXEClient", opt43: true, echoUUID: true},
		{name: "DISCOVER on 4011 ignored", proxy: true, req: pkt{vendor: "PXEClient", arch: u16(0)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req.build(t)
			resp, reason := s.handleDHCP(req, tt.proxy)
			if tt.want == dhcpv4.MessageTypeNone {
				if resp != nil {
					t.Fatalf("want no answer, got %s", resp.Summary())
				}
				if reason == "" {
					t.Error("no answer without a reason")
				}
				return
			}
			if resp == nil {
				t.Fatalf("no answer: %s", reason)
			}
			if resp.MessageType() != tt.want {
				t.Errorf("type %s, want %s", resp.MessageType(), tt.want)
			}
			if resp.BootFileName != tt.file {
				t.Errorf("boot file %q, want %q", resp.BootFileName, tt.file)
			}
			if got := string(resp.Options.Get(dhcpv4.OptionClassIdentifier)); got != tt.vendor {
				t.Errorf("option 60 %q, want %q", got, tt.vendor)
			}
			if !resp.ServerIPAddr.Equal(net.IPv4(10, 78, 0, 1)) || !resp.ServerIdentifier().Equal(net.IPv4(10, 78, 0, 1)) {
				t.Errorf("siaddr %s, server id %s, want 10.78.0.1", resp.ServerIPAddr, resp.ServerIdentifier())
			}
			if !resp.YourIPAddr.IsUnspecified() {
				t.Errorf("proxyDHCP reply carries yiaddr %s", resp.YourIPAddr)
			}
			if got := resp.Options.Has(dhcpv4.OptionVendorSpecificInformation); got != tt.opt43 {
				t.Errorf("option 43 present %v, want %v", got, tt.opt43)
			}
			if got := resp.Options.Get(dhcpv4.OptionClientMachineIdentifier); tt.echoUUID != (got != nil) || (got != nil && !bytes.Equal(got, uuid)) {
				t.Errorf("option 97 %x, echo wanted %v", got, tt.echoUUID)
			}
			if resp.TransactionID != req.TransactionID || !bytes.Equal(resp.ClientHWAddr, req.ClientHWAddr) {
				t.Error("xid or chaddr not copied")
			}
			if _, err := dhcpv4.FromBytes(resp.ToBytes()); err != nil {
				t.Errorf("reply does not decode: %v", err)
			}
		})
	}
	ev := s.Events(macA)
	if len(ev) == 0 {
		t.Fatal("no events recorded for the client")
	}
	var offers, ignored int
	for _, e := range ev {
		switch e.Kind {
		case EventProxyOffer:
			offers++
		case EventIgnored:
			ignored++
		}
	}
	if offers == 0 || ignored == 0 {
		t.Errorf("events %+v: want offers and ignored", ev)
	}
}

// TestRoutineRequestNotRecorded: in proxy mode every boot client sends a
// DHCPREQUEST to port 67 for the lab DHCP server's offer; that is not an
// event of the host, an unsupported architecture is.
func TestRoutineRequestNotRecorded(t *testing.T) {
	s := newServer(t, testConfig(t))
	req := pkt{typ: dhcpv4.MessageTypeRequest, mac: macB, vendor: "PXEClient", arch: u16(0), server: net.IPv4(10, 78, 0, 2), reqIP: net.IPv4(10, 78, 0, 120)}.build(t)
	if resp, _ := s.handleDHCP(req, false); resp != nil {
		t.Fatalf("answered %s", resp.Summary())
	}
	if ev := s.Events(macB); len(ev) != 0 {
		t.Errorf("events %+v, want none", ev)
	}
	s.handleDHCP(pkt{mac: macB, vendor: "PXEClient", arch: u16(11)}.build(t), false)
	if ev := s.Events(macB); len(ev) != 1 || ev[0].Kind != EventIgnored {
		t.Errorf("events %+v, want one ignored (arch 11)", ev)
	}
}

func TestReplyAddr(t *testing.T) {
	s := newServer(t, testConfig(t))
	peer := &net.UDPAddr{IP: net.IPv4(10, 78, 0, 50), Port: 68}
	resp, _ := pkt{vendor: "PXEClient"}.build(t), ""
	tests := []struct {
		name  string
		req   *dhcpv4.DHCPv4
		proxy bool
		want  string
	}{
		{"broadcast", pkt{vendor: "PXEClient"}.build(t), false, "255.255.255.255:68"},
		{"4011 back to sender", pkt{vendor: "PXEClient", ciaddr: net.IPv4(10, 78, 0, 50)}.build(t), true, "10.78.0.50:68"},
		{"unicast to ciaddr", pkt{vendor: "PXEClient", ciaddr: net.IPv4(10, 78, 0, 50)}.build(t), false, "10.78.0.50:68"},
	}
	relayed := pkt{vendor: "PXEClient"}.build(t)
	relayed.GatewayIPAddr = net.IPv4(10, 1, 0, 1)
	tests = append(tests, struct {
		name  string
		req   *dhcpv4.DHCPv4
		proxy bool
		want  string
	}{"relay", relayed, false, "10.1.0.1:67"})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.replyAddr(tt.req, resp, peer, tt.proxy).String(); got != tt.want {
				t.Errorf("reply to %s, want %s", got, tt.want)
			}
		})
	}
}

func TestMalformedCounted(t *testing.T) {
	s := newServer(t, testConfig(t))
	good := pkt{vendor: "PXEClient", arch: u16(0)}.build(t).ToBytes()
	for _, b := range [][]byte{nil, {1}, bytes.Repeat([]byte{0xff}, 300), good[:100], append(append([]byte{}, good[:240]...), 53, 200)} {
		s.handlePacket(b, &net.UDPAddr{IP: net.IPv4zero, Port: 68}, false)
	}
	if st := s.Stats(); st.DHCPMalformed != 5 {
		t.Errorf("stats %+v, want 5 malformed", st)
	}
}

// TestProxyPortLoopback sends a ProxyDHCPREQUEST to the 4011 socket and
// checks the ACK comes back from the DHCP (port 67) socket.
func TestProxyPortLoopback(t *testing.T) {
	s := newServer(t, testConfig(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := pkt{typ: dhcpv4.MessageTypeRequest, vendor: "PXEClient:Arch:00000:UNDI:002001", arch: u16(0), ciaddr: net.IPv4(127, 0, 0, 1)}.build(t)
	if _, err := c.WriteTo(req.ToBytes(), s.ProxyAddr()); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, from, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	if from.String() != s.DHCPAddr().String() {
		t.Errorf("reply from %s, want the DHCP socket %s", from, s.DHCPAddr())
	}
	resp, err := dhcpv4.FromBytes(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	if resp.MessageType() != dhcpv4.MessageTypeAck || resp.BootFileName != "undionly.kpxe" {
		t.Errorf("got %s file %q", resp.MessageType(), resp.BootFileName)
	}
	// Garbage on the wire is dropped and counted, the server keeps going.
	c.WriteTo([]byte("not dhcp"), s.ProxyAddr())
	poll(t, 5*time.Second, "malformed packet counted", func() bool { return s.Stats().DHCPMalformed == 1 })
	if st := s.Stats(); st.DHCPReplied != 1 || st.DHCPReceived != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestParseMode(t *testing.T) {
	for _, s := range []string{"proxy", "dhcp", "off"} {
		if m, err := ParseMode(s); err != nil || string(m) != s {
			t.Errorf("ParseMode(%q) = %q, %v", s, m, err)
		}
	}
	if _, err := ParseMode("full"); err == nil || !strings.Contains(err.Error(), "proxy") {
		t.Errorf("ParseMode(full) error %v", err)
	}
}
