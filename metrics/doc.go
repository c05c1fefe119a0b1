// Package metrics exports a labseed lab to Prometheus and ships the Grafana
// dashboard that shows it.
//
// The print server ("labseed serve") owns a Metrics: at every scrape it asks
// its Config.Source for a Snapshot of the lab — every workstation's gossiped
// status and gossip member state, the published images and the server's own
// seeding — and turns it into labseed_* metrics on a registry of its own
// (with the Go and process collectors, nothing from the default registry).
// Per-host counters survive agent restarts (Metrics keeps an offset per host),
// hosts that left the lab are dropped after Config.HostTTL, and Run samples
// the lab every second to observe how long workstations spend in each phase.
// Dashboard returns the Grafana dashboard built on these metrics; docs/metrics.md
// lists every metric and panel.
//
// Usage:
//
//	m, err := metrics.New(metrics.Config{Source: srv.MetricsSnapshot, Version: version})
//	...
//	mux.Handle("GET /metrics", m.Handler())
//	go m.Run(ctx) // until ctx is cancelled
package metrics
