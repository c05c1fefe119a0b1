package seeder

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/gossip"
	"github.com/labseed/labseed/hosts"
	"github.com/labseed/labseed/lifecycle"
	"github.com/labseed/labseed/pxe"
	"github.com/labseed/labseed/store"
)

// TestMachineRecord follows one machine through a clone as the print
// server sees it: its network boot, its who-am-I, its reports and its
// agent's gossip end up in one record, which the lab status shows and
// Machines hands out.
func TestMachineRecord(t *testing.T) {
	dir := t.TempDir()
	const mac = "52:54:00:00:00:01"
	os.WriteFile(filepath.Join(dir, hosts.HostsFile), []byte("mac,hostname,ip,next_boot\n"+mac+",ws01,10.1.0.101,clone\n"), 0o644)
	cfg := pxe.DefaultConfig()
	cfg.Mode, cfg.ProxyAddr = pxe.ModeOff, "-"
	srv, c := startServer(t, dir, &cfg)
	ctx := context.Background()
	hw, _ := hosts.ParseMAC(mac)
	record := func() api.BootHost {
		t.Helper()
		ls, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range ls.Boot {
			if b.MAC == mac {
				return b
			}
		}
		t.Fatalf("no record of %s in %+v", mac, ls.Boot)
		return api.BootHost{}
	}
	script := func() {
		t.Helper()
		resp, err := http.Get("http://" + srv.Lab().HTTPAddr + "/pxe/ipxe/bios/52-54-00-00-00-01")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if b := record(); b.Stage != "" || b.Hostname != "ws01" {
		t.Fatalf("before anything: %+v", b)
	}
	woken := time.Now()
	script()
	if b := record(); b.Stage != api.StageBooted || len(b.Events) != 1 || b.Events[0].Kind != string(pxe.EventScript) || b.Started.IsZero() {
		t.Fatalf("after the boot's script: %+v", b)
	}
	if r, ok := srv.Machines().Get(hw); !ok || !r.BootedSince(woken) {
		t.Fatalf("Machines: %+v, %v", r, ok)
	}
	if _, err := whoami(srv, c, []string{mac}); err != nil {
		t.Fatal(err)
	}
	if b := record(); b.Stage != api.StageIdentified {
		t.Fatalf("after who am I: %+v", b)
	}
	if err := c.Report(ctx, mac, api.Report{Step: "fetch", State: api.StateRunning, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}

	// The agent gossips its progress, naming its machine.
	st, _ := store.Open(dir)
	key, _ := st.LabKey()
	node, err := gossip.New(gossip.Config{Name: "ws01", BindAddr: "127.0.0.1", BindPort: -1, Key: key, Local: true,
		Seeds: []string{srv.Lab().GossipAddr}})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	node.SetStatus(gossip.Status{Phase: gossip.PhaseDownloading, Percent: 41.5, MAC: mac})
	if err := node.Join(ctx); err != nil {
		t.Fatal(err)
	}
	var b api.BootHost
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if b = record(); b.Agent != nil && b.Agent.Status.Percent == 41.5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent's gossip did not reach the record: %+v", b)
		}
	}
	if b.Stage != api.StageDownloading || b.Agent.Name != "ws01" || b.Agent.MAC != mac {
		t.Fatalf("downloading: %+v, agent %+v", b, b.Agent)
	}

	changed := srv.Machines().Changed()
	before := time.Now()
	if err := c.Report(ctx, mac, api.Report{Step: "done", State: api.StateDone, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("Changed did not announce the done report")
	}
	if rs := srv.Machines().Since(before); len(rs) != 1 || rs[0].Stage != lifecycle.StageDone {
		t.Fatalf("Since: %+v", rs)
	}
	// The new system boots its disk: the machine stays done.
	script()
	if b := record(); b.Stage != api.StageDone || b.NextBoot != hosts.BootLocal || len(b.Clone) != 2 || len(b.Events) != 2 {
		t.Fatalf("after the boot of the new system: %+v", b)
	}
}
