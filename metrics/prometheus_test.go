package metrics

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/labseed/labseed/gossip"
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

// promResult is one sample of an instant query.
type promResult struct {
	Metric map[string]string
	Value  float64
}

// promClient queries a Prometheus server's HTTP API.
type promClient struct{ base string }

func (c promClient) get(path string, q url.Values, data any) error {
	resp, err := http.Get(c.base + path + "?" + q.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var r struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("%s: HTTP %d: %s", path, resp.StatusCode, body)
	}
	if r.Status != "success" {
		return fmt.Errorf("%s: %s: %s", path, r.Status, r.Error)
	}
	return json.Unmarshal(r.Data, data)
}

// query evaluates expr at time at (now if zero); the result must be a vector.
func (c promClient) query(expr string, at time.Time) ([]promResult, error) {
	q := url.Values{"query": {expr}}
	if !at.IsZero() {
		q.Set("time", strconv.FormatFloat(float64(at.UnixMilli())/1000, 'f', 3, 64))
	}
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	if err := c.get("/api/v1/query", q, &data); err != nil {
		return nil, err
	}
	if data.ResultType != "vector" {
		return nil, fmt.Errorf("result type %s, want vector", data.ResultType)
	}
	var out []promResult
	for _, r := range data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("sample value %v: %w", r.Value[1], err)
		}
		out = append(out, promResult{r.Metric, v})
	}
	return out, nil
}

// scalar evaluates expr, which must return one sample, at time at.
func (c promClient) scalar(expr string, at time.Time) (float64, error) {
	r, err := c.query(expr, at)
	if err != nil {
		return 0, err
	}
	if len(r) != 1 {
		return 0, fmt.Errorf("%s: %d samples, want 1", expr, len(r))
	}
	return r[0].Value, nil
}

// waitFor polls cond every 200 ms until it is true or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// promBinaries returns the paths of prometheus and promtool, installing
// Debian's package when run as root; it skips the test when they cannot be
// had.
func promBinaries(t *testing.T) (prom, promtool string) {
	t.Helper()
	prom, err1 := exec.LookPath("prometheus")
	promtool, err2 := exec.LookPath("promtool")
	if err1 == nil && err2 == nil {
		return prom, promtool
	}
	if os.Geteuid() != 0 {
		t.Skip("prometheus or promtool not installed (apt-get install prometheus) and not root: skipping")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "--no-install-recommends", "prometheus")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("apt-get install prometheus: %v\n%s", err, out)
	}
	if prom, err1 = exec.LookPath("prometheus"); err1 != nil {
		t.Fatal(err1)
	}
	if promtool, err2 = exec.LookPath("promtool"); err2 != nil {
		t.Fatal(err2)
	}
	return prom, promtool
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestPrometheus(t *testing.T) {
	if os.Getenv("LABSEED_LONG") != "1" {
		t.Skip("set LABSEED_LONG=1 to run the dashboard against a real prometheus (about 30 s)")
	}
	prom, promtool := promBinaries(t)
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
	dir := t.TempDir()
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: labseed
    static_configs:
      - targets: ['%s']
`, ln.Addr())
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	promAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	var promLog bytes.Buffer
	cmd := exec.Command(prom,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr,
		"--log.level=warn")
	cmd.Stdout, cmd.Stderr = &promLog, &promLog
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("prometheus log:\n%s", promLog.String())
		}
	}()
	pc := promClient{"http://" + promAddr}
	waitFor(t, "prometheus to be ready and scrape the exporter", 30*time.Second, func() bool {
		select {
		case err := <-exited:
			t.Fatalf("prometheus exited: %v\n%s", err, promLog.String())
		default:
		}
		v, err := pc.scalar(`up{job="labseed"}`, time.Time{})
		return err == nil && v == 1
	})

	// The lab runs; check a live scrape with promtool in the middle.
	t0 := tl.start()
	time.Sleep(timelineMid)
	promtoolCheck(t, promtool, exporter+"/metrics")
	waitFor(t, "every workstation done, scraped", timelineEnd+15*time.Second, func() bool {
		v, err := pc.scalar(`sum(labseed_host_phase{phase="done"})`, time.Time{})
		return err == nil && v == timelineHosts
	})
	end := time.Now()
	mid := t0.Add(timelineMid)

	// Every expression of the dashboard, at both times: it succeeds, returns
	// data, no negative value, and a finite value at one of the two times.
	d := parseDashboard(t)
	results := map[string][]promResult{} // "panel/refId@mid" or "@end"
	for _, tg := range d.targets() {
		expr := expandVars(tg.Expr)
		finite := false
		for _, at := range []struct {
			name string
			t    time.Time
		}{{"mid", mid}, {"end", end}} {
			r, err := pc.query(expr, at.t)
			if err != nil {
				t.Errorf("%s/%s at %s: %s: %v", tg.Panel, tg.RefID, at.name, expr, err)
				continue
			}
			if len(r) == 0 {
				t.Errorf("%s/%s at %s: no data: %s", tg.Panel, tg.RefID, at.name, expr)
			}
			for _, s := range r {
				if s.Value < 0 {
					t.Errorf("%s/%s at %s: negative value %v%v: %s", tg.Panel, tg.RefID, at.name, s.Value, s.Metric, expr)
				}
				finite = finite || !math.IsNaN(s.Value) && !math.IsInf(s.Value, 0)
			}
			results[tg.Panel+"/"+tg.RefID+"@"+at.name] = r
		}
		if !finite {
			t.Errorf("%s/%s: no finite value at either time: %s", tg.Panel, tg.RefID, expr)
		}
	}
	for _, v := range d.Templating.List {
		metric, label, ok := v.labelValues()
		if !ok {
			continue
		}
		var values []string
		if err := pc.get("/api/v1/label/"+label+"/values", url.Values{"match[]": {metric}}, &values); err != nil {
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
		got, err := pc.scalar(c.expr, end)
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

// promtoolCheck scrapes url and checks the exposition with
// "promtool check metrics", which must find nothing.
func promtoolCheck(t *testing.T, promtool, url string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(body, []byte("labseed_host_received_bytes_total")) {
		t.Fatalf("scrape without workstations:\n%s", body)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	} else if err != nil {
		t.Fatal(err)
	}
}
