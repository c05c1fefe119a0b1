package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestSmoke runs `bench/lab.sh --smoke` (a lab of 3 workstations at
// 100mbit, the 24 MiB generated image, udpcast and labseed) so that the
// harness keeps working. It needs root and runs in CI (CI set) or when
// LABSEED_LAB_SMOKE=1; it takes about a minute.
func TestSmoke(t *testing.T) {
	if os.Getenv("CI") == "" && os.Getenv("LABSEED_LAB_SMOKE") == "" {
		t.Skip("the lab smoke run builds network namespaces; set LABSEED_LAB_SMOKE=1 to run it (CI does)")
	}
	if os.Geteuid() != 0 {
		t.Skip("the lab smoke run needs root")
	}
	if testing.Short() {
		t.Skip("-short")
	}
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join("..", "lab.sh"), "--smoke", "--out", out)
	// On timeout, SIGTERM lets lab.sh tear its lab down; SIGKILL only if it hangs.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = time.Minute
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	start := time.Now()
	err := cmd.Run()
	t.Logf("bench/lab.sh --smoke: %.0f s\n%s", time.Since(start).Seconds(), log.String())
	if err != nil {
		t.Fatalf("bench/lab.sh --smoke: %v", err)
	}
	f, err := os.Open(filepath.Join(out, "results.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.Comma = '\t'
	rows, err := r.ReadAll()
	if err != nil {
		t.Fatalf("results.tsv: %v", err)
	}
	if len(rows) < 2 {
		t.Fatalf("results.tsv has no results")
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	seen := map[string]bool{}
	for _, row := range rows[1:] {
		m, status := row[col["method"]], row[col["status"]]
		seen[m] = true
		if status != "ok" && status != "n/a" {
			t.Errorf("%s: status %s, failures %s", m, status, row[col["failures"]])
		}
	}
	if !seen["udpcast"] {
		t.Errorf("results.tsv has no udpcast row")
	}
	for _, name := range []string{"table.md", "per-workstation.png", "ratio-vs-n.png", "command.txt", "workstations.tsv"} {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Errorf("output: %v", err)
		}
	}
}
