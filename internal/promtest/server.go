package promtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Job is the job label Start gives the exporter's series.
const Job = "labseed"

// Binaries returns the paths of prometheus and promtool, installing
// Debian's package when run as root; it skips the test when they cannot be
// had.
func Binaries(t testing.TB) (prom, promtool string) {
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

// Start runs the prometheus binary prom on a free port of 127.0.0.1,
// scraping the exporter at scrapeURL (as "http://127.0.0.1:8080/metrics")
// every second as job Job, and returns a client of its API once it has
// scraped the exporter successfully (up is 1). It fails the test if
// Prometheus exits or the scrape does not succeed within 30 s. Prometheus
// is stopped when the test ends, and its log is logged if the test failed.
func Start(t testing.TB, prom, scrapeURL string) *Client {
	t.Helper()
	target, err := url.Parse(scrapeURL)
	if err != nil || target.Scheme != "http" || target.Host == "" {
		t.Fatalf("promtest: scrape URL %q: want http://host:port/path", scrapeURL)
	}
	dir := t.TempDir()
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: %s
    metrics_path: %s
    static_configs:
      - targets: ['%s']
`, Job, target.Path, target.Host)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
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
	c := &Client{URL: "http://" + addr}
	exited := make(chan struct{})
	c.exited = exited
	go func() {
		c.exitErr = cmd.Wait()
		close(exited)
	}()
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
	Wait(t, "prometheus to be ready and scrape "+scrapeURL, 30*time.Second, func() bool {
		v, err := c.Scalar(`up{job="`+Job+`"}`, time.Time{})
		if errors.Is(err, errExited) {
			t.Fatal(err)
		}
		return err == nil && v == 1
	})
	return c
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Wait polls cond every 200 ms until it is true, failing the test if
// timeout passes first; what says what the test was waiting for. It must
// be called from the test's goroutine.
func Wait(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// CheckMetrics scrapes url and checks the exposition with the promtool
// binary's "check metrics", which must find nothing. The scrape must
// succeed and contain want (a metric name, say), so that the check is not
// run on an exposition without the series it is meant to check.
func CheckMetrics(t testing.TB, promtool, url, want string) {
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
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(want)) {
		t.Fatalf("scrape of %s: HTTP %d, without %q:\n%s", url, resp.StatusCode, want, body)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics on a live scrape of %s: %v\n%s", url, err, out)
	} else if err != nil {
		t.Fatal(err)
	}
}
