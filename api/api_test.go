package api

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labseed/labseed/deal"
)

var update = flag.Bool("update", false, "rewrite testdata/*.json")

// wireTypes are every type sent or received as JSON.
var wireTypes = []any{
	ImageInfo{}, Image{}, Lab{}, LabStatus{}, HostStatus{}, WorkstationStatus{}, Summary{},
	WhoAmIRequest{}, NextBootRequest{}, NextBootResult{}, BootHost{}, BootEvent{}, Report{},
	Identity{}, Hook{}, SignedIdentity{},
}

// testKey signs the identities of the fake print servers.
var testKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{5}, ed25519.SeedSize))

// TestJSONNames checks that every field of every wire type has its own
// JSON name, in snake_case.
func TestJSONNames(t *testing.T) {
	snake := regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	for _, v := range wireTypes {
		typ := reflect.TypeOf(v)
		for i := range typ.NumField() {
			f := typ.Field(i)
			tag := f.Tag.Get("json")
			name, _, _ := strings.Cut(tag, ",")
			if tag == "" || !snake.MatchString(name) {
				t.Errorf("%s.%s: JSON name %q, want a snake_case name of its own", typ.Name(), f.Name, tag)
			}
		}
	}
}

// TestStatusGolden pins the JSON of a lab status (docs/api.md shows it):
// a change to it is a change to the wire.
func TestStatusGolden(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 9, 30, 0, 0, time.UTC)
	ws07 := HostStatus{Name: "ws07", Addr: "10.1.0.17:7946", State: MemberAlive, Phase: PhaseDownloading, MAC: "52:54:00:12:34:56",
		Status: WorkstationStatus{Phase: PhaseDownloading, Image: "lab1-v3", TorrentAddr: "10.1.0.17:6881",
			Percent: 41.5, Chunks: 626, ChunksTotal: 1510, DownRate: 98_000_000, UpRate: 61_000_000,
			FromServer: 410_000_000, FromPeers: 918_000_000, Uploaded: 770_000_000, Peers: 9, ETA: 19,
			HashFailures: 0, Started: t0.Add(-14 * time.Second), Updated: t0.Add(-time.Second), ChunksFetched: 626}}
	ls := LabStatus{
		Server: "10.1.0.1:" + strconv.Itoa(DefaultPort), Time: t0,
		Images: []ImageInfo{{Name: "lab1", Version: 3, InfoHash: "5f1d0c9a6e2b3a4c5d6e7f8091a2b3c4d5e6f708",
			PayloadBytes: 3_200_000_000, InputBytes: 9_800_000_000, Chunks: 1510, Created: t0.Add(-time.Hour)}},
		Hosts: []HostStatus{ws07},
		Summary: Summary{Hosts: 1, DownRate: 98_000_000, FromServer: 410_000_000, FromPeers: 918_000_000,
			PeerShare: 0.6913, ServerUp: 1_900_000_000},
		Boot: []BootHost{{MAC: "52:54:00:12:34:56", Hostname: "ws07", IP: "10.1.0.17", NextBoot: BootClone,
			Stage: StageDownloading, Step: "fetch",
			Started: t0.Add(-52 * time.Second), Heard: t0.Add(-15 * time.Second), Updated: t0.Add(-time.Second),
			Clone:  []Report{{Step: "fetch", State: StateRunning, Time: t0.Add(-15 * time.Second)}},
			Events: []BootEvent{{Time: t0.Add(-40 * time.Second), Kind: "http-file", Detail: "initrd.img 412 MiB"}},
			Agent:  &ws07}},
	}
	got, err := json.MarshalIndent(ls, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	name := filepath.Join("testdata", "status.json")
	if *update {
		if err := os.WriteFile(name, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the status JSON changed (go test ./api -update, and update docs/api.md):\n%s", got)
	}
	var back LabStatus
	if err := json.Unmarshal(want, &back); err != nil || !reflect.DeepEqual(back, ls) {
		t.Errorf("decoding %s: %v\n%+v", name, err, back)
	}
}

func TestWithDefaultPort(t *testing.T) {
	for in, want := range map[string]string{
		"10.1.0.1": "10.1.0.1:7480", "10.1.0.1:8080": "10.1.0.1:8080", "printer": "printer:7480",
		"::1": "[::1]:7480", "[::1]:99": "[::1]:99",
	} {
		if got := WithDefaultPort(in); got != want {
			t.Errorf("WithDefaultPort(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseMAC(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"52:54:00:12:34:56", "52:54:00:12:34:56"},
		{"52-54-00-12-34-AB", "52:54:00:12:34:ab"},
		{" 52:54:00:12:34:56\n", "52:54:00:12:34:56"},
		{"52:54:00:12:34", ""},
		{"00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01", ""}, // InfiniBand
		{"nope", ""},
	} {
		mac, err := ParseMAC(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("ParseMAC(%q) = %v, want an error", tc.in, mac)
			}
			continue
		}
		if err != nil || mac.String() != tc.want {
			t.Errorf("ParseMAC(%q) = %v, %v; want %s", tc.in, mac, err, tc.want)
		}
	}
}

// TestClient runs every Client call against a fake print server: the
// method, path, body and Auth of each request, and error answers.
func TestClient(t *testing.T) {
	type req struct {
		method, path, ctype, auth string
		body                      []byte
	}
	var got []req
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, req{r.Method, r.URL.Path, r.Header.Get("Content-Type"), r.Header.Get("Authorization"), b})
		switch r.Method + " " + r.URL.Path {
		case "GET " + PathImages:
			w.Write([]byte(`[{"name":"lab1","version":2}]`))
		case "POST " + PathWhoAmI:
			sid, _ := SignIdentity(testKey, Identity{MAC: "52:54:00:12:34:56", Hostname: "ws07", Hooks: []Hook{{Name: "a", Script: "true"}}, Nonce: "00ff"})
			json.NewEncoder(w).Encode(sid)
		case "POST " + PathNextBoot:
			w.Write([]byte(`{"marked":3}`))
		case "GET " + PathHostsCSV:
			w.Write([]byte("mac,hostname,ip\n"))
		case "POST " + PathDeal + "abcd":
			w.Header().Set(HeaderFirstPiece, "4")
			w.Header().Set(HeaderPieces, "2")
			w.Write([]byte("0123456789"))
		case "POST " + PathDeal + "none":
			w.WriteHeader(http.StatusNoContent)
		case "POST " + ReportPath("52:54:00:12:34:56"), "PUT " + PathHostsCSV:
			w.WriteHeader(http.StatusNoContent)
		default:
			http.Error(w, "no such thing here", http.StatusNotFound)
		}
	}))
	defer srv.Close()
	c := NewClient(strings.TrimPrefix(srv.URL, "http://"))
	var signed [][]byte
	c.Auth = func(r *http.Request, body []byte) error {
		signed = append(signed, body)
		r.Header.Set("Authorization", "Test "+r.Method)
		return nil
	}
	ctx := context.Background()

	imgs, err := c.Images(ctx)
	if err != nil || len(imgs) != 1 || imgs[0].Name != "lab1" || imgs[0].Version != 2 {
		t.Fatalf("Images: %+v, %v", imgs, err)
	}
	sid, err := c.WhoAmI(ctx, WhoAmIRequest{MACs: []string{"52:54:00:12:34:56"}, Nonce: "00ff"})
	if err != nil {
		t.Fatal(err)
	}
	id, err := VerifyIdentity(testKey.Public().(ed25519.PublicKey), sid)
	if err != nil || id.Hostname != "ws07" || len(id.Hooks) != 1 || id.Hooks[0].Script != "true" || id.Nonce != "00ff" {
		t.Fatalf("WhoAmI: %+v, %v", id, err)
	}
	if n, err := c.SetNextBoot(ctx, NextBootRequest{All: true, Boot: BootClone}); n != 3 || err != nil {
		t.Fatalf("SetNextBoot: %d, %v", n, err)
	}
	var csv bytes.Buffer
	if err := c.ExportCSV(ctx, &csv); err != nil || csv.String() != "mac,hostname,ip\n" {
		t.Fatalf("ExportCSV: %q, %v", csv.String(), err)
	}
	if err := c.ImportCSV(ctx, strings.NewReader("mac,hostname,ip\n")); err != nil {
		t.Fatalf("ImportCSV: %v", err)
	}
	if err := c.Report(ctx, "52:54:00:12:34:56", Report{Step: "disk", State: StateRunning}); err != nil {
		t.Fatalf("Report: %v", err)
	}
	first, n, body, err := c.Deal(ctx, "abcd", deal.Bitmap{0xff})
	if err != nil || first != 4 || n != 2 {
		t.Fatalf("Deal: %d+%d, %v", first, n, err)
	}
	b, _ := io.ReadAll(body)
	body.Close()
	if string(b) != "0123456789" {
		t.Fatalf("Deal body %q", b)
	}
	if _, n, body, err := c.Deal(ctx, "none", deal.Bitmap{0xff}); n != 0 || body != nil || err != nil {
		t.Fatalf("Deal with nothing to deal: %d, %v, %v", n, body, err)
	}
	_, err = c.Status(ctx)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != http.StatusNotFound || ae.Msg != "no such thing here" {
		t.Fatalf("an error answer: %v", err)
	}

	want := []req{
		{"GET", PathImages, "", "Test GET", []byte{}},
		{"POST", PathWhoAmI, "application/json", "Test POST", []byte(`{"macs":["52:54:00:12:34:56"],"nonce":"00ff"}`)},
		{"POST", PathNextBoot, "application/json", "Test POST", []byte(`{"all":true,"boot":"clone"}`)},
		{"GET", PathHostsCSV, "", "Test GET", []byte{}},
		{"PUT", PathHostsCSV, "text/csv", "Test PUT", []byte("mac,hostname,ip\n")},
		{"POST", "/api/v1/hosts/52:54:00:12:34:56/report", "application/json", "Test POST",
			[]byte(`{"step":"disk","state":"running","time":"0001-01-01T00:00:00Z"}`)},
		{"POST", PathDeal + "abcd", "application/octet-stream", "Test POST", []byte{0xff}},
		{"POST", PathDeal + "none", "application/octet-stream", "Test POST", []byte{0xff}},
		{"GET", PathStatus, "", "Test GET", []byte{}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("requests:\n got %q\nwant %q", got, want)
	}
	for i, w := range want {
		if i < len(signed) && !bytes.Equal(signed[i], w.body) && !(len(signed[i]) == 0 && len(w.body) == 0) {
			t.Errorf("request %d: Auth saw body %q, sent %q", i, signed[i], w.body)
		}
	}

	// An Auth error stops the request.
	c.Auth = func(*http.Request, []byte) error { return errors.New("no key") }
	before := len(got)
	if _, err := c.Images(ctx); err == nil || !strings.Contains(err.Error(), "no key") || len(got) != before {
		t.Fatalf("Auth error: %v, %d requests sent", err, len(got)-before)
	}
}
