package main

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/internal/promtest"
	"github.com/labseed/labseed/metrics"
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
	prom, promtool := promtest.Binaries(t)
	began := time.Now()

	const hosts = 3
	l := newLab(t, 16<<20)
	img := l.imageInfo("lab1")
	metricsURL := "http://" + l.server + api.PathMetrics

	// Prometheus, scraping the print server every second from before the
	// workstations start, so that it sees every phase.
	pc := promtest.Start(t, prom, metricsURL)

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
	promtest.Wait(t, "three scrapes after the workstations exited", 20*time.Second, func() bool {
		v, err := pc.Scalar(`timestamp(labseed_build_info)`, time.Time{})
		return err == nil && v >= float64(exited.Add(3*time.Second).UnixMilli())/1000
	})
	end := time.Now()
	promtest.CheckMetrics(t, promtool, metricsURL, "labseed_host_received_bytes_total{")

	// The busiest moment of the transfer: the evaluation time, every second
	// of the run, at which the lab's throughput over the dashboard's rate
	// window was highest. The image takes a second or two per workstation:
	// "the middle" of it may fall between two scrapes, the 5 s rate window
	// does not.
	busy, peak := promArgmax(t, pc, promtest.ExpandVars(`sum(rate(labseed_host_received_bytes_total[$__rate_interval]))`), labStart, end)
	t.Logf("busiest: %.1f s after the workstations started, %.1f MB/s", busy.Sub(labStart).Seconds(), peak/1e6)
	if !(peak > 0) {
		t.Fatalf("prometheus never saw the lab receive anything (peak throughput %v)", peak)
	}

	// Every expression of the dashboard, at both times: it succeeds and
	// returns data, no value is negative, and at least one is a number.
	// (After the run, rates are 0 and the share of rates 0/0.)
	d := promtest.ParseDashboard(t, metrics.Dashboard())
	targets := d.Targets()
	if len(targets) < 20 {
		t.Fatalf("the dashboard has %d expressions: parsed wrong?", len(targets))
	}
	results := promtest.EvalTargets(t, pc, targets, promtest.At{Name: "busy", Time: busy}, promtest.At{Name: "end", Time: end})
	// The template variables list the lab's hosts and image.
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		metric, label, ok := v.LabelValues()
		if !ok {
			continue
		}
		vars[v.Name] = true
		var values []string
		if err := pc.Get("/api/v1/label/"+label+"/values", url.Values{"match[]": {metric}}, &values); err != nil {
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
		return r[0].Value
	}
	perHost := func(key string) map[string]float64 {
		t.Helper()
		out := map[string]float64{}
		for _, s := range results[key] {
			out[s.Metric["host"]] = s.Value
		}
		if len(out) != hosts || len(results[key]) != hosts {
			t.Errorf("%s: samples of hosts %v, want one of each of %v", key, results[key], names)
		}
		return out
	}
	scalar := func(expr string) float64 {
		t.Helper()
		v, err := pc.Scalar(expr, end)
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
	if sent := scalar(`labseed_server_uploaded_bytes_total + labseed_server_webseed_bytes_total + labseed_server_dealt_bytes_total`); !(sent >= sumServer) {
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
		phaseOf[s.Metric["host"]] = s.Metric["phase"]
	}
	for _, n := range names {
		if p := phaseOf[n]; p != "seeding" && p != "done" {
			t.Errorf("%s in phase %q at the end, want seeding or done (phases %v)", n, p, phaseOf)
		}
	}
	for _, s := range results["Phase counts/A@end"] {
		if p := s.Metric["phase"]; p != "seeding" && p != "done" {
			near("hosts in phase "+p, s.Value, 0, 0)
		}
	}
	near("hosts seeding or done", scalar(`sum(labseed_host_phase{phase=~"seeding|done"})`), hosts, 0)
	if r, err := pc.Query(`labseed_phase_duration_seconds_count`, end); err == nil {
		for _, s := range r {
			t.Logf("phase %s observed %v times", s.Metric["phase"], s.Value)
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
		members += s.Value
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
	if r := results["Build/A@end"]; len(r) != 1 || r[0].Metric["version"] == "" || !strings.HasPrefix(r[0].Metric["goversion"], "go") {
		t.Errorf("build info %v", r)
	}
	t.Logf("whole test %.1f s", time.Since(began).Seconds())
}

// imageInfo returns the print server's entry for an image.
func (l *lab) imageInfo(name string) api.ImageInfo {
	l.t.Helper()
	resp, err := http.Get("http://" + l.server + api.PathImages)
	if err != nil {
		l.t.Fatal(err)
	}
	defer resp.Body.Close()
	var imgs []api.ImageInfo
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
	return api.ImageInfo{}
}

// promArgmax evaluates expr, which must return one series, every second
// from start to end, and returns the time at which its value was highest,
// and that value.
func promArgmax(t *testing.T, pc *promtest.Client, expr string, start, end time.Time) (time.Time, float64) {
	t.Helper()
	r, err := pc.QueryRange(expr, start, end, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(r) != 1 {
		t.Fatalf("%s: %d series, want 1", expr, len(r))
	}
	best, bestV := time.Time{}, math.Inf(-1)
	for _, p := range r[0].Points {
		if p.Value > bestV {
			best, bestV = p.Time, p.Value
		}
	}
	if best.IsZero() {
		t.Fatalf("%s: no samples from %v to %v", expr, start, end)
	}
	return best, bestV
}
