//go:build linux

// Package netlab builds the network-namespace labs of labseed's long
// tests (pxe's netns and qemu tests, cmd/labseed's TestServePXEQEMU): a
// switch namespace with a bridge, one namespace per host cabled to it as
// eth0, dnsmasq as the lab's plain DHCP server and qemu machines booting
// from the network. Everything it creates is removed at t.Cleanup, by
// exact name or by PID. It needs root and iproute2.
package netlab

import (
	"bytes"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Host is one namespace of a lab, cabled to the switch as eth0.
type Host struct {
	// NS is the namespace name, "<prefix>-<role>-<id>"; the switch port
	// is "p-<role>-<id>" (at most 15 bytes).
	NS string
	// Addr is eth0's address with prefix length; "" leaves it without.
	Addr string
	// MAC is eth0's address; "" keeps the kernel's.
	MAC string
	// Tap adds tap0 and bridges it with eth0 (a VM's NIC).
	Tap bool
}

// Run runs a command and fails t with its output if it fails.
func Run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Build creates the switch namespace sw (bridge br0) and hosts;
// t.Cleanup deletes them all by name (processes started later are
// stopped first: cleanups run in reverse).
func Build(t testing.TB, sw string, hosts ...Host) {
	t.Helper()
	all := []string{sw}
	for _, h := range hosts {
		all = append(all, h.NS)
	}
	teardown := func() {
		for _, ns := range all {
			exec.Command("ip", "netns", "del", ns).Run()
		}
	}
	teardown()
	t.Cleanup(teardown)
	for _, ns := range all {
		Run(t, "ip", "netns", "add", ns)
		Run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	Run(t, "ip", "-n", sw, "link", "add", "br0", "type", "bridge")
	Run(t, "ip", "-n", sw, "link", "set", "br0", "up")
	for _, h := range hosts {
		_, role, _ := strings.Cut(h.NS, "-")
		port := "p-" + role
		Run(t, "ip", "link", "add", port, "netns", sw, "type", "veth", "peer", "name", "eth0", "netns", h.NS)
		Run(t, "ip", "-n", sw, "link", "set", port, "master", "br0", "up")
		if h.MAC != "" {
			Run(t, "ip", "-n", h.NS, "link", "set", "eth0", "address", h.MAC)
		}
		Run(t, "ip", "-n", h.NS, "link", "set", "eth0", "up")
		if h.Addr != "" {
			Run(t, "ip", "-n", h.NS, "addr", "add", h.Addr, "dev", "eth0")
		}
		if h.Tap {
			Run(t, "ip", "-n", h.NS, "link", "add", "br0", "type", "bridge")
			Run(t, "ip", "-n", h.NS, "tuntap", "add", "dev", "tap0", "mode", "tap")
			for _, dev := range []string{"eth0", "tap0"} {
				Run(t, "ip", "-n", h.NS, "link", "set", dev, "master", "br0", "up")
			}
			Run(t, "ip", "-n", h.NS, "link", "set", "br0", "up")
		}
	}
	waitForwarding(t, sw, len(hosts))
}

// waitForwarding waits (at most 10 s) until the n ports of the switch in
// ns forward: a port forwards once the kernel has handled its carrier
// event, up to a second after "up", and a frame sent before is lost.
func waitForwarding(t testing.TB, ns string, n int) {
	t.Helper()
	var out []byte
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var err error
		if out, err = exec.Command("bridge", "-n", ns, "link", "show").CombinedOutput(); err != nil {
			t.Fatalf("bridge -n %s link show: %v: %s", ns, err, out)
		}
		if bytes.Count(out, []byte("state forwarding")) >= n {
			return
		}
	}
	t.Fatalf("the switch's ports do not forward after 10 s:\n%s", out)
}

// StartLogged starts a background command with its output in logFile;
// t.Cleanup kills it by its PID (ip netns exec execs the command: same
// PID) and waits.
func StartLogged(t testing.TB, logFile string, args ...string) *exec.Cmd {
	t.Helper()
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		f.Close()
	})
	return cmd
}

// WaitFile polls file every 100 ms until it contains s, for at most d.
func WaitFile(file, s string, d time.Duration) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(100 * time.Millisecond) {
		if b, _ := os.ReadFile(file); bytes.Contains(b, []byte(s)) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// Dnsmasq starts dnsmasq in ns as the lab's plain DHCP server: addresses
// from pool (a dnsmasq --dhcp-range, "first,last,netmask,lease"), no PXE
// options, and IPv6 router advertisements from v6 (added to eth0 as /64):
// without one, iPXE waits ~16 s for IPv6 autoconfiguration on every boot.
// extra are more dnsmasq options. It returns dnsmasq's log file once
// dnsmasq serves.
func Dnsmasq(t testing.TB, ns, pool, v6 string, extra ...string) (logFile string) {
	t.Helper()
	prefix, err := netip.ParsePrefix(v6 + "/64")
	if err != nil {
		t.Fatal(err)
	}
	Run(t, "ip", "-n", ns, "addr", "add", prefix.String(), "dev", "eth0", "nodad")
	dir := t.TempDir()
	logFile = filepath.Join(dir, "dnsmasq.log")
	args := append([]string{"ip", "netns", "exec", ns, "dnsmasq", "--no-daemon", "--port=0", "--conf-file=/dev/null",
		"--interface=eth0", "--user=root", "--no-ping", "--dhcp-range=" + pool,
		"--enable-ra", "--dhcp-range=" + prefix.Masked().Addr().String() + ",ra-only",
		"--dhcp-leasefile=" + filepath.Join(dir, "leases")}, extra...)
	StartLogged(t, logFile, args...)
	if !WaitFile(logFile, "IPv6 router advertisement enabled", 10*time.Second) {
		b, _ := os.ReadFile(logFile)
		t.Fatalf("dnsmasq did not start:\n%s", b)
	}
	return logFile
}

// IPXEROM is the iPXE option ROM qemu's e1000 boots from (Debian ipxe-qemu).
const IPXEROM = "/usr/lib/ipxe/qemu/efi-e1000.rom"

// WhyNoQEMU says why qemu cannot boot a machine here, "" if it can.
func WhyNoQEMU() string {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return "qemu-system-x86_64 not installed (apt-get install qemu-system-x86 ipxe-qemu)"
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return "no /dev/net/tun for the VM's tap device"
	}
	if _, err := os.Stat(IPXEROM); err != nil {
		return "no iPXE ROM for qemu's e1000 (apt-get install ipxe-qemu)"
	}
	return ""
}

// IPXEBootDir fills dir with Debian's iPXE first stages (undionly.kpxe,
// ipxe.efi), ipxe.lkrn as the kernel vmlinuz and a small initrd.img. The
// "kernel" is a bzImage that starts a second iPXE, which runs its kernel
// command line as iPXE commands: the console then shows that the clone
// entry's kernel got its command line. It skips t without package ipxe.
func IPXEBootDir(t testing.TB, dir string) {
	t.Helper()
	for _, f := range []struct{ src, dst string }{
		{"/usr/lib/ipxe/undionly.kpxe", "undionly.kpxe"},
		{"/usr/lib/ipxe/ipxe.efi", "ipxe.efi"},
		{"/usr/lib/ipxe/ipxe.lkrn", "vmlinuz"},
	} {
		b, err := os.ReadFile(f.src)
		if err != nil {
			t.Skipf("%v (apt-get install ipxe)", err)
		}
		if err := os.WriteFile(filepath.Join(dir, f.dst), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "initrd.img"), bytes.Repeat([]byte("labseed initrd\n"), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
}

// QEMUArgs is the command that boots a qemu machine (TCG, 256 MiB) from
// the network in namespace ns on its tap0, the serial console to the
// file serial: SeaBIOS with the e1000's iPXE ROM, or, with ovmf set, that
// UEFI firmware on a virtio NIC without option ROM (the firmware's own
// PXE client).
func QEMUArgs(ns, mac, serial, ovmf string) []string {
	args := []string{"ip", "netns", "exec", ns, "qemu-system-x86_64", "-name", "labseed-test-" + mac,
		"-nographic", "-accel", "tcg", "-m", "256", "-no-user-config", "-monitor", "none",
		"-serial", "file:" + serial, "-boot", "n",
		"-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no"}
	if ovmf != "" {
		return append(args, "-bios", ovmf, "-device", "virtio-net-pci,netdev=n0,romfile=,mac="+mac)
	}
	return append(args, "-device", "e1000,netdev=n0,mac="+mac)
}

var (
	consoleEscapes = regexp.MustCompile(`\x1b(\[[0-9;?=]*[A-Za-z]|c)|\x08 \x08|\r`)
	consoleBlanks  = regexp.MustCompile(`[ \t]{3,}`)
)

// CleanConsole strips the terminal escapes of a serial console capture,
// for a test log.
func CleanConsole(b []byte) string {
	return consoleBlanks.ReplaceAllString(consoleEscapes.ReplaceAllString(string(b), ""), "  ")
}
