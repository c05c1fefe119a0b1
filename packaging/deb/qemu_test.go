//go:build linux

package deb

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// checkScript runs in the qemu machine once labseed.service has started
// (labseed-check.service) and writes "LABSEED-CHECK key=value" lines to the
// serial console; then it powers the machine off.
const checkScript = `#!/bin/bash
exec >/dev/ttyS0 2>&1
say() { echo "LABSEED-CHECK $*"; }
# bound PROTO PORT...: wait up to 60 s until every port (hex) is bound.
bound() {
	local proto=$1; shift
	for _ in $(seq 120); do
		local ok=1
		for p in "$@"; do grep -qi ":$p " /proc/net/$proto || ok=0; done
		[ $ok = 1 ] && return 0
		sleep 0.5
	done
	return 1
}
mainpid() { systemctl show -p MainPID --value labseed.service; }
say enabled=$(systemctl is-enabled labseed.service)
# UDP 67, 69, 4011 and TCP 7480.
bound udp 0043 0045 0FAB && bound tcp 1D38 && say bound=yes || say bound=no
say active=$(systemctl is-active labseed.service)
pid=$(mainpid)
say capeff=$(awk '/^CapEff/ {print $2}' /proc/$pid/status) capbnd=$(awk '/^CapBnd/ {print $2}' /proc/$pid/status)
say uid=$(awk '/^Uid/ {print $2}' /proc/$pid/status)
exec 3<>/dev/tcp/127.0.0.1/7480 && printf 'GET /api/v1/images HTTP/1.0\r\n\r\n' >&3 && say http=$(head -1 <&3 | tr -d '\r' | tr ' ' _)
exec 3<&-
say store=$(stat -c %a /var/lib/labseed) labkey=$(stat -c %a /var/lib/labseed/keys/lab.key)
# The sandbox: the daemon's view of / is read-only outside the store.
say rootfs=$(nsenter -t $pid -m sh -c 'touch /etc/labseed-probe 2>/dev/null && echo writable || echo read-only')
say exposure=$(systemd-analyze security labseed.service --no-pager | sed -n 's/.*exposure level for labseed.service: \([0-9.]*\).*/\1/p')
# Killed: restarted (Restart=on-failure).
kill -9 $pid
for _ in $(seq 60); do
	new=$(mainpid)
	[ "$new" != 0 ] && [ "$new" != "$pid" ] && systemctl -q is-active labseed.service && break
	sleep 0.5
done
say restarts=$(systemctl show -p NRestarts --value labseed.service)
# --pxe-no-bind: the raw DHCP socket instead of port 67.
sed -i 's/^LABSEED_SERVE_OPTS="\(.*\)"$/LABSEED_SERVE_OPTS="\1 --pxe-no-bind"/' /etc/default/labseed
systemctl restart labseed.service
bound raw 0011 && bound udp 0045 0FAB && ! grep -qi ':0043 ' /proc/net/udp && say raw=yes || say raw=no
# SIGTERM stops it cleanly.
systemctl stop labseed.service
say stop=$(systemctl show -p Result --value labseed.service) status=$(systemctl show -p ExecMainStatus --value labseed.service)
journalctl -u labseed.service --no-pager -o cat | tail -n 30 | sed 's/^/LABSEED-LOG /'
say done
systemctl poweroff
`

const checkUnit = `[Unit]
Description=labseed package test: check labseed.service
After=labseed.service
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/labseed-check
[Install]
WantedBy=multi-user.target
`

// TestServiceQEMU boots the Debian image with the package installed in a
// qemu machine (TCG, direct kernel boot, no network card) and checks
// labseed.service under the real systemd, with its hardening: it starts
// from the enablement the package made, with the options of
// /etc/default/labseed (--pxe proxy), binds UDP 67, 69, 4011 and TCP 7480,
// keeps CAP_NET_BIND_SERVICE and CAP_NET_RAW only, answers HTTP, sees the
// root file system read-only, is restarted when killed, opens the raw DHCP
// socket with --pxe-no-bind, and stops cleanly on SIGTERM.
//
// About two minutes of emulation: LABSEED_LONG=1, root, qemu-system-x86
// and LABSEED_DEBIAN_IMAGE (test.sh).
func TestServiceQEMU(t *testing.T) {
	if os.Getenv("LABSEED_LONG") == "" {
		t.Skip("set LABSEED_LONG=1 to boot the package's service in qemu (test.sh does)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: chroot and dpkg in a Debian image")
	}
	for _, bin := range []string{"qemu-system-x86_64", "mkfs.ext4"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (apt-get install qemu-system-x86 e2fsprogs)", bin)
		}
	}
	if runtime.GOARCH != "amd64" {
		t.Skip("the Debian image and qemu-system-x86_64 are amd64")
	}
	image := os.Getenv("LABSEED_DEBIAN_IMAGE")
	if _, err := os.Stat(image); image == "" || err != nil {
		t.Skipf("no Debian image (LABSEED_DEBIAN_IMAGE=%q): test.sh makes it with bench/mkimage.sh", image)
	}
	deb := build(t)
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "tar", "--numeric-owner", "-xzf", image, "-C", root)
	kernels, _ := filepath.Glob(filepath.Join(root, "boot/vmlinuz-*"))
	initrds, _ := filepath.Glob(filepath.Join(root, "boot/initrd.img-*"))
	if len(kernels) != 1 || len(initrds) != 1 {
		t.Skipf("%s: want one kernel and one initrd in /boot, found %v %v", image, kernels, initrds)
	}
	if _, err := os.Stat(filepath.Join(root, "usr/bin/systemctl")); err != nil {
		t.Skipf("%s has no systemd", image)
	}

	b, err := os.ReadFile(deb)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data string, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("tmp/labseed.deb", string(b), 0o644)
	chroot(t, root, "dpkg", "--install", "/tmp/labseed.deb")
	// What a sysadmin configures: the options, and the boot files that
	// "labseed netboot build" would write (empty: no machine boots here).
	write("etc/default/labseed", "LABSEED_SERVE_OPTS=\"--listen 127.0.0.1 --pxe proxy --image lab1\"\n", 0o644)
	for _, f := range []string{"undionly.kpxe", "ipxe.efi", "vmlinuz", "initrd.img"} {
		write("var/lib/labseed/boot/"+f, "", 0o644)
	}
	write("usr/local/sbin/labseed-check", checkScript, 0o755)
	write("etc/systemd/system/labseed-check.service", checkUnit, 0o644)
	chroot(t, root, "systemctl", "enable", "labseed-check.service")
	// Less to boot: no ssh, no timers; no getty on the serial console,
	// which would hang up the check's output there.
	chroot(t, root, "systemctl", "mask", "serial-getty@ttyS0.service", "ssh.service", "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer", "dpkg-db-backup.timer")
	disk := filepath.Join(dir, "disk.img")
	run(t, "mkfs.ext4", "-q", "-F", "-L", "root", "-d", root, disk, "3G")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", "-nographic", "-accel", "tcg", "-m", "512",
		"-no-user-config", "-monitor", "none", "-nic", "none", "-no-reboot",
		"-kernel", kernels[0], "-initrd", initrds[0],
		"-append", "root=/dev/vda rw console=ttyS0 panic=-1 systemd.show_status=0",
		"-drive", "file="+disk+",format=raw,if=virtio")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	got := map[string]string{}
	var console []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		console = append(console, line)
		if rest, ok := strings.CutPrefix(line, "LABSEED-LOG "); ok {
			t.Log("journal: " + rest)
		}
		if rest, ok := strings.CutPrefix(line, "LABSEED-CHECK "); ok {
			for _, kv := range strings.Fields(rest) {
				k, v, _ := strings.Cut(kv, "=")
				got[k] = v
			}
			if rest == "done" {
				break
			}
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	t.Logf("qemu: booted, checked and stopped in %v", time.Since(start).Round(time.Second))
	if _, ok := got["done"]; !ok {
		t.Fatalf("the check did not finish (%v); last console lines:\n%s", ctx.Err(), strings.Join(console[max(0, len(console)-40):], "\n"))
	}
	for k, want := range map[string]string{
		"enabled":  "enabled",
		"bound":    "yes",
		"active":   "active",
		"capeff":   "0000000000002400", // CAP_NET_BIND_SERVICE (10), CAP_NET_RAW (13)
		"capbnd":   "0000000000002400",
		"uid":      "0",
		"http":     "HTTP/1.0_200_OK",
		"store":    "700",
		"labkey":   "600",
		"rootfs":   "read-only",
		"restarts": "1",
		"raw":      "yes",
		"stop":     "success",
		"status":   "0",
	} {
		if got[k] != want {
			t.Errorf("in the qemu machine %s=%q, want %q", k, got[k], want)
		}
	}
	t.Logf("systemd-analyze security: exposure %s", got["exposure"])
}
