package main

import (
	"encoding/json"
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
)

// follower is a labseed serve --upstream process on loopback.
type follower struct {
	t      *testing.T
	dir    string
	store  string
	server string
	ports  []int
	cmd    *exec.Cmd
}

// newFollower returns a follower print server's directories and ports,
// not started yet.
func newFollower(t *testing.T) *follower {
	f := &follower{t: t, dir: t.TempDir()}
	f.store = filepath.Join(f.dir, "store")
	var err error
	if f.ports, err = freePorts(3); err != nil {
		t.Fatal(err)
	}
	f.server = "127.0.0.1:" + strconv.Itoa(f.ports[0])
	return f
}

func (f *follower) start(upstream string, extra ...string) {
	f.t.Helper()
	args := append([]string{"serve", "--store", f.store, "--listen", "127.0.0.1", "--local",
		"--http-port", strconv.Itoa(f.ports[0]), "--gossip-port", strconv.Itoa(f.ports[1]), "--torrent-port", strconv.Itoa(f.ports[2]),
		"--upstream", upstream, "--upstream-interval", "200ms"}, extra...)
	f.cmd = exec.Command(labseedBin, args...)
	log, _ := os.OpenFile(filepath.Join(f.dir, "follower.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	f.cmd.Stderr = log
	if err := f.cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { f.stop(syscall.SIGTERM) })
}

func (f *follower) stop(sig syscall.Signal) {
	if f.cmd != nil && f.cmd.Process != nil {
		f.cmd.Process.Signal(sig)
		f.cmd.Wait()
		f.cmd = nil
	}
}

// upstream polls the follower's replication until ok holds.
func (f *follower) upstream(ok func(*api.UpstreamStatus) bool) *api.UpstreamStatus {
	f.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + f.server + api.PathStatus)
		if err == nil {
			var ls api.LabStatus
			err = json.NewDecoder(resp.Body).Decode(&ls)
			resp.Body.Close()
			if err == nil && ls.Upstream != nil && ok(ls.Upstream) {
				return ls.Upstream
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, err := os.ReadFile(filepath.Join(f.dir, "follower.log"))
	f.t.Fatalf("the follower's replication never reached the expected state (log: %v)\n%s", err, b)
	return nil
}

// TestFollowerProcess: a print server and a follower, as processes. The
// follower, capped at 16 Mbit/s, pins the upstream's key, is killed (-9)
// halfway through the image; its store then offers nothing (labseed
// images shows the replication half done, labseed verify finds no image);
// restarted without a cap, it fetches only the rest; a workstation of its
// lab, with its keys export, gets the image exactly; labseed status on the
// upstream lists it.
func TestFollowerProcess(t *testing.T) {
	needLong(t)
	l := newLab(t, 24<<20)
	f := newFollower(t)
	f.start(l.server, "--upstream-rate", "16mbit")
	payload := l.payloadBytes()
	st := f.upstream(func(u *api.UpstreamStatus) bool {
		return len(u.Images) == 1 && u.BytesFetched > payload/3 && u.Images[0].State == api.ReplicationReplicating
	})
	f.stop(syscall.SIGKILL)
	first := st.BytesFetched
	t.Logf("killed at %d of %d chunks, %d KiB fetched (key %s)", st.Images[0].Chunks, st.Images[0].ChunksTotal, first>>10, st.Key)

	out, _ := labseed(t, true, "images", "--store", f.store)
	if strings.Contains(out, "PUBLISHED AT") || !strings.Contains(out, "replicating") || !strings.Contains(out, "following "+l.server) {
		t.Fatalf("labseed images on a half-replicated follower:\n%s", out)
	}
	labseed(t, false, "verify", "--store", f.store, "lab1")
	keysOut, _ := labseed(t, true, "keys", "export", "--store", l.store, filepath.Join(l.dir, "keys-again"))
	if !strings.Contains(keysOut, st.Key) {
		t.Errorf("the upstream's keys export does not show the pinned key %s:\n%s", st.Key, keysOut)
	}

	f.start(l.server)
	st = f.upstream(func(u *api.UpstreamStatus) bool {
		return len(u.Images) == 1 && u.Images[0].State == api.ReplicationComplete
	})
	t.Logf("resumed: %d KiB more; %d KiB in all for a %d KiB payload", st.BytesFetched>>10, (first+st.BytesFetched)>>10, payload>>10)
	// What was in flight when it was killed is fetched again: at most one
	// chunk (every chunk is synced as it comes).
	if first+st.BytesFetched > payload+16<<20 || st.BytesFetched >= payload {
		t.Errorf("fetched %d then %d bytes for a payload of %d", first, st.BytesFetched, payload)
	}
	labseed(t, true, "verify", "--store", f.store, "lab1")
	out, _ = labseed(t, true, "images", "--store", f.store)
	if !strings.Contains(out, l.server) || !strings.Contains(out, "complete") {
		t.Errorf("labseed images on the follower:\n%s", out)
	}
	t.Logf("labseed images on the follower:\n%s", out)

	// A workstation of the follower's lab.
	fl := &lab{t: t, dir: f.dir, keys: filepath.Join(f.dir, "keys"), server: f.server, ref: l.ref}
	labseed(t, true, "keys", "export", "--store", f.store, fl.keys)
	if _, err := os.Stat(filepath.Join(fl.keys, "identity.pub")); err != nil {
		t.Errorf("the follower's keys export: %v", err)
	}
	fl.waitStatus(func(ls *api.LabStatus) bool { return len(ls.Images) == 1 })
	p := fl.startPeer("ws1")
	fl.wait(p, 60*time.Second)
	fl.check(p)

	out, _ = labseed(t, true, "status", "--server", l.server)
	if !strings.Contains(out, "followers: 1") || !strings.Contains(out, f.server) {
		t.Errorf("labseed status on the upstream:\n%s", out)
	}
	t.Logf("labseed status on the upstream:\n%s", out)
}

// payloadBytes is the published image's payload size.
func (l *lab) payloadBytes() int64 {
	ls, err := l.status()
	if err != nil || len(ls.Images) != 1 {
		l.t.Fatalf("upstream status: %v", err)
	}
	return ls.Images[0].PayloadBytes
}

// TestFollowerStagesPublishProcess: a print server, a follower and a
// labseed publish, as processes. The publish reads its image from a pipe
// that stops half-way; meanwhile the follower fetches the chunks written
// so far (staged) and its lab is offered nothing of the new image (not
// listed, no web seed); once the input ends, the follower replicates the
// version with the staged chunks claimed, and labseed verify on its store
// finds it whole.
func TestFollowerStagesPublishProcess(t *testing.T) {
	needLong(t)
	l := newLab(t, 4<<20)
	f := newFollower(t)
	f.start(l.server)
	f.upstream(func(u *api.UpstreamStatus) bool {
		return len(u.Images) == 1 && u.Images[0].State == api.ReplicationComplete
	})

	img, err := os.ReadFile(writeImage(t, filepath.Join(l.dir, "lab2.tar.gz"), 7, 8<<20))
	if err != nil {
		t.Fatal(err)
	}
	pub := exec.Command(labseedBin, "publish", "--store", l.store, "--level", "2", "--order", "input", "--name", "lab2", "-")
	in, err := pub.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	pubLog, _ := os.Create(filepath.Join(l.dir, "publish.log"))
	pub.Stdout, pub.Stderr = pubLog, pubLog
	if err := pub.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); pub.Process.Kill(); pub.Wait() })
	if _, err := in.Write(img[:len(img)/2]); err != nil {
		t.Fatal(err)
	}
	st := f.upstream(func(u *api.UpstreamStatus) bool { return u.ChunksStaged > 0 })
	t.Logf("staged %d chunks (%d KiB) while the publish waits for its input", st.ChunksStaged, st.BytesStaged>>10)
	for _, c := range []struct {
		path string
		want int
	}{{api.PathImages + "/lab2", 404}, {api.PathSeed + "lab2-v1.chunks", 404}} {
		resp, err := http.Get("http://" + f.server + c.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("the follower answers GET %s with %s before the upstream's publish ended", c.path, resp.Status)
		}
	}
	labseed(t, false, "verify", "--store", f.store, "lab2")

	if _, err := in.Write(img[len(img)/2:]); err != nil {
		t.Fatal(err)
	}
	in.Close()
	if err := pub.Wait(); err != nil {
		b, _ := os.ReadFile(filepath.Join(l.dir, "publish.log"))
		t.Fatalf("labseed publish: %v\n%s", err, b)
	}
	st = f.upstream(func(u *api.UpstreamStatus) bool {
		for _, im := range u.Images {
			if im.Name == "lab2" && im.State == api.ReplicationComplete {
				return true
			}
		}
		return false
	})
	t.Logf("replicated: %d staged chunks claimed by the signed manifest", st.StagedClaimed)
	if st.StagedClaimed == 0 {
		t.Error("no staged chunk was claimed")
	}
	labseed(t, true, "verify", "--store", f.store, "lab2")
}

// TestFollowerStopsWhileWaiting: a follower whose upstream does not answer
// waits for it to pin its key; stopped then (SIGTERM, as systemctl stop),
// it exits 0, as a print server stopped at any other time ("labseed:
// context canceled" and exit status 1 before).
func TestFollowerStopsWhileWaiting(t *testing.T) {
	closed, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	f := newFollower(t)
	f.start("127.0.0.1:" + strconv.Itoa(closed[0]))
	log := filepath.Join(f.dir, "follower.log")
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if b, _ := os.ReadFile(log); strings.Contains(string(b), "waiting for the upstream print server") {
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(log)
			t.Fatalf("the follower does not say it waits for its upstream:\n%s", b)
		}
	}
	f.cmd.Process.Signal(syscall.SIGTERM)
	err = f.cmd.Wait()
	f.cmd = nil
	if err != nil {
		b, _ := os.ReadFile(log)
		t.Fatalf("the follower stopped while waiting for its upstream: %v\n%s", err, b)
	}
}
