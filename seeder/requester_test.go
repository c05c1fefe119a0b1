package seeder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/gossip"
	"github.com/labseed/labseed/hosts"
	"github.com/labseed/labseed/internal/neigh"
	"github.com/labseed/labseed/internal/syncbuf"
	"github.com/labseed/labseed/lifecycle"
	"github.com/labseed/labseed/store"
)

// fakeNeighbours makes every request look as if it came from where peer
// says (the print server's kernel is asked in TestNeighbourRuleNetns of
// cmd/labseed; here the rule itself is tested).
type fakeNeighbours struct{ peer atomic.Pointer[neigh.Peer] }

func (f *fakeNeighbours) set(k neigh.Kind, mac string) {
	p := neigh.Peer{Kind: k}
	if mac != "" {
		p.MAC, _ = net.ParseMAC(mac)
	}
	f.peer.Store(&p)
}

func (f *fakeNeighbours) lookup(netip.Addr) (neigh.Peer, error) { return *f.peer.Load(), nil }

// startTableServer runs a print server with the hosts table in dir, its
// requesters' whereabouts told by fn, and its log in log.
func startTableServer(t *testing.T, dir string, fn *fakeNeighbours, log *syncbuf.Buffer) *Server {
	t.Helper()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := st.LabKey()
	db, err := hosts.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := LocalConfig()
	cfg.Store, cfg.LabKey, cfg.Hosts, cfg.Neighbours = st, key, db, fn.lookup
	cfg.Logger = slog.New(slog.NewTextHandler(log, nil))
	srv := runServer(t, cfg)
	return srv
}

// TestWhoAmIOwnMACOnly is finding 2 of issue 19 as an attack: a LAN host
// (MAC 02:00:00:00:00:66) asks "who am I" with a victim's MAC to get its
// hooks, templates and bootloader command, and sends "done" and "failed"
// reports for the victim. Each is refused; its own identity and reports go
// through, and a routed request gets the identity whose table address is
// its own.
func TestWhoAmIOwnMACOnly(t *testing.T) {
	dir := t.TempDir()
	const victim, attacker = "52:54:00:00:00:01", "02:00:00:00:00:66"
	os.WriteFile(filepath.Join(dir, hosts.HostsFile), []byte("mac,hostname,ip,next_boot\n"+victim+",lab1-ws01,127.0.0.1,clone\n"), 0o644)
	os.WriteFile(filepath.Join(dir, hosts.SettingsFile), []byte("enroll_name = lab1-ws%02d\nenroll_range = 10.1.0.100-10.1.0.199\n"), 0o644)
	var fn fakeNeighbours
	var log syncbuf.Buffer
	srv := startTableServer(t, dir, &fn, &log)
	c := api.NewClient(srv.Lab().HTTPAddr)
	ctx := t.Context()
	code := func(err error) int {
		var ae *api.APIError
		if errors.As(err, &ae) {
			return ae.Code
		}
		if err != nil {
			t.Fatal(err)
		}
		return 200
	}

	fn.set(neigh.OnLink, attacker)
	if _, err := whoami(srv, c, []string{victim}); code(err) != 403 {
		t.Errorf("who am I for the victim from the attacker: %v, want 403", err)
	}
	id, err := whoami(srv, c, []string{victim, attacker})
	if err != nil || id.MAC != attacker || id.Hostname == "lab1-ws01" {
		t.Errorf("who am I for the victim and the attacker: %+v, %v; want the attacker's own (enrolled)", id, err)
	}
	for _, st := range []string{api.StateFailed, api.StateDone} {
		if err := c.Report(ctx, victim, api.Report{Step: "done", State: st, Error: "owned", Time: time.Now()}); code(err) != 403 {
			t.Errorf("a %s report for the victim from the attacker: %v, want 403", st, err)
		}
	}
	mac, _ := hosts.ParseMAC(victim)
	if r, _ := srv.Machines().Get(mac); len(r.Reports) != 0 {
		t.Errorf("the victim has reports: %+v", r.Reports)
	}
	if ids, _ := srv.cfg.Hosts.Identities(); ids[0].NextBoot != hosts.BootClone {
		t.Error("the attacker's done report took the victim off its clone")
	}
	if err := c.Report(ctx, attacker, api.Report{Step: "disk", State: api.StateRunning, Time: time.Now()}); err != nil {
		t.Errorf("the attacker's own report: %v", err)
	}
	fn.set(neigh.OnLink, "")
	if _, err := whoami(srv, c, []string{victim}); code(err) != 503 {
		t.Errorf("an unresolved neighbour: %v, want 503 (try again)", err)
	}

	// The victim itself.
	fn.set(neigh.OnLink, victim)
	if id, err := whoami(srv, c, []string{"02:00:00:00:00:99", victim}); err != nil || id.Hostname != "lab1-ws01" {
		t.Errorf("the victim's own who am I: %+v, %v", id, err)
	}
	if err := c.Report(ctx, victim, api.Report{Step: "done", State: api.StateDone, Time: time.Now()}); err != nil {
		t.Errorf("the victim's own report: %v", err)
	}

	// Through a router: the table's address decides (the test's requests
	// come from 127.0.0.1, lab1-ws01's address in the table).
	fn.set(neigh.Routed, "")
	if id, err := whoami(srv, c, []string{victim}); err != nil || id.Hostname != "lab1-ws01" {
		t.Errorf("routed, from the table's address: %+v, %v", id, err)
	}
	if _, err := whoami(srv, c, []string{attacker}); code(err) != 403 {
		t.Errorf("routed, from another address: %v, want 403", err)
	}
	// The print server itself may ask anything.
	fn.set(neigh.Local, "")
	if _, err := whoami(srv, c, []string{victim}); err != nil {
		t.Errorf("from the print server itself: %v", err)
	}
	if strings.Count(log.String(), "workstation request refused") == 0 {
		t.Errorf("refusals not logged:\n%s", log.String())
	}
}

// TestStrangerReportFlood: 30 000 reports (3000 without LABSEED_LONG) for
// made-up MACs (from the print server itself, which may report for any),
// each with a 4000-byte error full of escape sequences. The reports kept stay within the bound, the log
// gets a bounded line per MAC for at most Limiter.Keys MACs a minute,
// none with an escape sequence, and the heap does not grow with them
// (before: +194 MiB RSS and a 123 MB log).
func TestStrangerReportFlood(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, hosts.HostsFile), []byte("mac,hostname,ip\n52:54:00:00:00:01,lab1-ws01,10.1.0.101\n"), 0o644)
	var fn fakeNeighbours
	fn.set(neigh.Local, "")
	var log syncbuf.Buffer
	srv := startTableServer(t, dir, &fn, &log)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	n := 3000
	if os.Getenv("LABSEED_LONG") != "" {
		n = 30000
	}
	evil := strings.Repeat("\x1b]0;owned\x07\x1b[2J", 4000/14)
	body, _ := json.Marshal(api.Report{Step: "disk", State: api.StateFailed, Error: evil, Time: time.Now()})
	url := "http://" + srv.Lab().HTTPAddr + api.PathHosts + "/%s/report"
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				mac := fmt.Sprintf("02:%02x:%02x:%02x:00:00", i>>16&0xff, i>>8&0xff, i&0xff)
				resp, err := http.Post(fmt.Sprintf(url, mac), "application/json", bytes.NewReader(body))
				if err != nil || resp.StatusCode != http.StatusNoContent {
					if failed.Add(1) == 1 {
						msg := ""
						if resp != nil {
							b, _ := io.ReadAll(resp.Body)
							msg = resp.Status + " " + string(b)
						}
						t.Errorf("report %d: %v %s", i, err, msg)
					}
					if resp != nil {
						resp.Body.Close()
					}
					continue
				}
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d reports failed", f)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapInuse) - int64(before.HeapInuse)
	kept := 0
	for i := range n {
		mac, _ := hosts.ParseMAC(fmt.Sprintf("02:%02x:%02x:%02x:00:00", i>>16&0xff, i>>8&0xff, i&0xff))
		if r, _ := srv.Machines().Get(mac); len(r.Reports) > 0 {
			kept++
			if rs := r.Reports; len(rs) > lifecycle.DefaultReportsPerUnknown || strings.ContainsAny(rs[0].Error, "\x1b\x07") {
				t.Fatalf("a record kept %d reports, or a report its escape sequences: %q", len(rs), rs[0].Error[:40])
			}
		}
	}
	logged := log.String()
	lines := strings.Count(logged, "\n")
	t.Logf("%d reports: %d MACs kept, %d log lines (%d bytes), heap %+d KiB", n, kept, lines, len(logged), grown>>10)
	if kept > lifecycle.DefaultMaxUnknown {
		t.Errorf("records of %d made-up MACs kept, bound %d", kept, lifecycle.DefaultMaxUnknown)
	}
	if lines > 1100 || len(logged) > 2<<20 {
		t.Errorf("the log got %d lines, %d bytes", lines, len(logged))
	}
	if strings.ContainsAny(logged, "\x1b\x07") {
		t.Error("an escape sequence reached the log")
	}
	if grown > 32<<20 {
		t.Errorf("the heap grew by %d MiB", grown>>20)
	}
}

// TestEscapesNeverReachStatus: a lab member whose gossip name and status
// carry terminal escape sequences (anyone with the public lab key can
// join), and a boot event detail with some: the lab status the print
// server answers has none.
func TestEscapesNeverReachStatus(t *testing.T) {
	dir := t.TempDir()
	var fn fakeNeighbours
	fn.set(neigh.Local, "")
	var log syncbuf.Buffer
	srv := startTableServer(t, dir, &fn, &log)
	key, _ := srv.cfg.Store.LabKey()
	evil := "\x1b]0;pwned\x07\x1b[2J\x1b[31mws\u009b31m\u202e"
	n, err := gossip.New(gossip.Config{Name: evil, BindAddr: "127.0.0.1", BindPort: -1, AdvertiseAddr: "127.0.0.1",
		Key: key, Local: true, Seeds: []string{srv.Lab().GossipAddr}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	n.SetStatus(gossip.Status{Role: gossip.RolePeer, Phase: gossip.PhaseFailed, Image: evil, TorrentAddr: evil, Err: evil + strings.Repeat("x", 2000)})
	if err := n.Join(t.Context()); err != nil {
		t.Fatal(err)
	}
	fn.set(neigh.Local, "")
	c := api.NewClient(srv.Lab().HTTPAddr)
	c.Report(t.Context(), "02:00:00:00:00:01", api.Report{Step: evil, State: api.StateFailed, Error: evil, Time: time.Now()})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ls := srv.Status()
		if len(ls.Hosts) == 1 && ls.Hosts[0].Status.Error != "" {
			b := fmt.Sprintf("%+v", ls)
			if strings.ContainsAny(b, "\x1b\x07\u009b\u202e") {
				t.Fatalf("escape sequences in the status: %q", b)
			}
			if len(ls.Hosts[0].Status.Error) > maxError || !strings.Contains(ls.Hosts[0].Name, "ws") {
				t.Fatalf("status: %+v", ls.Hosts[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the member did not show: %+v", ls.Hosts)
		}
	}
	mac, _ := hosts.ParseMAC("02:00:00:00:00:01")
	if r, _ := srv.Machines().Get(mac); len(r.Reports) != 1 || strings.ContainsAny(r.Reports[0].Step+r.Reports[0].Error, "\x1b\x07") {
		t.Fatalf("report kept: %+v", r.Reports)
	}
}

// TestGossipOwnMACOnly: lab.key is public, so anyone can join the gossip;
// a member that names a MAC in its status shows in that machine's row only
// when the MAC is its own by the rule of "who am I" (here the neighbour
// table says every member is 52:54:00:00:00:01). A stranger claiming the
// victim's MAC fills no row, and its refusal is logged once.
func TestGossipOwnMACOnly(t *testing.T) {
	dir := t.TempDir()
	const own, victim = "52:54:00:00:00:01", "52:54:00:00:00:02"
	os.WriteFile(filepath.Join(dir, hosts.HostsFile), []byte("mac,hostname,ip\n"+own+",ws01,10.1.0.101\n"+victim+",ws02,10.1.0.102\n"), 0o644)
	var fn fakeNeighbours
	fn.set(neigh.OnLink, own)
	var log syncbuf.Buffer
	srv := startTableServer(t, dir, &fn, &log)
	st, _ := store.Open(dir)
	key, _ := st.LabKey()
	ctx := context.Background()
	for _, m := range []struct{ name, mac string }{{"ws01", own}, {"liar", victim}} {
		node, err := gossip.New(gossip.Config{Name: m.name, BindAddr: "127.0.0.1", BindPort: -1, Key: key, Local: true,
			Seeds: []string{srv.Lab().GossipAddr}})
		if err != nil {
			t.Fatal(err)
		}
		defer node.Close()
		node.SetStatus(gossip.Status{Phase: gossip.PhaseDownloading, Percent: 41.5, MAC: m.mac})
		if err := node.Join(ctx); err != nil {
			t.Fatal(err)
		}
	}
	hwOwn, _ := hosts.ParseMAC(own)
	hwVictim, _ := hosts.ParseMAC(victim)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if r, ok := srv.Machines().Get(hwOwn); ok && r.Agent != nil && r.Agent.Status.Percent == 41.5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the member's own MAC: its status did not reach its record")
		}
	}
	// Both members have gossiped for a while: the liar's status is in, and refused.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(log.String(), "member=127.0.0.1"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no refusal logged for the liar:\n%s", log.String())
		}
	}
	if r, ok := srv.Machines().Get(hwVictim); ok && r.Agent != nil {
		t.Fatalf("the victim's record shows the liar's status: %+v", r.Agent)
	}
	if n := strings.Count(log.String(), "is not its own"); n != 1 {
		t.Errorf("%d refusal lines, want 1 (once a minute per address)", n)
	}
}

// TestRoutedWithoutHostsTable: a print server with no hosts table refuses a
// routed sender's claim to a MAC (it has no table address to compare), and
// does not crash on it (trackAgents asks for every gossip member).
func TestRoutedWithoutHostsTable(t *testing.T) {
	var fn fakeNeighbours
	fn.set(neigh.Routed, "")
	s := &Server{cfg: Config{Neighbours: fn.lookup}}
	if _, err := s.macsFrom(netip.MustParseAddr("10.2.0.5"), []net.HardwareAddr{{0x52, 0x54, 0, 0, 0, 1}}); !errors.Is(err, errNotYours) {
		t.Fatalf("routed claim without a hosts table: %v, want errNotYours", err)
	}
}
