//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/internal/netlab"
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
	for _, bin := range []string{"ip", "dnsmasq"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (apt-get install iproute2 dnsmasq-base qemu-system-x86 ipxe-qemu ipxe)", bin)
		}
	}
	if why := netlab.WhyNoQEMU(); why != "" {
		t.Skip(why)
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
	netlab.IPXEBootDir(t, boot)
	st := filepath.Join(dir, "store")
	os.MkdirAll(st, 0o755)
	os.WriteFile(filepath.Join(st, "hosts.csv"), []byte("mac,hostname,ip,next_boot\n"+mac+",lab-ws01,10.79.0.31,clone\n"), 0o644)

	netlab.Build(t, nsSw,
		netlab.Host{NS: nsSrv, Addr: "10.79.0.1/24"},
		netlab.Host{NS: nsDH, Addr: "10.79.0.2/24"},
		netlab.Host{NS: nsVM, Tap: true})

	bg := func(name string, args ...string) string {
		t.Helper()
		log := filepath.Join(dir, name+".log")
		netlab.StartLogged(t, log, args...)
		return log
	}
	showLog := func(log string) {
		b, _ := os.ReadFile(log)
		t.Logf("%s:\n%s", filepath.Base(log), b)
	}

	serveLog := bg("serve", "ip", "netns", "exec", nsSrv, labseedBin, "serve", "--store", st, "--listen", "10.79.0.1",
		"--pxe", "proxy", "--boot-dir", boot, "--interface", "eth0", "--image", "lab1", "-v")
	if !netlab.WaitFile(serveLog, "component=pxe mode=proxy", 20*time.Second) {
		showLog(serveLog)
		t.Fatal("labseed serve --pxe proxy did not start")
	}
	dnsmasqLog := netlab.Dnsmasq(t, nsDH, "10.79.0.100,10.79.0.150,255.255.255.0,1h", "fd00:79::2")

	bootStart := time.Now()
	serial := filepath.Join(dir, "serial.log")
	qemuLog := bg("qemu", netlab.QEMUArgs(nsVM, mac, serial, "")...)

	status := func() (*api.LabStatus, error) {
		out, err := exec.Command("ip", "netns", "exec", nsSrv, labseedBin, "status", "--server", "10.79.0.1", "--json").Output()
		if err != nil {
			return nil, fmt.Errorf("labseed status: %w", err)
		}
		var ls api.LabStatus
		return &ls, json.Unmarshal(out, &ls)
	}
	want := [][2]string{
		{"proxy-offer", "boot http://10.79.0.1:7480/pxe/ipxe/bios/52-54-00-79-00-31"},
		{"ipxe-script", "(bios)"},
		{"http-file", "vmlinuz"},
		{"http-file", "initrd.img"},
	}
	var host *api.BootHost
	var seen int
	for deadline := time.Now().Add(60 * time.Second); seen < len(want); time.Sleep(500 * time.Millisecond) {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(serial)
			t.Logf("serial console:\n%s", netlab.CleanConsole(b))
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
	if !netlab.WaitFile(serial, "labseed.server=10.79.0.1:7480: command not found", 10*time.Second) {
		b, _ := os.ReadFile(serial)
		t.Fatalf("the clone entry's kernel did not get its command line; console:\n%s", netlab.CleanConsole(b))
	}
	b, _ := os.ReadFile(serial)
	if !bytes.Contains(b, []byte("labseed "+mac)) {
		t.Errorf("the labseed menu did not show on the console:\n%s", netlab.CleanConsole(b))
	}
	if host.Hostname != "lab-ws01" || host.NextBoot != "clone" {
		t.Errorf("boot table row %+v, want lab-ws01 with next boot clone", host)
	}
	for _, e := range host.Events {
		t.Logf("event %s %s: %s", mac, e.Kind, e.Detail)
	}
	if testing.Verbose() {
		t.Logf("serial console:\n%s", netlab.CleanConsole(b))
	}
	t.Logf("boot to the clone kernel in %v; whole test %v", time.Since(bootStart).Round(100*time.Millisecond), time.Since(start).Round(100*time.Millisecond))
}
