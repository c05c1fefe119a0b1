package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/labseed/labseed/api"
)

// TestStatusSyncColumns: a lab where a workstation syncs shows the chunks
// found locally, fetched and the paths removed, and the clone's detail; a
// lab of full clones does not have the columns.
func TestStatusSyncColumns(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 9, 30, 0, 0, time.UTC)
	ws1 := api.HostStatus{Name: "ws01", Addr: "10.1.0.11:7946", State: api.MemberAlive, Phase: api.PhaseSeeding, MAC: "52:54:00:00:00:01",
		Status: api.WorkstationStatus{Phase: api.PhaseSeeding, Chunks: 212, ChunksTotal: 212, Sync: true, ChunksLocal: 205, ChunksFetched: 7, FilesRemoved: 1433}}
	ls := &api.LabStatus{Time: t0,
		Boot: []api.BootHost{{MAC: "52:54:00:00:00:01", Hostname: "ws01", IP: "10.1.0.11", NextBoot: api.BootClone, Stage: api.StageDownloading, Agent: &ws1,
			Clone: []api.Report{
				{Step: "identify", State: api.StateRunning, Time: t0.Add(-9 * time.Second)},
				{Step: "disk", State: api.StateRunning, Time: t0.Add(-8 * time.Second), Detail: "sync: the disk holds lab1 v1"},
				{Step: "fetch", State: api.StateRunning, Time: t0.Add(-5 * time.Second)}}}},
		Hosts: []api.HostStatus{ws1,
			{Name: "ws02", Addr: "10.1.0.12:7946", State: api.MemberAlive, Phase: api.PhaseDownloading, Status: api.WorkstationStatus{Phase: api.PhaseDownloading,
				Chunks: 50, ChunksTotal: 212, ChunksFetched: 50}}},
	}
	var b bytes.Buffer
	printStatus(&b, ls)
	lines := strings.Split(b.String(), "\n")
	// MAC HOST IP NEXT BOOT STAGE PCT LOCAL FETCHED REMOVED ...
	if f := strings.Fields(lines[0]); f[7] != "LOCAL" || f[8] != "FETCHED" || f[9] != "REMOVED" {
		t.Errorf("header %q", lines[0])
	}
	if f := strings.Fields(lines[1]); f[6] != "205" || f[7] != "7" || f[8] != "1433" || !strings.Contains(lines[1], "clone fetch running: sync: the disk holds lab1 v1") {
		t.Errorf("the syncing workstation: %q", lines[1])
	}
	if f := strings.Fields(lines[2]); f[6] != "-" || f[7] != "50" || f[8] != "-" {
		t.Errorf("the workstation cloning in full: %q", lines[2])
	}
	ls.Boot, ls.Hosts = nil, ls.Hosts[1:]
	b.Reset()
	printStatus(&b, ls)
	if strings.Contains(b.String(), "LOCAL") {
		t.Errorf("a lab of full clones shows the sync columns:\n%s", b.String())
	}
}
