//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/internal/fixture"
	"github.com/labseed/labseed/internal/netlab"
	"github.com/labseed/labseed/treecmp"
)

// The site of TestCampusNetns: three labs, each a switch with a print
// server and campusWS workstations, lab X on 10.84.X.0/24 (print server
// .1, workstations .11, .12), and a router joining the print servers, each
// by a link of its own (10.84.1X.0/24, the router .254), shaped to
// campusRate in both directions.
const (
	campusWS   = 2
	campusRate = 100_000_000 // bit/s
)

// campusLab is one lab of the site.
type campusLab struct {
	letter     string // a, b, c
	server     string // the print server's lab address
	ns, sw     string // its namespace, its lab switch's
	store      string
	keys       string
	link       string // the router's interface towards it
	ws         []string
	serve      *exec.Cmd
	log        string
	wsTargets  []string
	wsNS, wsIP []string
}

// TestCampusNetns is issue 14's site: three labs, one publish. Print
// server A publishes; B (with --upstream-key) and C (pinning on first
// contact) follow A across a shaped campus; the two workstations of each
// lab are imaged at the same time from their own print server, every tree
// exact. Then a v2 that changes a few files: each follower fetches at most
// the chunks v1 lacks (its payload counters; the router's interface
// counters for the campus bytes, headers and the followers' polling
// included), never offers its lab v2 before it holds v2 whole, and the
// workstations sync to v2, exact. The key refusal, the resumption of a
// killed follower and the half-replicated store are shown on loopback
// (TestFollowRefusesOtherKey, TestFollowResume, TestFollowerProcess).
//
// Namespaces lscmp-*-PID, removed by name.
func TestCampusNetns(t *testing.T) {
	needLong(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	for _, bin := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (apt-get install iproute2)", bin)
		}
	}
	began := time.Now()
	id := strconv.Itoa(os.Getpid())
	dir := t.TempDir()
	rt := "lscmp-rt-" + id

	// The image, and v2: three files changed.
	img := writeImage(t, filepath.Join(dir, "lab1.tar.gz"), 14, 40<<20)
	raw, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := fixture.ChangeFiles(raw, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	img2 := filepath.Join(dir, "lab1-v2.tar")
	if err := os.WriteFile(img2, v2, 0o644); err != nil {
		t.Fatal(err)
	}

	// The labs and the campus.
	labs := make([]*campusLab, 3)
	for i, x := range []string{"a", "b", "c"} {
		l := &campusLab{letter: x, server: fmt.Sprintf("10.84.%d.1", i+1), ns: "lscmp-ps" + x + "-" + id, sw: "lscmp-s" + x + "-" + id,
			store: filepath.Join(dir, "store-"+x), keys: filepath.Join(dir, "keys-"+x), link: "c" + x, log: filepath.Join(dir, "serve-"+x+".log")}
		hosts := []netlab.Host{{NS: l.ns, Addr: l.server + "/24"}}
		for k := 1; k <= campusWS; k++ {
			ns := fmt.Sprintf("lscmp-w%s%d-%s", x, k, id)
			ip := fmt.Sprintf("10.84.%d.%d", i+1, 10+k)
			hosts = append(hosts, netlab.Host{NS: ns, Addr: ip + "/24"})
			l.wsNS, l.wsIP = append(l.wsNS, ns), append(l.wsIP, ip)
			l.wsTargets = append(l.wsTargets, filepath.Join(dir, fmt.Sprintf("ws%s%d", x, k)))
		}
		netlab.Build(t, l.sw, hosts...)
		labs[i] = l
	}
	exec.Command("ip", "netns", "del", rt).Run()
	t.Cleanup(func() { exec.Command("ip", "netns", "del", rt).Run() })
	netlab.Run(t, "ip", "netns", "add", rt)
	netlab.Run(t, "ip", "-n", rt, "link", "set", "lo", "up")
	netlab.Run(t, "ip", "netns", "exec", rt, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	for i, l := range labs {
		netlab.Run(t, "ip", "link", "add", l.link, "netns", rt, "type", "veth", "peer", "name", "campus", "netns", l.ns)
		netlab.Run(t, "ip", "-n", rt, "addr", "add", fmt.Sprintf("10.84.%d.254/24", 11+i), "dev", l.link)
		netlab.Run(t, "ip", "-n", l.ns, "addr", "add", fmt.Sprintf("10.84.%d.1/24", 11+i), "dev", "campus")
		netlab.Run(t, "ip", "-n", rt, "link", "set", l.link, "up")
		netlab.Run(t, "ip", "-n", l.ns, "link", "set", "campus", "up")
		netlab.Run(t, "ip", "-n", rt, "route", "add", fmt.Sprintf("10.84.%d.0/24", i+1), "via", fmt.Sprintf("10.84.%d.1", 11+i))
		netlab.Run(t, "ip", "-n", l.ns, "route", "add", "10.84.0.0/16", "via", fmt.Sprintf("10.84.%d.254", 11+i))
		campusShape(t, rt, l.link)
		campusShape(t, l.ns, "campus")
	}
	for _, l := range labs[1:] {
		netlab.Run(t, "ip", "netns", "exec", l.ns, "ping", "-c", "1", "-W", "2", "-q", labs[0].server)
	}

	// linkBytes reads a counter of the router's interface towards a lab:
	// tx, what the lab received from the campus; rx, what it sent.
	linkBytes := func(l *campusLab, dir string) int64 {
		b, err := exec.Command("ip", "netns", "exec", rt, "cat", "/sys/class/net/"+l.link+"/statistics/"+dir+"_bytes").Output()
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return n
	}
	// received is the payload a follower got: from A and from the other.
	received := func(l *campusLab) int64 {
		u := l.upstream(t)
		return u.BytesFetched + u.BytesFromFollowers
	}

	// A serves and exports its key; B and C follow it and learn of each
	// other; then A publishes.
	a := labs[0]
	labseed(t, true, "keys", "export", "--store", a.store, a.keys)
	a.start(t)
	labs[1].start(t, "--upstream", a.server, "--upstream-key", filepath.Join(a.keys, "image.pub"), "--upstream-interval", "500ms")
	labs[2].start(t, "--upstream", a.server, "--upstream-interval", "500ms")
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		b, c := labs[1].status(t), labs[2].status(t)
		if b != nil && c != nil && b.Upstream != nil && c.Upstream != nil && len(b.Upstream.Siblings) == 1 && len(c.Upstream.Siblings) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B and C do not learn of each other from A: %+v %+v", b, c)
		}
	}
	aSent0, bGot0, cGot0 := linkBytes(a, "rx"), linkBytes(labs[1], "tx"), linkBytes(labs[2], "tx")
	published := time.Now()
	labseed(t, true, "publish", "--store", a.store, "--name", "lab1", "--level", "2", img)
	for _, l := range labs[1:] {
		l.waitImage(t, 1, time.Minute)
	}
	payload := campusManifest(t, a.store, 1).PayloadBytes
	took := time.Since(published)
	aSent, bGot, cGot := linkBytes(a, "rx")-aSent0, linkBytes(labs[1], "tx")-bGot0, linkBytes(labs[2], "tx")-cGot0
	fromA := labs[1].upstream(t).BytesFetched + labs[2].upstream(t).BytesFetched
	t.Logf("v1 (%d payload bytes) replicated to B and C %.1f s after the publish began; A's campus link sent %.3f x the payload (payload from A %.3f x), B's received %.3f x, C's %.3f x",
		payload, took.Seconds(), float64(aSent)/float64(payload), float64(fromA)/float64(payload), float64(bGot)/float64(payload), float64(cGot)/float64(payload))
	// B and C share: A sends the payload about once, not once per
	// follower (the chunks are fetched whole: ± a chunk).
	if fromA > payload*105/100 || received(labs[1]) != payload || received(labs[2]) != payload {
		t.Errorf("v1: B and C fetched %d payload bytes from A (%d, %d in all) for a %d-byte payload", fromA, received(labs[1]), received(labs[2]), payload)
	}
	// On the wire: TCP/IP and Ethernet headers (~4.5 %), the API polls.
	for _, w := range []int64{aSent, bGot, cGot} {
		if w > payload*110/100 {
			t.Errorf("v1: a campus link carried %d bytes for a %d-byte payload (A sent %d, B received %d, C %d)", w, payload, aSent, bGot, cGot)
			break
		}
	}
	ref := filepath.Join(dir, "ref")
	labseed(t, true, "extract", "--store", a.store, "--image", "lab1", "--target", ref)
	for _, l := range labs {
		labseed(t, true, "keys", "export", "--store", l.store, l.keys)
	}
	if out, _ := labseed(t, true, "images", "--store", labs[2].store); !strings.Contains(out, "following "+a.server) || !strings.Contains(out, "complete") {
		t.Errorf("labseed images on C:\n%s", out)
	}
	if out, _ := exec.Command("ip", "netns", "exec", a.ns, labseedBin, "status", "--server", a.server).Output(); !strings.Contains(string(out), "followers: 2") {
		t.Errorf("labseed status on A does not list its two followers:\n%s", out)
	}
	t0 := time.Now()
	campusImage(t, labs, ref)
	t.Logf("6 workstations of 3 labs imaged in %.1f s", time.Since(t0).Seconds())

	// v2: only the changed chunks cross the campus.
	before := []int64{linkBytes(labs[1], "tx"), linkBytes(labs[2], "tx")}
	fetched0 := []int64{received(labs[1]), received(labs[2])}
	published = time.Now()
	labseed(t, true, "publish", "--store", a.store, "--name", "lab1", "--level", "2", img2)
	for _, l := range labs[1:] {
		l.waitImage(t, 2, time.Minute)
	}
	t.Logf("v2 replicated to B and C %.1f s after the publish", time.Since(published).Seconds())
	after := []int64{linkBytes(labs[1], "tx"), linkBytes(labs[2], "tx")}
	ref2 := filepath.Join(dir, "ref2")
	labseed(t, true, "extract", "--store", a.store, "--image", "lab1", "--target", ref2)
	m1, m2 := campusManifest(t, a.store, 1), campusManifest(t, a.store, 2)
	old := map[string]bool{}
	for _, c := range m1.Chunks {
		old[c.SHA256] = true
	}
	var changed int64
	nchanged := 0
	for _, c := range m2.Chunks {
		if !old[c.SHA256] {
			changed += c.Size
			nchanged++
		}
	}
	mb, _ := os.ReadFile(filepath.Join(a.store, "images", "lab1", "v2", "manifest.json"))
	tb, _ := os.ReadFile(filepath.Join(a.store, "images", "lab1", "v2", "image.torrent"))
	t.Logf("v2: %d of %d chunks changed, %d of %d payload bytes; manifest %d, torrent %d bytes", nchanged, len(m2.Chunks), changed, m2.PayloadBytes, len(mb), len(tb))
	if nchanged == 0 || changed > m2.PayloadBytes/2 {
		t.Fatalf("v2 changes %d chunks, %d bytes: not a test of a small change", nchanged, changed)
	}
	for i, l := range labs[1:] {
		fetched := received(l) - fetched0[i]
		wire := after[i] - before[i]
		t.Logf("lab %s: v2 fetched %d payload bytes, its campus link carried %d bytes (%.3f x the changed chunks)", l.letter, fetched, wire, float64(wire)/float64(changed))
		if fetched > changed {
			t.Errorf("lab %s fetched %d payload bytes of v2, more than the %d of its changed chunks", l.letter, fetched, changed)
		}
		// Headers, TCP/IP and the polling every 500 ms on top of the
		// chunks, the manifest and the torrent.
		if limit := changed*11/10 + int64(len(mb)+len(tb)) + 256<<10; wire > limit {
			t.Errorf("lab %s's campus link carried %d bytes for v2, more than %d (the changed chunks %d, the manifest and torrent %d)", l.letter, wire, limit, changed, len(mb)+len(tb))
		}
	}
	t0 = time.Now()
	campusImage(t, labs, ref2, "--sync")
	t.Logf("6 workstations synced to v2 in %.1f s; whole test %.1f s", time.Since(t0).Seconds(), time.Since(began).Seconds())
}

// campusShape shapes dev's egress in ns to campusRate (tbf, as bench/lab.sh).
func campusShape(t *testing.T, ns, dev string) {
	burst, limit := max(campusRate/8/250, 16384), max(campusRate/8/20, 65536)
	netlab.Run(t, "ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", dev, "root", "handle", "1:", "tbf",
		"rate", strconv.Itoa(campusRate)+"bit", "burst", strconv.Itoa(burst), "limit", strconv.Itoa(limit))
}

// start runs the lab's print server.
func (l *campusLab) start(t *testing.T, extra ...string) {
	t.Helper()
	args := append([]string{"ip", "netns", "exec", l.ns, labseedBin, "serve", "--store", l.store, "--listen", l.server, "--local"}, extra...)
	l.serve = netlab.StartLogged(t, l.log, args...)
	if !netlab.WaitFile(l.log, "msg=serving", 20*time.Second) {
		b, _ := os.ReadFile(l.log)
		t.Fatalf("labseed serve of lab %s did not start:\n%s", l.letter, b)
	}
}

// status is the lab's status, asked from its print server's namespace.
func (l *campusLab) status(t *testing.T) *api.LabStatus {
	out, err := exec.Command("ip", "netns", "exec", l.ns, "curl", "-s", "-m", "5", "http://"+l.server+":7480"+api.PathStatus).Output()
	if err != nil {
		return nil
	}
	var ls api.LabStatus
	if json.Unmarshal(out, &ls) != nil {
		return nil
	}
	return &ls
}

func (l *campusLab) upstream(t *testing.T) *api.UpstreamStatus {
	t.Helper()
	ls := l.status(t)
	if ls == nil || ls.Upstream == nil {
		t.Fatalf("lab %s: no replication status", l.letter)
	}
	return ls.Upstream
}

// waitImage waits until the lab's print server offers version v of lab1;
// until then, what it offers its lab must be an older version whole.
func (l *campusLab) waitImage(t *testing.T, v int, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		out, err := exec.Command("ip", "netns", "exec", l.ns, "curl", "-s", "-m", "5", "http://"+l.server+":7480"+api.PathImages).Output()
		var infos []api.ImageInfo
		if err != nil || json.Unmarshal(out, &infos) != nil {
			continue
		}
		if len(infos) > 1 || len(infos) == 1 && (infos[0].Name != "lab1" || infos[0].Version > v) {
			t.Fatalf("lab %s offers %+v", l.letter, infos)
		}
		if len(infos) == 1 && infos[0].Version == v {
			return
		}
		if len(infos) == 1 {
			// An older version: whole (labseed verify reads the store).
			if u := l.status(t); u != nil && u.Upstream != nil && len(u.Upstream.Images) == 1 && u.Upstream.Images[0].Local < infos[0].Version {
				t.Fatalf("lab %s offers v%d, its replication says v%d is the newest here: %+v", l.letter, infos[0].Version, u.Upstream.Images[0].Local, u.Upstream.Images[0])
			}
		}
	}
	b, _ := os.ReadFile(l.log)
	t.Fatalf("lab %s does not offer v%d after %s:\n%s", l.letter, v, within, tail(b, 4000))
}

// campusImage images every workstation of every lab at once with labseed
// peer (extra: its options) and compares each tree with ref.
func campusImage(t *testing.T, labs []*campusLab, ref string, extra ...string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]string, 0)
	var mu sync.Mutex
	for _, l := range labs {
		for k := range l.wsNS {
			wg.Add(1)
			go func() {
				defer wg.Done()
				name := fmt.Sprintf("ws%s%d", l.letter, k+1)
				args := append([]string{"netns", "exec", l.wsNS[k], labseedBin, "peer", "--server", l.server, "--target", l.wsTargets[k],
					"--keys", l.keys, "--name", name, "--listen", l.wsIP[k], "--local", "--linger", "3s"}, extra...)
				cmd := exec.Command("ip", args...)
				done := make(chan struct{})
				var out []byte
				var err error
				go func() { out, err = cmd.CombinedOutput(); close(done) }()
				select {
				case <-done:
				case <-time.After(2 * time.Minute):
					cmd.Process.Kill()
					<-done
					err = fmt.Errorf("not done after 2 minutes")
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Sprintf("%s: %v\n%s", name, err, tail(out, 3000)))
					mu.Unlock()
					return
				}
				diffs, err := treecmp.Compare(ref, l.wsTargets[k], treecmp.Options{Ignore: []string{chunker.StateDirName}})
				if err != nil || len(diffs) > 0 {
					mu.Lock()
					errs = append(errs, fmt.Sprintf("%s differs from the image: %v %v", name, err, diffs[:min(len(diffs), 5)]))
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	for _, e := range errs {
		t.Error(e)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
}

// campusManifest reads version v of lab1's manifest in store.
func campusManifest(t *testing.T, store string, v int) *chunker.Manifest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(store, "images", "lab1", "v"+strconv.Itoa(v), "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := chunker.DecodeManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
