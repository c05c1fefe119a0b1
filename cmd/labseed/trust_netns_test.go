//go:build linux

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/internal/netlab"
)

// TestNeighbourRuleNetns is finding 2 of issue 19 on real kernels: a print
// server ("labseed serve") and two machines on one switch, each in a
// network namespace of its own. The victim (MAC 52:54:00:81:00:11) is in
// the hosts table, marked for a clone; the attacker (02:00:00:81:00:66)
// holds the workstation keys, as anyone may. The attacker's "who am I" for
// the victim's MAC and its reports for it are refused (the server's kernel
// resolved the attacker's address to the attacker's MAC); listing both
// MACs gets the attacker nothing but its own (unknown: 404). The victim
// gets its identity and its "done" report takes it off the clone.
//
// Namespaces lstrust-*-PID on 10.81.0.0/24, removed by name.
func TestNeighbourRuleNetns(t *testing.T) {
	needLong(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	for _, bin := range []string{"ip", "curl"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (apt-get install iproute2 curl)", bin)
		}
	}
	id := strconv.Itoa(os.Getpid())
	nsSw, nsSrv, nsVic, nsAtt := "lstrust-sw-"+id, "lstrust-srv-"+id, "lstrust-vic-"+id, "lstrust-att-"+id
	const victim, attacker = "52:54:00:81:00:11", "02:00:00:81:00:66"
	dir := t.TempDir()
	st := filepath.Join(dir, "store")
	os.MkdirAll(st, 0o755)
	os.WriteFile(filepath.Join(st, "hosts.csv"), []byte("mac,hostname,ip,next_boot\n"+victim+",lab-ws11,10.81.0.11,clone\n"), 0o644)
	os.WriteFile(filepath.Join(st, "lab.conf"), []byte("enroll = off\n"), 0o644)
	netlab.Build(t, nsSw,
		netlab.Host{NS: nsSrv, Addr: "10.81.0.1/24"},
		netlab.Host{NS: nsVic, Addr: "10.81.0.11/24", MAC: victim},
		netlab.Host{NS: nsAtt, Addr: "10.81.0.66/24", MAC: attacker})
	serveLog := filepath.Join(dir, "serve.log")
	netlab.StartLogged(t, serveLog, "ip", "netns", "exec", nsSrv, labseedBin, "serve", "--store", st, "--listen", "10.81.0.1", "--local")
	if !netlab.WaitFile(serveLog, "msg=serving", 20*time.Second) {
		b, _ := os.ReadFile(serveLog)
		t.Fatalf("labseed serve did not start:\n%s", b)
	}
	// post sends body to path from ns; it returns the HTTP status and body.
	post := func(ns, path, body string) (int, string) {
		t.Helper()
		out, err := exec.Command("ip", "netns", "exec", ns, "curl", "-s", "-m", "10", "-w", "\n%{http_code}",
			"-H", "Content-Type: application/json", "-d", body, "http://10.81.0.1:7480"+path).Output()
		if err != nil {
			t.Fatalf("curl from %s: %v: %s", ns, err, out)
		}
		s := strings.TrimSpace(string(out))
		i := strings.LastIndex(s, "\n")
		code, _ := strconv.Atoi(s[i+1:])
		answer := s[:max(i, 0)]
		// A who-am-I answer is signed: show the identity inside.
		var sid api.SignedIdentity
		if json.Unmarshal([]byte(answer), &sid) == nil && sid.Identity != nil {
			answer = string(sid.Identity)
		}
		return code, answer
	}
	report := `{"step":"done","state":"done","time":"2025-01-01T00:00:00Z"}`

	if code, body := post(nsAtt, "/api/v1/whoami", `{"macs":["`+victim+`"]}`); code != 403 || strings.Contains(body, "lab-ws11") {
		t.Errorf("the attacker's who am I for the victim: %d %s, want 403", code, body)
	}
	if code, body := post(nsAtt, "/api/v1/whoami", `{"macs":["`+attacker+`","`+victim+`"]}`); code != 404 || strings.Contains(body, "lab-ws11") {
		t.Errorf("the attacker's who am I for itself and the victim: %d %s, want 404 (itself, not in the table)", code, body)
	}
	if code, body := post(nsAtt, "/api/v1/hosts/"+victim+"/report", report); code != 403 {
		t.Errorf("the attacker's done report for the victim: %d %s, want 403", code, body)
	}
	list := func() string {
		out, err := exec.Command("ip", "netns", "exec", nsSrv, labseedBin, "hosts", "list", "--server", "10.81.0.1").CombinedOutput()
		if err != nil {
			t.Fatalf("hosts list: %v\n%s", err, out)
		}
		return string(out)
	}
	if l := list(); !strings.Contains(l, "clone") || strings.Contains(l, "done") {
		t.Errorf("after the attack the victim is not marked for clone, or has the attacker's report:\n%s", l)
	}
	if code, body := post(nsVic, "/api/v1/whoami", `{"macs":["`+victim+`"]}`); code != 200 || !strings.Contains(body, "lab-ws11") {
		t.Errorf("the victim's own who am I: %d %s", code, body)
	}
	if code, body := post(nsVic, "/api/v1/hosts/"+victim+"/report", report); code != 204 {
		t.Errorf("the victim's own report: %d %s", code, body)
	}
	if l := list(); !strings.Contains(l, "done done") || !strings.Contains(l, "local") {
		t.Errorf("the victim's done report did not count:\n%s", l)
	}
	if b, _ := os.ReadFile(serveLog); !strings.Contains(string(b), "whose MAC is "+attacker) {
		t.Errorf("the refusal is not logged:\n%s", b)
	}
}
