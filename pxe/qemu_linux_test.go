//go:build linux

package pxe

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/labseed/labseed/internal/netlab"
	"golang.org/x/sys/unix"
)

// The qemu tests boot real firmware against the server in the netns lab:
// qemu-system-x86_64 under TCG (no KVM needed), its NIC a tap device
// bridged to the VM namespace's eth0. SeaBIOS boots the NIC's iPXE ROM
// (Debian ipxe-qemu); OVMF boots with its own UEFI PXE client (EDK2
// PxeBcDxe) on a virtio NIC without option ROM, which is the firmware →
// TFTP ipxe.efi → iPXE → HTTP script chain of a real UEFI workstation.
//
// iPXE configures IPv6 as well and waits ~16 s for a router advertisement
// that never comes on a v4-only lab: dnsmasq sends one (ra-only).

const (
	macBIOS   = "52:54:00:78:00:31"
	macUEFI   = "52:54:00:78:00:32"
	macShared = "52:54:00:78:00:33"
	qemuBoot  = 60 * time.Second                           // bound on each boot
	labPool   = "10.78.0.100,10.78.0.150,255.255.255.0,1h" // dnsmasq's addresses
)

// needNetns skips unless LABSEED_LONG=1, root and the tools are there.
func needNetns(t *testing.T, bins ...string) {
	t.Helper()
	if os.Getenv("LABSEED_LONG") != "1" {
		t.Skip("network-namespace test; set LABSEED_LONG=1 (needs root, iproute2, dnsmasq, busybox, tcpdump, qemu-system-x86, ipxe-qemu, ipxe)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	for _, bin := range append([]string{"ip"}, bins...) {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (apt-get install iproute2 dnsmasq-base busybox tcpdump qemu-system-x86 ipxe-qemu ipxe)", bin)
		}
	}
}

// ovmfPath is the UEFI firmware image, "" if the ovmf package is missing.
func ovmfPath() string {
	for _, p := range []string{"/usr/share/ovmf/OVMF.fd", "/usr/share/qemu/OVMF.fd"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// vm is one qemu machine booting from the network.
type vm struct {
	mac, serial, log string
	cmd              *exec.Cmd
}

// startVM boots a qemu machine in the VM namespace on tap0: SeaBIOS with
// the e1000's iPXE ROM, or (uefi) OVMF on a virtio NIC without ROM. The
// serial console goes to a file; stop kills qemu by its PID.
func startVM(t *testing.T, mac string, uefi bool) *vm {
	t.Helper()
	dir := t.TempDir()
	v := &vm{mac: mac, serial: filepath.Join(dir, "serial.log"), log: filepath.Join(dir, "qemu.log")}
	var ovmf string
	if uefi {
		ovmf = ovmfPath()
	}
	v.cmd = netlab.StartLogged(t, v.log, netlab.QEMUArgs(nsVM, mac, v.serial, ovmf)...)
	return v
}

// stop kills qemu (ip netns exec has exec'd it: same PID) and waits.
func (v *vm) stop() {
	v.cmd.Process.Signal(syscall.SIGKILL)
	v.cmd.Wait()
}

// console is the serial output without terminal escapes.
func (v *vm) console() string {
	b, _ := os.ReadFile(v.serial)
	return netlab.CleanConsole(b)
}

// report logs what the machine and the server said, for a failure.
func (v *vm) report(t *testing.T, srv *helperServer) {
	t.Helper()
	t.Logf("serial console of %s:\n%s", v.mac, v.console())
	if b, _ := os.ReadFile(v.log); len(b) > 0 {
		t.Logf("qemu: %s", b)
	}
	srv.logEvents(t, v.mac)
}

// bootTo boots and waits for the events of mac, then for each of console
// on its console (the labseed menu title if none). It returns the time
// taken.
func bootTo(t *testing.T, srv *helperServer, mac string, uefi bool, console []string, want ...[2]string) time.Duration {
	t.Helper()
	start := time.Now()
	v := startVM(t, mac, uefi)
	defer v.stop()
	if !srv.waitEvents(mac, qemuBoot, want...) {
		v.report(t, srv)
		t.Fatalf("events %q not recorded within %v", want, qemuBoot)
	}
	if len(console) == 0 {
		console = []string{"labseed " + mac}
	}
	for _, c := range console {
		if !netlab.WaitFile(v.serial, c, 10*time.Second) {
			v.report(t, srv)
			t.Fatalf("%q did not show on the console", c)
		}
	}
	d := time.Since(start)
	if testing.Verbose() {
		v.report(t, srv)
	}
	return d
}

// TestQEMUBoot: a qemu machine boots from labseed in proxy mode, with
// dnsmasq as the lab's DHCP server in another namespace.
func TestQEMUBoot(t *testing.T) {
	needNetns(t, "dnsmasq")
	if why := netlab.WhyNoQEMU(); why != "" {
		t.Skip(why)
	}
	netlab.Build(t, nsSwitch, hostServer, hostDHCP, hostVM)
	dir := t.TempDir()
	netlab.IPXEBootDir(t, dir)
	dnsmasqLog := netlab.Dnsmasq(t, nsDHCP, labPool, "fd00:78::2")
	srv := startServer(t, helperConfig{BootDir: dir, HTTP: true, Clone: []string{macBIOS}})

	t.Run("BIOS iPXE ROM to menu and clone entry", func(t *testing.T) {
		// The ROM is iPXE: it gets the script URL straight away. The
		// host is marked for cloning, so after 1 s the menu boots the
		// kernel and initrd over HTTP. The "kernel" is ipxe.lkrn, which
		// runs its command line as iPXE commands: it says
		// "labseed.server=...: command not found", which shows that the
		// booted kernel got the clone entry's command line.
		d := bootTo(t, srv, macBIOS, false,
			[]string{"labseed " + macBIOS, "labseed.server=10.78.0.1:7480: command not found"},
			[2]string{"proxy-offer", "OFFER arch 0 boot http://10.78.0.1:7480/pxe/ipxe/bios/52-54-00-78-00-31"},
			[2]string{"ipxe-script", "(bios)"},
			[2]string{"http-file", "vmlinuz"},
			[2]string{"http-file", "initrd.img"})
		t.Logf("BIOS: menu, clone entry, kernel booted in %v", d.Round(100*time.Millisecond))
	})
	t.Run("UEFI firmware PXE, TFTP ipxe.efi, iPXE to menu", func(t *testing.T) {
		if ovmfPath() == "" {
			t.Skip("no OVMF (apt-get install ovmf)")
		}
		d := bootTo(t, srv, macUEFI, true, nil,
			[2]string{"proxy-offer", "OFFER arch 7 boot ipxe.efi"},
			[2]string{"tftp-sent", "ipxe.efi"},
			[2]string{"proxy-offer", "boot http://10.78.0.1:7480/pxe/ipxe/uefi/52-54-00-78-00-32"},
			[2]string{"ipxe-script", "(uefi)"})
		var blk bool
		for _, e := range srv.Events(macUEFI) {
			blk = blk || (e.Kind == EventTFTPSent && strings.Contains(e.Detail, "blksize=1468"))
		}
		if !blk {
			t.Error("the firmware's TFTP transfer did not use blksize 1468")
		}
		t.Logf("UEFI: firmware PXE to the labseed menu in %v", d.Round(100*time.Millisecond))
	})
	if t.Failed() {
		b, _ := os.ReadFile(dnsmasqLog)
		t.Logf("dnsmasq:\n%s", b)
	}
}

// TestNetnsSameHost: the print server also runs the lab's DHCP server
// (dnsmasq, as it comes: port 67 bound to the wildcard address without
// SO_REUSEADDR). labseed reads DHCP without binding the port (NoBind);
// workstations get their address from dnsmasq (renewals too, which are
// unicast to the shared address) and boot information from labseed.
func TestNetnsSameHost(t *testing.T) {
	needNetns(t, "dnsmasq", "busybox", "tcpdump")
	hosts := []netlab.Host{hostServer, hostPC}
	qemu := netlab.WhyNoQEMU()
	if qemu == "" {
		hosts = append(hosts, hostVM)
	}
	netlab.Build(t, nsSwitch, hosts...)
	dir := t.TempDir()
	netlab.IPXEBootDir(t, dir)
	dnsmasqLog := netlab.Dnsmasq(t, nsServer, labPool, "fd00:78::1")
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(dnsmasqLog)
			t.Logf("dnsmasq:\n%s", b)
		}
	}()

	t.Run("binding port 67 is refused with a hint", func(t *testing.T) {
		h, err := tryStartServer(helperConfig{BootDir: dir})
		if err == nil {
			h.stop()
			t.Fatal("the server bound port 67 next to dnsmasq")
		}
		if !strings.Contains(err.Error(), "NoBind") {
			t.Errorf("error does not point to NoBind: %v", err)
		}
	})

	srv := startServer(t, helperConfig{BootDir: dir, HTTP: true, NoBind: true, Report: []string{macPC}})

	t.Run("udhcpc PXE gets both offers", func(t *testing.T) {
		var proxy, plain int
		var pkts []capturedDHCP
		for attempt := 0; attempt < 3 && (proxy == 0 || plain == 0); attempt++ {
			pkts = capture(t, nsPC, func() {
				// The offers come within milliseconds; after them udhcpc
				// may loop on NAKs (see below): stop it after 2 s.
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				exec.CommandContext(ctx, "ip", "netns", "exec", nsPC, "busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "3", "-T", "1",
					"-s", "/bin/true", "-V", "PXEClient", "-x", "0x5d:0000").Run()
			})
			for _, p := range pkts {
				// Both offers come from 10.78.0.1; udhcpc, which does not
				// know proxyDHCP, may request the proxy's offer and get
				// a NAK from dnsmasq: only offers count.
				if p.m.OpCode != dhcpv4.OpcodeBootReply || !p.src.Equal(net.IPv4(10, 78, 0, 1)) || p.m.MessageType() != dhcpv4.MessageTypeOffer {
					continue
				}
				if p.m.YourIPAddr.IsUnspecified() { // labseed's proxy offer
					proxy++
					if p.sport != 67 || !p.csum || p.m.BootFileName != "undionly.kpxe" ||
						string(p.m.Options.Get(dhcpv4.OptionClassIdentifier)) != "PXEClient" {
						t.Errorf("proxy offer from port %d, checksum ok %v: %s", p.sport, p.csum, p.m.Summary())
					}
				} else {
					plain++
				}
			}
		}
		if proxy == 0 || plain == 0 {
			t.Errorf("%d proxy offers and %d dnsmasq offers (of %d DHCP packets): want both", proxy, plain, len(pkts))
		}
	})

	t.Run("udhcpc lease and unicast renewal from dnsmasq", func(t *testing.T) {
		tmp := t.TempDir()
		script := filepath.Join(tmp, "udhcpc.sh")
		os.WriteFile(script, []byte("#!/bin/sh\necho \"event $1 $ip\"\n[ \"$1\" = bound ] && ip addr add \"$ip/24\" dev \"$interface\"\nexit 0\n"), 0o755)
		out := filepath.Join(tmp, "udhcpc.log")
		cmd := netlab.StartLogged(t, out, "ip", "netns", "exec", nsPC, "busybox", "udhcpc", "-i", "eth0", "-f", "-t", "5", "-T", "1", "-s", script)
		if !netlab.WaitFile(out, "event bound", 15*time.Second) {
			b, _ := os.ReadFile(out)
			t.Fatalf("no lease from dnsmasq:\n%s", b)
		}
		cmd.Process.Signal(syscall.SIGUSR1) // renew now: unicast to 10.78.0.1:67
		if !netlab.WaitFile(out, "event renew", 10*time.Second) {
			b, _ := os.ReadFile(out)
			t.Fatalf("the unicast renewal got no answer from dnsmasq:\n%s", b)
		}
		b, _ := os.ReadFile(out)
		if !strings.Contains(string(b), "sending renew to server 10.78.0.1") {
			t.Errorf("no unicast renewal seen:\n%s", b)
		}
	})

	t.Run("ProxyDHCP REQUEST on 4011 answered from port 67", func(t *testing.T) {
		// The raw socket's unicast path (routing and ARP by the kernel).
		netlab.Run(t, "ip", "-n", nsPC, "addr", "add", "10.78.0.20/24", "dev", "eth0")
		var c *net.UDPConn
		inNetns(t, nsPC, func() {
			var err error
			c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 78, 0, 20)})
			if err != nil {
				t.Error(err)
			}
		})
		if c == nil {
			t.FailNow()
		}
		defer c.Close()
		req := pkt{typ: dhcpv4.MessageTypeRequest, mac: hw(t, macPC), vendor: "PXEClient:Arch:00007:UNDI:003016", arch: u16(7),
			ciaddr: net.IPv4(10, 78, 0, 20)}.build(t)
		if _, err := c.WriteTo(req.ToBytes(), &net.UDPAddr{IP: net.IPv4(10, 78, 0, 1), Port: 4011}); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 1500)
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		resp, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		if from.String() != "10.78.0.1:67" || resp.MessageType() != dhcpv4.MessageTypeAck || resp.BootFileName != "ipxe.efi" {
			t.Errorf("from %s: %s", from, resp.Summary())
		}
	})

	t.Run("qemu BIOS iPXE to menu", func(t *testing.T) {
		if qemu != "" {
			t.Skip(qemu)
		}
		d := bootTo(t, srv, macShared, false, nil,
			[2]string{"proxy-offer", "boot http://10.78.0.1:7480/pxe/ipxe/bios/52-54-00-78-00-33"},
			[2]string{"ipxe-script", "(bios)"})
		t.Logf("BIOS next to dnsmasq: menu in %v", d.Round(100*time.Millisecond))
		if b, _ := os.ReadFile(dnsmasqLog); !strings.Contains(string(b), "DHCPACK(eth0)") || !strings.Contains(string(b), macShared) {
			t.Errorf("dnsmasq did not lease the machine an address:\n%s", b)
		}
	})

	rep := srv.stop()
	if rep.Stats.DHCPReceived == 0 || rep.Stats.DHCPReplied == 0 || rep.Stats.DHCPMalformed != 0 {
		t.Errorf("server stats %+v", rep.Stats)
	}
	for _, e := range rep.Events[macPC] {
		t.Logf("event %s %s: %s", macPC, e.Kind, e.Detail)
	}
}

// inNetns runs f on an OS thread moved into namespace ns, so that the
// sockets f opens live there; the thread returns to the test's namespace
// after f (or, if it cannot, dies with its goroutine instead of running
// other goroutines in the wrong namespace).
func inNetns(t *testing.T, ns string, f func()) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("enter netns %s: %w", ns, err)
			return
		}
		f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("leave netns %s: %w", ns, err) // the thread stays locked and exits
			return
		}
		runtime.UnlockOSThread()
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func hw(t *testing.T, s string) net.HardwareAddr {
	t.Helper()
	m, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
