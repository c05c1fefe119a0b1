package peer

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/internal/fixture"
	"github.com/labseed/labseed/internal/seedertest"
	"github.com/labseed/labseed/internal/syncbuf"
	"github.com/labseed/labseed/seeder"
	"github.com/labseed/labseed/store"
)

// testServer publishes a generated image and runs a print server for it
// on loopback.
func testServer(t *testing.T) (*seeder.Server, *store.Image, []byte, []byte) {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(fixture.GenerateImage(pw, fixture.ImageOptions{TotalBytes: 6 << 20, NoDevices: os.Geteuid() != 0}))
	}()
	im, err := st.Publish(t.Context(), pr, chunker.Config{Name: "lab1", Level: 1})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := st.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	key, err := st.LabKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := seeder.LocalConfig()
	cfg.Store, cfg.LabKey = st, key
	srv := seedertest.Start(t, cfg)
	for deadline := time.Now().Add(10 * time.Second); len(srv.Status().Images) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the print server does not list the image")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return srv, im, pub, key
}

// fetch runs one agent against the print server at server until the image
// is applied, and returns its log.
func fetch(t *testing.T, server string, pub, key []byte) string {
	t.Helper()
	var logs syncbuf.Buffer
	a, err := New(Config{Server: server, Target: filepath.Join(t.TempDir(), "target"), PublicKey: pub, LabKey: key,
		Local: true, ListenIP: "127.0.0.1", Linger: -1, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := a.Run(ctx); err != nil {
		t.Fatalf("agent: %v\n%s", err, logs.String())
	}
	return logs.String()
}

// metric reads a counter of the print server's /metrics.
func metric(t *testing.T, srv *seeder.Server, name string) int64 {
	t.Helper()
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", api.PathMetrics, nil))
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return int64(f)
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}

// TestFeedDealsEveryPiece: a lone workstation gets every piece dealt by
// the print server over HTTP, none over BitTorrent.
func TestFeedDealsEveryPiece(t *testing.T) {
	srv, im, pub, key := testServer(t)
	logs := fetch(t, srv.Lab().HTTPAddr, pub, key)
	if dealt := metric(t, srv, "labseed_server_dealt_bytes_total"); dealt != im.Manifest.PayloadBytes {
		t.Errorf("dealt %d bytes, want the payload, %d\n%s", dealt, im.Manifest.PayloadBytes, logs)
	}
	if up := metric(t, srv, "labseed_server_uploaded_bytes_total"); up != 0 {
		t.Errorf("the print server uploaded %d bytes over BitTorrent, want 0", up)
	}
}

// TestFeedFallsBackToBitTorrent: against a print server without the deal
// API (an older labseed, here a proxy that answers 404 for it), the
// workstation says so and fetches over BitTorrent from the print server.
func TestFeedFallsBackToBitTorrent(t *testing.T) {
	srv, im, pub, key := testServer(t)
	logs := fetch(t, noDealing(t, srv), pub, key)
	if !strings.Contains(logs, "does not deal pieces") {
		t.Errorf("no word of the fallback in the log:\n%s", logs)
	}
	if up := metric(t, srv, "labseed_server_uploaded_bytes_total"); up < im.Manifest.PayloadBytes {
		t.Errorf("the print server uploaded %d bytes over BitTorrent, want at least the payload, %d", up, im.Manifest.PayloadBytes)
	}
}

// noDealing puts in front of srv a proxy that answers 404 for the deal
// API, as an older labseed would, and returns its address.
func noDealing(t *testing.T, srv *seeder.Server) string {
	return dealProxy(t, srv, func(w http.ResponseWriter, r *http.Request, _ http.Handler) { http.NotFound(w, r) })
}

// dealProxy puts in front of srv a proxy that passes requests on, deal
// requests through deal (next passes one on), and returns its address.
func dealProxy(t *testing.T, srv *seeder.Server, deal func(w http.ResponseWriter, r *http.Request, next http.Handler)) string {
	t.Helper()
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: srv.Lab().HTTPAddr})
	rp.FlushInterval = -1
	p := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, api.PathDeal) {
			deal(w, r, rp)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return strings.TrimPrefix(p.URL, "http://")
}

// TestFullDisk: a workstation whose disk fills up stops with an error that
// says so, instead of retrying for ever.
func TestFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	srv, _, pub, key := testServer(t)
	target := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", target).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", target).Run() })
	var logs syncbuf.Buffer
	a, err := New(Config{Server: srv.Lab().HTTPAddr, Target: target, PublicKey: pub, LabKey: key,
		Local: true, ListenIP: "127.0.0.1", Linger: -1, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	err = a.Run(ctx)
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("Run on a full disk: %v, want an error naming the full disk\n%s", err, logs.String())
	}
	t.Logf("Run: %v", err)
}

// TestFullDiskBitTorrent: a full disk stops the run with an error that says
// so when the pieces come over BitTorrent too (here from a print server
// that does not deal), not only when they are dealt. Before, anacrolix's
// default handler of the write error stopped downloading and the run
// waited for ever. The staged payload gets its own small tmpfs, so that the
// error can only come from writing a piece (the applier's state and the
// target are elsewhere).
func TestFullDiskBitTorrent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	srv, im, pub, key := testServer(t)
	state := t.TempDir()
	staging := filepath.Join(state, "torrent") // where Run keeps the payload
	if err := os.Mkdir(staging, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", staging).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", staging).Run() })
	if im.Manifest.PayloadBytes <= 1<<20 {
		t.Fatalf("the payload (%d bytes) fits the 1 MiB tmpfs", im.Manifest.PayloadBytes)
	}
	var logs syncbuf.Buffer
	a, err := New(Config{Server: noDealing(t, srv), Target: t.TempDir(), StateDir: state, PublicKey: pub, LabKey: key,
		Local: true, ListenIP: "127.0.0.1", Linger: -1, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err = a.Run(ctx)
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("Run on a full disk: %v, want an error naming the full disk\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), "does not deal pieces") {
		t.Fatalf("the pieces were not fetched over BitTorrent:\n%s", logs.String())
	}
	t.Logf("Run: %v", err)
}

// TestSlowDealIsProgress: a deal that arrives slowly, a piece taking
// longer than Config.WebSeedAfter to come whole (as through a print
// server's port shared by a whole lab), is progress: the workstation does
// not fall back to the web seed while the deal's bytes keep arriving.
func TestSlowDealIsProgress(t *testing.T) {
	srv, im, pub, key := testServer(t)
	const (
		step  = 4 << 10                // bytes
		every = 100 * time.Millisecond // a deal arrives at 40 KiB/s
		after = 2 * time.Second        // WebSeedAfter
	)
	if piece := time.Duration(im.Manifest.PieceLength/step) * every; piece < 2*after {
		t.Fatalf("a piece arrives in %s, want more than %s for this test", piece, 2*after)
	}
	server := dealProxy(t, srv, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		next.ServeHTTP(&trickle{ResponseWriter: w, step: step, every: every}, r)
	})
	logs := webSeedWatch(t, server, pub, key, after, 4*after)
	if dealt := metric(t, srv, "labseed_server_dealt_bytes_total"); dealt < 2*im.Manifest.PieceLength {
		t.Errorf("dealt %d bytes in %s, want at least two pieces:\n%s", dealt, 4*after, logs)
	}
}

// TestBusyPrintServerIsNotAStall: a print server that answers "nothing
// now" to every deal request (its port busy with the deals of a large
// lab) is progress: the workstation does not fall back to the web seed,
// which would take that port from the deals.
func TestBusyPrintServerIsNotAStall(t *testing.T) {
	srv, _, pub, key := testServer(t)
	const after = 2 * time.Second // WebSeedAfter
	var asked atomic.Int32
	server := dealProxy(t, srv, func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		asked.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})
	logs := webSeedWatch(t, server, pub, key, after, 4*after)
	if asked.Load() < 4 {
		t.Errorf("the print server was asked for deals %d times in %s, want one a second or more:\n%s", asked.Load(), 4*after, logs)
	}
}

// webSeedWatch runs a workstation with WebSeedAfter after against the
// print server at server for run, fails the test if it adds the web seed,
// and returns its log.
func webSeedWatch(t *testing.T, server string, pub, key []byte, after, run time.Duration) string {
	t.Helper()
	var logs syncbuf.Buffer
	a, err := New(Config{Server: server, Target: filepath.Join(t.TempDir(), "target"), PublicKey: pub, LabKey: key,
		Local: true, ListenIP: "127.0.0.1", Linger: -1, WebSeedAfter: after,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(run, cancel)
	a.Run(ctx) // ends with ctx: the image takes longer than run
	if strings.Contains(logs.String(), "web seed") {
		t.Errorf("the workstation fell back to the web seed while the print server dealt:\n%s", logs.String())
	}
	return logs.String()
}

// trickle writes at most step bytes every interval, flushing each.
type trickle struct {
	http.ResponseWriter
	step  int
	every time.Duration
}

func (w *trickle) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		time.Sleep(w.every)
		k, err := w.ResponseWriter.Write(b[:min(len(b), w.step)])
		n += k
		if err != nil {
			return n, err
		}
		http.NewResponseController(w.ResponseWriter).Flush()
		b = b[k:]
	}
	return n, nil
}

// Unwrap lets http.ResponseController reach the connection.
func (w *trickle) Unwrap() http.ResponseWriter { return w.ResponseWriter }
