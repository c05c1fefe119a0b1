package follow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/hosts"
	"github.com/labseed/labseed/internal/fixture"
	"github.com/labseed/labseed/internal/seedertest"
	"github.com/labseed/labseed/internal/syncbuf"
	"github.com/labseed/labseed/keys"
	"github.com/labseed/labseed/peer"
	"github.com/labseed/labseed/seeder"
	"github.com/labseed/labseed/store"
	"github.com/labseed/labseed/swarm"
	"github.com/labseed/labseed/treecmp"
)

// small chunks, so that a small image has many.
var smallChunks = chunker.Config{ChunkMin: 32 << 10, ChunkAvg: 128 << 10, ChunkMax: 512 << 10, PieceLength: 32 << 10}

func genImage(t testing.TB, seed uint64, size int64) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := fixture.GenerateImage(&b, fixture.ImageOptions{TotalBytes: size, Seed: seed, Gzip: true, NoDevices: os.Geteuid() != 0}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func publish(t testing.TB, s *store.Store, name string, in []byte) *store.Image {
	t.Helper()
	cfg := smallChunks
	cfg.Name = name
	im, err := s.Publish(context.Background(), bytes.NewReader(in), cfg)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	return im
}

// lab is a print server on loopback: its store and its server.
type lab struct {
	st  *store.Store
	srv *seeder.Server
}

// startLab runs a print server on st; upstream, if set, gives it the
// follower's status for the lab status.
func startLab(t *testing.T, st *store.Store, upstream func() *api.UpstreamStatus) *lab {
	t.Helper()
	dir := st.Dir()
	key, err := st.LabKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := seeder.LocalConfig()
	cfg.Store, cfg.LabKey, cfg.ScanInterval, cfg.Upstream = st, key, 100*time.Millisecond, upstream
	cfg.Name = "server-" + filepath.Base(dir)
	if db, err := hosts.Open(dir); err == nil {
		cfg.Hosts = db
	}
	return &lab{st: st, srv: seedertest.Start(t, cfg)}
}

// countingTransport counts the response body bytes it carries.
type countingTransport struct {
	rt http.RoundTripper
	n  atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(r)
	if err == nil {
		resp.Body = &countingBody{ReadCloser: resp.Body, n: &c.n}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// pinned makes a Follower of cfg and pins its key, as labseed serve
// --upstream does before its print server starts (which would otherwise
// give a new store a signing key of its own).
func pinned(t *testing.T, cfg Config) *Follower {
	t.Helper()
	if cfg.Interval == 0 {
		cfg.Interval = 100 * time.Millisecond
	}
	logs := &syncbuf.Buffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Pin(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("follower of %s:\n%s", cfg.Upstream, logs.String())
		}
	})
	return f
}

// openStore opens a store in a new directory.
func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// run runs f until the test ends or stop is called.
func run(t *testing.T, f *Follower) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("follower: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	return stop
}

// waitVersion waits until st's current version of name is v.
func waitVersion(t *testing.T, st *store.Store, name string, v int, within time.Duration) *store.Image {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		im, err := st.Image(name)
		if err == nil && im.Manifest.Version == v {
			return im
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s v%d did not arrive within %v (current: %v, %v)", st.Dir(), name, v, within, im, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFollow: an upstream, a follower of it and a follower of the
// follower, on loopback. v1 published upstream reaches both, whole and
// identical; a workstation of the second follower gets it exactly, with
// the keys its own print server exports (the upstream's image key, its
// own identity key). v2, which changes two files, costs only its new
// chunks (counted on the wire). The upstream lists its follower.
func TestFollow(t *testing.T) {
	up := startLab(t, openStore(t), nil)
	v1img := genImage(t, 11, 6<<20)
	v1 := publish(t, up.st, "lab", v1img)

	count := &countingTransport{rt: http.DefaultTransport.(*http.Transport).Clone()}
	f1 := pinned(t, Config{Store: openStore(t), Upstream: up.srv.Lab().HTTPAddr, Name: "lab1", Transport: count})
	l1 := startLab(t, f1.cfg.Store, f1.Status)
	f1.cfg.Committed = func(string, int) { l1.srv.Rescan() }
	f2 := pinned(t, Config{Store: openStore(t), Upstream: l1.srv.Lab().HTTPAddr, Name: "lab2"})
	os.WriteFile(filepath.Join(f2.cfg.Store.Dir(), hosts.HostsFile), []byte("mac,hostname,ip\n52:54:00:00:00:01,lab2-ws01,10.2.0.101\n"), 0o644)
	l2 := startLab(t, f2.cfg.Store, f2.Status)
	run(t, f1)
	run(t, f2)

	start := time.Now()
	got1 := waitVersion(t, l1.st, "lab", 1, 30*time.Second)
	got2 := waitVersion(t, l2.st, "lab", 1, 30*time.Second)
	t.Logf("v1 (%d KiB, %d chunks) on both followers after %.2f s", v1.Manifest.PayloadBytes>>10, len(v1.Manifest.Chunks), time.Since(start).Seconds())
	for _, g := range []*store.Image{got1, got2} {
		if g.Manifest.InfoHash != v1.Manifest.InfoHash || !bytes.Equal(g.ManifestBytes, v1.ManifestBytes) {
			t.Fatalf("%s holds another manifest", g.Dir)
		}
		if err := g.Verify(t.Context(), nil); err != nil {
			t.Fatal(err)
		}
	}
	if got1.Origin() != up.srv.Lab().HTTPAddr || got2.Origin() != l1.srv.Lab().HTTPAddr {
		t.Errorf("origins %q, %q", got1.Origin(), got2.Origin())
	}
	if _, err := l1.st.SigningKey(); !errors.Is(err, store.ErrFollower) {
		t.Errorf("a follower can sign images: %v", err)
	}

	// A workstation of the second follower's lab, with what its print
	// server exports.
	kdir := t.TempDir()
	if _, err := l2.st.ExportKeys(kdir); err != nil {
		t.Fatal(err)
	}
	ws, err := keys.ReadWorkstation(kdir)
	if err != nil || ws.IdentityKey == nil {
		t.Fatalf("exported keys: %+v, %v", ws, err)
	}
	upPub, _ := up.st.PublicKey()
	if !ws.PublicKey.Equal(upPub) {
		t.Fatal("the follower's exported image.pub is not the upstream's")
	}
	sid, err := api.NewClient(l2.srv.Lab().HTTPAddr).WhoAmI(t.Context(), api.WhoAmIRequest{MACs: []string{"52:54:00:00:00:01"}, Nonce: "01"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.VerifyIdentity(ws.IdentityKey, sid); err != nil {
		t.Errorf("the follower's identity with its identity.pub: %v", err)
	}
	if _, err := api.VerifyIdentity(ws.PublicKey, sid); err == nil {
		t.Error("the follower's identity checks with the upstream's image key")
	}
	target := filepath.Join(t.TempDir(), "ws")
	a, err := peer.New(peer.Config{Server: l2.srv.Lab().HTTPAddr, Target: target, Image: "lab", PublicKey: ws.PublicKey, LabKey: ws.LabKey,
		ListenIP: "127.0.0.1", Local: true, Linger: -1, Name: "ws1"})
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer acancel()
	if err := a.Run(actx); err != nil {
		t.Fatalf("workstation of the second follower: %v", err)
	}
	want := filepath.Join(t.TempDir(), "want")
	ap, err := chunker.NewApplier(v1.Manifest, chunker.ApplyConfig{Target: want})
	if err != nil {
		t.Fatal(err)
	}
	if err := v1.Extract(t.Context(), ap, nil, 2); err != nil {
		t.Fatal(err)
	}
	ap.Cleanup()
	ap.Close()
	if diff, err := treecmp.Compare(want, target, treecmp.Options{Ignore: []string{".labseed"}}); err != nil || len(diff) > 0 {
		t.Fatalf("the workstation's tree differs from the image (%v):\n%s", err, strings.Join(diff, "\n"))
	}

	// v2: only its new chunks travel.
	v2img, err := fixture.ChangeFiles(v1img, 60, 2)
	if err != nil {
		t.Fatal(err)
	}
	before := count.n.Load()
	fetchedBefore := f1.Status().BytesFetched
	v2 := publish(t, up.st, "lab", v2img)
	waitVersion(t, l1.st, "lab", 2, 30*time.Second)
	waitVersion(t, l2.st, "lab", 2, 30*time.Second)
	old := map[string]bool{}
	for _, c := range v1.Manifest.Chunks {
		old[c.SHA256] = true
	}
	var changed int64
	nchanged := 0
	for _, c := range v2.Manifest.Chunks {
		if !old[c.SHA256] {
			changed += c.Size
			nchanged++
		}
	}
	wire := count.n.Load() - before
	fetched := f1.Status().BytesFetched - fetchedBefore
	t.Logf("v2: %d of %d chunks new (%d KiB); the follower fetched %d KiB of payload, %d KiB on the wire in all (API answers included); the image is %d KiB",
		nchanged, len(v2.Manifest.Chunks), changed>>10, fetched>>10, wire>>10, v2.Manifest.PayloadBytes>>10)
	if fetched != changed {
		t.Errorf("v2: fetched %d payload bytes, the new chunks are %d", fetched, changed)
	}
	overhead := int64(len(v2.ManifestBytes))*3 + 64<<10 // the manifest's JSON (base64) and torrent, image lists, reports
	if wire > changed+overhead {
		t.Errorf("v2: %d bytes on the wire, more than the new chunks (%d) and the manifest", wire, changed)
	}
	st := f1.Status()
	if len(st.Images) != 1 || st.Images[0].State != api.ReplicationComplete || st.Images[0].ChunksReused != len(v2.Manifest.Chunks)-nchanged {
		t.Errorf("follower status: %+v", st.Images)
	}

	// The upstream lists its follower, the follower shows its upstream.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ls := up.srv.Status()
		if len(ls.Followers) == 1 && ls.Followers[0].Name == "lab1" && len(ls.Followers[0].Status.Images) == 1 &&
			ls.Followers[0].Status.Images[0].Local == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the upstream's followers: %+v", ls.Followers)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if u := l2.srv.Status().Upstream; u == nil || u.Upstream != l1.srv.Lab().HTTPAddr || u.Key != keys.Fingerprint(upPub) {
		t.Errorf("the second follower's status: %+v", u)
	}
	if s, err := ReadState(l1.st.Dir()); err != nil || s == nil || len(s.Images) != 1 || s.Images[0].Local != 2 {
		t.Errorf("state file: %+v, %v", s, err)
	}
}

// TestFollowRefusesOtherKey: a follower that trusts one key follows a
// print server whose images are signed with another: nothing is stored,
// and the refusal is in its status.
func TestFollowRefusesOtherKey(t *testing.T) {
	site := openStore(t)
	rogue := startLab(t, openStore(t), nil)
	publish(t, rogue.st, "lab", genImage(t, 3, 1<<20))
	sitePub, _ := site.PublicKey()

	f := pinned(t, Config{Store: openStore(t), Upstream: rogue.srv.Lab().HTTPAddr, Key: sitePub})
	l := startLab(t, f.cfg.Store, f.Status)
	run(t, f)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := l.srv.Status().Upstream
		saved, _ := ReadState(l.st.Dir()) // for labseed images
		if st != nil && len(st.Images) == 1 && st.Images[0].State == api.ReplicationRefused &&
			saved != nil && len(saved.Images) == 1 && saved.Images[0].State == api.ReplicationRefused {
			t.Logf("refused: %s", st.Images[0].Error)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no refusal: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(l.st.Dir(), "images", "lab")); err == nil {
		t.Error("the refused image left a directory in the store")
	}
	// The store pinned the site's key: following the rogue one without
	// --upstream-key pins nothing new, and a follower given the rogue's
	// key is refused at once.
	roguePub, _ := rogue.st.PublicKey()
	f2, err := New(Config{Store: l.st, Upstream: rogue.srv.Lab().HTTPAddr, Key: roguePub})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f2.Pin(t.Context()); !errors.Is(err, store.ErrKeyMismatch) {
		t.Fatalf("pinning the rogue key over the site's: %v", err)
	}
}

// TestFollowResume: a follower capped at a rate is stopped halfway through
// a version: the version is not served; a new follower on the same store
// fetches only the rest. The rate is respected (loosely: a real clock).
func TestFollowResume(t *testing.T) {
	up := startLab(t, openStore(t), nil)
	im := publish(t, up.st, "lab", genImage(t, 5, 4<<20))
	payload := im.Manifest.PayloadBytes
	const bps = 2 << 20
	f := pinned(t, Config{Store: openStore(t), Upstream: up.srv.Lab().HTTPAddr, Rate: bps})
	l := startLab(t, f.cfg.Store, f.Status)
	stop := run(t, f)
	start := time.Now()
	for f.Status().BytesFetched < payload/2 {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("fetched %d of %d bytes in 30 s", f.Status().BytesFetched, payload)
		}
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(start)
	first := f.Status().BytesFetched
	stop()
	// No faster than the cap allows, after the bucket's burst.
	if min := time.Duration(float64(first-int64(NewLimiter(bps).Burst())) / bps * float64(time.Second)); took < min*9/10 {
		t.Errorf("%d bytes in %v at %d B/s: faster than the cap (%v at least)", first, took, bps, min)
	}
	t.Logf("stopped after %d of %d KiB in %.2f s (cap %d KiB/s)", first>>10, payload>>10, took.Seconds(), bps>>10)
	if _, err := l.st.Image("lab"); !errors.Is(err, store.ErrNoImage) {
		t.Fatalf("a half-replicated image is in the store: %v", err)
	}
	time.Sleep(300 * time.Millisecond) // two scans of the print server
	if imgs := l.srv.Status().Images; len(imgs) != 0 {
		t.Fatalf("the lab is offered a half-replicated image: %+v", imgs)
	}

	f = pinned(t, Config{Store: l.st, Upstream: up.srv.Lab().HTTPAddr})
	run(t, f)
	waitVersion(t, l.st, "lab", 1, 30*time.Second)
	second := f.Status().BytesFetched
	t.Logf("resumed: %d KiB more; %d KiB in all for a %d KiB payload", second>>10, (first+second)>>10, payload>>10)
	if first+second > payload+int64(smallChunks.ChunkMax) {
		t.Errorf("fetched %d + %d bytes for a payload of %d: the restart fetched again what it had", first, second, payload)
	}
	if second > payload-first+int64(smallChunks.ChunkMax) || second >= payload {
		t.Errorf("the resumed follower fetched %d bytes of %d", second, payload)
	}
}

// TestLimiter checks the token bucket against a made-up clock: reading
// n bytes at r bytes/s, in reads of at most the burst, takes (n-burst)/r.
func TestLimiter(t *testing.T) {
	for _, bps := range []int64{1 << 10, 100 << 10, 2 << 20, 125e6} {
		l := NewLimiter(bps)
		now := time.Unix(0, 0)
		const total = 50 << 20
		var waited time.Duration
		for left := int64(total); left > 0; {
			n := min(left, int64(l.Burst()))
			r := l.ReserveN(now.Add(waited), int(n))
			if !r.OK() {
				t.Fatalf("%d B/s: a read of %d refused", bps, n)
			}
			waited += r.DelayFrom(now.Add(waited))
			left -= n
		}
		want := time.Duration(float64(total-int64(l.Burst())) / float64(bps) * float64(time.Second))
		if d := waited - want; d < -time.Millisecond || d > time.Millisecond+want/1000 {
			t.Errorf("%d B/s: %d bytes took %v, want %v", bps, total, waited, want)
		}
	}
	if NewLimiter(0) != nil {
		t.Error("rate 0 is limited")
	}
	// Reads larger than the burst are cut to it.
	l := NewLimiter(1 << 20)
	r := swarm.LimitReader(context.Background(), bytes.NewReader(make([]byte, 1<<20)), l)
	if n, _ := r.Read(make([]byte, 1<<20)); n > l.Burst() {
		t.Errorf("a read of %d bytes, burst %d", n, l.Burst())
	}
}

// TestFollowWaitsForSeeding: an upstream lists a version as soon as it is
// published but seeds it at its next scan of the store; the follower
// waits for it (state waiting, no failure) instead of failing, and gets
// it once the upstream scans (Rescan).
func TestFollowWaitsForSeeding(t *testing.T) {
	st := openStore(t)
	key, _ := st.LabKey()
	cfg := seeder.LocalConfig()
	cfg.Store, cfg.LabKey, cfg.ScanInterval = st, key, time.Hour // one scan, at start
	up := seedertest.Start(t, cfg)
	publish(t, st, "lab", genImage(t, 9, 1<<20))
	f := pinned(t, Config{Store: openStore(t), Upstream: up.Lab().HTTPAddr})
	run(t, f)
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := f.Status()
		if len(s.Images) == 1 && s.Images[0].State == api.ReplicationWaiting && s.Images[0].Version == 1 && !s.Contact.IsZero() {
			break
		}
		if len(s.Images) == 1 && s.Images[0].State == api.ReplicationFailed {
			t.Fatalf("failed: %s", s.Images[0].Error)
		}
		if time.Now().After(deadline) {
			t.Fatalf("status: %+v", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Three more rounds: each tries (replicating), finds nothing served
	// (waiting again); never failed, nothing fetched.
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if s := f.Status(); s.Images[0].State == api.ReplicationFailed || s.Images[0].State == api.ReplicationComplete || s.BytesFetched != 0 {
			t.Fatalf("status: %+v", s.Images)
		}
	}
	// Once the upstream scans its store (Rescan: what a follower's
	// print server does after each version it commits), it comes.
	up.Rescan()
	waitVersion(t, f.cfg.Store, "lab", 1, 10*time.Second)
}

// TestFollowShare: three followers of one upstream share the chunks of a
// new version: each fetches about a third from the upstream and the rest
// from the others, and the upstream sends the payload about once, not
// three times. A fourth "follower", registered with the upstream by a
// report like any other, answers every chunk with wrong bytes: its share
// is refused (checked against the signed manifest) and fetched from the
// upstream; every store then holds the version whole.
func TestFollowShare(t *testing.T) {
	up := startLab(t, openStore(t), nil)
	upAddr := up.srv.Lab().HTTPAddr
	var liarAsked atomic.Int64
	liar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		liarAsked.Add(1)
		w.Write(bytes.Repeat([]byte("x"), 1000))
	}))
	defer liar.Close()
	liarAddr := strings.TrimPrefix(liar.URL, "http://")
	// Sorted by address, the liar comes first or in between: it owns a
	// share either way.
	report := func() {
		if _, err := api.NewClient(upAddr).ReportFollower(t.Context(), api.FollowerReport{Name: "liar", HTTPAddr: liarAddr}); err != nil {
			t.Fatal(err)
		}
	}
	report()

	var fs []*Follower
	var labs []*lab
	for i := range 3 {
		f := pinned(t, Config{Store: openStore(t), Upstream: upAddr, Name: "lab" + strconv.Itoa(i+1), Stall: 5 * time.Second})
		l := startLabChunks(t, f.cfg.Store, f.Status, http.HandlerFunc(f.ServeChunk))
		f.cfg.HTTPAddr = l.srv.Lab().HTTPAddr
		f.cfg.Committed = func(string, int) { l.srv.Rescan() }
		fs, labs = append(fs, f), append(labs, l)
	}
	for _, f := range fs {
		run(t, f)
	}
	// Every follower knows the three others before the publish.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		all := true
		for _, f := range fs {
			f.mu.Lock()
			all = all && len(f.sibs) == 3
			f.mu.Unlock()
		}
		if all {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the followers do not learn of each other from the upstream")
		}
		report()
	}
	v1 := publish(t, up.st, "lab", genImage(t, 21, 4<<20))
	m := v1.Manifest
	start := time.Now()
	for _, l := range labs {
		got := waitVersion(t, l.st, "lab", 1, 30*time.Second)
		if err := got.Verify(t.Context(), nil); err != nil {
			t.Fatal(err)
		}
	}
	var fromUp, fromOthers, served int64
	for i, f := range fs {
		st := f.Status()
		t.Logf("lab%d: %d KiB from the upstream, %d KiB (%d chunks) from the others, %d KiB served to them", i+1,
			st.BytesFetched>>10, st.BytesFromFollowers>>10, st.ChunksFromFollowers, st.BytesToFollowers>>10)
		if st.BytesFromFollowers == 0 || st.BytesToFollowers == 0 {
			t.Errorf("lab%d shared nothing: %+v", i+1, st)
		}
		if st.BytesFetched+st.BytesFromFollowers < m.PayloadBytes {
			t.Errorf("lab%d got %d bytes of a %d-byte payload", i+1, st.BytesFetched+st.BytesFromFollowers, m.PayloadBytes)
		}
		fromUp, fromOthers, served = fromUp+st.BytesFetched, fromOthers+st.BytesFromFollowers, served+st.BytesToFollowers
	}
	// The liar's share (a quarter) is fetched from the upstream by each
	// of the three: the upstream sends 3/4 + 3 × 1/4 = 1.5 × the payload,
	// not 3 ×.
	t.Logf("%d chunks, %d KiB payload: the upstream sent %.2f x, the followers each other %.2f x, in %.2f s; the liar was asked %d times",
		len(m.Chunks), m.PayloadBytes>>10, float64(fromUp)/float64(m.PayloadBytes), float64(fromOthers)/float64(m.PayloadBytes),
		time.Since(start).Seconds(), liarAsked.Load())
	if fromUp > m.PayloadBytes*17/10 {
		t.Errorf("the upstream sent %d bytes for a %d-byte payload to three followers that share", fromUp, m.PayloadBytes)
	}
	if fromOthers != served {
		t.Errorf("the followers got %d bytes from each other and served %d", fromOthers, served)
	}
	if liarAsked.Load() == 0 {
		t.Error("the lying follower was never asked: the test did not test it")
	}
}

// startLabChunks is startLab with the follower's chunks served (ServeChunk).
func startLabChunks(t *testing.T, st *store.Store, upstream func() *api.UpstreamStatus, chunks http.Handler) *lab {
	t.Helper()
	key, err := st.LabKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := seeder.LocalConfig()
	cfg.Store, cfg.LabKey, cfg.ScanInterval, cfg.Upstream, cfg.Chunks = st, key, 100*time.Millisecond, upstream, chunks
	cfg.Name = "server-" + filepath.Base(st.Dir())
	return &lab{st: st, srv: seedertest.Start(t, cfg)}
}

// gatedReader passes n bytes of r, then blocks until gate is closed (or
// ctx ends: its error).
type gatedReader struct {
	ctx  context.Context
	r    io.Reader
	n    int64
	gate chan struct{}
}

func (g *gatedReader) Read(b []byte) (int, error) {
	if g.n <= 0 {
		select {
		case <-g.gate:
			g.n = 1 << 62
		case <-g.ctx.Done():
			return 0, g.ctx.Err()
		}
	}
	if int64(len(b)) > g.n {
		b = b[:g.n]
	}
	n, err := g.r.Read(b)
	g.n -= int64(n)
	return n, err
}

// TestFollowStagesDuringPublish: two followers of one upstream fetch the
// chunks of a publish in progress (held half-way: its input stops) before
// its signed manifest exists, sharing them; meanwhile their labs are
// offered nothing of it (no image, no web seed, no chunk by index, and
// the staged chunks by SHA-256 to no one but the other follower). A
// publish that is given up leaves nothing staged (discarded); one that
// ends is replicated with the staged chunks claimed, whole, the upstream
// sending the payload about once.
func TestFollowStagesDuringPublish(t *testing.T) {
	up := startLab(t, openStore(t), nil)
	upAddr := up.srv.Lab().HTTPAddr
	var fs []*Follower
	var labs []*lab
	for i := range 2 {
		// Each follower reaches the campus from another address than
		// the one it serves its lab on (127.0.0.3, .4 against .1), as a
		// print server with a lab and a campus interface does.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(3+i))}}).DialContext
		f := pinned(t, Config{Store: openStore(t), Upstream: upAddr, Name: "lab" + strconv.Itoa(i+1), Stall: 5 * time.Second, Transport: tr})
		key, err := f.cfg.Store.LabKey()
		if err != nil {
			t.Fatal(err)
		}
		cfg := seeder.LocalConfig()
		cfg.Store, cfg.LabKey, cfg.ScanInterval, cfg.Upstream = f.cfg.Store, key, 100*time.Millisecond, f.Status
		cfg.Chunks, cfg.Staged = http.HandlerFunc(f.ServeChunk), http.HandlerFunc(f.ServeStaged)
		l := &lab{st: f.cfg.Store, srv: seedertest.Start(t, cfg)}
		f.cfg.HTTPAddr = l.srv.Lab().HTTPAddr
		f.cfg.Committed = func(string, int) { l.srv.Rescan() }
		fs, labs = append(fs, f), append(labs, l)
	}
	for _, f := range fs {
		run(t, f)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		f0, f1 := fs[0].Status(), fs[1].Status()
		if len(f0.Siblings) == 1 && len(f1.Siblings) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the followers do not learn of each other from the upstream")
		}
	}
	staged := func(f *Follower) int {
		ents, _ := os.ReadDir(filepath.Join(f.cfg.Store.Dir(), StageDir))
		return len(ents)
	}
	// publishHeld publishes img upstream, its input held after half.
	publishHeld := func(ctx context.Context, img []byte) (release func(), done chan error) {
		gate := make(chan struct{})
		done = make(chan error, 1)
		go func() {
			cfg := smallChunks
			cfg.Name, cfg.InputOrder = "lab", true
			_, err := up.st.Publish(ctx, &gatedReader{ctx: ctx, r: bytes.NewReader(img), n: int64(len(img) / 2), gate: gate}, cfg)
			done <- err
		}()
		return func() { close(gate) }, done
	}
	waitStaged := func(what string) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if fs[0].Status().ChunksStaged > 0 && fs[1].Status().ChunksStaged > 0 && staged(fs[0]) > 0 && staged(fs[1]) > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: a follower fetched nothing before the manifest exists (staged %d and %d chunks)", what, fs[0].Status().ChunksStaged, fs[1].Status().ChunksStaged)
			}
		}
	}

	// A publish given up half-way: what was staged is discarded.
	ctx, cancel := context.WithCancel(t.Context())
	_, done := publishHeld(ctx, genImage(t, 31, 4<<20))
	waitStaged("a publish held half-way")
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the publish given up succeeded")
	}
	for deadline := time.Now().Add(10 * time.Second); staged(fs[0])+staged(fs[1]) > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("chunks of a publish given up are still staged: %d and %d", staged(fs[0]), staged(fs[1]))
		}
	}
	before := [2]api.UpstreamStatus{*fs[0].Status(), *fs[1].Status()}

	// A publish held half-way, then let go.
	img := genImage(t, 32, 4<<20)
	release, done := publishHeld(t.Context(), img)
	waitStaged("a publish held half-way")
	// They share the staging: each gets chunks from the other.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if fs[0].Status().BytesFromFollowers > before[0].BytesFromFollowers && fs[1].Status().BytesFromFollowers > before[1].BytesFromFollowers {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the followers do not share the chunks they stage: %d and %d bytes from each other", fs[0].Status().BytesFromFollowers-before[0].BytesFromFollowers,
				fs[1].Status().BytesFromFollowers-before[1].BytesFromFollowers)
		}
	}
	time.Sleep(300 * time.Millisecond) // a few more rounds
	// The upstream lists only what a follower does not know yet.
	c := api.NewClient(upAddr)
	full, err := c.Publishing(t.Context(), nil)
	if err != nil || len(full) != 1 || len(full[0].Chunks) < 2 || full[0].From != 0 {
		t.Fatalf("the publish in progress: %+v, %v", full, err)
	}
	n := len(full[0].Chunks)
	part, err := c.Publishing(t.Context(), map[string]int{full[0].ID: n - 1})
	if err != nil || len(part) != 1 || part[0].From != n-1 || len(part[0].Chunks) < 1 || part[0].Chunks[0] != full[0].Chunks[n-1] {
		t.Fatalf("the publish in progress, %d chunks known: %+v, %v", n-1, part, err)
	}
	var sum string
	ents, _ := os.ReadDir(filepath.Join(fs[0].cfg.Store.Dir(), StageDir))
	for _, e := range ents {
		sum = e.Name()
	}
	other := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext}}
	for i, l := range labs {
		if ims, _ := l.st.Images(); len(ims) != 0 {
			t.Errorf("lab%d's store offers %d images before the manifest exists", i+1, len(ims))
		}
		base := "http://" + l.srv.Lab().HTTPAddr
		for _, c := range []struct {
			path string
			want int
		}{{api.PathSeed + chunker.TorrentName("lab", 1), 404}, {api.ChunkPath("lab", 1, 0), 404}} {
			resp, err := http.Get(base + c.path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Errorf("lab%d: GET %s: %s before the manifest exists", i+1, c.path, resp.Status)
			}
		}
		var infos []api.ImageInfo
		if err := getJSON(base+api.PathImages, &infos); err != nil || len(infos) != 0 {
			t.Errorf("lab%d lists %v (%v) before the manifest exists", i+1, infos, err)
		}
		// A staged chunk, asked for by SHA-256 by a machine that is not
		// the other follower.
		resp, err := other.Get(base + api.ChunkHashPath(sum))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("lab%d: a staged chunk asked for from 127.0.0.2: %s, want 403", i+1, resp.Status)
		}
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	im, err := up.st.Image("lab")
	if err != nil {
		t.Fatal(err)
	}
	m := im.Manifest
	var fromUp int64
	for i, l := range labs {
		got := waitVersion(t, l.st, "lab", 1, 30*time.Second)
		if err := got.Verify(t.Context(), nil); err != nil {
			t.Fatal(err)
		}
		st := fs[i].Status()
		t.Logf("lab%d: staged %d chunks (%d KiB) before the manifest, %d claimed by it (of %d); %d KiB from the upstream, %d KiB from the other follower",
			i+1, st.ChunksStaged-before[i].ChunksStaged, (st.BytesStaged-before[i].BytesStaged)>>10, st.StagedClaimed, len(m.Chunks),
			(st.BytesFetched-before[i].BytesFetched)>>10, (st.BytesFromFollowers-before[i].BytesFromFollowers)>>10)
		if st.StagedClaimed == 0 {
			t.Errorf("lab%d claimed no staged chunk", i+1)
		}
		fromUp += st.BytesFetched - before[i].BytesFetched
	}
	if fromUp > m.PayloadBytes*3/2 {
		t.Errorf("the upstream sent %d bytes for a %d-byte payload to two followers that share", fromUp, m.PayloadBytes)
	}
	for deadline := time.Now().Add(10 * time.Second); staged(fs[0])+staged(fs[1]) > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("chunks still staged after the version was replicated: %d and %d", staged(fs[0]), staged(fs[1]))
		}
	}
}

func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}
