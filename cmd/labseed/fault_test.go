package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/labseed/labseed/api"
)

// fetched follows what each workstation downloaded (from the print server
// and from the others) by polling the lab status, until stop.
type fetched struct {
	mu    sync.Mutex
	bytes map[string]uint64
	stop  chan struct{}
	done  chan struct{}
}

func (l *lab) followFetched() *fetched {
	f := &fetched{bytes: map[string]uint64{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		for {
			if ls, err := l.status(); err == nil {
				f.mu.Lock()
				for _, h := range ls.Hosts {
					f.bytes[h.Name] = max(f.bytes[h.Name], h.Status.FromServer+h.Status.FromPeers)
				}
				f.mu.Unlock()
			}
			select {
			case <-f.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return f
}

func (f *fetched) end() map[string]uint64 {
	close(f.stop)
	<-f.done
	return f.bytes
}

// TestServerRestart: the print server is killed (SIGKILL) when the lab is
// half-way and started again a few seconds later. Every workstation
// finishes with an exact tree, and the lab fetches at most 5 % of the image
// twice (the pieces in flight when the print server died).
func TestServerRestart(t *testing.T) {
	needLong(t)
	l := newLab(t, 48<<20)
	ls := l.waitStatus(func(ls *api.LabStatus) bool { return len(ls.Images) == 1 })
	payload := uint64(ls.Images[0].PayloadBytes)
	var peers []*ws
	for i := range 6 {
		peers = append(peers, l.startPeer(fmt.Sprintf("ws%d", i+1), "--rate", "32mbit", "--linger", "30s"))
	}
	f := l.followFetched()
	l.waitStatus(func(ls *api.LabStatus) bool {
		var ps []float64
		for _, h := range ls.Hosts {
			ps = append(ps, h.Status.Percent)
		}
		sort.Float64s(ps)
		return len(ps) == len(peers) && ps[len(ps)/2] >= 50
	})
	l.srv.Process.Signal(syscall.SIGKILL)
	l.srv.Wait()
	l.srv = nil
	t.Log("print server killed at 50 %")
	time.Sleep(3 * time.Second)
	l.startServer()
	t.Log("print server restarted")
	for _, p := range peers {
		l.wait(p, 3*time.Minute)
		l.check(p)
	}
	got := f.end()
	var twice uint64
	for _, p := range peers {
		b := got[p.name]
		if b < payload {
			t.Errorf("%s: the lab status shows %d bytes fetched, less than the payload %d: the count is lost", p.name, b, payload)
			continue
		}
		twice += b - payload
		t.Logf("%s fetched %.3f × the payload", p.name, float64(b)/float64(payload))
	}
	t.Logf("fetched twice: %d bytes in all, %.2f %% of the image", twice, 100*float64(twice)/float64(payload))
	if twice > payload/20 {
		t.Errorf("the lab fetched %d bytes twice, more than 5 %% of the image (%d)", twice, payload)
	}
}

// TestKilledPeerRandom: a workstation killed (SIGKILL) at 20 random
// moments of its run, from its first second to its last, each time started
// again on what it left: every resume ends in an exact tree.
func TestKilledPeerRandom(t *testing.T) {
	needLong(t)
	l := newLab(t, 12<<20)
	args := []string{"--rate", "48mbit", "--linger", "0s"}
	first := l.startPeer("ws0", args...)
	start := time.Now()
	l.wait(first, time.Minute)
	run := time.Since(start)
	l.check(first)
	t.Logf("an uninterrupted run takes %v", run)
	seed := uint64(time.Now().UnixNano())
	t.Logf("random seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	killed := 0
	for i := range 20 {
		name := fmt.Sprintf("ws%d", i+1)
		at := time.Duration(rng.Int64N(int64(run)))
		p := l.startPeer(name, args...)
		select {
		case err := <-p.done:
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			t.Logf("%s finished before its kill at %v", name, at)
			l.check(p)
			os.RemoveAll(p.target)
			continue
		case <-time.After(at):
			p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
		}
		killed++
		// Started again on the same address and target with the default
		// name, as a workstation after a power cut: the lab must take it
		// at once, not refuse it as a stranger while its old entry is
		// still alive, nor bar it for the deals its killed run lost.
		killedLog, _ := os.ReadFile(p.log)
		again := l.restartPeer(p, append(args, "--name", "")...)
		l.wait(again, time.Minute)
		l.check(again)
		b, _ := os.ReadFile(again.log)
		b = b[min(len(killedLog), len(b)):] // the resumed run's own lines
		if bytes.Contains(b, []byte("not in the lab's gossip")) {
			t.Errorf("%s: the print server refused the restarted workstation's deals:\n%s", name, b)
		}
		// Every other workstation has left: what they were dealt must be
		// dealt again at once, not after the hold time (the web seed
		// comes after 15 s without progress).
		if bytes.Contains(b, []byte("using the print server's web seed")) {
			t.Errorf("%s: no deal for the restarted workstation (its previous run's or the others' pieces held):\n%s", name, b)
		}
		t.Logf("%s killed at %v, resumed: exact tree", name, at)
		os.RemoveAll(again.target)
	}
	// Kill times are drawn within an uninterrupted run, start-up included:
	// most runs must have been cut, or the resumes were not tested.
	if killed < 10 {
		t.Errorf("only %d of 20 runs were killed before they finished", killed)
	}
	if b, _ := os.ReadFile(filepath.Join(l.dir, "server.log")); bytes.Contains(b, []byte("deals did not arrive")) {
		t.Errorf("the print server barred a restarted workstation for its killed run's deals:\n%s", b)
	}
}
