package metrics

import (
	"bytes"
	_ "embed"
)

//go:embed dashboard.json
var dashboard []byte

// Dashboard returns the Grafana dashboard for the labseed metrics, as JSON to
// import into Grafana (Dashboards → New → Import). It asks for a Prometheus
// data source and the lab's port rate (Mbit/s) through dashboard variables.
// The returned slice is a copy.
func Dashboard() []byte { return bytes.Clone(dashboard) }
