package peer

import (
	"testing"
	"time"

	"github.com/labseed/labseed/gossip"
	"github.com/labseed/labseed/swarm"
)

// t0 is when the snapshots' run started.
var t0 = time.Unix(1_700_000_000, 0)

// downloading is a run 40 s in: 25 of 100 MB verified, 10 of 50 chunks
// applied, 4 MB received and 1 MB uploaded in the last 2 s.
func downloading() snapshot {
	return snapshot{
		at: t0.Add(40 * time.Second), started: t0, phase: gossip.PhaseDownloading, image: "lab1-v3",
		torrentAddr: "10.1.0.21:6881", mac: "52:54:00:00:00:21", chunks: 10, chunksTotal: 50, verified: 25e6, payload: 100e6,
		traffic: swarm.Traffic{FromPeers: 20e6, FromServer: 4e6, FromWebSeeds: 1e6, Uploaded: 7e6, Peers: 5, HashFailures: 2},
		prev:    sample{at: t0.Add(38 * time.Second), received: 21e6, uploaded: 6e6},
	}
}

func TestStatusOfADownload(t *testing.T) {
	st := statusOf(downloading())
	want := gossip.Status{
		Role: gossip.RolePeer, Phase: gossip.PhaseDownloading, Image: "lab1-v3", TorrentAddr: "10.1.0.21:6881",
		Percent: 22.5, // (25 % verified + 20 % applied) / 2
		Chunks:  10, ChunksTotal: 50,
		DownRate: 2e6, UpRate: 0.5e6,
		FromServer: 5e6, FromPeers: 20e6, Uploaded: 7e6, // web seeds count as the print server
		Peers:        5,
		ETA:          120, // 75 MB left at 25 MB per 40 s
		HashFailures: 2, StartedUnix: t0.Unix(), UpdatedUnix: t0.Unix() + 40,
		MAC: "52:54:00:00:00:21", // the machine it clones, for the print server's record
	}
	if st != want {
		t.Errorf("status\n got %+v\nwant %+v", st, want)
	}
	p := progressOf(downloading())
	wantP := Progress{Phase: gossip.PhaseDownloading, Image: "lab1-v3", Chunks: 10, ChunksTotal: 50, Percent: 22.5,
		Downloaded: 25e6, Total: 100e6, DownRate: 2e6, UpRate: 0.5e6, Peers: 5, ETA: 120 * time.Second,
		FromServer: 5e6, FromPeers: 20e6, HashFailures: 2}
	if p != wantP {
		t.Errorf("progress\n got %+v\nwant %+v", p, wantP)
	}
}

func TestStatusEdges(t *testing.T) {
	for name, tc := range map[string]struct {
		change   func(*snapshot)
		eta      uint32
		down, up uint64
		percent  float64
	}{
		"first snapshot: no rates": {func(s *snapshot) { s.prev = sample{} }, 120, 0, 0, 22.5},
		"same instant: no rates":   {func(s *snapshot) { s.prev.at = s.at }, 120, 0, 0, 22.5},
		"nothing verified: no ETA": {func(s *snapshot) { s.verified = 0 }, 0, 2e6, 0.5e6, 10},
		"all verified: no ETA":     {func(s *snapshot) { s.verified = s.payload }, 0, 2e6, 0.5e6, 60},
		"resumed: verified from the start counts in the rate": {func(s *snapshot) {
			s.verified, s.at = 50e6, t0.Add(10*time.Second)
			s.prev.at = t0.Add(8 * time.Second)
		}, 10, 2e6, 0.5e6, 35},
	} {
		t.Run(name, func(t *testing.T) {
			s := downloading()
			tc.change(&s)
			st := statusOf(s)
			if st.ETA != tc.eta || st.DownRate != tc.down || st.UpRate != tc.up || st.Percent != tc.percent {
				t.Errorf("ETA %d s, rates %d/%d, %.2f %%; want ETA %d s, rates %d/%d, %.2f %%",
					st.ETA, st.DownRate, st.UpRate, st.Percent, tc.eta, tc.down, tc.up, tc.percent)
			}
			if p := progressOf(s); p.ETA != time.Duration(tc.eta)*time.Second || p.Percent != tc.percent {
				t.Errorf("progress: ETA %s, %.2f %%", p.ETA, p.Percent)
			}
		})
	}
}

func TestStatusOfAFailure(t *testing.T) {
	s := downloading()
	s.phase, s.err = gossip.PhaseFailed, "peer: finish: no space left on device"
	if st := statusOf(s); st.Phase != gossip.PhaseFailed || st.Err != s.err {
		t.Errorf("a failed run gossips phase %s, error %q", st.Phase, st.Err)
	}
}

// member is a lab member with role r in phase p, in state alive unless
// given.
func member(name string, r gossip.Role, p gossip.Phase, state ...string) gossip.Member {
	m := gossip.Member{Name: name, State: gossip.StateAlive, Status: gossip.Status{Role: r, Phase: p}}
	if len(state) > 0 {
		m.State = state[0]
	}
	return m
}

func TestLabProgressAndDone(t *testing.T) {
	server := member("print", gossip.RoleServer, gossip.PhaseSeeding)
	for name, tc := range map[string]struct {
		members        []gossip.Member
		labDone        bool
		doneOf, ofHost int
	}{
		"alone": {[]gossip.Member{server, member("ws1", gossip.RolePeer, gossip.PhaseSeeding)}, true, 1, 1},
		"one still downloading": {[]gossip.Member{server,
			member("ws1", gossip.RolePeer, gossip.PhaseSeeding),
			member("ws2", gossip.RolePeer, gossip.PhaseDownloading)}, false, 1, 2},
		"done, seeding, failed": {[]gossip.Member{server,
			member("ws1", gossip.RolePeer, gossip.PhaseDone),
			member("ws2", gossip.RolePeer, gossip.PhaseSeeding),
			member("ws3", gossip.RolePeer, gossip.PhaseFailed)}, true, 2, 3},
		// A dead workstation does not hold the lab up, but the screen
		// still counts it.
		"a dead one downloading": {[]gossip.Member{server,
			member("ws1", gossip.RolePeer, gossip.PhaseSeeding),
			member("ws2", gossip.RolePeer, gossip.PhaseDownloading, gossip.StateDead)}, true, 1, 2},
	} {
		t.Run(name, func(t *testing.T) {
			if got := labDone(tc.members); got != tc.labDone {
				t.Errorf("labDone = %v, want %v", got, tc.labDone)
			}
			s := downloading()
			s.members = tc.members
			if p := progressOf(s); p.LabDone != tc.doneOf || p.LabHosts != tc.ofHost {
				t.Errorf("lab %d/%d done, want %d/%d", p.LabDone, p.LabHosts, tc.doneOf, tc.ofHost)
			}
		})
	}
}

func TestWebSeedWaitsForAStall(t *testing.T) {
	cfg := &Config{WebSeedAfter: 15 * time.Second}
	var w stallWatch
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	// Joining the lab for 20 s (no torrent yet): no stall.
	for s := range 20 {
		if st := w.update(at(s-20), 0, false); st != 0 {
			t.Fatalf("joining the lab, %d s: stalled %s", s, st)
		}
	}
	if st := w.update(at(0), 0, true); st != 0 || webSeedDue(cfg, false, st, 100) {
		t.Fatalf("at the start of the download, after 20 s of joining: stalled %s", st)
	}
	w.update(at(10), 50, true) // progress
	if st := w.update(at(25), 50, true); st != 15*time.Second || webSeedDue(cfg, false, st, 50) {
		t.Fatalf("15 s without progress: stalled %s, due %v; want 15 s, not due yet", st, webSeedDue(cfg, false, st, 50))
	}
	st := w.update(at(26), 50, true)
	if !webSeedDue(cfg, false, st, 50) {
		t.Fatalf("16 s without progress: not due")
	}
	if webSeedDue(cfg, true, st, 50) {
		t.Error("due again once added")
	}
	if webSeedDue(cfg, false, st, 0) {
		t.Error("due with every piece in")
	}
	if webSeedDue(&Config{WebSeedAfter: 15 * time.Second, NoWebSeed: true}, false, st, 50) {
		t.Error("due with NoWebSeed")
	}
}

func TestStatusBudgetOfASession(t *testing.T) {
	t0 := time.Unix(1_790_000_000, 0)
	got := func(after time.Duration, received int64, sync bool) float64 {
		return statusBudget(snapshot{at: t0.Add(after), started: t0, sync: sync,
			traffic: swarm.Traffic{FromServer: received / 4, FromPeers: received - received/4}})
	}
	for _, c := range []struct {
		name     string
		after    time.Duration
		received int64
		sync     bool
		want     float64
	}{
		{"the first seconds: none", 7 * time.Second, 10 << 20, false, 0},
		{"a clone: 2 % of what it received a second", 100 * time.Second, 20_000_000, false, 4000},
		{"nothing received yet: none", 30 * time.Second, 0, false, 0},
		{"a sync: none", 100 * time.Second, 20_000_000, true, 0},
	} {
		if g := got(c.after, c.received, c.sync); g != c.want {
			t.Errorf("%s: statusBudget = %v, want %v", c.name, g, c.want)
		}
	}
}
