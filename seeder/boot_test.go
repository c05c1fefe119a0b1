package seeder

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/labseed/labseed/hosts"
	"github.com/labseed/labseed/pxe"
	"github.com/labseed/labseed/store"
)

// TestDHCPNetwork checks that ModeDHCP hands out the network of lab.conf.
func TestDHCPNetwork(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, hosts.SettingsFile), []byte("netmask = 255.255.254.0\ngateway = 10.1.0.1\ndns = 10.1.0.2 10.1.0.3\ndomain = lab1.example.org\ndhcp_pool = 10.1.1.10-10.1.1.50\n"), 0o644)
	db, err := hosts.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := dhcpNetwork(db, dir, pxe.DHCPConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if ones, _ := c.Netmask.Size(); ones != 23 || c.Gateway.String() != "10.1.0.1" || len(c.DNS) != 2 || c.DNS[1].String() != "10.1.0.3" ||
		c.Domain != "lab1.example.org" || c.PoolStart.String() != "10.1.1.10" || c.PoolEnd.String() != "10.1.1.50" ||
		c.LeaseFile != filepath.Join(dir, "leases.json") {
		t.Fatalf("%+v", c)
	}
	// Without a pool only the table's machines get an address.
	os.WriteFile(filepath.Join(dir, hosts.SettingsFile), []byte("gateway = 10.1.0.1\n"), 0o644)
	os.Chtimes(filepath.Join(dir, hosts.SettingsFile), time.Now(), time.Now().Add(time.Second))
	if c, err = dhcpNetwork(db, dir, pxe.DHCPConfig{}); err != nil || c.PoolStart != nil || c.DNS != nil {
		t.Fatalf("no pool: %+v, %v", c, err)
	}
}

// TestBootAddresses: the network boot's URLs point to the server's own
// HTTP listener, free port included (they used to end in port 0), and
// the boot follows the hosts table's marks.
func TestBootAddresses(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, hosts.HostsFile), []byte("mac,hostname,ip,next_boot\n52:54:00:00:00:01,ws01,10.1.0.101,clone\n"), 0o644)
	cfg := pxe.DefaultConfig()
	cfg.Mode, cfg.ProxyAddr = pxe.ModeOff, "-"
	srv, _ := startServer(t, dir, &cfg)
	mac, _ := hosts.ParseMAC("52:54:00:00:00:01")
	url := srv.Boot().ScriptURL(mac, false)
	if want := "http://" + srv.Lab().HTTPAddr + "/pxe/ipxe/bios/52-54-00-00-00-01"; url != want {
		t.Errorf("script URL %s, want %s", url, want)
	}
	if !srv.Boot().Menu(mac).Clone {
		t.Error("the hosts table's clone mark did not reach the boot menu")
	}
	if i := srv.Boot().Interface(); i == "" {
		t.Error("the network boot is bound to no interface: with ListenIP 127.0.0.1 it is the loopback's")
	}
	for _, bad := range []func(*pxe.Config){
		func(c *pxe.Config) { c.ServerIP = net.IPv4(10, 1, 0, 1) },
		func(c *pxe.Config) { c.HTTPAddr = "10.1.0.1:80" },
	} {
		c := cfg
		bad(&c)
		st, err := store.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		sc := LocalConfig()
		sc.Store, sc.Insecure, sc.PXE = st, true, &c
		if s, err := New(sc); err == nil {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			s.Run(ctx) // releases the listeners
			t.Errorf("New accepted a PXE config with the server's own addresses set: %+v", c)
		}
	}
}
