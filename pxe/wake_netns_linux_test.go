//go:build linux

package pxe

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/labseed/labseed/internal/netlab"
)

// TestWakeNetns sends the magic packets of two machines from a print
// server's namespace and reads them, as the machines' network cards do,
// in a workstation's namespace on the same switch: each packet three times
// as a UDP datagram to the lab network's directed broadcast address, port
// 9, and three times as an 0x0842 Ethernet broadcast frame, from the lab
// interface. Namespaces lswake-*-PID on 10.79.0.0/24, removed by name.
func TestWakeNetns(t *testing.T) {
	if os.Getenv("LABSEED_LONG") != "1" {
		t.Skip("network-namespace test; set LABSEED_LONG=1 (needs root, iproute2)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip not installed (apt-get install iproute2)")
	}
	id := strconv.Itoa(os.Getpid())
	nsSw, nsSrv, nsWS := "lswake-sw-"+id, "lswake-srv-"+id, "lswake-ws-"+id
	const srvMAC = "52:54:00:79:00:01"
	netlab.Build(t, nsSw,
		netlab.Host{NS: nsSrv, Addr: "10.79.0.1/24", MAC: srvMAC},
		netlab.Host{NS: nsWS, MAC: "52:54:00:79:00:10"})
	// A second address on another network: the datagrams go to the
	// broadcast address of the lab's.
	netlab.Run(t, "ip", "-n", nsSrv, "addr", "add", "192.168.79.1/16", "dev", "eth0")
	macA, _ := net.ParseMAC("52:54:00:79:00:10")
	macB, _ := net.ParseMAC("52:54:00:79:00:99")
	var l *netlab.WakeListener
	if err := netlab.InNetns(nsWS, func() (err error) {
		l, err = netlab.ListenWake("eth0", macA, macB)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	var res WakeResult
	if err := netlab.InNetns(nsSrv, func() (err error) {
		res, err = Wake(t.Context(), WakeConfig{Interface: "eth0", IP: net.ParseIP("10.79.0.1"), Gap: 10 * time.Millisecond}, []net.HardwareAddr{macA, macB})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !res.Raw || res.Broadcast.String() != "10.79.0.255" || res.Sent != 12 {
		t.Fatalf("WakeResult %+v: want raw frames, broadcast 10.79.0.255, 12 packets", res)
	}
	got := map[string]int{}
	for {
		f, err := l.Next(2 * time.Second)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if f.Src.String() != srvMAC {
			t.Errorf("%s frame from %s, not from the lab interface (%s)", f.Kind, f.Src, srvMAC)
		}
		got[f.MAC.String()+" "+f.Kind+" "+f.Dst]++
	}
	want := map[string]int{
		macA.String() + " udp 10.79.0.255:9":     3,
		macA.String() + " raw ff:ff:ff:ff:ff:ff": 3,
		macB.String() + " udp 10.79.0.255:9":     3,
		macB.String() + " raw ff:ff:ff:ff:ff:ff": 3,
	}
	if len(got) != len(want) {
		t.Fatalf("magic packets seen %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: %d packets, want %d (all: %v)", k, got[k], n, got)
		}
	}

	t.Run("NoRaw", func(t *testing.T) {
		if err := netlab.InNetns(nsSrv, func() (err error) {
			res, err = Wake(t.Context(), WakeConfig{Interface: "eth0", Repeat: 1, NoRaw: true}, []net.HardwareAddr{macA})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		f, err := l.Next(2 * time.Second)
		if err != nil || f.Kind != "udp" || res.Raw {
			t.Fatalf("%+v %v (result %+v): want one UDP datagram", f, err, res)
		}
		if f, err := l.Next(500 * time.Millisecond); err == nil {
			t.Fatalf("a second packet: %+v", f)
		}
	})
}
