package seeder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/deploy"
	"github.com/labseed/labseed/hosts"
	"github.com/labseed/labseed/internal/fixture"
	"github.com/labseed/labseed/keys"
	"github.com/labseed/labseed/pxe"
	"github.com/labseed/labseed/store"
)

// fakeLab stands for the machines of a lab on the other side of the wake:
// every machine but the dead ones "boots" (a report from its clone) a
// little after its first wake, and reports done a little later.
type fakeLab struct {
	t    *testing.T
	dead map[string]bool

	mu     sync.Mutex
	client *api.Client            // where the machines report; swapped on a restart
	wakes  map[string][]time.Time // by MAC
	booted map[string]bool
}

func (l *fakeLab) wake(ctx context.Context, macs []net.HardwareAddr) (pxe.WakeResult, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range macs {
		mac := m.String()
		l.wakes[mac] = append(l.wakes[mac], time.Now())
		if l.dead[mac] || l.booted[mac] {
			continue
		}
		l.booted[mac] = true
		go func() {
			time.Sleep(300 * time.Millisecond)
			l.report(mac, "identify", api.StateRunning)
			time.Sleep(300 * time.Millisecond)
			l.report(mac, "done", api.StateDone)
		}()
	}
	return pxe.WakeResult{Interface: "fake0", Broadcast: net.IPv4(10, 1, 0, 255), Port: 9, Sent: 6 * len(macs)}, nil
}

// report sends a clone report, trying again while the print server is
// down (a restart).
func (l *fakeLab) report(mac, step, state string) {
	for range 100 {
		l.mu.Lock()
		c := l.client
		l.mu.Unlock()
		if c != nil && c.Report(context.Background(), mac, api.Report{Step: step, State: state, Time: time.Now()}) == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	l.t.Errorf("%s: report %s %s never got through", mac, step, state)
}

func (l *fakeLab) woken(mac string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.wakes[mac])
}

// startDeployLab publishes image lab1 into dir and writes a hosts table of
// n machines; start runs a print server on it with the fake lab's wake.
func startDeployLab(t *testing.T, n int, dead ...string) (dir string, lab *fakeLab, start func() (*Server, *api.Client, func())) {
	dir = t.TempDir()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(fixture.GenerateImage(pw, fixture.ImageOptions{TotalBytes: 1 << 20})) }()
	if _, err := st.Publish(t.Context(), pr, chunker.Config{Name: "lab1", Level: 1}); err != nil {
		t.Fatal(err)
	}
	table := "mac,hostname,ip,group\n"
	for i := 1; i <= n; i++ {
		g := "row1"
		if i > n/2 {
			g = "row2"
		}
		table += fmt.Sprintf("52:54:00:00:01:%02x,ws%02d,10.1.0.%d,%s\n", i, i, 100+i, g)
	}
	os.WriteFile(filepath.Join(dir, hosts.HostsFile), []byte(table), 0o644)
	lab = &fakeLab{t: t, dead: map[string]bool{}, wakes: map[string][]time.Time{}, booted: map[string]bool{}}
	for _, d := range dead {
		lab.dead[d] = true
	}
	start = func() (*Server, *api.Client, func()) {
		db, err := hosts.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		cfg := LocalConfig()
		cfg.Store, cfg.LabKey, cfg.AdminKey, cfg.Hosts, cfg.Wake = st, mustLabKey(t, st), mustAdminKey(t, st), db, lab.wake
		srv, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.Run(ctx) }()
		var once sync.Once
		stop := func() {
			once.Do(func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("server: %v", err)
				}
			})
		}
		t.Cleanup(stop)
		c := api.NewClient(srv.Lab().HTTPAddr)
		lab.mu.Lock()
		lab.client = c
		lab.mu.Unlock()
		admin := api.NewClient(srv.Lab().HTTPAddr)
		admin.Auth = api.AdminAuth(mustAdminKey(t, st))
		return srv, admin, stop
	}
	return dir, lab, start
}

func mustLabKey(t *testing.T, st *store.Store) []byte {
	t.Helper()
	k, err := st.LabKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// waitDeploy polls the deploy until cond holds, for at most d.
func waitDeploy(t *testing.T, c *api.Client, d time.Duration, what string, cond func(*api.Deploy) bool) *api.Deploy {
	t.Helper()
	var last *api.Deploy
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		dep, err := c.Deploy(t.Context())
		if err == nil {
			last = dep
			if cond(dep) {
				return dep
			}
		}
	}
	t.Fatalf("%s: not within %s; last %+v", what, d, last)
	return nil
}

// TestDeploy runs a deploy of 9 machines, waves of 3, one with nothing
// behind it, over the API, with a restart of the print server in the
// middle: every live machine is woken once and done, the dead one woken 3
// times and never booted; never more than 3 woken but not booted; the
// machines were marked with the image and went back to local when done.
func TestDeploy(t *testing.T) {
	const dead = "52:54:00:00:01:05"
	dir, lab, start := startDeployLab(t, 9, dead)
	_, admin, stop := start()
	ctx := t.Context()
	var ae *api.APIError
	if _, err := admin.Deploy(ctx); !errors.As(err, &ae) || ae.Code != http.StatusNotFound {
		t.Fatalf("no deploy yet: %v, want 404", err)
	}
	if _, err := admin.StartDeploy(ctx, api.DeployRequest{Image: "lab9", All: true}); !errors.As(err, &ae) || ae.Code != http.StatusNotFound {
		t.Fatalf("an unknown image: %v, want 404", err)
	}
	if _, err := admin.StartDeploy(ctx, api.DeployRequest{Image: "lab1", Group: "row9"}); !errors.As(err, &ae) || ae.Code != http.StatusNotFound || !strings.Contains(ae.Msg, "row1, row2") {
		t.Fatalf("an unknown group: %v, want 404 naming the groups", err)
	}
	req := api.DeployRequest{Image: "lab1", All: true, Wave: 3, WaveTimeout: 1, WakeTries: 3}
	d, err := admin.StartDeploy(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Machines) != 9 || d.Wave != 3 || d.Attached {
		t.Fatalf("started: %+v", d)
	}
	// The same request follows it; another one is refused.
	if d2, err := admin.StartDeploy(ctx, req); err != nil || !d2.Attached || d2.ID != d.ID {
		t.Fatalf("the same deploy again: %+v, %v", d2, err)
	}
	if _, err := admin.StartDeploy(ctx, api.DeployRequest{Image: "lab1", Group: "row1"}); !errors.As(err, &ae) || ae.Code != http.StatusConflict {
		t.Fatalf("another deploy while one runs: %v, want 409", err)
	}
	waitDeploy(t, admin, 20*time.Second, "3 machines done", func(d *api.Deploy) bool { return d.Counts.Done >= 3 })
	// Marked for a clone with the image.
	db, _ := hosts.Open(dir)
	if id, _ := db.Lookup(mustMAC(t, dead)); id.NextBoot != hosts.BootClone || id.Image != "lab1" {
		t.Fatalf("the dead machine is not marked: %+v", id)
	}

	// A restart of the print server in the middle.
	stop()
	if b, err := os.ReadFile(filepath.Join(dir, deploy.File)); err != nil || !strings.Contains(string(b), `"running"`) {
		t.Fatalf("deploy.json: %v\n%s", err, b)
	}
	srv, admin, _ := start()
	end := waitDeploy(t, admin, 30*time.Second, "the end", func(d *api.Deploy) bool { return d.Over() })

	if end.State != api.DeployFinished || end.Counts.Done != 8 || end.Counts.NeverBooted != 1 {
		t.Fatalf("the end: %+v", end.Counts)
	}
	type iv struct{ from, to time.Time }
	var ivs []iv
	for _, m := range end.Machines {
		if m.MAC == dead {
			if m.State != api.MachineNeverBooted || m.Woken != 3 || lab.woken(dead) != 3 {
				t.Errorf("the dead machine: %+v, %d wakes sent; want never booted after 3", m, lab.woken(dead))
			}
			ivs = append(ivs, iv{m.FirstWoken, m.Ended})
			continue
		}
		if m.State != api.MachineDone || m.Woken != 1 || lab.woken(m.MAC) != 1 {
			t.Errorf("%s: %+v, %d wakes sent; want done after one", m.Hostname, m, lab.woken(m.MAC))
		}
		if id, _ := db.Lookup(mustMAC(t, m.MAC)); id.NextBoot != hosts.BootLocal {
			t.Errorf("%s still marked %s after done", m.Hostname, id.NextBoot)
		}
		ivs = append(ivs, iv{m.FirstWoken, m.Booted})
	}
	for _, a := range ivs {
		n := 0
		for _, b := range ivs {
			if !a.from.Before(b.from) && a.from.Before(b.to) {
				n++
			}
		}
		if n > 3 {
			t.Errorf("%d machines woken but not booted at %s", n, a.from)
		}
	}
	if ls := srv.Status(); ls.Deploy == nil || ls.Deploy.Counts.Done != 8 || ls.Deploy.Machines != nil {
		t.Errorf("the lab status's deploy: %+v", ls.Deploy)
	}
	if _, err := admin.CancelDeploy(ctx); !errors.As(err, &ae) || ae.Code != http.StatusConflict {
		t.Errorf("cancelling an ended deploy: %v, want 409", err)
	}
}

// TestDeployCancelAndAt: a deploy for later does nothing until then;
// cancelled, its machines are not marked, and a new one may start.
func TestDeployCancelAndAt(t *testing.T) {
	dir, lab, start := startDeployLab(t, 4)
	_, admin, _ := start()
	ctx := t.Context()
	d, err := admin.StartDeploy(ctx, api.DeployRequest{Image: "lab1", Group: "row2", At: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if d.State != api.DeployScheduled || len(d.Machines) != 2 || d.Machines[0].Hostname != "ws03" {
		t.Fatalf("scheduled: %+v", d)
	}
	time.Sleep(time.Second)
	db, _ := hosts.Open(dir)
	for _, id := range db.List() {
		if id.NextBoot != hosts.BootLocal || lab.woken(id.MAC) != 0 {
			t.Fatalf("before its time, %s is marked %s or woken", id.Hostname, id.NextBoot)
		}
	}
	c, err := admin.CancelDeploy(ctx)
	if err != nil || c.State != api.DeployCancelled || c.Counts.Cancelled != 2 {
		t.Fatalf("cancel: %+v, %v", c, err)
	}
	// Wake the two of row1, then a deploy of them starts at once.
	if res, err := admin.Wake(ctx, api.WakeRequest{Group: "row1"}); err != nil || res.Woken != 2 || res.Broadcast != "10.1.0.255:9" {
		t.Fatalf("wake: %+v, %v", res, err)
	}
	if _, err := admin.Wake(ctx, api.WakeRequest{All: true, MACs: []string{"52:54:00:00:01:01"}}); err == nil {
		t.Fatal("a wake of all and MACs at once")
	}
	if res, err := admin.Wake(ctx, api.WakeRequest{MACs: []string{"02:00:00:00:00:99"}}); err != nil || res.Woken != 1 {
		t.Fatalf("a wake of a machine not in the table: %+v, %v", res, err)
	}
	// A deploy of ws03, cancelled before, starts at once.
	d, err = admin.StartDeploy(ctx, api.DeployRequest{Image: "lab1", MACs: []string{"52:54:00:00:01:03"}, WaveTimeout: 1})
	if err != nil || d.State != api.DeployRunning || d.Counts.Woken != 1 {
		t.Fatalf("a deploy after a cancelled one: %+v, %v", d, err)
	}
	end := waitDeploy(t, admin, 20*time.Second, "the end", func(d *api.Deploy) bool { return d.Over() })
	if end.Counts.Done != 1 || end.Machines[0].Woken != 1 {
		t.Fatalf("the end: %+v", end)
	}
}

// TestDeployNeedsAdminKey: wake, deploy and cancel are refused without the
// admin key, and with the workstation keys (the lab key, the public
// key) in its place; the deploy's status is not secret.
func TestDeployNeedsAdminKey(t *testing.T) {
	dir, lab, start := startDeployLab(t, 2)
	srv, admin, _ := start()
	st, _ := store.Open(dir)
	exported := filepath.Join(t.TempDir(), "keys")
	if _, err := st.ExportKeys(exported); err != nil {
		t.Fatal(err)
	}
	ws, err := keys.ReadWorkstation(exported)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for name, auth := range map[string]func(*http.Request, []byte) error{
		"no credential":         nil,
		"signed with lab.key":   api.AdminAuth(ws.LabKey),
		"signed with image.pub": api.AdminAuth(ws.PublicKey),
	} {
		c := api.NewClient(srv.Lab().HTTPAddr)
		c.Auth = auth
		var ae *api.APIError
		if _, err := c.Wake(ctx, api.WakeRequest{All: true}); !errors.As(err, &ae) || ae.Code != http.StatusUnauthorized {
			t.Errorf("%s: wake: %v, want 401", name, err)
		}
		if _, err := c.StartDeploy(ctx, api.DeployRequest{Image: "lab1", All: true}); !errors.As(err, &ae) || ae.Code != http.StatusUnauthorized {
			t.Errorf("%s: deploy: %v, want 401", name, err)
		}
		if _, err := c.CancelDeploy(ctx); !errors.As(err, &ae) || ae.Code != http.StatusUnauthorized {
			t.Errorf("%s: cancel: %v, want 401", name, err)
		}
	}
	if n := len(lab.wakes); n != 0 {
		t.Fatalf("%d machines woken by refused requests", n)
	}
	if _, err := os.Stat(filepath.Join(dir, deploy.File)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused deploy wrote %s (%v)", deploy.File, err)
	}
	if _, err := admin.StartDeploy(ctx, api.DeployRequest{Image: "lab1", All: true, At: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.NewClient(srv.Lab().HTTPAddr).Deploy(ctx); err != nil {
		t.Fatalf("the deploy's status without a key: %v", err)
	}
}

func mustMAC(t *testing.T, s string) net.HardwareAddr {
	t.Helper()
	m, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestDeployReportWhileStopping: a machine's done report that the print
// server takes in while it stops (the request under way when the stop
// came) is in the deploy task it saves: after the restart the machine is
// done, not cloning until the stall timeout. TestDeployNetns met it: a
// clone that ended during the restart left its deploy running for good.
func TestDeployReportWhileStopping(t *testing.T) {
	const mac = "52:54:00:00:01:01"
	_, lab, start := startDeployLab(t, 1, mac) // "dead": the test reports for it
	srv, admin, stop := start()
	if _, err := admin.StartDeploy(t.Context(), api.DeployRequest{Image: "lab1", All: true, Wave: 1, WaveTimeout: 60}); err != nil {
		t.Fatal(err)
	}
	lab.report(mac, "identify", api.StateRunning)
	waitDeploy(t, admin, 10*time.Second, "the machine cloning", func(d *api.Deploy) bool { return d.Counts.Cloning == 1 })

	// The done report's request is sent up to its body; the print server
	// is told to stop; then the body follows.
	body, _ := json.Marshal(api.Report{Step: "done", State: api.StateDone, Time: time.Now()})
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", "http://"+srv.Lab().HTTPAddr+api.ReportPath(mac), pr)
	req.ContentLength = int64(len(body))
	req.Header.Set("Content-Type", "application/json")
	answer := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
				err = fmt.Errorf("status %s", resp.Status)
			}
		}
		answer <- err
	}()
	time.Sleep(300 * time.Millisecond) // the headers read, the handler waiting for the body
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	time.Sleep(300 * time.Millisecond) // the print server stopping
	pw.Write(body)
	pw.Close()
	if err := <-answer; err != nil {
		t.Fatalf("the done report while stopping: %v", err)
	}
	<-stopped

	_, admin, _ = start()
	waitDeploy(t, admin, 5*time.Second, "after the restart, the deploy finished with the machine done", func(d *api.Deploy) bool {
		return d.State == api.DeployFinished && d.Counts.Done == 1
	})
}

// TestUnknownImage: a workstation that asks for an image the print server
// does not have is told which it has, and not where the store is.
func TestUnknownImage(t *testing.T) {
	dir, _, start := startDeployLab(t, 1)
	srv, _, _ := start()
	resp, err := http.Get("http://" + srv.Lab().HTTPAddr + api.PathImages + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(b), `no image "nope"`) || !strings.Contains(string(b), "it has lab1") || strings.Contains(string(b), dir) {
		t.Fatalf("GET of an unknown image: %s %q", resp.Status, b)
	}
}
