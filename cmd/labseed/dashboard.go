package main

import (
	"context"
	"flag"
	"os"
	"strconv"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/metrics"
)

var dashboardCmd = &command{
	name:  "dashboard",
	usage: "",
	summary: `Print the Grafana dashboard for labseed's metrics (JSON).
Import it in Grafana (Dashboards > New > Import) and pick the Prometheus data
source that scrapes the print servers' /metrics (port ` + strconv.Itoa(api.DefaultPort) + `). See docs/metrics.md.`,
	example: "labseed dashboard > labseed-dashboard.json",
	run: func(ctx context.Context, fs *flag.FlagSet, args []string) error {
		if err := parse(fs, args, 0, 0); err != nil {
			return err
		}
		_, err := os.Stdout.Write(metrics.Dashboard())
		return err
	},
}
