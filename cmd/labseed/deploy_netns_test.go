//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/internal/fixture"
	"github.com/labseed/labseed/internal/netlab"
	"github.com/labseed/labseed/treecmp"
	"golang.org/x/sys/unix"
)

// The lab of TestDeployNetns: a print server and 12 workstations on one
// switch, each in a network namespace of its own, on 10.83.0.0/24.
const (
	deployWS     = 12
	deployDead   = "52:54:00:83:00:99" // in the table, nothing behind it
	deployServer = "10.83.0.1"
	deployWave   = 4
	deployTries  = 3
	deployWaveTO = 4 * time.Second
)

func deployMAC(i int) string { return fmt.Sprintf("52:54:00:83:00:%02x", 0x10+i) }

// deployWSConfig is what TestHelperDeployWS is told (JSON in
// $LABSEED_DEPLOY_WS).
type deployWSConfig struct {
	MAC, Dead  string
	Delay      time.Duration // from the magic packet to the network boot: the machine's POST
	Bin        string        // labseed
	Disk, Mnt  string
	Keys       string
	CloneLog   string
	ServerAddr string
}

// TestDeployNetns is issue 13's lab with the loop closed. 12 workstation
// namespaces hold the MACs of the hosts table; in each, a listener plays
// the switched-off machine: it reads every frame its "network card" gets
// and, at the first magic packet for its MAC, powers on: after a POST of a
// second or two it sends a PXE DHCP request (the print server's boot event)
// and runs "labseed clone --no-reboot" onto a loop disk of its own. The
// 13th MAC of the table has nothing behind it. "labseed deploy --wave 4"
// re-images the lab, and the test checks from the print server's record
// that never more than 4 machines were woken but not booted, that every
// listening workstation holds the image exactly, that the dead MAC was
// woken --wake-tries times (its packets seen on the wire) and reported
// "never booted", and that the command exits non-zero. In the middle, the
// deploy command is interrupted (Ctrl-C) and "labseed serve" restarted:
// the deploy goes on from where it was, the same command run again
// follows it to its end, and "deploy status" shows the end.
//
// Namespaces lsdep-*-PID, removed by name; loop devices detached by name.
func TestDeployNetns(t *testing.T) {
	needLong(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces and loop devices")
	}
	for _, bin := range []string{"ip", "losetup", "sfdisk", "mkfs.ext4", "blkid", "partx", "busybox", "tar", "mount"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (apt-get install iproute2 mount fdisk e2fsprogs busybox tar)", bin)
		}
	}
	began := time.Now()
	id := strconv.Itoa(os.Getpid())
	dir := t.TempDir()
	st := filepath.Join(dir, "store")

	// The image: a small system that runs in a chroot.
	tree := filepath.Join(dir, "tree")
	if err := fixture.BuildSystemTree(tree, fixture.SystemTreeOptions{}); err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(dir, "lab1.tar")
	netlab.Run(t, "tar", "-C", tree, "--numeric-owner", "-cf", tarball, ".")
	labseed(t, true, "publish", "--store", st, "--name", "lab1", "--level", "1", tarball)
	ref := filepath.Join(dir, "ref")
	labseed(t, true, "extract", "--store", st, "--image", "lab1", "--target", ref)
	keysDir, adminKey := filepath.Join(dir, "keys"), filepath.Join(dir, "admin.key")
	labseed(t, true, "keys", "export", "--store", st, keysDir)
	labseed(t, true, "keys", "admin", "--store", st, adminKey)

	// The hosts table: the dead MAC among the live ones.
	table := "mac,hostname,ip,group\n"
	hosts := []netlab.Host{{NS: "lsdep-srv-" + id, Addr: deployServer + "/24", MAC: "52:54:00:83:00:01"}}
	for i := 1; i <= deployWS; i++ {
		if i == 10 {
			table += deployDead + ",ws-dead,10.83.0.99,lab\n"
		}
		table += fmt.Sprintf("%s,ws%02d,10.83.0.%d,lab\n", deployMAC(i), i, 10+i)
		hosts = append(hosts, netlab.Host{NS: fmt.Sprintf("lsdep-w%02d-%s", i, id), Addr: fmt.Sprintf("10.83.0.%d/24", 10+i), MAC: deployMAC(i)})
	}
	os.WriteFile(filepath.Join(st, "hosts.csv"), []byte(table), 0o644)
	os.WriteFile(filepath.Join(st, "lab.conf"), []byte("swap_mib = 0\nbootloader = none\nenroll = off\n"), 0o644)
	netlab.Build(t, "lsdep-sw-"+id, hosts...)
	nsSrv := hosts[0].NS

	// The print server, with the network boot (its boot events).
	var serve *exec.Cmd
	startServe := func(log string) {
		serve = netlab.StartLogged(t, log, "ip", "netns", "exec", nsSrv, labseedBin, "serve", "--store", st,
			"--listen", deployServer, "--pxe", "proxy", "--image", "lab1", "--local", "-v")
		if !netlab.WaitFile(log, "msg=serving", 20*time.Second) {
			b, _ := os.ReadFile(log)
			t.Fatalf("labseed serve did not start:\n%s", b)
		}
	}
	serveLog := filepath.Join(dir, "serve.log")
	startServe(serveLog)

	// The workstations: a loop disk and a listener each.
	type station struct {
		mac, log, disk, mnt, cloneLog string
	}
	var stations []station
	for i := 1; i <= deployWS; i++ {
		wdir := filepath.Join(dir, fmt.Sprintf("ws%02d", i))
		os.MkdirAll(filepath.Join(wdir, "mnt"), 0o755)
		s := station{mac: deployMAC(i), log: filepath.Join(wdir, "listener.log"), mnt: filepath.Join(wdir, "mnt"),
			cloneLog: filepath.Join(wdir, "clone.log"), disk: loopDisk(t, filepath.Join(wdir, "disk.img"), 128<<20)}
		cfg, _ := json.Marshal(deployWSConfig{MAC: s.mac, Dead: deployDead, Delay: time.Duration(500+300*(i%5)) * time.Millisecond,
			Bin: labseedBin, Disk: s.disk, Mnt: s.mnt, Keys: keysDir, CloneLog: s.cloneLog, ServerAddr: deployServer})
		startGroup(t, s.log, []string{"LABSEED_DEPLOY_WS=" + string(cfg)},
			"ip", "netns", "exec", hosts[i].NS, os.Args[0], "-test.run=^TestHelperDeployWS$")
		stations = append(stations, s)
	}
	for _, s := range stations {
		if !netlab.WaitFile(s.log, "LISTENING", 20*time.Second) {
			b, _ := os.ReadFile(s.log)
			t.Fatalf("the listener of %s did not start:\n%s", s.mac, b)
		}
	}
	t.Logf("lab ready in %.1f s", time.Since(began).Seconds())

	// deployCmd is the sysadmin's command, from a laptop (the admin key's
	// copy) on the lab network.
	deployArgs := []string{"ip", "netns", "exec", nsSrv, labseedBin, "deploy", "--server", deployServer, "--admin-key", adminKey,
		"--image", "lab1", "--all", "--wave", strconv.Itoa(deployWave), "--wave-timeout", deployWaveTO.String(), "--wake-tries", strconv.Itoa(deployTries)}
	status := func() *api.Deploy {
		out, err := exec.Command("ip", "netns", "exec", nsSrv, labseedBin, "deploy", "status", "--json", "--server", deployServer).Output()
		var d api.Deploy
		if jerr := json.Unmarshal(out, &d); jerr != nil {
			return nil // not yet, or the print server restarting
		}
		_ = err // exit status 1 for a deploy that ended with a machine not done
		return &d
	}
	waitStatus := func(what string, within time.Duration, ok func(*api.Deploy) bool) *api.Deploy {
		t.Helper()
		var d *api.Deploy
		for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
			if d = status(); d != nil && ok(d) {
				return d
			}
		}
		b, _ := os.ReadFile(serveLog)
		t.Fatalf("%s: not within %s; last %+v\nserve log:\n%s", what, within, d, tail(b, 4000))
		return nil
	}

	start := time.Now()
	out1 := filepath.Join(dir, "deploy1.out")
	first := startCmd(t, out1, deployArgs...)
	mid := waitStatus("3 machines done", 4*time.Minute, func(d *api.Deploy) bool { return d.Counts.Done >= 3 })
	t.Logf("%.1f s: %+v", time.Since(start).Seconds(), mid.Counts)
	// Ctrl-C: the command stops following, the deploy goes on.
	first.Process.Signal(os.Interrupt)
	if err := waitCmd(first, 10*time.Second); err == nil {
		t.Errorf("labseed deploy interrupted exited 0")
	}
	if b, _ := os.ReadFile(out1); !strings.Contains(string(b), "the deploy goes on") {
		t.Errorf("the interrupted deploy command does not say the deploy goes on:\n%s", b)
	}
	if d := status(); d == nil || d.State != api.DeployRunning {
		t.Fatalf("after Ctrl-C the deploy is not running (the test needs it half-way): %+v", d)
	}

	// A restart of the print server in the middle.
	serve.Process.Signal(syscall.SIGTERM)
	if err := waitCmd(serve, 15*time.Second); err != nil {
		t.Errorf("labseed serve stopped with %v", err)
	}
	before := status() // nil: down
	serveLog = filepath.Join(dir, "serve2.log")
	startServe(serveLog)
	after := waitStatus("the deploy after the restart", 10*time.Second, func(*api.Deploy) bool { return true })
	if b, _ := os.ReadFile(serveLog); before != nil || after.State != api.DeployRunning || !strings.Contains(string(b), "deploy: going on") ||
		after.Counts.Done < mid.Counts.Done || after.Counts.Waiting > mid.Counts.Waiting {
		t.Fatalf("after the restart the deploy is not where it was: before %+v, after %+v\n%s", mid.Counts, after.Counts, tail(b, 3000))
	}
	t.Logf("%.1f s: restarted, %+v", time.Since(start).Seconds(), after.Counts)

	// The same command again follows it to its end.
	out2 := filepath.Join(dir, "deploy2.out")
	second := startCmd(t, out2, deployArgs...)
	err := waitCmd(second, 5*time.Minute)
	b2, _ := os.ReadFile(out2)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("labseed deploy with a machine never booted: %v, want exit status 1\n%s", err, b2)
		// What the machines not done did: their listener's and clone's logs.
		if d := status(); d != nil {
			for _, m := range d.Machines {
				if m.State == api.MachineDone || m.MAC == deployDead {
					continue
				}
				for _, s := range stations {
					if s.mac == m.MAC {
						lb, _ := os.ReadFile(s.log)
						cb, _ := os.ReadFile(s.cloneLog)
						t.Errorf("%s, %s:\nlistener:\n%s\nclone:\n%s", m.Hostname, m.State, tail(lb, 1500), tail(cb, 6000))
					}
				}
			}
		}
		b, _ := os.ReadFile(serveLog)
		t.Errorf("serve log:\n%s", tail(b, 6000))
	}
	for _, want := range []string{"the same deploy runs already", "12 of 13 machines done", "never booted", "woken 3 times",
		"Wake-on-LAN off in its firmware", "ws-dead"} {
		if !strings.Contains(string(b2), want) {
			t.Errorf("the deploy's end does not say %q:\n%s", want, b2)
		}
	}
	took := time.Since(start)

	// The end, from the print server's record.
	end := status()
	if end == nil || end.State != api.DeployFinished || end.Counts.Done != deployWS || end.Counts.NeverBooted != 1 {
		t.Fatalf("the deploy's end: %+v", end)
	}
	if out, err := exec.Command("ip", "netns", "exec", nsSrv, labseedBin, "deploy", "status", "--server", deployServer).CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "finished") || !strings.Contains(string(out), "ws-dead") {
		t.Errorf("deploy status after the end (%v):\n%s", err, out)
	}
	type interval struct {
		mac      string
		from, to time.Time
	}
	var ivs []interval
	for _, m := range end.Machines {
		switch {
		case m.MAC == deployDead:
			if m.State != api.MachineNeverBooted || m.Woken != deployTries {
				t.Errorf("the dead MAC: %+v, want never booted after %d wakes", m, deployTries)
			}
			if got := m.Ended.Sub(m.FirstWoken); got < deployTries*deployWaveTO {
				t.Errorf("the dead MAC given up %s after its first wake, before %d × %s", got, deployTries, deployWaveTO)
			}
			ivs = append(ivs, interval{m.MAC, m.FirstWoken, m.Ended})
		default:
			if m.State != api.MachineDone || m.Woken < 1 || m.Booted.IsZero() {
				t.Errorf("%s: %+v, want done", m.Hostname, m)
			}
			ivs = append(ivs, interval{m.MAC, m.FirstWoken, m.Booted})
		}
	}
	most := 0
	for _, a := range ivs {
		var at []string
		for _, b := range ivs {
			if !a.from.Before(b.from) && a.from.Before(b.to) {
				at = append(at, b.mac)
			}
		}
		if len(at) > deployWave {
			t.Errorf("%d machines woken but not booted at %s: %v", len(at), a.from.Format(time.StampMilli), at)
		}
		most = max(most, len(at))
	}
	if most < 2 {
		t.Errorf("at most %d machine woken but not booted at once: the waves were not tested", most)
	}

	// Every listener: powered on once, cloned; the dead MAC's packets on
	// the wire, in 3 rounds, both kinds.
	for i, s := range stations {
		b, _ := os.ReadFile(s.log)
		if n := strings.Count(string(b), "POWER ON"); n != 1 || !strings.Contains(string(b), "CLONED") {
			cb, _ := os.ReadFile(s.cloneLog)
			t.Errorf("%s: powered on %d times, cloned: %v\n%s\nclone:\n%s", s.mac, n, strings.Contains(string(b), "CLONED"), tail(b, 2000), tail(cb, 3000))
		}
		if i == 0 {
			rounds, kinds := deadPackets(t, string(b))
			if rounds != deployTries || kinds["udp 10.83.0.255:9"] < deployTries || kinds["raw ff:ff:ff:ff:ff:ff"] < deployTries {
				t.Errorf("the dead MAC's magic packets seen by %s: %d rounds, %v; want %d rounds of UDP to 10.83.0.255:9 and raw 0x0842 frames", s.mac, rounds, kinds, deployTries)
			}
		}
	}
	// Every disk holds the image exactly, configured as its host.
	for i, s := range stations {
		checkClonedDisk(t, s.disk, ref, fmt.Sprintf("ws%02d", i+1), filepath.Join(dir, "check"))
	}
	// The deploy's counts in /metrics and in labseed status.
	metrics, _ := exec.Command("ip", "netns", "exec", nsSrv, "curl", "-s", "http://"+deployServer+":7480/metrics").Output()
	for _, want := range []string{`labseed_deploy_machines{state="done"} 12`, `labseed_deploy_machines{state="never-booted"} 1`, "labseed_deploy_active 0"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if out, _ := exec.Command("ip", "netns", "exec", nsSrv, labseedBin, "status", "--server", deployServer).Output(); !strings.Contains(string(out), "12 done, 0 failed, 1 never booted") {
		t.Errorf("labseed status has no deploy line:\n%s", out)
	}
	t.Logf("deploy of %d machines (+1 dead), waves of %d: %.1f s; at most %d woken but not booted; whole test %.1f s",
		deployWS, deployWave, took.Seconds(), most, time.Since(began).Seconds())
}

// deadPackets reads a listener's log: the rounds of magic packets for the
// dead MAC (a gap of more than a second starts a round), and how many of
// each kind and destination.
func deadPackets(t *testing.T, log string) (rounds int, kinds map[string]int) {
	kinds = map[string]int{}
	var last int64
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 5 || f[0] != "MAGIC" || f[1] != deployDead {
			continue
		}
		ns, _ := strconv.ParseInt(f[4], 10, 64)
		if ns-last > int64(time.Second) {
			rounds++
		}
		last = ns
		kinds[f[2]+" "+f[3]]++
	}
	return rounds, kinds
}

// checkClonedDisk mounts disk's root partition read-only and compares it
// with the reference extraction: the same tree but the configuration the
// clone writes into etc (the host name checked), the file system's
// lost+found and the directories' mtimes (the clone's staging is made and
// removed at the root).
func checkClonedDisk(t *testing.T, disk, ref, hostname, mnt string) {
	t.Helper()
	os.MkdirAll(mnt, 0o755)
	if out, err := exec.Command("mount", "-o", "ro", disk+"p1", mnt).CombinedOutput(); err != nil {
		t.Errorf("%s: mount %sp1: %v: %s", hostname, disk, err, out)
		return
	}
	defer unix.Unmount(mnt, 0)
	diffs, err := treecmp.Compare(ref, mnt, treecmp.Options{Ignore: []string{"etc", "lost+found", chunker.StateDirName}, SkipMtimeDirs: true})
	if err != nil {
		t.Errorf("%s: %v", hostname, err)
	} else if len(diffs) > 0 {
		t.Errorf("%s differs from the image: %v", hostname, diffs[:min(len(diffs), 5)])
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "etc", "hostname")); err != nil || strings.TrimSpace(string(b)) != hostname {
		t.Errorf("%s: etc/hostname %q, %v", hostname, b, err)
	}
	// Of its state directory, a clone keeps only the record of the image
	// installed (for the next re-image's sync).
	if ents, err := os.ReadDir(filepath.Join(mnt, chunker.StateDirName)); err != nil || len(ents) != 1 || ents[0].Name() != chunker.InstalledDirName {
		t.Errorf("%s: the clone's state directory holds %v (%v), want only %s", hostname, ents, err, chunker.InstalledDirName)
	}
}

// loopDisk attaches a sparse file of size bytes with losetup -P; the
// cleanup detaches it by its name.
func loopDisk(t *testing.T, file string, size int64) string {
	t.Helper()
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	err = f.Truncate(size)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	dev := strings.TrimSpace(netlab.Run(t, "losetup", "-P", "--find", "--show", file))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}

// startGroup starts a command in a process group of its own, its output
// in log; the cleanup kills the whole group (the listener and the clones
// it started) and unmounts what a killed clone left under the test's
// directory.
func startGroup(t *testing.T, log string, env []string, args ...string) *exec.Cmd {
	t.Helper()
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		f.Close()
		mnt := filepath.Join(filepath.Dir(log), "mnt")
		for range 10 {
			if unix.Unmount(mnt, unix.MNT_DETACH) != nil {
				break
			}
		}
		b, _ := os.ReadFile("/proc/self/mounts")
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], mnt+"/") {
				unix.Unmount(f[1], unix.MNT_DETACH)
			}
		}
	})
	return cmd
}

// startCmd starts a command with its output in file; the cleanup kills it.
func startCmd(t *testing.T, file string, args ...string) *exec.Cmd {
	t.Helper()
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); f.Close() })
	return cmd
}

func tail(b []byte, n int) string { return string(b[max(0, len(b)-n):]) }

// TestHelperDeployWS is not a test: TestDeployNetns runs the test binary
// with it selected in each workstation's namespace, where it plays a
// switched-off machine with Wake-on-LAN on. It prints every magic packet
// it sees for its MAC or the dead one ("MAGIC mac kind destination
// unixnano"), and at the first for its own MAC powers on ("POWER ON"):
// after its POST (Delay) it sends PXE DHCP requests until the print server
// answers (its network boot: a boot event), then runs labseed clone onto
// its disk, again after a failure as the clone environment does, until
// "CLONED".
func TestHelperDeployWS(t *testing.T) {
	env := os.Getenv("LABSEED_DEPLOY_WS")
	if env == "" {
		t.Skip("helper process for TestDeployNetns")
	}
	var c deployWSConfig
	if err := json.Unmarshal([]byte(env), &c); err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	own, _ := net.ParseMAC(c.MAC)
	dead, _ := net.ParseMAC(c.Dead)
	l, err := netlab.ListenWake("eth0", own, dead)
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println("LISTENING")
	powered := false
	for {
		f, err := l.Next(time.Hour)
		if err != nil {
			fmt.Println("ERROR", err)
			os.Exit(1)
		}
		fmt.Printf("MAGIC %s %s %s %d\n", f.MAC, f.Kind, f.Dst, time.Now().UnixNano())
		if f.MAC.String() == own.String() && !powered {
			powered = true
			fmt.Println("POWER ON")
			go powerOn(c)
		}
	}
}

// powerOn is the machine's boot after a wake: POST, network boot, clone.
func powerOn(c deployWSConfig) {
	time.Sleep(c.Delay)
	for start := time.Now(); ; {
		if err := pxeRequest("eth0"); err == nil {
			fmt.Println("NETWORK BOOT")
			break
		} else if time.Since(start) > 2*time.Minute {
			fmt.Println("NO NETWORK BOOT:", err)
			return
		}
	}
	for try := 1; try <= 5; try++ {
		log, err := os.OpenFile(c.CloneLog, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			fmt.Println("ERROR", err)
			return
		}
		cmd := exec.Command(c.Bin, "clone", "--disk", c.Disk, "--server", c.ServerAddr, "--keys", c.Keys,
			"--mountpoint", c.Mnt, "--no-reboot", "--linger", "0", "--local")
		cmd.Stdout, cmd.Stderr = log, log
		err = cmd.Run()
		log.Close()
		if err == nil {
			fmt.Println("CLONED")
			return
		}
		fmt.Printf("CLONE FAILED (try %d): %v\n", try, err)
		time.Sleep(2 * time.Second)
	}
}

// pxeRequest sends a BIOS PXE DHCPDISCOVER on iface and waits for an offer
// (the print server's proxyDHCP answer).
func pxeRequest(iface string) error {
	c, err := nclient4.New(iface, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(2))
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	defer cancel()
	_, err = c.DiscoverOffer(ctx,
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.Arch(0))))
	return err
}
