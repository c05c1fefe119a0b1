package seeder

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/gossip"
	"github.com/labseed/labseed/internal/fixture"
	"github.com/labseed/labseed/internal/syncbuf"
	"github.com/labseed/labseed/peer"
	"github.com/labseed/labseed/store"
)

// nonReader asks the print server at addr for deals of ih from ip, over
// and over on new connections (keeping the last 32 open), and never reads
// an answer (the kernel's buffers take a deal whole, so the print server
// sees it sent). It returns how many requests it got out, when ctx ends.
func nonReader(ctx context.Context, ip, addr, ih string, want []byte) int {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: time.Second}
	req := fmt.Sprintf("POST %s%s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n",
		api.PathDeal, ih, addr, len(want))
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	sent := 0
	for ctx.Err() == nil {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			continue
		}
		conns = append(conns, c)
		if len(conns) > 32 { // the test shares its file descriptors with the server
			conns[0].Close()
			conns = conns[1:]
		}
		c.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := c.Write(append([]byte(req), want...)); err == nil {
			sent++
		}
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Millisecond):
		}
	}
	return sent
}

// TestDealStarvation is the deal part of finding 6 of issue 19 as an
// attack: four clients that are not lab members, and four from a host
// that joined the lab's gossip (the lab key is public), ask for deals of
// every piece as fast as they can and read none. A real workstation (no
// other peers, no web seed: every piece must be dealt to it) still gets
// the whole image from deals; the outsiders get none, the member at most
// a few deals before it is barred for not reading them. (Before, four
// such clients held three images' worth of deals in a minute and the
// workstations fell back to the web seed.)
func TestDealStarvation(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	im := publishGenerated(t, st, fixture.ImageOptions{TotalBytes: 12 << 20}, chunker.Config{Name: "lab1", Level: 1, PieceLength: 64 << 10})
	key, _ := st.LabKey()
	pub, _ := st.PublicKey()
	cfg := LocalConfig()
	cfg.Store, cfg.LabKey = st, key
	srv := runServer(t, cfg)
	waitSeeding(t, srv)
	m := im.Manifest
	pieces := int((m.PayloadBytes + m.PieceLength - 1) / m.PieceLength)
	want := make([]byte, (pieces+7)/8)
	for i := range want {
		want[i] = 0xff
	}
	const member = "127.0.0.95"
	node, err := gossip.New(gossip.Config{Name: "evil", BindAddr: member, BindPort: -1, AdvertiseAddr: member,
		Key: key, Local: true, Seeds: []string{srv.Lab().GossipAddr}})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	if err := node.Join(t.Context()); err != nil {
		t.Fatal(err)
	}

	actx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var requests atomic.Int64
	for _, ip := range []string{"127.0.0.91", "127.0.0.92", "127.0.0.93", "127.0.0.94", member, member, member, member} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			requests.Add(int64(nonReader(actx, ip, srv.Lab().HTTPAddr, m.InfoHash, want)))
		}()
	}
	time.Sleep(2 * time.Second) // let them take what they can

	dealtBefore := srv.dealt.Load()
	target := filepath.Join(t.TempDir(), "target")
	var alog syncbuf.Buffer
	a, err := peer.New(peer.Config{Server: srv.Lab().HTTPAddr, Target: target, PublicKey: pub, LabKey: key,
		ListenIP: "127.0.0.20", Local: true, Linger: -1, NoWebSeed: true, Name: "ws20",
		Logger: slog.New(slog.NewTextHandler(&alog, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("workstation log:\n%s", alog.String())
		}
	}()
	rctx, rcancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer rcancel()
	start := time.Now()
	err = a.Run(rctx)
	took := time.Since(start)
	stop()
	wg.Wait()
	attackers := srv.dealt.Load() - m.PayloadBytes // every byte dealt beyond the image's went to them
	t.Logf("workstation: %v in %.1f s; attackers sent %d requests and were dealt %d KiB (%d KiB before the workstation started); the image is %d KiB",
		err, took.Seconds(), requests.Load(), attackers>>10, dealtBefore>>10, m.PayloadBytes>>10)
	if err != nil {
		t.Fatalf("the workstation did not get the image: %v", err)
	}
	if _, err := os.Stat(target); err != nil {
		t.Fatal(err)
	}
	if took > 20*time.Second {
		t.Errorf("the workstation took %.1f s for %d KiB: starved", took.Seconds(), m.PayloadBytes>>10)
	}
	if requests.Load() < 100 {
		t.Errorf("only %d attacking requests: the attack did not run", requests.Load())
	}
	// The member may hold at most maxUnconfirmed deals in doubt and
	// DealsPerIP under way; once it asks again for what it did not read,
	// it gets nothing for the dealer's hold time.
	if dealtBefore > int64(maxUnconfirmed+DefaultDealsPerIP)*deal4(m) {
		t.Errorf("before the workstation came, the attackers were dealt %d KiB: more than a member's bound", dealtBefore>>10)
	}
}

// deal4 is the size of one deal: DefaultMaxRun pieces.
func deal4(m *chunker.Manifest) int64 { return 4 * m.PieceLength }
