package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/labseed/labseed/api"
)

func TestParseAt(t *testing.T) {
	loc := time.FixedZone("lab", 3600)
	now := time.Date(2025, 3, 1, 21, 30, 0, 0, loc)
	for _, tc := range []struct{ in, want string }{
		{"22:00", "2025-03-01 22:00:00"},
		{"21:30", "2025-03-02 21:30:00"}, // now: the next one
		{"06:15", "2025-03-02 06:15:00"},
		{"2025-03-05 22:00", "2025-03-05 22:00:00"},
		{"2025-03-05T23:00:00Z", "2025-03-06 00:00:00"},
		{"tonight", ""},
		{"25:00", ""},
	} {
		got, err := parseAt(tc.in, now)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%q: %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got.In(loc).Format(time.DateTime) != tc.want {
			t.Errorf("%q: %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

// TestDeploySummary checks what the end of a deploy says of each machine,
// and the exit status.
func TestDeploySummary(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 22, 0, 0, 0, time.UTC)
	d := &api.Deploy{ID: "20250301-220000", Image: "lab1", State: api.DeployFinished, Wave: 10, Started: t0, Ended: t0.Add(14 * time.Minute),
		Counts: api.DeployCounts{Done: 1, Failed: 1, NeverBooted: 1},
		Machines: []api.DeployMachine{
			{MAC: "52:54:00:12:34:01", Hostname: "ws01", State: api.MachineDone, Woken: 1, FirstWoken: t0, Ended: t0.Add(9 * time.Minute)},
			{MAC: "52:54:00:12:34:17", Hostname: "ws17", State: api.MachineFailed, Woken: 1, Step: "disk", Error: "two fixed disks"},
			{MAC: "52:54:00:12:34:42", Hostname: "ws42", State: api.MachineNeverBooted, Woken: 3},
		}}
	var b bytes.Buffer
	printDeploySummary(&b, d, t0)
	for _, want := range []string{
		"finished in 14m0s: 1 of 3 machines done, 1 failed, 1 never booted",
		"ws01  done          in 9m0s from its first wake",
		"ws17  failed        step disk: two fixed disks",
		"ws42  never booted  woken 3 times, never heard of",
		"switched off at the wall", "Wake-on-LAN off in its firmware", "already running an operating system",
		"labseed hosts next-boot local",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the summary does not say %q:\n%s", want, b.String())
		}
	}
	if allDone(d) {
		t.Error("allDone with a machine failed")
	}
	d.Counts, d.Machines = api.DeployCounts{Done: 1}, d.Machines[:1]
	if !allDone(d) {
		t.Error("not allDone with every machine done")
	}
	line := deployLine(&api.Deploy{ID: "x", Image: "lab1", State: api.DeployRunning, Wave: 4, Started: t0,
		Counts: api.DeployCounts{Waiting: 5, Woken: 4, Booted: 1, Cloning: 2, Done: 12}}, t0.Add(90*time.Second))
	if want := "deploy x of lab1: running 1m30s: 5 waiting, 4 woken, 1 booted, 2 cloning, 12 done, 0 failed, 0 never booted (waves of 4)"; line != want {
		t.Errorf("deploy line\n got %s\nwant %s", line, want)
	}
	line = deployLine(&api.Deploy{ID: "x", Image: "lab1", State: api.DeployScheduled, At: t0, Counts: api.DeployCounts{Waiting: 24}}, t0.Add(-2*time.Hour))
	if !strings.Contains(line, "scheduled for") || !strings.Contains(line, "(in 2h0m0s), 24 machines") {
		t.Errorf("scheduled: %s", line)
	}
}

func TestDeployCommandErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no image", []string{"--all"}, "usage"},
		{"no machines", []string{"--image", "lab1"}, "usage"},
		{"two selections", []string{"--image", "lab1", "--all", "--group", "b104"}, "usage"},
		{"bad wave", []string{"--image", "lab1", "--all", "--wave", "0"}, "usage"},
		{"bad at", []string{"--image", "lab1", "--all", "--at", "soon", "--admin-key", "/nonexistent"}, "--at \"soon\""},
		{"no key", []string{"--image", "lab1", "--all", "--admin-key", "/nonexistent/admin.key"}, "no admin key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := runCommand(t.Context(), deployCmd, tc.args)
			if tc.want == "usage" {
				if !errors.Is(err, errUsage) {
					t.Fatalf("error %v, want the usage", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
	if err := runCommand(t.Context(), wakeCmd, []string{"--all", "52:54:00:12:34:56"}); !errors.Is(err, errUsage) {
		t.Fatalf("wake with --all and a MAC: %v", err)
	}
}
