// Package promtest runs labseed's metrics against a real Prometheus in
// tests: it finds Debian's prometheus and promtool, starts a Prometheus
// server scraping an exporter, queries its HTTP API, checks a live scrape
// with "promtool check metrics", and reads the Grafana dashboard's queries
// as Grafana would send them. Only tests import it; its functions report
// failures through the testing.TB they are given.
//
// Usage (a test of an exporter serving http://127.0.0.1:8080/metrics):
//
//	prom, promtool := promtest.Binaries(t) // skips the test without them
//	pc := promtest.Start(t, prom, "http://127.0.0.1:8080/metrics")
//	promtest.CheckMetrics(t, promtool, "http://127.0.0.1:8080/metrics", "labseed_")
//	d := promtest.ParseDashboard(t, metrics.Dashboard())
//	for _, tg := range d.Targets() {
//		samples, err := pc.Query(promtest.ExpandVars(tg.Expr), time.Time{})
//		...
//	}
package promtest
