package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/labseed/labseed/api"
)

// TestStatusNoEscapes: whatever answers as the print server (a rogue one,
// or a real one fed by a hostile lab member), "labseed status" and
// "labseed hosts list" print no terminal escape sequence and no line of
// unbounded length.
func TestStatusNoEscapes(t *testing.T) {
	evil := "\x1b]0;pwned\x07\x1b[2J\x1b[31m\u009b31m\u202ews\r\n" + strings.Repeat("x", 5000)
	ls := api.LabStatus{
		Server: "10.1.0.1:7480", Time: time.Now(), BootError: evil,
		Hosts: []api.HostStatus{{Name: evil, Addr: evil, State: evil, Phase: evil,
			Status: api.WorkstationStatus{Phase: evil, Image: evil, Error: evil}}},
		Boot: []api.BootHost{{MAC: evil, Hostname: evil, IP: evil, NextBoot: evil,
			Clone:  []api.Report{{Step: evil, State: evil, Error: evil}},
			Events: []api.BootEvent{{Kind: evil, Detail: evil, Time: time.Now()}}}},
	}
	var direct bytes.Buffer
	printStatus(&direct, &ls)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == api.PathHosts {
			json.NewEncoder(w).Encode(ls.Boot)
			return
		}
		json.NewEncoder(w).Encode(ls)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	status, _ := labseed(t, true, "status", "--server", addr)
	list, _ := labseed(t, true, "hosts", "list", "--server", addr)
	for name, out := range map[string]string{"printStatus": direct.String(), "labseed status": status, "labseed hosts list": list} {
		if strings.ContainsAny(out, "\x1b\x07\r\u009b\u202e") {
			t.Errorf("%s printed an escape sequence:\n%q", name, out)
		}
		for _, line := range strings.Split(out, "\n") {
			if len(line) > 4000 {
				t.Errorf("%s printed a line of %d bytes", name, len(line))
			}
		}
		if !strings.Contains(out, "ws") {
			t.Errorf("%s:\n%s", name, out)
		}
	}
}

// TestStatusTable: one row per machine, the hosts table's first, each with
// its stage, its agent's progress and the last thing heard of it; a
// workstation that is no machine's record gets a row of its own, a
// machine's agent none.
func TestStatusTable(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 9, 30, 0, 0, time.UTC)
	agent := api.HostStatus{Name: "lab1-ws02", Addr: "10.1.0.102:7946", State: api.MemberAlive, Phase: api.PhaseDownloading, MAC: "52:54:00:00:00:02",
		Status: api.WorkstationStatus{Phase: api.PhaseDownloading, Percent: 41.5, DownRate: 12_500_000, UpRate: 6_250_000, Peers: 3, ETA: 19}}
	ls := &api.LabStatus{Time: t0,
		Boot: []api.BootHost{
			{MAC: "52:54:00:00:00:01", Hostname: "lab1-ws01", IP: "10.1.0.101", NextBoot: "local", Stage: api.StageDone, Step: "done",
				Clone:  []api.Report{{Step: "done", State: "done", Time: t0.Add(-2 * time.Minute)}},
				Events: []api.BootEvent{{Time: t0.Add(-time.Minute), Kind: "ipxe-script", Detail: "iPXE script (bios)"}}},
			{MAC: "52:54:00:00:00:02", Hostname: "lab1-ws02", IP: "10.1.0.102", NextBoot: "clone", Stage: api.StageDownloading, Step: "fetch",
				Clone: []api.Report{{Step: "fetch", State: "running", Time: t0.Add(-14 * time.Second)}}, Agent: &agent},
			{MAC: "52:54:00:00:00:03", Hostname: "lab1-ws03", IP: "10.1.0.103", NextBoot: "clone", Stage: api.StageFailed, Step: "disk",
				Error: "2 disks: /dev/sda (4 GB), /dev/sdb (4 GB)"},
			{MAC: "52:54:00:00:00:04", Hostname: "lab1-ws04", IP: "10.1.0.104", NextBoot: "clone"},
			{MAC: "02:00:00:00:00:aa", Stage: api.StageBooted, Events: []api.BootEvent{{Time: t0.Add(-3 * time.Second), Kind: "proxy-offer", Detail: "OFFER arch 0"}}},
		},
		Hosts: []api.HostStatus{agent, {Name: "bench-7", Addr: "10.1.0.200:7946", State: api.MemberAlive, Phase: api.PhaseSeeding,
			Status: api.WorkstationStatus{Phase: api.PhaseSeeding, Percent: 100}}},
	}
	var b bytes.Buffer
	printStatus(&b, ls)
	out := b.String()
	t.Logf("labseed status:\n%s", out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1+6+2 {
		t.Fatalf("want a header, 6 machines and 2 summary lines:\n%s", out)
	}
	for _, re := range []string{
		`^MAC\s+HOST\s+IP\s+NEXT BOOT\s+STAGE\s+PCT\s+DOWN\s+UP\s+PEERS\s+ETA\s+LAST`,
		`52:54:00:00:00:01\s+lab1-ws01\s+10\.1\.0\.101\s+local\s+done\s+-\s+-\s+-\s+-\s+-\s+ipxe-script iPXE script \(bios\) \(1m0s ago\)`,
		`52:54:00:00:00:02\s+lab1-ws02\s+10\.1\.0\.102\s+clone\s+downloading\s+41\.5%\s+100\.0 Mbit/s\s+50\.0 Mbit/s\s+3\s+19s\s+clone fetch running \(14s ago\)`,
		`52:54:00:00:00:03\s+lab1-ws03\s+10\.1\.0\.103\s+clone\s+failed\s+.*disk failed: 2 disks: /dev/sda \(4 GB\), /dev/sdb \(4 GB\)`,
		`52:54:00:00:00:04\s+lab1-ws04\s+10\.1\.0\.104\s+clone\s+-\s+-`,
		`02:00:00:00:00:aa\s+-\s+-\s+-\s+booted\s+.*proxy-offer OFFER arch 0 \(3s ago\)`,
		`-\s+bench-7\s+10\.1\.0\.200\s+-\s+seeding\s+100\.0%`,
		`machines: 1 booted, 1 downloading, 1 done, 1 failed, 1 not heard of`,
	} {
		if !regexp.MustCompile(`(?m)` + re).MatchString(out) {
			t.Errorf("no line matches %s in:\n%s", re, out)
		}
	}
	if strings.Count(out, "lab1-ws02") != 1 {
		t.Errorf("the machine's agent got a row of its own:\n%s", out)
	}
}
