package metrics

import (
	"bytes"
	"context"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labseed/labseed/gossip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

type problem = promlint.Problem

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// readTestdata returns a golden file.
func readTestdata(name string) (string, error) {
	b, err := os.ReadFile(filepath.Join("testdata", name))
	return string(b), err
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no source", Config{}},
		{"negative TTL", Config{Source: func() Snapshot { return Snapshot{} }, HostTTL: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); err == nil {
				t.Fatal("New succeeded")
			}
		})
	}
}

// TestCountersSurviveRestart checks that the exported per-host counters
// never go down when a workstation's agent restarts and its own counters
// start from 0 again.
func TestCountersSurviveRestart(t *testing.T) {
	type step struct {
		started                         int64
		server, peers, up, hashFailures uint64
	}
	type want struct{ server, peers, up, hashFailures float64 }
	tests := []struct {
		name  string
		steps []step
		want  want
	}{
		{"same process", []step{{1000, 10, 20, 5, 0}, {1000, 30, 60, 7, 1}}, want{30, 60, 7, 1}},
		{"restart, counters drop to 0", []step{{1000, 100, 200, 50, 2}, {1000, 0, 0, 0, 0}, {1000, 30, 40, 10, 0}}, want{130, 240, 60, 2}},
		{"restart seen through the start time only", []step{{1000, 100, 200, 50, 2}, {2000, 150, 300, 60, 3}}, want{250, 500, 110, 5}},
		{"one counter drops", []step{{1000, 100, 200, 50, 2}, {0, 120, 10, 60, 2}}, want{220, 210, 110, 4}},
		{"two restarts", []step{{1000, 100, 100, 0, 0}, {2000, 50, 50, 0, 0}, {3000, 20, 20, 0, 0}}, want{170, 170, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, lab, clock := newTest(t, 0)
			last := map[string]float64{}
			for i, s := range tt.steps {
				st := gossip.Status{Phase: gossip.PhaseDownloading, StartedUnix: s.started,
					FromServer: s.server, FromPeers: s.peers, Uploaded: s.up, HashFailures: uint32(s.hashFailures)}
				lab.set(Snapshot{Hosts: []Host{{Name: "ws01", State: "alive", Status: st}}})
				clock.add(time.Second)
				got := gather(t, m.reg)
				for _, c := range []struct {
					name   string
					labels map[string]string
				}{
					{"labseed_host_received_bytes_total", map[string]string{"host": "ws01", "source": "server"}},
					{"labseed_host_received_bytes_total", map[string]string{"host": "ws01", "source": "peers"}},
					{"labseed_host_uploaded_bytes_total", map[string]string{"host": "ws01"}},
					{"labseed_host_hash_failures_total", map[string]string{"host": "ws01"}},
				} {
					v := value(t, got, c.name, c.labels)
					key := c.name + c.labels["source"]
					if v < last[key] {
						t.Errorf("step %d: %s%v went down from %v to %v", i, c.name, c.labels, last[key], v)
					}
					last[key] = v
				}
			}
			got := want{last["labseed_host_received_bytes_totalserver"], last["labseed_host_received_bytes_totalpeers"],
				last["labseed_host_uploaded_bytes_total"], last["labseed_host_hash_failures_total"]}
			if got != tt.want {
				t.Errorf("counters = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestServerCountersOnlyGrow(t *testing.T) {
	m, lab, _ := newTest(t, 0)
	for _, up := range []int64{100, 300, 50, 80} { // a torrent dropped between 300 and 50
		lab.set(Snapshot{Server: Server{Uploaded: up, WebSeedBytes: up / 2, DealtBytes: 2 * up, Peers: 3, HashFailures: 1}})
		gather(t, m.reg)
	}
	got := gather(t, m.reg)
	if v := value(t, got, "labseed_server_uploaded_bytes_total", nil); v != 380 {
		t.Errorf("labseed_server_uploaded_bytes_total = %v, want 380", v)
	}
	if v := value(t, got, "labseed_server_webseed_bytes_total", nil); v != 190 {
		t.Errorf("labseed_server_webseed_bytes_total = %v, want 190", v)
	}
	if v := value(t, got, "labseed_server_dealt_bytes_total", nil); v != 760 {
		t.Errorf("labseed_server_dealt_bytes_total = %v, want 760", v)
	}
	if v := value(t, got, "labseed_server_peers", nil); v != 3 {
		t.Errorf("labseed_server_peers = %v, want 3", v)
	}
}

// TestHostTTL checks that hosts that left stay exported for HostTTL, and
// are dropped after it.
func TestHostTTL(t *testing.T) {
	const ttl = 10 * time.Minute
	alive := func(name string, from uint64) Host {
		return Host{Name: name, State: "alive", Status: gossip.Status{Phase: gossip.PhaseSeeding, StartedUnix: 1000, FromServer: from}}
	}
	gone := func(h Host, state string) Host { h.State = state; return h }
	exported := func(t *testing.T, m *Metrics, host string) bool {
		t.Helper()
		_, ok := find(gather(t, m.reg), "labseed_host_progress_ratio", map[string]string{"host": host})
		return ok
	}

	tests := []struct {
		name    string
		goneAs  func(h Host) []Host // the snapshot's hosts once ws02 is gone
		members map[string]float64  // labseed_gossip_members while gone
	}{
		{"left", func(h Host) []Host { return []Host{alive("ws01", 5), gone(h, "left")} }, map[string]float64{"alive": 1, "left": 1}},
		{"dead", func(h Host) []Host { return []Host{alive("ws01", 5), gone(h, "dead")} }, map[string]float64{"alive": 1, "dead": 1}},
		{"forgotten by the gossip", func(Host) []Host { return []Host{alive("ws01", 5)} }, map[string]float64{"alive": 1, "left": 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, lab, clock := newTest(t, ttl)
			lab.set(Snapshot{Hosts: []Host{alive("ws01", 5), alive("ws02", 7)}})
			if !exported(t, m, "ws02") {
				t.Fatal("ws02 not exported while alive")
			}
			lab.set(Snapshot{Hosts: tt.goneAs(alive("ws02", 7))})
			clock.add(time.Second)
			got := gather(t, m.reg)
			for state, want := range tt.members {
				if v := value(t, got, "labseed_gossip_members", map[string]string{"state": state}); v != want {
					t.Errorf("labseed_gossip_members{state=%q} = %v, want %v", state, v, want)
				}
			}
			clock.add(ttl - time.Second) // gone for HostTTL - 1 s
			if !exported(t, m, "ws02") {
				t.Fatal("ws02 dropped before HostTTL")
			}
			if v := value(t, gather(t, m.reg), "labseed_host_received_bytes_total", map[string]string{"host": "ws02", "source": "server"}); v != 7 {
				t.Errorf("ws02 received %v bytes from the server, want its last 7", v)
			}
			clock.add(time.Second) // gone for HostTTL
			if exported(t, m, "ws02") {
				t.Fatal("ws02 still exported after HostTTL")
			}
			if !exported(t, m, "ws01") {
				t.Fatal("ws01 dropped")
			}
			clock.add(time.Hour)
			if exported(t, m, "ws02") {
				t.Fatal("ws02 exported again")
			}
		})
	}

	t.Run("back before the TTL", func(t *testing.T) {
		m, lab, clock := newTest(t, ttl)
		lab.set(Snapshot{Hosts: []Host{alive("ws02", 100)}})
		gather(t, m.reg)
		lab.set(Snapshot{Hosts: []Host{gone(alive("ws02", 100), "left")}})
		clock.add(ttl / 2)
		gather(t, m.reg)
		h := alive("ws02", 10) // restarted agent
		h.Status.StartedUnix = 5000
		lab.set(Snapshot{Hosts: []Host{h}})
		clock.add(ttl)
		got := gather(t, m.reg)
		if v := value(t, got, "labseed_host_received_bytes_total", map[string]string{"host": "ws02", "source": "server"}); v != 110 {
			t.Errorf("ws02 received %v bytes from the server, want 110", v)
		}
		if v := value(t, got, "labseed_host_gossip_state", map[string]string{"host": "ws02", "state": "alive"}); v != 1 {
			t.Errorf("ws02 not alive: %v", v)
		}
	})

	t.Run("back after the TTL", func(t *testing.T) {
		m, lab, clock := newTest(t, ttl)
		lab.set(Snapshot{Hosts: []Host{alive("ws02", 100)}})
		gather(t, m.reg)
		lab.set(Snapshot{Hosts: []Host{gone(alive("ws02", 100), "left")}})
		clock.add(2 * ttl)
		gather(t, m.reg)
		lab.set(Snapshot{Hosts: []Host{alive("ws02", 120)}}) // same process
		got := gather(t, m.reg)
		if v := value(t, got, "labseed_host_received_bytes_total", map[string]string{"host": "ws02", "source": "server"}); v != 120 {
			t.Errorf("ws02 received %v bytes from the server, want 120", v)
		}
	})
}

// TestPhaseDurations checks what is observed into the phase histogram.
func TestPhaseDurations(t *testing.T) {
	m, lab, clock := newTest(t, 0)
	start := clock.Now()
	host := func(name string, p gossip.Phase, started int64) Host {
		return Host{Name: name, State: "alive", Status: gossip.Status{Phase: p, StartedUnix: started}}
	}
	set := func(hosts ...Host) {
		lab.set(Snapshot{Hosts: hosts})
		m.sample()
	}
	// ws01 started 2 s before the first look, in joining: its start is known.
	// ws02 is first seen downloading: that phase's start is unknown.
	set(host("ws01", gossip.PhaseJoining, start.Unix()-2), host("ws02", gossip.PhaseDownloading, start.Unix()-100))
	clock.add(3 * time.Second)
	set(host("ws01", gossip.PhaseDownloading, start.Unix()-2), host("ws02", gossip.PhaseDownloading, start.Unix()-100))
	clock.add(10 * time.Second)
	set(host("ws01", gossip.PhaseFinishing, start.Unix()-2), host("ws02", gossip.PhaseFinishing, start.Unix()-100))
	clock.add(4 * time.Second)
	// ws01 finishes; ws02's agent restarts: its finishing is cut short.
	set(host("ws01", gossip.PhaseSeeding, start.Unix()-2), host("ws02", gossip.PhaseJoining, start.Unix()+17))
	clock.add(time.Second)
	set(host("ws01", gossip.PhaseSeeding, start.Unix()-2), host("ws02", gossip.PhaseDownloading, start.Unix()+17))

	got := gather(t, m.reg)
	want := map[string]struct {
		count uint64
		sum   float64
	}{
		"joining":     {2, 5 + 1}, // ws01 5 s, ws02 1 s after its restart
		"downloading": {1, 10},    // ws01 only
		"finishing":   {1, 4},     // ws01 only
		"seeding":     {0, 0},
	}
	for phase, w := range want {
		s, ok := find(got, "labseed_phase_duration_seconds", map[string]string{"phase": phase})
		if !ok {
			t.Errorf("no histogram for phase %s", phase)
			continue
		}
		if s.count != w.count || s.sum != w.sum {
			t.Errorf("phase %s: %d observations, %v s; want %d, %v s", phase, s.count, s.sum, w.count, w.sum)
		}
	}
}

// TestPhaseOfANewAgent: on a live lab the print server seldom sees joining,
// which takes milliseconds. A workstation whose agent started after the
// previous sample, first seen downloading, has its download timed from
// between the two samples; one whose agent started before is not timed.
func TestPhaseOfANewAgent(t *testing.T) {
	m, lab, clock := newTest(t, 0)
	start := clock.Now() // a whole second
	host := func(name string, p gossip.Phase, started int64) Host {
		return Host{Name: name, State: "alive", Status: gossip.Status{Phase: p, StartedUnix: started}}
	}
	set := func(hosts ...Host) {
		lab.set(Snapshot{Hosts: hosts})
		m.sample()
	}
	set()
	clock.add(time.Second)
	// ws01 started within the last second; ws02 long ago (the print server
	// restarted, say).
	set(host("ws01", gossip.PhaseDownloading, start.Unix()), host("ws02", gossip.PhaseDownloading, start.Unix()-100))
	clock.add(10 * time.Second)
	set(host("ws01", gossip.PhaseFinishing, start.Unix()), host("ws02", gossip.PhaseFinishing, start.Unix()-100))
	s, ok := find(gather(t, m.reg), "labseed_phase_duration_seconds", map[string]string{"phase": "downloading"})
	if !ok || s.count != 1 || s.sum != 10.5 {
		t.Errorf("downloading: %d observations, %v s; want 1, 10.5 s (ws01 only, from half-way between the samples)", s.count, s.sum)
	}
}

// TestRunObservesPhases checks that Run samples the lab between scrapes:
// nothing scrapes the labseed collector here.
func TestRunObservesPhases(t *testing.T) {
	lab := &fakeLab{}
	m, err := New(Config{Source: lab.Source})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	poll := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("Run did not %s within 5 s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	lab.set(Snapshot{Hosts: []Host{{Name: "ws01", State: "alive", Status: gossip.Status{Phase: gossip.PhaseJoining, StartedUnix: time.Now().Unix() - 1}}}})
	poll("see ws01", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.hosts["ws01"] != nil
	})
	lab.set(Snapshot{Hosts: []Host{{Name: "ws01", State: "alive", Status: gossip.Status{Phase: gossip.PhaseDownloading}}}})
	poll("observe the end of joining", func() bool {
		var d dto.Metric
		if err := m.phaseDur.WithLabelValues("joining").(prometheus.Metric).Write(&d); err != nil {
			t.Fatal(err)
		}
		return d.GetHistogram().GetSampleCount() == 1
	})
}

func TestSnapshotCleanup(t *testing.T) {
	m, lab, _ := newTest(t, 0)
	lab.set(Snapshot{
		Hosts: []Host{
			{Name: "ws01", State: "alive", Status: gossip.Status{Percent: 150, FromServer: 1}},
			{Name: "ws01", State: "dead", Status: gossip.Status{FromServer: 99}}, // duplicate: ignored
			{Name: "", State: "alive"}, // no name: ignored
			{Name: "server-a", State: "alive", Status: gossip.Status{Role: gossip.RoleServer}},
			{Name: "ws\xff", State: "suspect", Status: gossip.Status{Phase: gossip.Phase(42), Percent: -3}},
		},
		Images: []Image{{Name: "lab1", Version: 2, PayloadBytes: 10}, {Name: "lab1", Version: 3, PayloadBytes: 30}, {Name: "lab2", Version: 1}},
	})
	got := gather(t, m.reg)
	hosts := map[string]bool{}
	for _, s := range got["labseed_host_progress_ratio"] {
		hosts[s.labels["host"]] = true
	}
	if len(hosts) != 2 || !hosts["ws01"] || !hosts["ws\uFFFD"] {
		t.Errorf("exported hosts %v, want ws01 and ws\uFFFD", hosts)
	}
	if v := value(t, got, "labseed_host_progress_ratio", map[string]string{"host": "ws01"}); v != 1 {
		t.Errorf("progress %v, want it clamped to 1", v)
	}
	if v := value(t, got, "labseed_host_progress_ratio", map[string]string{"host": "ws\uFFFD"}); v != 0 {
		t.Errorf("progress %v, want it clamped to 0", v)
	}
	if v := value(t, got, "labseed_host_received_bytes_total", map[string]string{"host": "ws01", "source": "server"}); v != 1 {
		t.Errorf("ws01 received %v, want 1 (the first entry)", v)
	}
	if v := value(t, got, "labseed_host_phase", map[string]string{"host": "ws\uFFFD", "phase": "phase(42)"}); v != 1 {
		t.Errorf("unknown phase exported as %v, want 1", v)
	}
	if v := value(t, got, "labseed_gossip_members", map[string]string{"state": "suspect"}); v != 1 {
		t.Errorf("suspect members %v, want 1", v)
	}
	if v := value(t, got, "labseed_image_payload_bytes", map[string]string{"image": "lab1"}); v != 30 {
		t.Errorf("lab1 payload %v, want 30 (version 3)", v)
	}
	if n := len(got["labseed_image_version"]); n != 2 {
		t.Errorf("%d images exported, want 2", n)
	}
}

// TestExposition compares a scrape of one workstation with
// testdata/exposition.txt.
func TestExposition(t *testing.T) {
	m, lab, _ := newTest(t, 0)
	lab.set(Snapshot{
		Hosts: []Host{{Name: "ws01", State: "alive", Status: gossip.Status{
			Phase: gossip.PhaseDownloading, Percent: 42.5, Chunks: 17, ChunksTotal: 40, FromServer: 3000, FromPeers: 7000,
			Uploaded: 5000, Peers: 3, ETA: 12, HashFailures: 1, StartedUnix: 1_700_000_000, UpdatedUnix: 1_700_000_030,
			Sync: true, ChunksLocal: 30, ChunksFetched: 2, FilesRemoved: 0}}},
		Images: []Image{{Name: "lab1", Version: 3, PayloadBytes: 104857600, InputBytes: 314572800, Chunks: 40}},
		Server: Server{Uploaded: 3000, WebSeedBytes: 100, Peers: 1, HashFailures: 0},
		Deploy: &Deploy{ID: "20250301-220000", Image: "lab1", State: "running", Active: true, Started: time.Unix(1_700_000_000, 0),
			Machines: map[string]int{"waiting": 5, "woken": 4, "booted": 1, "cloning": 2, "done": 12, "failed": 1, "never-booted": 1}},
	})
	if *update {
		mfs, err := m.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
		for _, mf := range mfs {
			if strings.HasPrefix(mf.GetName(), "labseed_") && mf.GetName() != "labseed_build_info" {
				if err := enc.Encode(mf); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := os.WriteFile(filepath.Join("testdata", "exposition.txt"), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := readTestdata("exposition.txt")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(want, "\n") {
		if n, ok := strings.CutPrefix(line, "# TYPE "); ok {
			names = append(names, strings.Fields(n)[0])
		}
	}
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	info := value(t, gather(t, m.reg), "labseed_build_info", map[string]string{"version": "v0.0.0-test"})
	if info != 1 {
		t.Errorf("labseed_build_info = %v", info)
	}
}

func TestLint(t *testing.T) {
	m, lab, _ := newTest(t, 0)
	lab.set(Snapshot{
		Hosts:  []Host{{Name: "ws01", State: "alive", Status: gossip.Status{Phase: gossip.PhaseSeeding, StartedUnix: 1, UpdatedUnix: 2}}},
		Images: []Image{{Name: "lab1", Version: 1}},
		Deploy: &Deploy{ID: "x", Image: "lab1", State: "finished", Machines: map[string]int{"done": 1}},
	})
	for name, lint := range map[string]func() ([]problem, error){
		"collector": func() ([]problem, error) { return testutil.CollectAndLint(newCollector(m)) },
		"histogram": func() ([]problem, error) { return testutil.CollectAndLint(m.phaseDur) },
		"registry":  func() ([]problem, error) { return testutil.GatherAndLint(m.reg) },
	} {
		problems, err := lint()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, p := range problems {
			t.Errorf("%s: %s: %s", name, p.Metric, p.Text)
		}
	}
}

func TestHandler(t *testing.T) {
	m, lab, _ := newTest(t, 0)
	lab.set(Snapshot{Hosts: []Host{{Name: "ws01", State: "alive"}}})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`labseed_host_phase{host="ws01",phase="joining"} 1`,
		"go_goroutines ",
		"process_start_time_seconds ",
		"promhttp_metric_handler_requests_total",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
}
