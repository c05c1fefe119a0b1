package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/treecmp"
)

// The swarm tests run a print server and several workstations as separate
// labseed processes on loopback. They take a minute or two in all, so they
// run when LABSEED_LONG=1 (test.sh and CI set it).
func needLong(t *testing.T) {
	t.Helper()
	if os.Getenv("LABSEED_LONG") == "" {
		t.Skip("swarm test: set LABSEED_LONG=1 to run (test.sh does)")
	}
}

// lab is a print server with a published image, on loopback.
type lab struct {
	t      *testing.T
	dir    string
	store  string
	keys   string
	server string // HTTP host:port
	srv    *exec.Cmd
	ref    string // the image extracted by 'labseed extract', to compare with
	ports  []int
	hosts  int // workstations started, for their addresses
}

func newLab(t *testing.T, imageSize int64) *lab {
	t.Helper()
	l := &lab{t: t, dir: t.TempDir()}
	l.store = filepath.Join(l.dir, "store")
	l.keys = filepath.Join(l.dir, "keys")
	img := writeImage(t, filepath.Join(l.dir, "lab1.tar.gz"), 3, imageSize)
	labseed(t, true, "publish", "--store", l.store, "--level", "2", img)
	labseed(t, true, "keys", "export", "--store", l.store, l.keys)
	l.ref = filepath.Join(l.dir, "ref")
	labseed(t, true, "extract", "--store", l.store, "--image", "lab1", "--target", l.ref)
	var err error
	if l.ports, err = freePorts(3); err != nil {
		t.Fatal(err)
	}
	l.server = "127.0.0.1:" + strconv.Itoa(l.ports[0])
	l.startServer()
	t.Cleanup(func() { l.stopServer() })
	return l
}

func (l *lab) startServer() {
	l.srv = exec.Command(labseedBin, "serve", "--store", l.store, "--listen", "127.0.0.1", "--local",
		"--http-port", strconv.Itoa(l.ports[0]), "--gossip-port", strconv.Itoa(l.ports[1]), "--torrent-port", strconv.Itoa(l.ports[2]))
	log, _ := os.OpenFile(filepath.Join(l.dir, "server.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	l.srv.Stderr = log
	if err := l.srv.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.waitStatus(func(*api.LabStatus) bool { return true })
}

func (l *lab) stopServer() {
	if l.srv != nil && l.srv.Process != nil {
		l.srv.Process.Signal(syscall.SIGTERM)
		l.srv.Wait()
		l.srv = nil
	}
}

// ws is one workstation process.
type ws struct {
	name, target, log, ip string
	cmd                   *exec.Cmd
	done                  chan error
}

func (l *lab) startPeer(name string, extra ...string) *ws {
	// Each workstation gets its own loopback address, as on a real lab:
	// the torrent client bans misbehaving peers by IP.
	l.hosts++
	return l.startPeerAt(fmt.Sprintf("127.0.0.%d", 10+l.hosts), name, extra...)
}

// restartPeer starts p's workstation again, on its address and target, as
// a workstation after a power cut.
func (l *lab) restartPeer(p *ws, extra ...string) *ws {
	return l.startPeerAt(p.ip, p.name, extra...)
}

func (l *lab) startPeerAt(ip, name string, extra ...string) *ws {
	p := &ws{name: name, ip: ip, target: filepath.Join(l.dir, name), log: filepath.Join(l.dir, name+".log"), done: make(chan error, 1)}
	args := append([]string{"peer", "--server", l.server, "--target", p.target, "--keys", l.keys, "--name", name,
		"--listen", ip, "--local", "--linger", "20s"}, extra...)
	p.cmd = exec.Command(labseedBin, args...)
	f, _ := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait(); f.Close() }()
	l.t.Cleanup(func() { p.cmd.Process.Kill() })
	return p
}

// wait waits for the peer to exit and fails the test unless it exited 0.
func (l *lab) wait(p *ws, within time.Duration) {
	l.t.Helper()
	select {
	case err := <-p.done:
		if err != nil {
			b, _ := os.ReadFile(p.log)
			l.t.Fatalf("%s: %v\n%s", p.name, err, b)
		}
	case <-time.After(within):
		p.cmd.Process.Kill()
		b, _ := os.ReadFile(p.log)
		if os.Getenv("LABSEED_KEEP_LOGS") != "" {
			os.WriteFile(filepath.Join(os.Getenv("LABSEED_KEEP_LOGS"), p.name+".log"), b, 0o644)
		}
		l.t.Fatalf("%s did not finish within %v\n%s", p.name, within, b[max(0, len(b)-3000):])
	}
}

// check compares a workstation's tree with the reference extraction.
func (l *lab) check(p *ws) {
	l.t.Helper()
	diffs, err := treecmp.Compare(l.ref, p.target, treecmp.Options{Ignore: []string{chunker.StateDirName}})
	if err != nil {
		l.t.Fatal(err)
	}
	if len(diffs) > 0 {
		l.t.Fatalf("%s differs from the image: %v", p.name, diffs[:min(len(diffs), 5)])
	}
	// What stays: the record of the image installed, for the next sync.
	if ents, err := os.ReadDir(filepath.Join(p.target, chunker.StateDirName)); err != nil || len(ents) != 1 || ents[0].Name() != chunker.InstalledDirName {
		l.t.Fatalf("%s left its staging data: %v %v", p.name, ents, err)
	}
}

func (l *lab) status() (*api.LabStatus, error) {
	resp, err := http.Get("http://" + l.server + api.PathStatus)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var ls api.LabStatus
	return &ls, json.NewDecoder(resp.Body).Decode(&ls)
}

// waitStatus polls the lab status until ok holds, for at most a minute.
func (l *lab) waitStatus(ok func(*api.LabStatus) bool) *api.LabStatus {
	l.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if ls, err := l.status(); err == nil && ok(ls) {
			return ls
		}
		time.Sleep(100 * time.Millisecond)
	}
	l.t.Fatal("lab status never reached the expected state")
	return nil
}

func host(ls *api.LabStatus, name string) *api.HostStatus {
	for i := range ls.Hosts {
		if ls.Hosts[i].Name == name {
			return &ls.Hosts[i]
		}
	}
	return nil
}

// TestSwarm: a print server and four workstations; every tree is exact and
// the workstations serve each other.
func TestSwarm(t *testing.T) {
	needLong(t)
	l := newLab(t, 48<<20)
	var peers []*ws
	for i := range 4 {
		peers = append(peers, l.startPeer(fmt.Sprintf("ws%d", i+1), "--rate", "40mbit"))
	}
	var fromPeers uint64
	for _, p := range peers {
		ls, _ := l.status()
		if ls != nil {
			fromPeers = max(fromPeers, ls.Summary.FromPeers)
		}
		l.wait(p, 2*time.Minute)
		l.check(p)
	}
	if fromPeers == 0 {
		t.Fatal("the workstations served each other nothing")
	}
	t.Logf("bytes between workstations: %d", fromPeers)
	// The print server deals each piece to one workstation (package deal):
	// it sends the payload once, give or take a piece.
	ls := l.waitStatus(func(ls *api.LabStatus) bool {
		return len(ls.Images) == 1 && int64(ls.Summary.ServerUp) >= ls.Images[0].PayloadBytes
	})
	sent, payload := int64(ls.Summary.ServerUp), ls.Images[0].PayloadBytes
	t.Logf("print server sent %d bytes, payload %d", sent, payload)
	if sent > payload*21/20 {
		t.Errorf("print server sent %.3f × the payload, want at most 1.05", float64(sent)/float64(payload))
	}
}

// TestLateJoiner: a workstation that starts after the others left still
// completes, from the print server.
func TestLateJoiner(t *testing.T) {
	needLong(t)
	l := newLab(t, 16<<20)
	a, b := l.startPeer("early1"), l.startPeer("early2")
	l.wait(a, time.Minute)
	l.wait(b, time.Minute)
	late := l.startPeer("late")
	l.wait(late, time.Minute)
	l.check(late)
}

// TestKilledPeer: kill -9 a workstation half-way; restarted, it completes
// without fetching again what it had verified, and the others are not held up.
func TestKilledPeer(t *testing.T) {
	needLong(t)
	l := newLab(t, 48<<20)
	victim := l.startPeer("victim", "--rate", "24mbit")
	other := l.startPeer("other", "--rate", "24mbit")
	l.waitStatus(func(ls *api.LabStatus) bool {
		h := host(ls, "victim")
		return h != nil && h.Status.Percent >= 40
	})
	victim.cmd.Process.Signal(syscall.SIGKILL)
	<-victim.done
	l.wait(other, 2*time.Minute)
	l.check(other)

	again := l.startPeer("victim", "--rate", "24mbit")
	l.wait(again, 2*time.Minute)
	l.check(again)
	log, _ := os.ReadFile(again.log)
	if !strings.Contains(string(log), "resuming") {
		t.Fatalf("restarted peer did not resume:\n%s", log)
	}
}

// TestKilledSeeder: once one workstation holds everything, the print server
// is stopped; the others finish from the workstations.
func TestKilledSeeder(t *testing.T) {
	needLong(t)
	l := newLab(t, 32<<20)
	fast := l.startPeer("fast")
	slow := []*ws{l.startPeer("slow1", "--rate", "8mbit"), l.startPeer("slow2", "--rate", "8mbit")}
	l.waitStatus(func(ls *api.LabStatus) bool {
		h := host(ls, "fast")
		return h != nil && (h.Phase == "seeding" || h.Phase == "done")
	})
	l.stopServer()
	for _, p := range slow {
		l.wait(p, 90*time.Second)
		l.check(p)
	}
	l.wait(fast, time.Minute)
}

// TestLyingPeer: a workstation whose staging data was damaged on disk serves
// bad pieces; the others detect them by hash and still extract exact trees.
func TestLyingPeer(t *testing.T) {
	needLong(t)
	l := newLab(t, 24<<20)
	// A slow workstation keeps the lab busy, so the liar lingers and seeds.
	anchor := l.startPeer("anchor", "--rate", "2mbit")
	liar := l.startPeer("liar", "--linger", "5m")
	l.waitStatus(func(ls *api.LabStatus) bool {
		h := host(ls, "liar")
		return h != nil && h.Phase == "seeding"
	})
	files, _ := filepath.Glob(filepath.Join(liar.target, ".labseed", "torrent", "*.chunks"))
	if len(files) != 1 {
		t.Fatalf("liar's staging payload: %v", files)
	}
	f, err := os.OpenFile(files[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	for off := int64(1000); off < st.Size(); off += 100 << 10 {
		f.WriteAt([]byte{0xde, 0xad, 0xbe, 0xef}, off)
	}
	f.Close()
	honest := []*ws{l.startPeer("honest1", "--rate", "16mbit", "--no-web-seed"), l.startPeer("honest2", "--rate", "16mbit", "--no-web-seed")}
	for _, p := range honest {
		l.wait(p, 90*time.Second)
		l.check(p)
	}
	anchor.cmd.Process.Kill()
	ls, _ := l.status()
	var failures int64
	for _, h := range ls.Hosts {
		if strings.HasPrefix(h.Name, "honest") {
			failures += h.Status.HashFailures
		}
	}
	t.Logf("hash failures seen by the honest peers: %d", failures)
	if failures == 0 {
		t.Fatal("the honest peers saw no bad piece: the liar served nothing, the test proved nothing")
	}
}

// TestWrongGossipKey: a workstation with another lab's key cannot join.
func TestWrongGossipKey(t *testing.T) {
	needLong(t)
	l := newLab(t, 4<<20)
	bad := filepath.Join(l.dir, "badkeys")
	os.MkdirAll(bad, 0o755)
	b, _ := os.ReadFile(filepath.Join(l.keys, "image.pub"))
	os.WriteFile(filepath.Join(bad, "image.pub"), b, 0o644)
	os.WriteFile(filepath.Join(bad, "lab.key"), []byte(strings.Repeat("ab", 32)+"\n"), 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, labseedBin, "peer", "--server", l.server, "--target", filepath.Join(l.dir, "intruder"),
		"--keys", bad, "--name", "intruder", "--listen", "127.0.0.1", "--local")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("a peer with the wrong lab key ran to completion:\n%s", out)
	}
	if !strings.Contains(string(out), "key") {
		t.Fatalf("the error does not point at the key:\n%s", out)
	}
	ls, _ := l.status()
	if host(ls, "intruder") != nil {
		t.Fatal("the intruder appears in the lab status")
	}
}
