package clone

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/gossip"
	"github.com/labseed/labseed/hosts"
	"github.com/labseed/labseed/internal/fixture"
	"github.com/labseed/labseed/internal/seedertest"
	"github.com/labseed/labseed/internal/syncbuf"
	"github.com/labseed/labseed/peer"
	"github.com/labseed/labseed/seeder"
	"github.com/labseed/labseed/store"
	"golang.org/x/sys/unix"
)

// The pipeline tests clone onto real loop devices: a sparse file attached
// with losetup -P, partitioned, formatted and mounted, from a print server
// (seeder.Server with its hosts table) on loopback. They need root and the
// Debian packages fdisk, e2fsprogs, extlinux, syslinux-common and busybox.

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("clones onto a loop device: run as root (test.sh does)")
	}
	for _, bin := range []string{"losetup", "sfdisk", "mkfs.ext4", "mkswap", "blkid", "partx", "busybox", "extlinux"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not installed (Debian: fdisk, e2fsprogs, mount, busybox, extlinux)", bin)
		}
	}
}

const testMAC = "52:54:00:12:34:56"

// labConf is the lab settings of the pipeline tests.
const labConf = `# the pipeline tests' lab
netmask = 255.255.255.0
gateway = 10.77.1.1
dns = 10.77.1.2, 10.77.1.3
domain = lab.example
printer_queue = lab1-laser
printer_server = printsrv
display = 1920x1080
swap_mib = 128
bootloader = extlinux
enroll = off
x_room = B204
`

// testLab is a print server on loopback with one published image and a
// hosts table knowing testMAC as ws07.
type testLab struct {
	t      *testing.T
	srv    *seeder.Server
	st     *store.Store
	db     *hosts.DB
	server string
	pub    []byte
	labKey []byte
}

// newTestLab publishes the tar stream tar makes as image "lab1" and starts
// a print server for it; conf is lab.conf.
func newTestLab(t *testing.T, image func(io.Writer) error, conf string) *testLab {
	t.Helper()
	return newTestLabConfig(t, image, conf, chunker.Config{Name: "lab1", Level: 1})
}

// newTestLabConfig is newTestLab publishing with cfg.
func newTestLabConfig(t *testing.T, image func(io.Writer) error, conf string, pcfg chunker.Config) *testLab {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(image(pw)) }()
	start := time.Now()
	if _, err := st.Publish(t.Context(), pr, pcfg); err != nil {
		t.Fatal(err)
	}
	t.Logf("published the image in %.1f s", time.Since(start).Seconds())
	l := &testLab{t: t, st: st}
	l.write(hosts.HostsFile, "mac,hostname,ip,next_boot\n"+testMAC+",ws07,10.77.1.17,clone\n52:54:00:00:00:01,ws01,10.77.1.11,local\n")
	l.write(hosts.SettingsFile, conf)
	if l.db, err = hosts.Open(st.Dir()); err != nil {
		t.Fatal(err)
	}
	if l.pub, err = st.PublicKey(); err != nil {
		t.Fatal(err)
	}
	if l.labKey, err = st.LabKey(); err != nil {
		t.Fatal(err)
	}
	cfg := seeder.LocalConfig()
	cfg.Store, cfg.LabKey, cfg.Hosts = st, l.labKey, l.db
	l.srv = seedertest.Start(t, cfg)
	l.server = l.srv.Lab().HTTPAddr
	return l
}

// write writes a file of the lab's configuration (in the store).
func (l *testLab) write(name, content string) {
	l.t.Helper()
	p := filepath.Join(l.st.Dir(), name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		l.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		l.t.Fatal(err)
	}
}

// systemImage returns a tar stream of fixture.BuildSystemTree(opt).
func systemImage(t *testing.T, opt fixture.SystemTreeOptions) func(io.Writer) error {
	t.Helper()
	tree := filepath.Join(t.TempDir(), "tree")
	if err := fixture.BuildSystemTree(tree, opt); err != nil {
		t.Fatal(err)
	}
	return func(w io.Writer) error {
		cmd := exec.Command("tar", "-C", tree, "--numeric-owner", "-cf", "-", ".")
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = w, &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("tar: %w: %s", err, stderr.String())
		}
		return nil
	}
}

// testDisk is a loop device over a sparse file, and the clone's mount point.
type testDisk struct {
	dev, file, mnt string
}

// newTestDisk attaches a sparse file of size bytes with losetup -P. The
// cleanups detach it (by its exact name) and, before that, unmount
// anything a failed test left under the mount point so that removing the
// temporary directory cannot go through a bind mount of /dev.
func newTestDisk(t *testing.T, size int64) *testDisk {
	t.Helper()
	dir := t.TempDir()
	d := &testDisk{file: filepath.Join(dir, "disk.img"), mnt: filepath.Join(dir, "mnt")}
	f, err := os.Create(d.file)
	if err != nil {
		t.Fatal(err)
	}
	err = f.Truncate(size)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "-P", "--find", "--show", d.file).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v: %s", err, out)
	}
	d.dev = strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", d.dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", d.dev, err, out)
		}
	})
	t.Cleanup(func() {
		points, _ := mountsUnder(dir)
		slices.Reverse(points)
		for _, p := range points {
			t.Errorf("left mounted: %s", p)
			unix.Unmount(p, unix.MNT_DETACH)
		}
	})
	return d
}

// mbr returns the disk's first sector.
func (d *testDisk) mbr(t *testing.T) []byte {
	t.Helper()
	head := make([]byte, 512)
	f, err := os.Open(d.file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.ReadFull(f, head); err != nil {
		t.Fatal(err)
	}
	return head
}

// part returns the device of partition n.
func (d *testDisk) part(n int) string { return fmt.Sprintf("%sp%d", d.dev, n) }

// mountCheck mounts partition n for the checks and returns where. (Not
// read-only: a mount namespace made while the clone ran, by any process
// of the machine, keeps a copy of its read-write mount for its lifetime,
// and a read-only mount of a file system mounted read-write is refused.)
func (d *testDisk) mountCheck(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount(d.part(n), dir, "ext4", 0, ""); err != nil {
		t.Fatalf("mount %s: %v", d.part(n), err)
	}
	t.Cleanup(func() {
		// EINVAL: the test unmounted it already.
		if err := unix.Unmount(dir, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// cloneRun is one clone's configuration and what it printed.
type cloneRun struct {
	cfg     Config
	console *syncbuf.Buffer
	logs    *syncbuf.Buffer
}

func (l *testLab) cloneConfig(t *testing.T, d *testDisk) *cloneRun {
	r := &cloneRun{console: &syncbuf.Buffer{}, logs: &syncbuf.Buffer{}}
	r.cfg = Config{
		Config: peer.Config{
			Server: l.server, PublicKey: l.pub, LabKey: l.labKey, Linger: -1, Local: true,
			Logger: slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		},
		Disk: d.dev, MACs: []string{testMAC}, Mountpoint: d.mnt,
		NoReboot: true, Reboot: func() error { t.Error("a test clone asked to reboot"); return nil },
		CmdlinePath: filepath.Join(t.TempDir(), "no-cmdline"), Console: r.console,
	}
	return r
}

// run runs the clone and fails the test with its console and logs if the
// outcome is not the one wanted.
func (r *cloneRun) run(t *testing.T, ctx context.Context, wantErr bool) error {
	t.Helper()
	start := time.Now()
	err := Run(ctx, r.cfg)
	t.Logf("clone: %.1f s, err %v", time.Since(start).Seconds(), err)
	if testing.Verbose() {
		t.Logf("console:\n%s", r.console)
		if os.Getenv("LABSEED_CLONE_LOGS") != "" {
			t.Logf("logs:\n%s", r.logs)
		}
	}
	if (err != nil) != wantErr {
		t.Fatalf("Run: %v\nconsole:\n%s\nlogs (tail):\n%s", err, r.console, tail(r.logs.String(), 8000))
	}
	if points, _ := mountsUnder(r.cfg.Mountpoint); len(points) > 0 {
		t.Fatalf("left mounted after the clone: %v", points)
	}
	return err
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func readFile(t *testing.T, root, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func blkidUUID(t *testing.T, dev string) string {
	t.Helper()
	out, err := exec.Command("blkid", "-p", "-s", "UUID", "-o", "value", dev).Output()
	if err != nil {
		t.Fatalf("blkid %s: %v", dev, err)
	}
	return strings.TrimSpace(string(out))
}

func mustContain(t *testing.T, what, s string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(s, w) {
			t.Errorf("%s does not contain %q:\n%s", what, w, s)
		}
	}
}

// reports returns the clone reports of testMAC, as the print server's
// record of the machine holds them.
func (l *testLab) reports(t *testing.T) []api.Report {
	t.Helper()
	bh, err := api.NewClient(l.server).Hosts(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bh {
		if b.MAC == testMAC {
			return b.Clone
		}
	}
	return nil
}

// reportSteps returns the clone reports of testMAC as "step:state".
func (l *testLab) reportSteps(t *testing.T) []string {
	var out []string
	for _, r := range l.reports(t) {
		out = append(out, r.Step+":"+r.State)
	}
	return out
}

// TestClone clones the fixture system onto a loop device with extlinux
// and checks every file the clone writes, the boot code, the UUIDs, the
// reports and that nothing is left mounted.
func TestClone(t *testing.T) {
	needRoot(t)
	_, err := exec.LookPath("ssh-keygen")
	ssh := err == nil // Debian: openssh-client
	l := newTestLab(t, systemImage(t, fixture.SystemTreeOptions{Extlinux: true, SSH: ssh}), labConf)
	l.write("templates/all/etc/motd", "Welcome to {{.Hostname}} in room {{.Vars.x_room}}{{.Vars.x_missing}}.\n")
	l.write("hooks/10-record", `echo "hook ran on $LABSEED_HOSTNAME in $LABSEED_X_ROOM" > /etc/labseed-hook`+"\n")
	d := newTestDisk(t, 1<<30)
	r := l.cloneConfig(t, d)
	r.run(t, t.Context(), false)
	mustContain(t, "the console", r.console.String(), "this machine is ws07", "partitioning "+d.dev, "done: ")

	root := d.mountCheck(t, 1)
	rootUUID, swapUUID := blkidUUID(t, d.part(1)), blkidUUID(t, d.part(2))
	if rootUUID == "" || swapUUID == "" {
		t.Fatalf("blkid: root UUID %q, swap UUID %q", rootUUID, swapUUID)
	}
	if got := readFile(t, root, "etc/hostname"); got != "ws07\n" {
		t.Errorf("etc/hostname = %q", got)
	}
	mustContain(t, "etc/hosts", readFile(t, root, "etc/hosts"), "10.77.1.17\tws07.lab.example ws07\n", "127.0.0.1\tlocalhost\n")
	mustContain(t, "etc/network/interfaces", readFile(t, root, "etc/network/interfaces"),
		"auto lo\n", "iface eth0 inet static\n", "\taddress 10.77.1.17/24\n", "\tgateway 10.77.1.1\n",
		"\tdns-nameservers 10.77.1.2 10.77.1.3\n", "\tdns-search lab.example\n")
	for _, p := range []string{"etc/systemd/network/50-labseed.network", "etc/NetworkManager/system-connections/labseed.nmconnection"} {
		if _, err := os.Stat(filepath.Join(root, p)); err == nil {
			t.Errorf("%s written for an ifupdown system", p)
		}
	}
	mustContain(t, "etc/resolv.conf", readFile(t, root, "etc/resolv.conf"), "search lab.example\n", "nameserver 10.77.1.2\nnameserver 10.77.1.3\n")
	mustContain(t, "etc/printcap", readFile(t, root, "etc/printcap"), "lab1-laser|lp:", ":rm=printsrv:", ":rp=lab1-laser:")
	mustContain(t, "the X display configuration", readFile(t, root, "etc/X11/xorg.conf.d/50-labseed-display.conf"), `Modes "1920x1080"`)
	fstab := readFile(t, root, "etc/fstab")
	mustContain(t, "etc/fstab", fstab, "UUID="+rootUUID+"\t/\text4\t", "UUID="+swapUUID+"\tnone\tswap\t")
	if mid := readFile(t, root, "etc/machine-id"); !regexp.MustCompile(`^[0-9a-f]{32}\n$`).MatchString(mid) || strings.HasPrefix(mid, fixture.SystemMachineID) {
		t.Errorf("etc/machine-id = %q: not a fresh one", mid)
	}
	if !ssh {
		t.Log("no ssh-keygen here (Debian: openssh-client): the SSH host keys are not checked")
	} else if key := readFile(t, root, "etc/ssh/ssh_host_ed25519_key"); key == fixture.SystemOldHostKey || !strings.Contains(key, "PRIVATE KEY") {
		t.Errorf("the SSH host key was not made again: %q", key)
	}
	mustContain(t, "etc/motd (a lab template)", readFile(t, root, "etc/motd"), "Welcome to ws07 in room B204.\n")
	if got := readFile(t, root, "etc/labseed-hook"); got != "hook ran on ws07 in B204\n" {
		t.Errorf("the hook wrote %q", got)
	}
	for _, p := range []string{configuringMarker, "run/labseed-hooks"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Errorf("%s left in the new system", p)
		}
	}
	// The staging data is gone but for the record of the image installed.
	if ents, err := os.ReadDir(filepath.Join(root, stagingDir)); err != nil || len(ents) != 1 || ents[0].Name() != chunker.InstalledDirName {
		t.Errorf("%s holds %v (%v), want the installed record only", stagingDir, ents, err)
	}
	if rec, _, err := chunker.ReadInstalled(root); err != nil || rec.Name != "lab1" || rec.Version != 1 || !rec.Payload {
		t.Errorf("the record of the image installed: %+v, %v", rec, err)
	}

	// extlinux: installed in /boot/extlinux, configured, and its boot code
	// in the MBR, the root partition active.
	mustContain(t, "extlinux.conf", readFile(t, root, "boot/extlinux/extlinux.conf"),
		"LINUX /"+fixture.SystemKernel+"\n", "INITRD /"+fixture.SystemInitrd+"\n", "APPEND root=UUID="+rootUUID+" ro")
	if _, err := os.Stat(filepath.Join(root, "boot/extlinux/ldlinux.sys")); err != nil {
		t.Errorf("extlinux not installed: %v", err)
	}
	mbr, err := os.ReadFile("/usr/lib/EXTLINUX/mbr.bin")
	if err != nil {
		mbr, err = os.ReadFile("/usr/lib/syslinux/mbr/mbr.bin")
	}
	if err != nil {
		t.Fatal(err)
	}
	head := d.mbr(t)
	if !bytes.Equal(head[:bootCodeSize], mbr[:bootCodeSize]) {
		t.Errorf("the disk's boot code is not extlinux's mbr.bin")
	}
	if head[510] != 0x55 || head[511] != 0xaa {
		t.Errorf("the MBR lost its signature: % x", head[510:])
	}
	dump, err := exec.Command("sfdisk", "--dump", d.dev).Output()
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "the partition table", string(dump), "label: dos", "type=83, bootable", "type=82")

	steps := l.reportSteps(t)
	for _, s := range []string{StepIdentify, StepDisk, StepFetch, StepMount, StepConfigure, StepHooks, StepBootloader, StepSeed, StepUnmount} {
		if !slices.Contains(steps, s+":"+hosts.StateRunning) {
			t.Errorf("no running report of %s: %v", s, steps)
		}
	}
	if len(steps) == 0 || steps[len(steps)-1] != StepDone+":"+hosts.StateDone {
		t.Errorf("the last report is not done: %v", steps)
	}
	hs, err := l.db.Hosts()
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(hs, func(h hosts.Host) bool { return h.Hostname == "ws07" }); i < 0 {
		t.Errorf("ws07 is no longer in the hosts table: %+v", hs)
	} else if hs[i].NextBoot != hosts.BootLocal {
		t.Errorf("after the clone ws07 boots %q next, not local", hs[i].NextBoot)
	}
}

// TestCloneFailure makes a hook fail: the clone fails naming the hook,
// leaves nothing mounted, reports the failure, and the next clone of the
// same disk (hook fixed) works.
func TestCloneFailure(t *testing.T) {
	needRoot(t)
	l := newTestLab(t, systemImage(t, fixture.SystemTreeOptions{Extlinux: true}), labConf)
	l.write("hooks/50-break", "echo breaking on purpose >&2\nexit 1\n")
	d := newTestDisk(t, 1<<30)
	r := l.cloneConfig(t, d)
	err := r.run(t, t.Context(), true)
	var se *StepError
	if !errors.As(err, &se) || se.Step != StepHooks {
		t.Fatalf("error %v: want a StepError of step %s", err, StepHooks)
	}
	mustContain(t, "the error", err.Error(), "hook 50-break", "exit status 1", "breaking on purpose")
	mustContain(t, "the console", r.console.String(), "FAILED: clone: hooks: hook 50-break")
	steps := l.reportSteps(t)
	if !slices.Contains(steps, StepHooks+":"+hosts.StateFailed) || slices.Contains(steps, StepDone+":"+hosts.StateDone) {
		t.Errorf("reports %v: want hooks failed, not done", steps)
	}
	if rs := l.reports(t); len(rs) == 0 || !strings.Contains(rs[len(rs)-1].Error, "breaking on purpose") {
		t.Errorf("the failed report does not say why: %+v", rs[len(rs)-1])
	}

	// The image was installed (the agent did not linger) before the hook
	// failed: the next clone syncs the configured tree, it does not
	// resume it.
	l.write("hooks/50-break", "echo fixed > /etc/fixed\n")
	r = l.cloneConfig(t, d)
	r.run(t, t.Context(), false)
	mustContain(t, "the console", r.console.String(), "keeping the partitions of "+d.dev, "syncing "+d.part(1))
	if strings.Contains(r.console.String(), "resuming") {
		t.Errorf("resumed a configured tree:\n%s", r.console)
	}
	root := d.mountCheck(t, 1)
	if got := readFile(t, root, "etc/fixed"); got != "fixed\n" {
		t.Errorf("the fixed hook wrote %q", got)
	}
	if steps := l.reportSteps(t); steps[len(steps)-1] != StepDone+":"+hosts.StateDone {
		t.Errorf("the second clone's last report: %v", steps)
	}
}

// TestCloneResume interrupts a clone as its download starts: the next
// clone keeps the file system and resumes the download.
func TestCloneResume(t *testing.T) {
	needRoot(t)
	l := newTestLab(t, systemImage(t, fixture.SystemTreeOptions{Extlinux: true}), labConf)
	d := newTestDisk(t, 1<<30)
	r := l.cloneConfig(t, d)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	r.cfg.Progress = func(p peer.Progress) {
		if p.Phase == gossip.PhaseDownloading {
			cancel()
		}
	}
	err := r.run(t, ctx, true)
	var se *StepError
	if !errors.As(err, &se) || se.Step != StepFetch || !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v: want the fetch step cancelled", err)
	}
	r = l.cloneConfig(t, d)
	r.run(t, t.Context(), false)
	mustContain(t, "the console", r.console.String(), "resuming the interrupted download on "+d.part(1))
	if strings.Contains(r.console.String(), "making the ext4") {
		t.Errorf("formatted a resumable file system:\n%s", r.console)
	}
	root := d.mountCheck(t, 1)
	if got := readFile(t, root, "etc/hostname"); got != "ws07\n" {
		t.Errorf("etc/hostname = %q", got)
	}
}

// TestCloneRefusesDisk: a partition, or a disk with a mounted partition,
// is refused before anything is written.
func TestCloneRefusesDisk(t *testing.T) {
	needRoot(t)
	d := newTestDisk(t, 256<<20)
	if out, err := exec.Command("sh", "-c", "printf 'label: dos\\n,,L\\n' | sfdisk -q "+d.dev).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	dd, err := openDisk(d.dev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dd.waitPartition(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", d.part(1)).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if _, err := openDisk(d.part(1)); err == nil || !strings.Contains(err.Error(), "is a partition of "+d.dev) {
		t.Errorf("openDisk(%s): %v", d.part(1), err)
	}
	if err := dd.checkUnused(d.mnt); err != nil {
		t.Errorf("an unused disk: %v", err)
	}
	other := t.TempDir()
	if err := unix.Mount(d.part(1), other, "ext4", 0, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(other, 0)
	if err := dd.checkUnused(d.mnt); err == nil || !strings.Contains(err.Error(), "is mounted on "+other) {
		t.Errorf("a disk with a mounted partition: %v", err)
	}
}

// debianImage returns the debootstrap bookworm tree (grub-pc, ifupdown,
// openssh, a kernel) to clone, as a tarball: $LABSEED_DEBIAN_IMAGE (test.sh
// makes a small one), or the benchmarks' image.
func debianImage() string {
	if f := os.Getenv("LABSEED_DEBIAN_IMAGE"); f != "" {
		return f
	}
	return "/var/cache/labseed-bench/debian.tar.gz"
}

// TestCloneDebian clones a real Debian with the default bootloader, GRUB:
// the network system is detected as ifupdown, grub-install writes its
// boot code into the loop device's MBR and update-grub its menu. Its
// publish takes a minute or two, so it runs when LABSEED_DEBIAN=1.
func TestCloneDebian(t *testing.T) {
	needRoot(t)
	if os.Getenv("LABSEED_DEBIAN") == "" {
		t.Skip("set LABSEED_DEBIAN=1 to clone a real Debian (test.sh does, after making the image)")
	}
	if _, err := os.Stat(debianImage()); err != nil {
		t.Skipf("no Debian image: %v", err)
	}
	start := time.Now()
	conf := strings.Replace(labConf, "bootloader = extlinux\n", "", 1)
	l := newTestLab(t, func(w io.Writer) error {
		f, err := os.Open(debianImage())
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(w, f)
		return err
	}, conf)
	d := newTestDisk(t, 4<<30)
	r := l.cloneConfig(t, d)
	r.run(t, t.Context(), false)
	root := d.mountCheck(t, 1)
	rootUUID := blkidUUID(t, d.part(1))
	mustContain(t, "etc/network/interfaces", readFile(t, root, "etc/network/interfaces"), "iface eth0 inet static\n", "\taddress 10.77.1.17/24\n")
	if _, err := os.Stat(filepath.Join(root, "etc/systemd/network/50-labseed.network")); err == nil {
		t.Error("a systemd-networkd file written for Debian's ifupdown")
	}
	if got := readFile(t, root, "etc/hostname"); got != "ws07\n" {
		t.Errorf("etc/hostname = %q", got)
	}
	mustContain(t, "etc/fstab", readFile(t, root, "etc/fstab"), "UUID="+rootUUID+"\t/\text4\t")
	mustContain(t, "boot/grub/grub.cfg", readFile(t, root, "boot/grub/grub.cfg"), "root=UUID="+rootUUID)
	if _, err := os.Stat(filepath.Join(root, "etc/ssh/ssh_host_ed25519_key")); err != nil {
		t.Errorf("no SSH host key: %v", err)
	}
	head := d.mbr(t)
	if !bytes.Contains(head, []byte("GRUB")) {
		t.Errorf("no GRUB boot code in the MBR: % x", head[:64])
	}
	t.Logf("Debian: publish and clone in %.0f s", time.Since(start).Seconds())

	// The same machine re-imaged: synced, GRUB installed again.
	if err := unix.Unmount(root, 0); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	r = l.cloneConfig(t, d)
	r.run(t, t.Context(), false)
	mustContain(t, "the second clone's console", r.console.String(), "syncing "+d.part(1), "synced: ")
	t.Logf("Debian: synced in %.0f s", time.Since(start).Seconds())
	root = d.mountCheck(t, 1)
	mustContain(t, "boot/grub/grub.cfg after the sync", readFile(t, root, "boot/grub/grub.cfg"), "root=UUID="+rootUUID)
	if got := readFile(t, root, "etc/hostname"); got != "ws07\n" {
		t.Errorf("etc/hostname after the sync = %q", got)
	}
	if head := d.mbr(t); !bytes.Contains(head, []byte("GRUB")) {
		t.Errorf("no GRUB boot code in the MBR after the sync")
	}
}

// TestCloneNetworkSystems clones trees that use systemd-networkd and
// NetworkManager, with a bootloader command of the lab's own: each gets
// its network system's configuration and only that.
func TestCloneNetworkSystems(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		net, file string
		mode      os.FileMode
		want      []string
		untouched string // the tree's own file that must stay as it was
	}{
		{fixture.NetNetworkd, "etc/systemd/network/50-labseed.network", 0o644,
			[]string{"MACAddress=" + testMAC + "\n", "Address=10.77.1.17/24\n", "Gateway=10.77.1.1\n", "DNS=10.77.1.3\n"}, ""},
		{fixture.NetNetworkManager, "etc/NetworkManager/system-connections/labseed.nmconnection", 0o600,
			[]string{"mac-address=" + testMAC + "\n", "address1=10.77.1.17/24,10.77.1.1\n", "dns=10.77.1.2;10.77.1.3;\n"}, "etc/network/interfaces"},
	} {
		t.Run(tc.net, func(t *testing.T) {
			conf := strings.Replace(labConf, "bootloader = extlinux\n",
				"bootloader = echo {{.Disk}} {{.Root}} {{.Root.UUID}} {{.Network}} > /boot/loader-of-the-lab\n", 1)
			l := newTestLab(t, systemImage(t, fixture.SystemTreeOptions{Network: tc.net}), conf)
			d := newTestDisk(t, 512<<20)
			r := l.cloneConfig(t, d)
			r.run(t, t.Context(), false)
			root := d.mountCheck(t, 1)
			mustContain(t, tc.file, readFile(t, root, tc.file), tc.want...)
			if fi, err := os.Stat(filepath.Join(root, tc.file)); err != nil {
				t.Error(err)
			} else if fi.Mode().Perm() != tc.mode {
				t.Errorf("%s: mode %v, want %v", tc.file, fi.Mode().Perm(), tc.mode)
			}
			if tc.untouched != "" {
				if got := readFile(t, root, tc.untouched); strings.Contains(got, "10.77.1.17") {
					t.Errorf("%s was configured too:\n%s", tc.untouched, got)
				}
			} else if _, err := os.Stat(filepath.Join(root, "etc/network/interfaces")); err == nil {
				t.Errorf("etc/network/interfaces written for %s", tc.net)
			}
			want := fmt.Sprintf("%s %s %s %s\n", d.dev, d.part(1), blkidUUID(t, d.part(1)), map[string]string{
				fixture.NetNetworkd: NetworkNetworkd, fixture.NetNetworkManager: NetworkManager}[tc.net])
			if got := readFile(t, root, "boot/loader-of-the-lab"); got != want {
				t.Errorf("the lab's bootloader command wrote %q, want %q", got, want)
			}
		})
	}
}
