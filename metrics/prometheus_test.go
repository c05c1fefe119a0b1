package metrics

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/labseed/labseed/gossip"
	"github.com/labseed/labseed/internal/promtest"
)

// The prometheus test: a fake lab of four workstations fetching a 100 MiB
// image (30% from the print server, 70% from each other; ws04's agent
// stalls at 50% for 2 s, then its agent restarts, joins for 1.5 s and
// fetches the rest) is served on 127.0.0.1, Debian's prometheus scrapes it
// every second, and every expression of the dashboard is evaluated through
// Prometheus's HTTP API, in the middle of the transfer and after it.

const (
	timelineImage    = 100 << 20 // payload bytes
	timelineHosts    = 4
	timelineDownload = 8 * time.Second  // per host, 0 to 100%
	timelineEnd      = 17 * time.Second // the last host done
	timelineMid      = 5 * time.Second  // every host downloading
)

// timeline is a Source whose lab progresses with the wall clock once start
// is called; before that every workstation is joining.
type timeline struct {
	base time.Time // the agents' start

	mu sync.Mutex
	t0 time.Time // zero until start
}

func (tl *timeline) start() time.Time {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.t0 = time.Now()
	return tl.t0
}

// fromServer and fromPeers are what a host has received at progress f:
// 30% of it from the print server.
func fromServer(f float64) uint64 { return uint64(math.Round(f * timelineImage * 3 / 10)) }
func fromPeers(f float64) uint64  { return uint64(math.Round(f*timelineImage)) - fromServer(f) }

func (tl *timeline) Source() Snapshot {
	tl.mu.Lock()
	t0 := tl.t0
	tl.mu.Unlock()
	now := time.Now()
	e := time.Duration(0)
	if !t0.IsZero() {
		e = now.Sub(t0)
	}
	snap := Snapshot{Images: []Image{{Name: "lab1", Version: 3, PayloadBytes: timelineImage, InputBytes: 3 * timelineImage, Chunks: 40}}}
	var sent uint64
	for i := range timelineHosts {
		st := gossip.Status{Role: gossip.RolePeer, Image: "lab1-v3", StartedUnix: tl.base.Unix(), UpdatedUnix: now.Unix(), ChunksTotal: 40}
		dlStart := time.Second + time.Duration(i)*500*time.Millisecond
		f, f0 := 0.0, 0.0 // progress, and progress at the agent's start
		if i < timelineHosts-1 || e < 8500*time.Millisecond {
			// Hosts 1-3, and ws04 until its agent restarts after stalling at
			// 50% for 2 s.
			f = min(max(float64(e-dlStart)/float64(timelineDownload), 0), 1)
			if i == timelineHosts-1 {
				f = min(f, 0.5)
			}
		} else {
			dlStart = 10 * time.Second
			f0 = 0.5
			f = min(0.5+max(float64(e-dlStart)/float64(timelineDownload), 0), 1)
			st.StartedUnix = t0.Add(8500 * time.Millisecond).Unix()
		}
		switch dlEnd := dlStart + time.Duration((1-f0)*float64(timelineDownload)); {
		case e < dlStart:
			st.Phase = gossip.PhaseJoining
		case f < 1:
			st.Phase = gossip.PhaseDownloading
			st.ETA = uint32(math.Ceil((1 - f) * timelineDownload.Seconds()))
		case e < dlEnd+time.Second:
			st.Phase = gossip.PhaseFinishing
		case e < dlEnd+3*time.Second:
			st.Phase = gossip.PhaseSeeding
		default:
			st.Phase = gossip.PhaseDone
		}
		if st.Phase == gossip.PhaseDownloading || st.Phase == gossip.PhaseSeeding {
			st.Peers = timelineHosts - 1
		}
		st.Percent = f * 100
		st.Chunks = uint32(math.Round(f * 40))
		// The agent counts from its own start.
		st.FromServer = fromServer(f) - fromServer(f0)
		st.FromPeers = fromPeers(f) - fromPeers(f0)
		st.Uploaded = st.FromPeers
		if i == 1 && f >= 0.5 {
			st.HashFailures = 1
		}
		sent += fromServer(f)
		snap.Hosts = append(snap.Hosts, Host{Name: fmt.Sprintf("ws%02d", i+1), State: "alive", Status: st})
		if st.Phase == gossip.PhaseDownloading {
			snap.Server.Peers++
		}
	}
	snap.Server.Uploaded = int64(sent * 8 / 10)
	snap.Server.WebSeedBytes = int64(sent) - snap.Server.Uploaded
	return snap
}

func TestPrometheus(t *testing.T) {
	if os.Getenv("LABSEED_LONG") != "1" {
		t.Skip("set LABSEED_LONG=1 to run the dashboard against a real prometheus (about 30 s)")
	}
	prom, promtool := promtest.Binaries(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The exporter.
	tl := &timeline{base: time.Now()}
	m, err := New(Config{Source: tl.Source, Version: "v1.2.3-test"})
	if err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- m.Run(ctx) }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(ln)
	defer func() {
		hs.Close()
		cancel()
		if err := <-runDone; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	exporter := "http://" + ln.Addr().String()

	// Prometheus, scraping it every second.
	pc := promtest.Start(t, prom, exporter+"/metrics")

	// The lab runs; check a live scrape with promtool in the middle.
	t0 := tl.start()
	time.Sleep(timelineMid)
	promtest.CheckMetrics(t, promtool, exporter+"/metrics", "labseed_host_received_bytes_total")
	promtest.Wait(t, "every workstation done, scraped", timelineEnd+15*time.Second, func() bool {
		v, err := pc.Scalar(`sum(labseed_host_phase{phase="done"})`, time.Time{})
		return err == nil && v == timelineHosts
	})
	end := time.Now()
	mid := t0.Add(timelineMid)

	// Every expression of the dashboard, at both times: it succeeds, returns
	// data, no negative value, and a finite value at one of the two times.
	d := promtest.ParseDashboard(t, Dashboard())
	results := promtest.EvalTargets(t, pc, d.Targets(), promtest.At{Name: "mid", Time: mid}, promtest.At{Name: "end", Time: end})
	for _, v := range d.Templating.List {
		metric, label, ok := v.LabelValues()
		if !ok {
			continue
		}
		var values []string
		if err := pc.Get("/api/v1/label/"+label+"/values", url.Values{"match[]": {metric}}, &values); err != nil {
			t.Errorf("variable %s: %v", v.Name, err)
		} else if len(values) == 0 {
			t.Errorf("variable %s: no values of %s on %s", v.Name, label, metric)
		}
	}

	// Values.
	const size = float64(timelineImage)
	one := func(key string) float64 {
		t.Helper()
		r := results[key]
		if len(r) != 1 {
			t.Errorf("%s: %d samples, want 1", key, len(r))
			return math.NaN()
		}
		return r[0].Value
	}
	near := func(what string, got, want, tol float64) {
		t.Helper()
		if math.IsNaN(got) || math.Abs(got-want) > tol {
			t.Errorf("%s = %v, want %v ± %v", what, got, want, tol)
		}
	}
	perHost := func(key string, want float64) {
		t.Helper()
		r := results[key]
		if len(r) != timelineHosts {
			t.Errorf("%s: %d hosts, want %d", key, len(r), timelineHosts)
		}
		for _, s := range r {
			near(key+" "+s.Metric["host"], s.Value, want, 0)
		}
	}

	// Totals after completion: ws04's restart did not reset its counters.
	for _, c := range []struct {
		expr string
		want float64
	}{
		{`sum(labseed_host_received_bytes_total)`, timelineHosts * size},
		{`sum(labseed_host_received_bytes_total{source="server"}) + sum(labseed_host_received_bytes_total{source="peers"})`, timelineHosts * size},
		{`sum(labseed_host_received_bytes_total{source="server"})`, timelineHosts * float64(fromServer(1))},
		{`sum(labseed_host_uploaded_bytes_total)`, timelineHosts * float64(fromPeers(1))},
		{`labseed_server_uploaded_bytes_total + labseed_server_webseed_bytes_total`, timelineHosts * float64(fromServer(1))},
		{`sum(labseed_phase_duration_seconds_count{phase="downloading"})`, timelineHosts}, // ws04's cut-short phase not counted
	} {
		got, err := pc.Scalar(c.expr, end)
		if err != nil {
			t.Error(err)
			continue
		}
		near(c.expr, got, c.want, 0)
	}
	near("Workstations", one("Workstations/A@end"), timelineHosts, 0)
	near("Finished", one("Finished/A@end"), timelineHosts, 0)
	near("Failed", one("Failed/A@end"), 0, 0)
	near("Lab progress at the end", one("Lab progress/A@end"), 1, 0)
	if p := one("Lab progress/A@mid"); !(p > 0.1 && p < 0.7) {
		t.Errorf("Lab progress in the middle = %v, want between 0.1 and 0.7", p)
	}
	near("Share served by peers", one("Share served by peers/A@end"), 0.7, 1e-9)
	near("Share served by peers since start", one("Share served by peers over time/B@end"), 0.7, 1e-9)
	near("Share served by peers now, in the middle", one("Share served by peers over time/A@mid"), 0.7, 0.02)
	limit := size * 8 / 100e6
	near("Physical limit", one("Physical limit/A@end"), limit, 1e-9)
	near("Download time vs physical limit: limit", one("Download time vs physical limit/A@end"), limit, 1e-9)
	if med := one("Download time vs physical limit/B@end"); !(med >= 2 && med <= 10) {
		t.Errorf("median download time %v s, want 2 to 10 s (8 s for three hosts, 4 s for the restarted one)", med)
	}

	total, server, peers := one("Swarm throughput/A@mid"), one("Swarm throughput/B@mid"), one("Swarm throughput/C@mid")
	if !(total > 10e6 && total < 80e6) {
		t.Errorf("swarm throughput in the middle = %v B/s, want 10 to 80 MB/s (4 hosts at %.1f MB/s)", total, size/timelineDownload.Seconds()/1e6)
	}
	near("throughput from server + from peers", server+peers, total, total*1e-9)
	near("share of throughput from the server", server/total, 0.3, 0.02)
	if sent := one("Swarm throughput/D@mid"); !(sent > 0) {
		t.Errorf("print server sent %v B/s in the middle, want > 0", sent)
	}
	near("port rate line", one("Swarm throughput/E@end"), 100e6/8, 0)

	perHost("Per-host progress/A@end", 1)
	perHost("Per-host status/E@end", float64(fromServer(1)))
	perHost("Per-host status/F@end", float64(fromPeers(1)))
	perHost("Per-host status/G@end", float64(fromPeers(1)))
	for _, s := range results["Per-host status/B@end"] {
		if s.Metric["phase"] != "done" {
			t.Errorf("host %s in phase %q at the end, want done", s.Metric["host"], s.Metric["phase"])
		}
	}
	for _, s := range results["Phase counts/A@end"] {
		want := 0.0
		if s.Metric["phase"] == "done" {
			want = timelineHosts
		}
		near("phase count "+s.Metric["phase"], s.Value, want, 0)
	}
	for _, s := range results["Phase counts/A@mid"] {
		if s.Metric["phase"] == "downloading" {
			near("hosts downloading in the middle", s.Value, timelineHosts, 0)
		}
	}
	if n := len(results["Slowest hosts/A@mid"]); n != timelineHosts {
		t.Errorf("slowest hosts: %d, want %d (bottomk 5 of 4)", n, timelineHosts)
	}
	near("Hash failures (total)", one("Hash failures (total)/A@end"), 1, 0)
	for _, s := range results["Gossip health/A@end"] {
		want := 0.0
		if s.Metric["state"] == "alive" {
			want = timelineHosts
		}
		near("gossip members "+s.Metric["state"], s.Value, want, 0)
	}
	near("image version", one("Images/A@end"), 3, 0)
	near("image payload", one("Images/B@end"), size, 0)
	if r := results["Build/A@end"]; len(r) != 1 || r[0].Metric["version"] != "v1.2.3-test" || r[0].Metric["goversion"] == "" {
		t.Errorf("build info %v", r)
	}
}
