package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
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
