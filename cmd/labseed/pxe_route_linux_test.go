//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/labseed/labseed/internal/netlab"
)

// TestServePXENoDefaultRoute is the print server of issue 15: its lab
// network has no default route (no namespace here has one), and it has
// one lab interface (eth0, 10.81.0.1/24) next to an uplink (uplink0,
// 192.168.81.1/24).
//
//   - "labseed serve --pxe proxy" without --listen or --interface refuses
//     to start and names both candidates.
//   - With --listen 10.81.0.1 and no --interface, a PXE client on the lab
//     gets its proxyDHCP offer: the DHCP sockets are bound to eth0, the
//     interface that holds the --listen address. (They used to be bound to
//     none: the broadcast reply was routed, and every reply failed with
//     "sendto: network is unreachable".)
//
// Namespaces lsroute-*-PID, removed by name. The PXE client is this test
// binary (TestHelperPXEClient) in the workstation's namespace.
func TestServePXENoDefaultRoute(t *testing.T) {
	needLong(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces and port 67")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip not installed (apt-get install iproute2)")
	}
	id := strconv.Itoa(os.Getpid())
	nsSw, nsSrv, nsWS := "lsroute-sw-"+id, "lsroute-srv-"+id, "lsroute-ws-"+id
	netlab.Build(t, nsSw,
		netlab.Host{NS: nsSrv, Addr: "10.81.0.1/24"},
		netlab.Host{NS: nsWS, MAC: "52:54:00:81:00:10"})
	// The uplink: a veth pair inside the server's namespace (no dummy
	// devices in every kernel), its far end without an address.
	netlab.Run(t, "ip", "-n", nsSrv, "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1")
	netlab.Run(t, "ip", "-n", nsSrv, "addr", "add", "192.168.81.1/24", "dev", "uplink0")
	netlab.Run(t, "ip", "-n", nsSrv, "link", "set", "uplink1", "up")
	netlab.Run(t, "ip", "-n", nsSrv, "link", "set", "uplink0", "up")
	if r := netlab.Run(t, "ip", "-n", nsSrv, "route", "show", "default"); strings.TrimSpace(r) != "" {
		t.Fatalf("the print server has a default route: %s", r)
	}
	dir := t.TempDir()
	st := filepath.Join(dir, "store")
	if err := os.MkdirAll(filepath.Join(st, "boot"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(st, "boot", "undionly.kpxe"), []byte("first stage"), 0o644)
	serve := []string{"ip", "netns", "exec", nsSrv, labseedBin, "serve", "--store", st, "--pxe", "proxy", "-v"}

	t.Run("several candidates, no --listen", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, serve[0], serve[1:]...).CombinedOutput()
		if err == nil || ctx.Err() != nil {
			t.Fatalf("labseed serve --pxe started without --listen on a server with two interfaces (err %v):\n%s", err, out)
		}
		for _, want := range []string{"eth0 (10.81.0.1)", "uplink0 (192.168.81.1)", "--listen", "--interface"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("the refusal does not say %q:\n%s", want, out)
			}
		}
	})

	t.Run("--listen on the lab interface", func(t *testing.T) {
		log := filepath.Join(dir, "serve.log")
		netlab.StartLogged(t, log, append(serve, "--listen", "10.81.0.1")...)
		if !netlab.WaitFile(log, "component=pxe mode=proxy", 20*time.Second) {
			b, _ := os.ReadFile(log)
			t.Fatalf("labseed serve --pxe proxy did not start:\n%s", b)
		}
		cmd := exec.Command("ip", "netns", "exec", nsWS, os.Args[0], "-test.run=^TestHelperPXEClient$")
		cmd.Env = append(os.Environ(), "LABSEED_PXE_CLIENT=eth0")
		out, err := cmd.CombinedOutput()
		b, _ := os.ReadFile(log)
		if err != nil || !strings.Contains(string(out), "OFFER file=undionly.kpxe siaddr=10.81.0.1") {
			t.Fatalf("no proxyDHCP offer reached the workstation (%v):\n%s\nserve log:\n%s", err, out, b)
		}
		if strings.Contains(string(b), "network is unreachable") || !strings.Contains(string(b), "interface=eth0") {
			t.Errorf("a reply failed, or the DHCP sockets are not bound to eth0:\n%s", b)
		}
	})
}

// TestHelperPXEClient is not a test: TestServePXENoDefaultRoute runs the
// test binary with it selected in the workstation's namespace, where it
// sends a BIOS PXE DHCPDISCOVER on $LABSEED_PXE_CLIENT and prints the first
// offer ("OFFER file=... siaddr=...") or ERROR.
func TestHelperPXEClient(t *testing.T) {
	iface := os.Getenv("LABSEED_PXE_CLIENT")
	if iface == "" {
		t.Skip("helper process for TestServePXENoDefaultRoute")
	}
	c, err := nclient4.New(iface, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(4))
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	offer, err := c.DiscoverOffer(ctx,
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.Arch(0))))
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Printf("OFFER file=%s siaddr=%s\n", offer.BootFileName, offer.ServerIPAddr)
	os.Exit(0)
}
