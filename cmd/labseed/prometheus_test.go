package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labseed/labseed/metrics"
	"github.com/labseed/labseed/seeder"
)

// TestPrometheusLiveLab runs a real lab (a print server and three
// workstations at 40 Mbit/s, as separate processes on loopback) while
// Debian's prometheus scrapes the print server's /metrics every second. Once
// every workstation has exited, every expression of the Grafana dashboard is
// evaluated through Prometheus's HTTP API, at the busiest moment of the
// transfer and after it, and the values are checked against the image and
// the lab; a live scrape must pass "promtool check metrics".
func TestPrometheusLiveLab(t *testing.T) {
	needLong(t)
	prom, promtool := promBinaries(t)
	began := time.Now()

	const hosts = 3
	l := newLab(t, 16<<20)
	img := l.imageInfo("lab1")
	metricsURL := "http://" + l.server + seeder.PathMetrics

	// Prometheus, scraping the print server every second from before the
	// workstations start, so that it sees every phase.
	pc := startPrometheus(t, prom, l.server)
	promWait(t, "prometheus to scrape the print server", 30*time.Second, func() bool {
		v, err := pc.scalar(`up{job="labseed"}`, time.Time{})
		return err == nil && v == 1
	})

	// The workstations. Each lingers until every one is done, then leaves
	// the lab; the print server keeps exporting hosts that left for
	// metrics.DefaultHostTTL, long enough for the checks below.
	var peers []*ws
	names := make([]string, hosts)
	for i := range hosts {
		names[i] = fmt.Sprintf("ws%d", i+1)
		peers = append(peers, l.startPeer(names[i], "--rate", "40mbit", "--linger", "2m"))
	}
	labStart := time.Now()
	for _, p := range peers {
		l.wait(p, 90*time.Second)
		l.check(p)
	}
	exited := time.Now()
	t.Logf("lab of %d workstations done in %.1f s (payload %d bytes, %d chunks)", hosts, exited.Sub(labStart).Seconds(), img.PayloadBytes, img.Chunks)

	// A few scrapes after the last workstation left.
	promWait(t, "three scrapes after the workstations exited", 20*time.Second, func() bool {
		v, err := pc.scalar(`timestamp(labseed_build_info)`, time.Time{})
		return err == nil && v >= float64(exited.Add(3*time.Second).UnixMilli())/1000
	})
	end := time.Now()
	promtoolCheckLive(t, promtool, metricsURL)

	// The busiest moment of the transfer: the evaluation time, every second
	// of the run, at which the lab's throughput over the dashboard's rate
	// window was highest. The image takes a second or two per workstation:
	// "the middle" of it may fall between two scrapes, the 5 s rate window
	// does not.
	busy, peak := pc.argmax(t, promExpandVars(`sum(rate(labseed_host_received_bytes_total[$__rate_interval]))`), labStart, end)
	t.Logf("busiest: %.1f s after the workstations started, %.1f MB/s", busy.Sub(labStart).Seconds(), peak/1e6)
	if !(peak > 0) {
		t.Fatalf("prometheus never saw the lab receive anything (peak throughput %v)", peak)
	}

	// Every expression of the dashboard, at both times: it succeeds and
	// returns data, no value is negative, and at least one is a number.
	// (After the run, rates are 0 and the share of rates 0/0.)
	d := promParseDashboard(t)
	results := map[string][]promSample{} // "panel/refId@busy" or "@end"
	targets := d.targets()
	if len(targets) < 20 {
		t.Fatalf("the dashboard has %d expressions: parsed wrong?", len(targets))
	}
	for _, tg := range targets {
		expr := promExpandVars(tg.expr)
		finite := false
		for _, at := range []struct {
			name string
			t    time.Time
		}{{"busy", busy}, {"end", end}} {
			r, err := pc.query(expr, at.t)
			if err != nil {
				t.Errorf("%s/%s at %s: %v", tg.panel, tg.refID, at.name, err)
				continue
			}
			if len(r) == 0 {
				t.Errorf("%s/%s at %s: no data: %s", tg.panel, tg.refID, at.name, expr)
			}
			for _, s := range r {
				if s.value < 0 {
					t.Errorf("%s/%s at %s: negative value %v%v: %s", tg.panel, tg.refID, at.name, s.value, s.metric, expr)
				}
				finite = finite || !math.IsNaN(s.value) && !math.IsInf(s.value, 0)
			}
			results[tg.panel+"/"+tg.refID+"@"+at.name] = r
		}
		if !finite {
			t.Errorf("%s/%s: no finite value at either time: %s", tg.panel, tg.refID, expr)
		}
	}
	// The template variables list the lab's hosts and image.
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		metric, label, ok := v.labelValues()
		if !ok {
			continue
		}
		vars[v.Name] = true
		var values []string
		if err := pc.get("/api/v1/label/"+label+"/values", url.Values{"match[]": {metric}}, &values); err != nil {
			t.Errorf("variable %s: %v", v.Name, err)
			continue
		}
		want := map[string][]string{"host": names, "image": {img.Name}}[v.Name]
		if len(values) == 0 || want != nil && !slices.Equal(values, want) {
			t.Errorf("variable %s: label_values(%s, %s) = %q, want %q", v.Name, metric, label, values, want)
		}
	}
	if !vars["host"] || !vars["image"] {
		t.Errorf("label_values variables %v, want host and image", vars)
	}

	// Values.
	payload := float64(img.PayloadBytes)
	near := func(what string, got, want, tol float64) {
		t.Helper()
		if math.IsNaN(got) || math.Abs(got-want) > tol {
			t.Errorf("%s = %v, want %v ± %v", what, got, want, tol)
		}
	}
	one := func(key string) float64 {
		t.Helper()
		r := results[key]
		if len(r) != 1 {
			t.Errorf("%s: %d samples, want 1", key, len(r))
			return math.NaN()
		}
		return r[0].value
	}
	perHost := func(key string) map[string]float64 {
		t.Helper()
		out := map[string]float64{}
		for _, s := range results[key] {
			out[s.metric["host"]] = s.value
		}
		if len(out) != hosts || len(results[key]) != hosts {
			t.Errorf("%s: samples of hosts %v, want one of each of %v", key, results[key], names)
		}
		return out
	}
	scalar := func(expr string) float64 {
		t.Helper()
		v, err := pc.scalar(expr, end)
		if err != nil {
			t.Error(err)
			return math.NaN()
		}
		return v
	}

	// Bytes: every workstation received the payload once, from the print
	// server or the others, and the print server sent at least what the
	// workstations say they had from it.
	near("sum of received bytes", scalar(`sum(labseed_host_received_bytes_total)`), hosts*payload, 0)
	fromServer, fromPeers := perHost("Per-host status/E@end"), perHost("Per-host status/F@end")
	for _, n := range names {
		near(n+" received from the server and from peers", fromServer[n]+fromPeers[n], payload, 0)
	}
	sumServer, sumPeers := scalar(`sum(labseed_host_received_bytes_total{source="server"})`), scalar(`sum(labseed_host_received_bytes_total{source="peers"})`)
	if sent := scalar(`labseed_server_uploaded_bytes_total + labseed_server_webseed_bytes_total`); !(sent >= sumServer) {
		t.Errorf("the print server sent %v bytes, the workstations say they received %v from it", sent, sumServer)
	}
	if up := scalar(`sum(labseed_host_uploaded_bytes_total)`); !(up >= sumPeers) {
		t.Errorf("the workstations uploaded %v bytes, and say they received %v from each other", up, sumPeers)
	}
	share := one("Share served by peers/A@end")
	if !(share >= 0 && share <= 1) {
		t.Errorf("share served by peers = %v, want 0 to 1", share)
	}
	near("share served by peers since start", one("Share served by peers over time/B@end"), share, 1e-12)
	near("share served by peers, from the sums", sumPeers/(sumServer+sumPeers), share, 1e-12)
	t.Logf("bytes from the print server %.0f, from workstations %.0f (share %.2f)", sumServer, sumPeers, share)

	// Hosts and phases: three hosts, all finished (seeding or done).
	near("Workstations", one("Workstations/A@end"), hosts, 0)
	near("Finished", one("Finished/A@end"), hosts, 0)
	near("Failed", one("Failed/A@end"), 0, 0)
	near("Lab progress at the end", one("Lab progress/A@end"), 1, 0)
	for n, v := range perHost("Per-host progress/A@end") {
		near(n+" progress", v, 1, 0)
	}
	phaseOf := map[string]string{}
	for _, s := range results["Per-host status/B@end"] {
		phaseOf[s.metric["host"]] = s.metric["phase"]
	}
	for _, n := range names {
		if p := phaseOf[n]; p != "seeding" && p != "done" {
			t.Errorf("%s in phase %q at the end, want seeding or done (phases %v)", n, p, phaseOf)
		}
	}
	for _, s := range results["Phase counts/A@end"] {
		if p := s.metric["phase"]; p != "seeding" && p != "done" {
			near("hosts in phase "+p, s.value, 0, 0)
		}
	}
	near("hosts seeding or done", scalar(`sum(labseed_host_phase{phase=~"seeding|done"})`), hosts, 0)
	if r, err := pc.query(`labseed_phase_duration_seconds_count`, end); err == nil {
		for _, s := range r {
			t.Logf("phase %s observed %v times", s.metric["phase"], s.value)
		}
	}
	near("downloading phases observed", scalar(`sum(labseed_phase_duration_seconds_count{phase="downloading"})`), hosts, 0)
	for n, v := range perHost("Per-host status/C@end") {
		near(n+" chunks applied", v, float64(img.Chunks), 0)
	}
	for n, v := range perHost("Per-host status/D@end") {
		near(n+" chunks", v, float64(img.Chunks), 0)
	}
	perHost("Per-host status/K@end")
	if n := len(results["Slowest hosts/A@busy"]); n != hosts {
		t.Errorf("slowest hosts while busy: %d, want %d (bottomk 5 of %d)", n, hosts, hosts)
	}
	near("hash failures", one("Hash failures (total)/A@end"), 0, 0)
	var members float64
	for _, s := range results["Gossip health/A@end"] {
		members += s.value
	}
	if members > hosts {
		t.Errorf("the gossip knows %v workstations, want at most %d: %v", members, hosts, results["Gossip health/A@end"])
	}

	// Throughput: while busy the lab received no faster than three ports of
	// 40 Mbit/s (with slack for counters gossiped once a second), the
	// sources add up, and so do the shares.
	total, server, peersRate := one("Swarm throughput/A@busy"), one("Swarm throughput/B@busy"), one("Swarm throughput/C@busy")
	near("busiest throughput", total, peak, 0)
	const portBytes = 40e6 / 8
	if !(total < 2*hosts*portBytes) {
		t.Errorf("swarm throughput = %.0f B/s, more than %d ports of 40 Mbit/s", total, hosts)
	}
	near("throughput from server + from peers", server+peersRate, total, total*1e-9)
	near("share of throughput from peers", one("Share served by peers over time/A@busy"), peersRate/total, 1e-9)
	if sent := one("Swarm throughput/D@busy"); !(sent > 0) {
		t.Errorf("the print server sent %v B/s while the lab was busiest", sent)
	}
	near("port rate line", one("Swarm throughput/E@end"), 100e6/8, 0)

	// The physical limit and the download times.
	limit := payload * 8 / 100e6
	near("Physical limit", one("Physical limit/A@end"), limit, 1e-9)
	near("Download time vs physical limit: limit", one("Download time vs physical limit/A@end"), limit, 1e-9)
	took := exited.Sub(labStart).Seconds()
	for _, ref := range []string{"B", "C"} {
		if v := one("Download time vs physical limit/" + ref + "@end"); !(v > 0 && v <= took+5) {
			t.Errorf("download time quantile %s = %v s, want between 0 and %.0f s", ref, v, took+5)
		}
	}

	// The image and the build.
	near("image version", one("Images/A@end"), float64(img.Version), 0)
	near("image payload", one("Images/B@end"), payload, 0)
	near("image input", one("Images/C@end"), float64(img.InputBytes), 0)
	near("image chunks", one("Images/D@end"), float64(img.Chunks), 0)
	if r := results["Build/A@end"]; len(r) != 1 || r[0].metric["version"] == "" || !strings.HasPrefix(r[0].metric["goversion"], "go") {
		t.Errorf("build info %v", r)
	}
	t.Logf("whole test %.1f s", time.Since(began).Seconds())
}

// imageInfo returns the print server's entry for an image.
func (l *lab) imageInfo(name string) seeder.ImageInfo {
	l.t.Helper()
	resp, err := http.Get("http://" + l.server + seeder.PathImages)
	if err != nil {
		l.t.Fatal(err)
	}
	defer resp.Body.Close()
	var imgs []seeder.ImageInfo
	if err := json.NewDecoder(resp.Body).Decode(&imgs); err != nil {
		l.t.Fatal(err)
	}
	for _, im := range imgs {
		if im.Name == name {
			if im.PayloadBytes <= 0 || im.Chunks <= 0 {
				l.t.Fatalf("image %+v", im)
			}
			return im
		}
	}
	l.t.Fatalf("no image %s in %+v", name, imgs)
	return seeder.ImageInfo{}
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

// startPrometheus runs prometheus on 127.0.0.1, scraping target's /metrics
// every second; it is stopped when the test ends.
func startPrometheus(t *testing.T, prom, target string) promClient {
	t.Helper()
	dir := t.TempDir()
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: labseed
    metrics_path: %s
    static_configs:
      - targets: ['%s']
`, seeder.PathMetrics, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	var log bytes.Buffer
	cmd := exec.Command(prom,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn")
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("prometheus log:\n%s", log.String())
		}
	})
	return promClient{base: "http://" + addr, exited: exited}
}

// promSample is one sample of an instant query.
type promSample struct {
	metric map[string]string
	value  float64
}

// promClient queries a Prometheus server's HTTP API.
type promClient struct {
	base   string
	exited <-chan error // the server's exit, if it is ours
}

func (c promClient) get(path string, q url.Values, data any) error {
	select {
	case err := <-c.exited:
		return fmt.Errorf("prometheus exited: %v", err)
	default:
	}
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
		return fmt.Errorf("%s %s: %s: %s", path, q.Get("query"), r.Status, r.Error)
	}
	return json.Unmarshal(r.Data, data)
}

func promTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)
}

// query evaluates expr at time at (now if zero); the result must be a vector.
func (c promClient) query(expr string, at time.Time) ([]promSample, error) {
	q := url.Values{"query": {expr}}
	if !at.IsZero() {
		q.Set("time", promTime(at))
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
		return nil, fmt.Errorf("%s: result type %s, want vector", expr, data.ResultType)
	}
	var out []promSample
	for _, r := range data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: sample value %v: %w", expr, r.Value[1], err)
		}
		out = append(out, promSample{r.Metric, v})
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
	return r[0].value, nil
}

// argmax evaluates expr, which must return one series, every second from
// start to end, and returns the time at which its value was highest, and
// that value.
func (c promClient) argmax(t *testing.T, expr string, start, end time.Time) (time.Time, float64) {
	t.Helper()
	var data struct {
		Result []struct {
			Values [][2]any `json:"values"`
		} `json:"result"`
	}
	q := url.Values{"query": {expr}, "start": {promTime(start)}, "end": {promTime(end)}, "step": {"1"}}
	if err := c.get("/api/v1/query_range", q, &data); err != nil {
		t.Fatal(err)
	}
	if len(data.Result) != 1 {
		t.Fatalf("%s: %d series, want 1", expr, len(data.Result))
	}
	best, bestV := time.Time{}, math.Inf(-1)
	for _, p := range data.Result[0].Values {
		ts, _ := p[0].(float64)
		s, _ := p[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("%s: sample value %v", expr, p[1])
		}
		if v > bestV {
			best, bestV = time.UnixMilli(int64(math.Round(ts*1000))), v
		}
	}
	if best.IsZero() {
		t.Fatalf("%s: no samples from %v to %v", expr, start, end)
	}
	return best, bestV
}

// promWait polls cond every 200 ms until it is true or the timeout passes.
func promWait(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// promtoolCheckLive scrapes url and checks the exposition with
// "promtool check metrics", which must find nothing.
func promtoolCheckLive(t *testing.T, promtool, url string) {
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
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("labseed_host_received_bytes_total{")) {
		t.Fatalf("scrape of %s: HTTP %d, without workstations:\n%s", url, resp.StatusCode, body)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics on a live scrape: %v\n%s", err, out)
	} else if err != nil {
		t.Fatal(err)
	}
}

// promDashboard is the part of the Grafana dashboard the test reads.
type promDashboard struct {
	Panels     []promPanel `json:"panels"`
	Templating struct {
		List []promVar `json:"list"`
	} `json:"templating"`
}

type promPanel struct {
	Title   string `json:"title"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []promPanel `json:"panels"` // of a collapsed row
}

type promVar struct {
	Name  string          `json:"name"`
	Query json.RawMessage `json:"query"`
}

type promTarget struct{ panel, refID, expr string }

func promParseDashboard(t *testing.T) promDashboard {
	t.Helper()
	var d promDashboard
	if err := json.Unmarshal(metrics.Dashboard(), &d); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	return d
}

// targets returns every expression of every panel, rows' panels included.
func (d promDashboard) targets() []promTarget {
	var out []promTarget
	var walk func([]promPanel)
	walk = func(ps []promPanel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				out = append(out, promTarget{p.Title, tg.RefID, tg.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

var promLabelValuesRE = regexp.MustCompile(`^label_values\(([a-z_:]+), *([a-z_]+)\)$`)

// labelValues returns the metric and label of a query variable's
// label_values(metric, label).
func (v promVar) labelValues() (metric, label string, ok bool) {
	var q struct {
		Query string `json:"query"`
	}
	if json.Unmarshal(v.Query, &q) != nil {
		return "", "", false
	}
	m := promLabelValuesRE.FindStringSubmatch(q.Query)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// promExpandVars replaces the dashboard's variables in expr as Grafana
// would, with every variable at its default (All for host and image).
func promExpandVars(expr string) string {
	return strings.NewReplacer(
		"$__rate_interval", "5s",
		"$__interval", "1s",
		"$__range", "5m",
		"$port_rate", "100",
		"$host", ".*",
		"$image", ".*",
	).Replace(expr)
}
