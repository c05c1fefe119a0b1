package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestHostsCommand drives "labseed hosts" against a running print server
// as a sysadmin would: import, list, mark, export, and a refused table.
func TestHostsCommand(t *testing.T) {
	l := newLab(t, 1<<20)
	table := filepath.Join(l.dir, "lab1.csv")
	os.WriteFile(table, []byte("mac,hostname,ip,printer_queue\n52:54:00:00:00:01,lab1-ws01,10.1.0.101,\n52:54:00:00:00:02,lab1-ws02,10.1.0.102,color\n"), 0o644)
	srv := []string{"--server", l.server, "--store", l.store}

	out, _ := labseed(t, true, append([]string{"hosts", "import", table}, srv...)...)
	if !strings.Contains(out, "the table has 2 hosts") {
		t.Fatalf("import said %q", out)
	}
	out, _ = labseed(t, true, append([]string{"hosts", "next-boot", "clone", "52-54-00-00-00-02"}, srv...)...)
	if !strings.Contains(out, "1 hosts will boot clone next") {
		t.Fatalf("next-boot said %q", out)
	}
	out, _ = labseed(t, true, "hosts", "list", "--server", l.server)
	if !regexp.MustCompile(`52:54:00:00:00:02\s+lab1-ws02\s+10\.1\.0\.102\s+clone`).MatchString(out) || !regexp.MustCompile(`lab1-ws01\s+10\.1\.0\.101\s+local`).MatchString(out) {
		t.Fatalf("list:\n%s", out)
	}
	out, _ = labseed(t, true, "status", "--server", l.server)
	if !regexp.MustCompile(`lab1-ws02\s+10\.1\.0\.102\s+clone`).MatchString(out) {
		t.Fatalf("status has no boot table:\n%s", out)
	}
	exported := filepath.Join(l.dir, "export.csv")
	labseed(t, true, append([]string{"hosts", "export", exported}, srv...)...)
	if b, _ := os.ReadFile(exported); !strings.Contains(string(b), "52:54:00:00:00:02,lab1-ws02,10.1.0.102,clone,color") {
		t.Fatalf("export:\n%s", b)
	}

	// A table with a duplicate address is refused whole, naming the line.
	os.WriteFile(table, []byte("mac,hostname,ip\n52:54:00:00:00:01,a,10.1.0.9\n52:54:00:00:00:03,b,10.1.0.9\n"), 0o644)
	_, errOut := labseed(t, false, append([]string{"hosts", "import", table}, srv...)...)
	if !strings.Contains(errOut, "line 3: address 10.1.0.9 is already a's") {
		t.Fatalf("bad import said %q", errOut)
	}
	// Without the lab key the server refuses changes.
	_, errOut = labseed(t, false, "hosts", "next-boot", "local", "--all", "--server", l.server, "--store", t.TempDir())
	if !strings.Contains(errOut, "no lab key") {
		t.Fatalf("no key said %q", errOut)
	}
	out, _ = labseed(t, true, append([]string{"hosts", "next-boot", "local", "--all"}, srv...)...)
	if !strings.Contains(out, "2 hosts will boot local next") {
		t.Fatalf("next-boot --all said %q", out)
	}
}
