package metrics_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/labseed/labseed/gossip"
	"github.com/labseed/labseed/metrics"
)

func Example() {
	// The print server's view of the lab; in labseed serve it comes from the
	// gossip members, the store and the torrent client.
	lab := func() metrics.Snapshot {
		return metrics.Snapshot{
			Hosts: []metrics.Host{{Name: "ws01", State: "alive", Status: gossip.Status{
				Phase: gossip.PhaseDownloading, Percent: 40, FromServer: 3 << 20, FromPeers: 7 << 20}}},
			Images: []metrics.Image{{Name: "lab1", Version: 3, PayloadBytes: 100 << 20, Chunks: 40}},
		}
	}
	m, err := metrics.New(metrics.Config{Source: lab, Version: "v1.0.0"})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.Run(ctx)

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	srv := httptest.NewServer(mux)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "labseed_host_received_bytes_total") || strings.HasPrefix(line, "labseed_host_progress_ratio") {
			fmt.Println(line)
		}
	}
	// Output:
	// labseed_host_progress_ratio{host="ws01"} 0.4
	// labseed_host_received_bytes_total{host="ws01",source="peers"} 7.340032e+06
	// labseed_host_received_bytes_total{host="ws01",source="server"} 3.145728e+06
}

func ExampleDashboard() {
	// labseed dashboard > labseed-dashboard.json, then import it in Grafana.
	b := metrics.Dashboard()
	fmt.Println(strings.Contains(string(b), `"uid": "labseed-lab"`))
	// Output: true
}
