package seeder

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/deal"
	"github.com/labseed/labseed/gossip"
	"github.com/labseed/labseed/hosts"
	"github.com/labseed/labseed/internal/fixture"
	"github.com/labseed/labseed/internal/syncbuf"
	"github.com/labseed/labseed/peer"
	"github.com/labseed/labseed/store"
)

// TestGarbageClient: a lab member (the lab key is public) sends garbage on
// the deal and report API, and garbage that is not HTTP at all. Every
// request gets a clear 4xx, the print server's per-client records stay
// bounded, and afterwards a real workstation gets the whole image from
// deals.
func TestGarbageClient(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, hosts.HostsFile), []byte("mac,hostname,ip\n52:54:00:00:00:01,lab1-ws01,10.1.0.101\n"), 0o644)
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	im := publishGenerated(t, st, fixture.ImageOptions{TotalBytes: 6 << 20}, chunker.Config{Name: "lab1", Level: 1, PieceLength: 64 << 10})
	key, _ := st.LabKey()
	pub, _ := st.PublicKey()
	srv, _ := startServer(t, dir, nil)
	for deadline := time.Now().Add(10 * time.Second); len(srv.Status().Images) == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the print server does not seed the image")
		}
	}
	addr := srv.Lab().HTTPAddr
	const member = "127.0.0.97"
	node, err := gossip.New(gossip.Config{Name: "garbage", BindAddr: member, BindPort: -1, AdvertiseAddr: member,
		Key: key, Local: true, Seeds: []string{srv.Lab().GossipAddr}})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	if err := node.Join(t.Context()); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !srv.labMember(netip.MustParseAddr(member)); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the print server never saw the member")
		}
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(member)}}).DialContext}}
	post := func(path, ctype string, body io.Reader) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), "POST", "http://"+addr+path, body)
		req.Header.Set("Content-Type", ctype)
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	m := im.Manifest
	pieces := int((m.PayloadBytes + m.PieceLength - 1) / m.PieceLength)
	random := func(n int) []byte { b := make([]byte, n); rand.Read(b); return b }
	type attempt struct {
		name, path, ctype string
		body              io.Reader
		word              string // the answer must say this
	}
	dealPath := api.PathDeal + m.InfoHash
	attempts := []attempt{
		{"deal: not an infohash", api.PathDeal + "zz", "application/octet-stream", bytes.NewReader(random(8)), "infohash"},
		{"deal: short infohash", api.PathDeal + m.InfoHash[:20], "application/octet-stream", bytes.NewReader(random(8)), "infohash"},
		{"deal: unknown image", api.PathDeal + strings.Repeat("ab", 20), "application/octet-stream", bytes.NewReader(random((pieces + 7) / 8)), "no such image"},
		{"deal: empty bitmap", dealPath, "application/octet-stream", bytes.NewReader(nil), "bitmap"},
		{"deal: short bitmap", dealPath, "application/octet-stream", bytes.NewReader(random((pieces+7)/8 - 1)), "bitmap"},
		{"deal: long bitmap", dealPath, "application/octet-stream", bytes.NewReader(random((pieces+7)/8 + 1)), "bitmap"},
		{"deal: 64 MiB body", dealPath, "application/octet-stream", io.LimitReader(zeros{}, 64<<20), "bitmap"},
		{"deal: JSON", dealPath, "application/json", strings.NewReader(`{"want":"everything"}`), "bitmap"},
		{"report: bad MAC", api.ReportPath("not-a-mac"), "application/json", strings.NewReader(`{}`), "MAC"},
		{"report: binary", api.ReportPath("52:54:00:00:00:01"), "application/json", bytes.NewReader(random(4096)), "bad request body"},
		{"report: unknown field", api.ReportPath("52:54:00:00:00:01"), "application/json", strings.NewReader(`{"state":"done","owner":"me"}`), "unknown field"},
		{"report: bad state", api.ReportPath("52:54:00:00:00:01"), "application/json", strings.NewReader(`{"step":"x","state":"pwned"}`), "state"},
		{"report: 64 MiB body", api.ReportPath("52:54:00:00:00:01"), "application/json", io.MultiReader(strings.NewReader(`{"error":"`), io.LimitReader(zeros{}, 64<<20)), "bad request body"},
		{"report: nested", api.ReportPath("52:54:00:00:00:01"), "application/json", strings.NewReader(strings.Repeat("[", 100000)), "bad request body"},
	}
	for _, a := range attempts {
		code, msg := post(a.path, a.ctype, a.body)
		t.Logf("%s: %d %.100s", a.name, code, msg)
		if code < 400 || code >= 500 {
			t.Errorf("%s: status %d (%s), want a 4xx", a.name, code, msg)
		}
		if !strings.Contains(strings.ToLower(msg), strings.ToLower(a.word)) {
			t.Errorf("%s: the answer %q does not say %q", a.name, msg, a.word)
		}
	}
	// Reports for 2000 made-up machines (the records of machines not in
	// the hosts table are bounded), and bytes that are not HTTP.
	for i := range 2000 {
		mac := fmt.Sprintf("52:54:01:%02x:%02x:%02x", i>>16, (i>>8)&0xff, i&0xff)
		if code, msg := post(api.ReportPath(mac), "application/json", strings.NewReader(`{"step":"extract","state":"running","error":"`+strings.Repeat(`\u001b[2J`, 100)+`"}`)); code != http.StatusNoContent {
			t.Fatalf("report %d: %d %s", i, code, msg)
		}
	}
	if n := len(srv.Machines().List()); n > 1+256 {
		t.Errorf("the print server keeps %d machine records after reports for 2000 made-up MACs", n)
	}
	for range 50 {
		c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(member)}}).Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write(random(2000))
		b, _ := io.ReadAll(c)
		c.Close()
		if len(b) > 0 && !bytes.HasPrefix(b, []byte("HTTP/1.1 400")) {
			t.Fatalf("garbage bytes: answer %.100q, want a 400 or nothing", b)
		}
	}
	// Deals of random pieces, read whole and never asked for again: legal,
	// and the member gets no more than its bound at once.
	for range 20 {
		post(dealPath, "application/octet-stream", bytes.NewReader(random((pieces+7)/8)))
	}

	var alog syncbuf.Buffer
	a, err := peer.New(peer.Config{Server: addr, Target: filepath.Join(t.TempDir(), "target"), PublicKey: pub, LabKey: key,
		ListenIP: "127.0.0.21", Local: true, Linger: -1, NoWebSeed: true, Name: "ws21",
		Logger: slog.New(slog.NewTextHandler(&alog, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := a.Run(t.Context()); err != nil {
		t.Fatalf("after the garbage, a workstation: %v\n%s", err, alog.String())
	}
	took := time.Since(start)
	t.Logf("after the garbage, a workstation got the image in %.1f s", took.Seconds())
	// The member was dealt pieces it cannot pass on (it has no BitTorrent
	// address): they are dealt again at once, not after the hold time.
	if took > deal.DefaultHold/2 {
		t.Errorf("the workstation took %.1f s for %d KiB: it waited for pieces dealt to the garbage client", took.Seconds(), m.PayloadBytes>>10)
	}
	if n := len(srv.Machines().List()); n > 1+256 {
		t.Errorf("%d machine records", n)
	}
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) { clear(b); return len(b), nil }
