//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labseed/labseed/seeder"
)

// TestServePXEQEMU is the network boot end to end: "labseed serve --pxe
// proxy" in a namespace of its own, dnsmasq as the lab's DHCP server (an
// address range, no PXE options) in another, and a qemu machine (TCG,
// SeaBIOS, the e1000's iPXE ROM) on a tap bridged into a third. The
// machine is in the store's hosts.csv with next_boot clone: its menu
// boots the clone entry, whose "kernel" is ipxe.lkrn (a bzImage that
// runs its command line as commands, so the console shows that the
// kernel got labseed's command line). The boot events are read back with
// "labseed status --json".
//
// Namespaces lsboot-*-PID on 10.79.0.0/24 (pxe's own tests use lspxe-* on
// 10.78.0.0/24), removed by name; qemu is killed by its PID first.
func TestServePXEQEMU(t *testing.T) {
	needLong(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces, ports 67/69 and the tap device")
	}
	for _, bin := range []string{"ip", "dnsmasq", "qemu-system-x86_64"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (apt-get install iproute2 dnsmasq-base qemu-system-x86 ipxe-qemu ipxe)", bin)
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("no /dev/net/tun for the VM's tap device")
	}
	if _, err := os.Stat("/usr/lib/ipxe/qemu/efi-e1000.rom"); err != nil {
		t.Skip("no iPXE ROM for qemu's e1000 (apt-get install ipxe-qemu)")
	}
	// Namespace names end in this process's ID: two runs at once do not
	// tear down each other's labs.
	id := strconv.Itoa(os.Getpid())
	nsSw, nsSrv, nsDH, nsVM := "lsboot-sw-"+id, "lsboot-srv-"+id, "lsboot-dh-"+id, "lsboot-vm-"+id
	const mac = "52:54:00:79:00:31"
	start := time.Now()
	dir := t.TempDir()

	boot := filepath.Join(dir, "boot")
	os.Mkdir(boot, 0o755)
	for src, dst := range map[string]string{
		"/usr/lib/ipxe/undionly.kpxe": "undionly.kpxe", "/usr/lib/ipxe/ipxe.efi": "ipxe.efi", "/usr/lib/ipxe/ipxe.lkrn": "vmlinuz",
	} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Skipf("%v (apt-get install ipxe)", err)
		}
		os.WriteFile(filepath.Join(boot, dst), b, 0o644)
	}
	os.WriteFile(filepath.Join(boot, "initrd.img"), bytes.Repeat([]byte("labseed initrd\n"), 1000), 0o644)
	st := filepath.Join(dir, "store")
	os.MkdirAll(st, 0o755)
	os.WriteFile(filepath.Join(st, "hosts.csv"), []byte("mac,hostname,ip,next_boot\n"+mac+",lab-ws01,10.79.0.31,clone\n"), 0o644)

	// The lab: a switch namespace with a bridge, one veth per host.
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	all := []string{nsSw, nsSrv, nsDH, nsVM}
	teardown := func() {
		for _, ns := range all {
			exec.Command("ip", "netns", "del", ns).Run()
		}
	}
	teardown()
	t.Cleanup(teardown)
	for _, ns := range all {
		sh("ip", "netns", "add", ns)
		sh("ip", "-n", ns, "link", "set", "lo", "up")
	}
	sh("ip", "-n", nsSw, "link", "add", "br0", "type", "bridge")
	sh("ip", "-n", nsSw, "link", "set", "br0", "up")
	for _, h := range []struct{ ns, addr string }{{nsSrv, "10.79.0.1/24"}, {nsDH, "10.79.0.2/24"}, {nsVM, ""}} {
		port := "p-" + strings.TrimPrefix(h.ns, "lsboot-")
		sh("ip", "link", "add", port, "netns", nsSw, "type", "veth", "peer", "name", "eth0", "netns", h.ns)
		sh("ip", "-n", nsSw, "link", "set", port, "master", "br0", "up")
		sh("ip", "-n", h.ns, "link", "set", "eth0", "up")
		if h.addr != "" {
			sh("ip", "-n", h.ns, "addr", "add", h.addr, "dev", "eth0")
		}
	}
	// The VM's NIC: tap0, bridged with the namespace's eth0.
	sh("ip", "-n", nsVM, "link", "add", "br0", "type", "bridge")
	sh("ip", "-n", nsVM, "tuntap", "add", "dev", "tap0", "mode", "tap")
	sh("ip", "-n", nsVM, "link", "set", "eth0", "master", "br0")
	sh("ip", "-n", nsVM, "link", "set", "tap0", "master", "br0", "up")
	sh("ip", "-n", nsVM, "link", "set", "br0", "up")
	// dnsmasq also sends IPv6 router advertisements: without one, iPXE
	// waits ~16 s for IPv6 autoconfiguration on every boot.
	sh("ip", "-n", nsDH, "addr", "add", "fd00:79::2/64", "dev", "eth0", "nodad")

	bg := func(name string, args ...string) (*exec.Cmd, string) {
		t.Helper()
		log := filepath.Join(dir, name+".log")
		f, err := os.Create(log)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stdout, cmd.Stderr = f, f
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill() // by PID: ip netns exec has exec'd the command
			cmd.Wait()
			f.Close()
		})
		return cmd, log
	}
	waitLog := func(log, s string, d time.Duration) bool {
		for deadline := time.Now().Add(d); ; time.Sleep(100 * time.Millisecond) {
			if b, _ := os.ReadFile(log); bytes.Contains(b, []byte(s)) {
				return true
			}
			if time.Now().After(deadline) {
				return false
			}
		}
	}
	showLog := func(log string) {
		b, _ := os.ReadFile(log)
		t.Logf("%s:\n%s", filepath.Base(log), b)
	}

	_, serveLog := bg("serve", "ip", "netns", "exec", nsSrv, labseedBin, "serve", "--store", st, "--listen", "10.79.0.1",
		"--pxe", "proxy", "--boot-dir", boot, "--interface", "eth0", "--image", "lab1", "-v")
	if !waitLog(serveLog, "component=pxe mode=proxy", 20*time.Second) {
		showLog(serveLog)
		t.Fatal("labseed serve --pxe proxy did not start")
	}
	_, dnsmasqLog := bg("dnsmasq", "ip", "netns", "exec", nsDH, "dnsmasq", "--no-daemon", "--port=0", "--conf-file=/dev/null",
		"--interface=eth0", "--user=root", "--no-ping", "--dhcp-range=10.79.0.100,10.79.0.150,255.255.255.0,1h",
		"--enable-ra", "--dhcp-range=fd00:79::,ra-only", "--dhcp-leasefile="+filepath.Join(dir, "leases"))
	if !waitLog(dnsmasqLog, "router advertisement enabled", 10*time.Second) {
		showLog(dnsmasqLog)
		t.Fatal("dnsmasq did not start")
	}

	bootStart := time.Now()
	serial := filepath.Join(dir, "serial.log")
	_, qemuLog := bg("qemu", "ip", "netns", "exec", nsVM, "qemu-system-x86_64", "-name", "labseed-test-"+mac,
		"-nographic", "-accel", "tcg", "-m", "256", "-no-user-config", "-monitor", "none",
		"-serial", "file:"+serial, "-boot", "n",
		"-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no", "-device", "e1000,netdev=n0,mac="+mac)

	status := func() (*seeder.LabStatus, error) {
		out, err := exec.Command("ip", "netns", "exec", nsSrv, labseedBin, "status", "--server", "10.79.0.1", "--json").Output()
		if err != nil {
			return nil, fmt.Errorf("labseed status: %w", err)
		}
		var ls seeder.LabStatus
		return &ls, json.Unmarshal(out, &ls)
	}
	want := [][2]string{
		{"proxy-offer", "boot http://10.79.0.1:7480/pxe/ipxe/bios/52-54-00-79-00-31"},
		{"ipxe-script", "(bios)"},
		{"http-file", "vmlinuz"},
		{"http-file", "initrd.img"},
	}
	var host *seeder.BootHost
	var seen int
	for deadline := time.Now().Add(60 * time.Second); seen < len(want); time.Sleep(500 * time.Millisecond) {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(serial)
			t.Logf("serial console:\n%s", cleanConsole(b))
			showLog(qemuLog)
			showLog(dnsmasqLog)
			showLog(serveLog)
			t.Fatalf("after 60 s, %d of the boot events %q in labseed status: %+v", seen, want, host)
		}
		ls, err := status()
		if err != nil {
			continue
		}
		host, seen = nil, 0
		for i := range ls.Boot {
			if ls.Boot[i].MAC == mac {
				host = &ls.Boot[i]
			}
		}
		if host == nil {
			continue
		}
		for _, e := range host.Events {
			if seen < len(want) && string(e.Kind) == want[seen][0] && strings.Contains(e.Detail, want[seen][1]) {
				seen++
			}
		}
	}
	if !waitLog(serial, "labseed.server=10.79.0.1:7480: command not found", 10*time.Second) {
		b, _ := os.ReadFile(serial)
		t.Fatalf("the clone entry's kernel did not get its command line; console:\n%s", cleanConsole(b))
	}
	b, _ := os.ReadFile(serial)
	if !bytes.Contains(b, []byte("labseed "+mac)) {
		t.Errorf("the labseed menu did not show on the console:\n%s", cleanConsole(b))
	}
	if host.Hostname != "lab-ws01" || host.NextBoot != "clone" {
		t.Errorf("boot table row %+v, want lab-ws01 with next boot clone", host)
	}
	for _, e := range host.Events {
		t.Logf("event %s %s: %s", mac, e.Kind, e.Detail)
	}
	if testing.Verbose() {
		t.Logf("serial console:\n%s", cleanConsole(b))
	}
	t.Logf("boot to the clone kernel in %v; whole test %v", time.Since(bootStart).Round(100*time.Millisecond), time.Since(start).Round(100*time.Millisecond))
}

var consoleEscapes = regexp.MustCompile(`\x1b(\[[0-9;?=]*[A-Za-z]|c)|\x08 \x08|\r|[ \t]{3,}`)

// cleanConsole strips the terminal escapes of a serial console capture.
func cleanConsole(b []byte) string { return consoleEscapes.ReplaceAllString(string(b), " ") }
