package seeder

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/deal"
	"github.com/labseed/labseed/internal/fixture"
	"github.com/labseed/labseed/store"
)

// TestDealAPI has a workstation ask a real print server for every piece
// it lacks: each piece comes once, with the payload's bytes, and asking
// again at once gets nothing.
func TestDealAPI(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	im := publishGenerated(t, st, fixture.ImageOptions{TotalBytes: 4 << 20}, chunker.Config{Name: "lab1", Level: 1, PieceLength: 32 << 10,
		ChunkMin: 64 << 10, ChunkAvg: 256 << 10, ChunkMax: 1 << 20})
	payload, err := os.ReadFile(im.PayloadPath())
	if err != nil {
		t.Fatal(err)
	}
	srv, c := startServer(t, dir, nil)
	ih := im.Manifest.InfoHash
	for deadline := time.Now().Add(10 * time.Second); ; {
		srv.mu.Lock()
		n := len(srv.seeded)
		srv.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server does not seed the image")
		}
		time.Sleep(50 * time.Millisecond)
	}
	pl := im.Manifest.PieceLength
	pieces := int((im.Manifest.PayloadBytes + pl - 1) / pl)
	if pieces < 20 {
		t.Fatalf("only %d pieces: the test needs more", pieces)
	}
	want := deal.NewBitmap(pieces)
	for p := range pieces {
		want.Set(p)
	}

	got := make([]int, pieces) // times each piece was dealt
	var deals int
	for ; ; deals++ {
		first, n, body, err := c.Deal(t.Context(), ih, want)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		b, err := io.ReadAll(body)
		body.Close()
		if err != nil {
			t.Fatal(err)
		}
		end := min(int64(first+n)*pl, im.Manifest.PayloadBytes)
		if !bytes.Equal(b, payload[int64(first)*pl:end]) {
			t.Fatalf("deal of pieces %d+%d: %d bytes that differ from the payload", first, n, len(b))
		}
		for p := first; p < first+n; p++ {
			got[p]++
			want.Clear(p) // as a workstation: it has them now
		}
	}
	for p, k := range got {
		if k != 1 {
			t.Fatalf("piece %d dealt %d times, want once", p, k)
		}
	}
	// Runs of DefaultMaxRun, shorter for the last few pieces (deal.Dealer).
	if least := (pieces + deal.DefaultMaxRun - 1) / deal.DefaultMaxRun; deals < least || deals > least+12 {
		t.Errorf("%d deals, want %d and a few more", deals, least)
	}
	if d := srv.dealt.Load(); d != im.Manifest.PayloadBytes {
		t.Errorf("server counted %d bytes dealt, want %d", d, im.Manifest.PayloadBytes)
	}

	all := deal.NewBitmap(pieces)
	for p := range pieces {
		all.Set(p)
	}
	if _, n, _, err := c.Deal(t.Context(), ih, all); n != 0 || err != nil {
		t.Errorf("asking for every piece again at once: %d pieces, %v", n, err)
	}

	// A sync's workstation that holds every other chunk gets the bytes of
	// the others only, once the pieces may be dealt again.
	srv.mu.Lock()
	for _, si := range srv.seeded {
		si.dealer = newDealer(im.Manifest)
	}
	srv.mu.Unlock()
	m := im.Manifest
	local := deal.NewBitmap(len(m.Chunks))
	var rest []byte
	for i, ch := range m.Chunks {
		if i%2 == 0 {
			local.Set(i)
		} else {
			rest = append(rest, payload[ch.Offset:ch.Offset+ch.Size]...)
		}
	}
	var gotRest []byte
	for {
		first, n, skipped, body, err := c.DealSkipping(t.Context(), ih, all, local)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if !skipped {
			t.Fatal("the deal does not say it skipped the local chunks")
		}
		b, _ := io.ReadAll(body)
		body.Close()
		gotRest = append(gotRest, b...)
		for p := first; p < first+n; p++ {
			all.Clear(p)
		}
	}
	if !bytes.Equal(gotRest, rest) {
		t.Errorf("deals to a workstation holding every other chunk: %d bytes, want the other chunks' %d", len(gotRest), len(rest))
	}

	var ae *api.APIError
	if _, _, _, _, err := c.DealSkipping(t.Context(), ih, want, local[:1]); !errors.As(err, &ae) || ae.Code != http.StatusBadRequest {
		t.Errorf("a chunk bitmap of the wrong length: %v, want 400", err)
	}
	// A bad infohash is a bad request (it used to panic the handler).
	for _, bad := range []string{"zz", "abc", ih + "00", strings.Repeat("g", 40)} {
		if _, _, _, err := c.Deal(t.Context(), bad, want); !errors.As(err, &ae) || ae.Code != http.StatusBadRequest {
			t.Errorf("infohash %q: %v, want 400", bad, err)
		}
	}
	if _, _, _, err := c.Deal(t.Context(), ih, want[:1]); !errors.As(err, &ae) || ae.Code != http.StatusBadRequest {
		t.Errorf("a bitmap of the wrong length: %v, want 400", err)
	}
	if _, _, _, err := c.Deal(t.Context(), "00"+ih[2:], want); !errors.As(err, &ae) || ae.Code != http.StatusNotFound {
		t.Errorf("an unknown infohash: %v, want 404", err)
	}
}

// TestSlowDealNotBarred: a deal that took 12 s to write (a workstation on
// a slow, busy port) is still arriving 6 s after its Finish, when the
// workstation's other stream asks again for its pieces: that is no lost
// deal, and the workstation is not barred. One that still asks for them
// after as long as the deal took (and within the dealer's hold) lost it.
func TestSlowDealNotBarred(t *testing.T) {
	si := &seededImage{dealer: deal.New(64, deal.Config{})}
	var dc dealClients
	ip := netip.MustParseAddr("10.77.0.11")
	want := deal.NewBitmap(64)
	for p := range 8 {
		want.Set(p)
	}
	t0 := time.Unix(1000, 0)
	if code, _, _, err := dc.begin(ip, si, want, "", 4, t0); code != 0 || err != nil {
		t.Fatalf("first deal: %d %v", code, err)
	}
	first, n, ok := si.dealer.DealTo(want, t0, dc.holder(ip, false))
	if !ok || first != 0 {
		t.Fatalf("dealt %d+%d %v", first, n, ok)
	}
	at := t0.Add(12 * time.Second)
	si.dealer.Finish(first, n, n, at)
	dc.end(ip, sentDeal{si: si, first: first, n: n, at: at, took: at.Sub(t0)})

	code, lost, _, err := dc.begin(ip, si, want, "", 4, at.Add(6*time.Second))
	if lost || code != 0 || err != nil {
		t.Fatalf("6 s after a deal that took 12 s: lost %v, code %d, %v; want a new deal", lost, code, err)
	}
	dc.end(ip, sentDeal{})
	if _, lost, _, _ := dc.begin(ip, si, want, "", 4, at.Add(13*time.Second)); !lost {
		t.Fatal("still asked for 13 s after a deal that took 12 s: not counted lost")
	}
}

// A workstation killed in the middle of a deal and started again (a power
// cut) asks at once for the pieces its previous run was dealt, those it
// confirmed included (they were not on disk yet): under a new run's name
// (api.HeaderDealSession) it gets them again at once, without a bar. A
// second new name within the hold time is not believed: an address cannot
// dodge the bar by naming a new run at every request.
func TestRestartedWorkstationNotBarred(t *testing.T) {
	si := &seededImage{dealer: deal.New(64, deal.Config{MaxRun: 4})}
	var dc dealClients
	ip := netip.MustParseAddr("10.77.0.12")
	want := deal.NewBitmap(64) // what it lacks and no peer has
	for p := range 8 {
		want.Set(p)
	}
	t0 := time.Unix(1000, 0)
	// dealOnce is handleDeal without the network.
	dealOnce := func(session string, want deal.Bitmap, now time.Time) (lost bool, first, n int) {
		t.Helper()
		code, lost, restarted, err := dc.begin(ip, si, want, session, 4, now)
		if code != 0 || err != nil {
			t.Fatalf("run %q at %v: code %d, %v; want a deal", session, now.Sub(t0), code, err)
		}
		if restarted != 0 {
			si.dealer.Gone(restarted)
		}
		first, n, ok := si.dealer.DealTo(want, now, dc.holder(ip, false))
		if !ok {
			t.Fatalf("run %q at %v: nothing dealt", session, now.Sub(t0))
		}
		si.dealer.Finish(first, n, n, now)
		dc.end(ip, sentDeal{si: si, first: first, n: n, at: now})
		return lost, first, n
	}
	// The first run gets pieces 0-3, confirms them (its next request no
	// longer wants them), gets 4-7 and is killed.
	_, first, n := dealOnce("run-1", want, t0)
	if first != 0 || n != 4 {
		t.Fatalf("first deal %d+%d, want 0+4", first, n)
	}
	rest := slices.Clone(want)
	for p := range 4 {
		rest.Clear(p)
	}
	if _, first, _ := dealOnce("run-1", rest, t0.Add(time.Second)); first != 4 {
		t.Fatalf("second deal from %d, want 4", first)
	}
	// Restarted a second later, wanting all eight again: its two next
	// deals bring them, the confirmed ones included.
	got := deal.NewBitmap(64)
	for i := range 2 {
		lost, first, n := dealOnce("run-2", want, t0.Add(2*time.Second))
		if lost {
			t.Fatalf("deal %d: a restarted workstation was barred", i)
		}
		for p := first; p < first+n; p++ {
			got.Set(p)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("after the restart, dealt %08b, want %08b: the previous run's pieces, confirmed or not, dealt again at once", got[0], want[0])
	}
	// A third run 10 s later (within the hold), its deals past the grace:
	// barred as any address that asks again for what it was dealt.
	if _, lost, _, _ := dc.begin(ip, si, want, "run-3", 4, t0.Add(10*time.Second)); !lost {
		t.Fatal("a second new run within the hold time escaped the bar")
	}
}

// TestWebSeedYieldsToDeals: while the deals fill the print server's port
// (as many open as the dealer keeps), the web seed answers a lab member
// 503 with a Retry-After instead of taking the port from them, and still
// serves a follower (no lab member: it replicates over the campus link);
// once a deal ends, it serves the lab again.
func TestWebSeedYieldsToDeals(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	im := publishGenerated(t, st, fixture.ImageOptions{TotalBytes: 4 << 20}, chunker.Config{Name: "lab1", Level: 1, PieceLength: 32 << 10})
	srv, _ := startServer(t, dir, nil)
	waitSeeding(t, srv)
	m := im.Manifest
	// The print server's own gossip address, 127.0.0.1, is a lab member's.
	seed := func(from string) *http.Response {
		t.Helper()
		hc := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext}}
		defer hc.CloseIdleConnections()
		req, err := http.NewRequestWithContext(t.Context(), "GET", "http://"+srv.Lab().HTTPAddr+api.PathSeed+chunker.TorrentName(m.Name, m.Version), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Range", "bytes=0-1023")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if resp := seed("127.0.0.1"); resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("web seed with no deal open: %s, want 206", resp.Status)
	}

	srv.mu.Lock()
	var d *deal.Dealer
	for _, si := range srv.seeded {
		d = si.dealer
	}
	srv.mu.Unlock()
	want := deal.NewBitmap(d.Pieces())
	for p := range d.Pieces() {
		want.Set(p)
	}
	now := time.Now()
	var first, n int
	for open, limit := d.Open(); open < limit; open, limit = d.Open() {
		var ok bool
		if first, n, ok = d.Deal(want, now); !ok {
			t.Fatalf("the dealer refused a deal with %d of %d open", open, limit)
		}
		for p := first; p < first+n; p++ {
			want.Clear(p)
		}
	}
	resp := seed("127.0.0.1")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("web seed while the deals fill the port: %s, Retry-After %q; want 503 with a Retry-After", resp.Status, resp.Header.Get("Retry-After"))
	}
	if resp := seed("127.0.0.77"); resp.StatusCode != http.StatusPartialContent {
		t.Errorf("web seed to a follower while the deals fill the port: %s, want 206", resp.Status)
	}
	d.Finish(first, n, n, time.Now())
	if resp := seed("127.0.0.1"); resp.StatusCode != http.StatusPartialContent {
		t.Errorf("web seed once a deal ended: %s, want 206", resp.Status)
	}
}
