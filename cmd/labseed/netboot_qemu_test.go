//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labseed/labseed/internal/netlab"
)

// serialHook is the lab's hook that puts the new system's boot loader and
// kernel on the serial console, as a lab with serial consoles would: the
// test reads the login prompt there.
const serialHook = `#!/bin/sh
mkdir -p /etc/default/grub.d
cat > /etc/default/grub.d/labseed-serial.cfg <<'EOF'
GRUB_CMDLINE_LINUX_DEFAULT="console=ttyS0,115200n8"
GRUB_TERMINAL=serial
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_TIMEOUT=1
EOF
`

// TestNetbootQEMU is a workstation re-imaged from power-on to its login
// prompt: "labseed netboot build" makes the clone environment from the
// kernel of a real Debian image (bench/mkimage.sh, with systemd and GRUB),
// "labseed serve --pxe proxy" runs in a namespace of its own next to
// dnsmasq, the lab's DHCP server, in another, and a qemu machine (TCG,
// SeaBIOS, e1000 with its iPXE ROM, a blank AHCI disk) whose MAC the hosts
// table marks for cloning boots from the network in a third. It must
// clone the image, report done, reboot, boot its disk through the menu's
// local entry and show the host name of hosts.csv at its login prompt on
// the serial console; "labseed status" must show the clone done. A second
// machine boots the same way with UEFI firmware (OVMF) up to its clone
// done: the image's GRUB is the BIOS one, so its disk boots on BIOS only.
//
// It takes minutes (everything is emulated): LABSEED_NETBOOT_QEMU=1 with
// LABSEED_DEBIAN_IMAGE (test.sh sets both). Namespaces lsnb-*-PID on
// 10.80.0.0/24, removed by name; qemu is killed by its PID first.
func TestNetbootQEMU(t *testing.T) {
	if os.Getenv("LABSEED_NETBOOT_QEMU") == "" {
		t.Skip("set LABSEED_NETBOOT_QEMU=1 (and LABSEED_DEBIAN_IMAGE) to re-image a qemu machine from power-on (test.sh does)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces, ports 67/69 and the tap device")
	}
	for _, bin := range []string{"ip", "dnsmasq", "tar"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (apt-get install iproute2 dnsmasq-base qemu-system-x86 ipxe-qemu ipxe)", bin)
		}
	}
	if why := netlab.WhyNoQEMU(); why != "" {
		t.Skip(why)
	}
	image := os.Getenv("LABSEED_DEBIAN_IMAGE")
	if _, err := os.Stat(image); err != nil {
		t.Skipf("no Debian image (LABSEED_DEBIAN_IMAGE=%q): %v", image, err)
	}
	list, err := exec.Command("tar", "-tzf", image).Output()
	if err != nil {
		t.Fatalf("tar -tzf %s: %v", image, err)
	}
	if !bytes.Contains(list, []byte("./usr/sbin/init\n")) && !bytes.Contains(list, []byte("./sbin/init\n")) {
		t.Skipf("%s has no init (systemd-sysv): made before test.sh added it; remove it and run test.sh", image)
	}

	start := time.Now()
	id := strconv.Itoa(os.Getpid())
	nsSw, nsSrv, nsDH, nsVM := "lsnb-sw-"+id, "lsnb-srv-"+id, "lsnb-dh-"+id, "lsnb-vm-"+id
	const macBIOS, hostBIOS, macUEFI, hostUEFI = "52:54:00:80:00:31", "lab-ws01", "52:54:00:80:00:32", "lab-ws02"
	const macTwo = "52:54:00:80:00:33" // two disks
	dir := t.TempDir()
	st := filepath.Join(dir, "store")

	labseed(t, true, "publish", "--store", st, "--name", "deb", "--level", "4", image) // the built-in level: publish time is not what this tests
	published := time.Since(start)
	out, _ := labseed(t, true, "netboot", "build", "--store", st)
	t.Logf("%s", strings.TrimSpace(out))
	initrd, err := os.Stat(filepath.Join(st, "boot", "initrd.img"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(st, "hosts.csv"), []byte("mac,hostname,ip,next_boot\n"+
		macBIOS+","+hostBIOS+",10.80.0.31,clone\n"+macUEFI+","+hostUEFI+",10.80.0.32,clone\n"+macTwo+",lab-ws03,10.80.0.33,clone\n"), 0o644)
	os.WriteFile(filepath.Join(st, "lab.conf"), []byte("netmask = 24\ngateway = 10.80.0.1\nswap_mib = 128\n"+
		"boot_args = labseed.linger=2s console=ttyS0,115200n8\n"), 0o644)
	os.MkdirAll(filepath.Join(st, "hooks"), 0o755)
	os.WriteFile(filepath.Join(st, "hooks", "10-serial-console"), []byte(serialHook), 0o755)

	netlab.Build(t, nsSw,
		netlab.Host{NS: nsSrv, Addr: "10.80.0.1/24"},
		netlab.Host{NS: nsDH, Addr: "10.80.0.2/24"},
		netlab.Host{NS: nsVM, Tap: true})
	serveLog := filepath.Join(dir, "serve.log")
	netlab.StartLogged(t, serveLog, "ip", "netns", "exec", nsSrv, labseedBin, "serve", "--store", st, "--listen", "10.80.0.1",
		"--pxe", "proxy", "--interface", "eth0")
	if !netlab.WaitFile(serveLog, "component=pxe mode=proxy", 20*time.Second) {
		b, _ := os.ReadFile(serveLog)
		t.Fatalf("labseed serve --pxe proxy did not start:\n%s", b)
	}
	dnsmasqLog := netlab.Dnsmasq(t, nsDH, "10.80.0.100,10.80.0.150,255.255.255.0,1h", "fd00:80::2")

	status := func(mac, host string) {
		t.Helper()
		var ls struct {
			Boot []struct {
				MAC      string `json:"mac"`
				Hostname string `json:"hostname"`
				NextBoot string `json:"next_boot"`
				Clone    []struct{ Step, State string }
			} `json:"boot"`
		}
		out, err := exec.Command("ip", "netns", "exec", nsSrv, labseedBin, "status", "--server", "10.80.0.1", "--json").Output()
		if err != nil {
			t.Fatalf("labseed status: %v", err)
		}
		if err := json.Unmarshal(out, &ls); err != nil {
			t.Fatal(err)
		}
		for _, b := range ls.Boot {
			if b.MAC == mac && b.Hostname == host && b.NextBoot == "local" && len(b.Clone) > 0 {
				if last := b.Clone[len(b.Clone)-1]; last.Step == "done" && last.State == "done" {
					return
				}
			}
		}
		t.Errorf("labseed status does not show %s (%s) done with next boot local:\n%s", mac, host, out)
	}
	logs := []string{dnsmasqLog, serveLog}

	t.Run("BIOS", func(t *testing.T) {
		at := bootQEMU(t, nsVM, macBIOS, "", 1, logs, []milestone{
			{"menu", "labseed " + macBIOS},
			{"clone environment", "labseed: clone environment"},
			{"identify (has an address)", "labseed clone: step 2/9: identify"},
			{"fetch step", "labseed clone: step 4/9: fetch"},
			{"first image bytes", "deb-v1 downloading"},
			{"clone done", "labseed clone: done:"},
			{"login prompt of " + hostBIOS, hostBIOS + " login:"},
		})
		status(macBIOS, hostBIOS)
		t.Logf("BIOS: initrd %.1f MiB; power-on to the first image byte fetched %.0f s, to the login prompt %.0f s (clone done at %.0f s)",
			float64(initrd.Size())/(1<<20), at[4].Seconds(), at[6].Seconds(), at[5].Seconds())
	})
	t.Run("UEFI", func(t *testing.T) {
		// OVMF's own PXE client on a virtio NIC, TFTP ipxe.efi, the
		// menu, the kernel by its EFI stub. The image's GRUB is the BIOS
		// one (grub-pc) and the lab layout an MBR: the clone is the end.
		ovmf := ""
		for _, p := range []string{"/usr/share/ovmf/OVMF.fd", "/usr/share/qemu/OVMF.fd"} {
			if _, err := os.Stat(p); err == nil {
				ovmf = p
			}
		}
		if ovmf == "" {
			t.Skip("no OVMF (apt-get install ovmf)")
		}
		at := bootQEMU(t, nsVM, macUEFI, ovmf, 1, logs, []milestone{
			{"menu", "labseed " + macUEFI},
			{"clone environment", "labseed: clone environment"},
			{"first image bytes", "deb-v1 downloading"},
			{"clone done", "labseed clone: done:"},
		})
		status(macUEFI, hostUEFI)
		t.Logf("UEFI: power-on to the first image byte fetched %.0f s, clone done at %.0f s", at[2].Seconds(), at[3].Seconds())
	})
	t.Run("two disks: refused and reported", func(t *testing.T) {
		// The clone environment will not guess which disk to wipe: it
		// says so on the console, the print server hears of it, and the
		// clone is tried again after the pause.
		// A USB keyboard: its drivers load, for the shell a person at
		// the machine may ask for.
		bootQEMU(t, nsVM, macTwo, "", 2, logs, []milestone{
			{"clone environment", "labseed: clone environment"},
			{"USB keyboard driver", "hid_generic"},
			{"refusal", "labseed clone: FAILED: clone: disk: 2 disks: /dev/sda (4 GB), /dev/sdb (4 GB)"},
			{"what to do", "labseed: trying again in 1m0s (press Enter for a shell)"},
		}, "-device", "qemu-xhci,id=xhci", "-device", "usb-kbd,bus=xhci.0")
		out, err := exec.Command("ip", "netns", "exec", nsSrv, labseedBin, "status", "--server", "10.80.0.1", "--json").Output()
		if err != nil {
			t.Fatalf("labseed status: %v", err)
		}
		var ls struct {
			Boot []struct {
				MAC   string `json:"mac"`
				Clone []struct{ Step, State, Error string }
			} `json:"boot"`
		}
		if err := json.Unmarshal(out, &ls); err != nil {
			t.Fatal(err)
		}
		reported := false
		for _, b := range ls.Boot {
			for _, r := range b.Clone {
				reported = reported || (b.MAC == macTwo && r.Step == "disk" && r.State == "failed" && strings.Contains(r.Error, "labseed.disk="))
			}
		}
		if !reported {
			t.Errorf("the print server has no failed disk step for %s:\n%s", macTwo, out)
		}
	})
	t.Logf("publish %.0f s; whole test %.0f s", published.Seconds(), time.Since(start).Seconds())
}

// milestone is a text on a machine's serial console.
type milestone struct{ name, text string }

// bootQEMU powers on a qemu machine with blank 4 GiB AHCI disks and 1 GiB
// of memory (SeaBIOS and the e1000's iPXE ROM, or the UEFI firmware ovmf
// on a virtio NIC), waits for each milestone on its serial console in
// turn, and returns when each showed, from power-on. A clone failure on
// the console (unless a milestone is one), a guest NIC that stopped
// sending, or 25 minutes (less when the test's deadline comes first), fails
// t with the console and logs.
func bootQEMU(t *testing.T, ns, mac, ovmf string, disks int, logs []string, ms []milestone, extra ...string) []time.Duration {
	t.Helper()
	dir := t.TempDir()
	serial := filepath.Join(dir, "serial.log")
	args := netlab.QEMUArgs(ns, mac, serial, ovmf)
	for i := range args {
		if args[i] == "-m" {
			args[i+1] = "1024"
		}
	}
	args = append(append(args, extra...), "-device", "ahci,id=ahci0")
	for i := range disks {
		disk := filepath.Join(dir, fmt.Sprintf("disk%d.raw", i)) // blank
		f, err := os.Create(disk)
		if err != nil {
			t.Fatal(err)
		}
		f.Truncate(4 << 30)
		f.Close()
		args = append(args, "-drive", fmt.Sprintf("if=none,id=d%d,file=%s,format=raw", i, disk),
			"-device", fmt.Sprintf("ide-hd,drive=d%d,bus=ahci0.%d", i, i))
	}
	powerOn := time.Now()
	qemuLog := filepath.Join(dir, "qemu.log")
	cmd := netlab.StartLogged(t, qemuLog, args...)
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	report := func() {
		b, _ := os.ReadFile(serial)
		t.Logf("serial console:\n%s", netlab.CleanConsole(b))
		for _, l := range append([]string{qemuLog}, logs...) {
			b, _ := os.ReadFile(l)
			if len(b) > 20000 {
				b = b[len(b)-20000:]
			}
			t.Logf("%s:\n%s", filepath.Base(l), b)
		}
	}
	at := make([]time.Duration, len(ms))
	next := 0
	deadline := time.Now().Add(25 * time.Minute)
	if d, ok := t.Deadline(); ok && d.Add(-time.Minute).Before(deadline) {
		deadline = d.Add(-time.Minute) // fail with the console, before go test's timeout panics without it
	}
	for ; next < len(ms); time.Sleep(250 * time.Millisecond) {
		b, _ := os.ReadFile(serial)
		for next < len(ms) && bytes.Contains(b, []byte(ms[next].text)) {
			at[next] = time.Since(powerOn)
			t.Logf("%6.1f s  %s", at[next].Seconds(), ms[next].name)
			next++
		}
		if next == len(ms) {
			break
		}
		failed := bytes.Contains(b, []byte("labseed clone: FAILED")) && !slices.ContainsFunc(ms, func(m milestone) bool { return strings.Contains(m.text, "FAILED") })
		if time.Now().After(deadline) || failed {
			report()
			t.Fatalf("after %v: no %q on the console", time.Since(powerOn).Round(time.Second), ms[next].text)
		}
		// The guest's NIC stopped sending (seen once with OVMF's virtio
		// NIC under TCG on two loaded cores: the guest kernel logs it
		// every 5 s and the clone waits for ever): no milestone will come.
		if bytes.Count(b, []byte("NETDEV WATCHDOG")) >= 6 {
			report()
			t.Fatalf("after %v: the guest's network card stopped sending (its kernel logs NETDEV WATCHDOG, transmit queue timed out): "+
				"a fault of the emulated machine, not of labseed's print server; no %q on the console", time.Since(powerOn).Round(time.Second), ms[next].text)
		}
	}
	if testing.Verbose() {
		report()
	}
	return at
}
