package pxe

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

var (
	macA = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	macB = net.HardwareAddr{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef}
)

// testConfig is a loopback configuration with free ports.
func testConfig(t testing.TB) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.ServerIP = net.IPv4(10, 78, 0, 1)
	cfg.HTTPAddr = "10.78.0.1:7480"
	cfg.DHCPAddr = "127.0.0.1:0"
	cfg.ProxyAddr = "127.0.0.1:0"
	cfg.TFTPAddr = "127.0.0.1:0"
	cfg.Image = "lab-2025"
	return cfg
}

// table is a HostTable holding hosts.
func table(t testing.TB, hosts ...Host) *HostTable {
	t.Helper()
	ht, err := NewHostTable(hosts...)
	if err != nil {
		t.Fatal(err)
	}
	return ht
}

func newServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// bootDir makes a boot directory with a first stage of n bytes.
func bootDir(t testing.TB, n int) (string, []byte) {
	t.Helper()
	dir := t.TempDir()
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(i*7 + i/251)
	}
	if err := os.WriteFile(filepath.Join(dir, "undionly.kpxe"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ipxe.efi"), data[:n/2], 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, data
}

// pkt builds a request like a PXE ROM (or a plain client) sends.
type pkt struct {
	typ     dhcpv4.MessageType
	mac     net.HardwareAddr
	vendor  string // option 60
	arch    *uint16
	ipxe    bool
	uuid    []byte // option 97
	reqIP   net.IP
	ciaddr  net.IP
	server  net.IP
	rfcUser bool
}

func u16(v uint16) *uint16 { return &v }

func (p pkt) build(t testing.TB) *dhcpv4.DHCPv4 {
	t.Helper()
	mac := p.mac
	if mac == nil {
		mac = macA
	}
	typ := p.typ
	if typ == dhcpv4.MessageTypeNone {
		typ = dhcpv4.MessageTypeDiscover
	}
	mods := []dhcpv4.Modifier{dhcpv4.WithMessageType(typ), dhcpv4.WithBroadcast(true)}
	if p.vendor != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClassIdentifier(p.vendor)))
	}
	if p.arch != nil {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClientArch(iana.Arch(*p.arch))))
	}
	if p.ipxe {
		mods = append(mods, dhcpv4.WithUserClass("iPXE", p.rfcUser))
	}
	if p.uuid != nil {
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, p.uuid))
	}
	if p.reqIP != nil {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(p.reqIP)))
	}
	if p.ciaddr != nil {
		mods = append(mods, dhcpv4.WithClientIP(p.ciaddr))
	}
	if p.server != nil {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(p.server)))
	}
	d, err := dhcpv4.NewDiscovery(mac, mods...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// poll calls cond every 20 ms until it returns true or d passes.
func poll(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
