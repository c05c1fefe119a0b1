package peer

import (
	"context"
	"encoding/binary"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"
	"github.com/labseed/labseed/gossip"
	"github.com/labseed/labseed/internal/btwire"
	"github.com/labseed/labseed/internal/syncbuf"
)

// haveAllLiar is a lab member (the lab key is public) whose BitTorrent
// side claims every piece, accepts requests and never sends a byte of
// piece data.
type haveAllLiar struct {
	t        *testing.T
	ip       string
	ln       net.Listener
	infoHash [20]byte
	pieces   int
	node     *gossip.Node
	conns    atomic.Int32 // handshakes completed
	requests atomic.Int32 // requests received (never answered)
	mu       sync.Mutex
	open     []net.Conn
	// answer, when set, is called with each request (before the liar
	// starts): it may send the block; false stops reading the connection.
	answer func(c net.Conn, index, begin, length uint32) bool
}

// startLiar joins the lab of the print server whose gossip address is
// seed, on ip, as a workstation that seeds the torrent of mi.
func startLiar(t *testing.T, ip, seed string, key []byte, mi *metainfo.MetaInfo) *haveAllLiar {
	return startMember(t, ip, seed, key, mi, nil)
}

// startMember is startLiar with the liar's answer to requests.
func startMember(t *testing.T, ip, seed string, key []byte, mi *metainfo.MetaInfo, answer func(c net.Conn, index, begin, length uint32) bool) *haveAllLiar {
	t.Helper()
	info, err := mi.UnmarshalInfo()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	l := &haveAllLiar{t: t, ip: ip, ln: ln, infoHash: mi.HashInfoBytes(), pieces: info.NumPieces(), answer: answer}
	t.Cleanup(func() {
		ln.Close()
		l.mu.Lock()
		for _, c := range l.open {
			c.Close()
		}
		l.mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go l.serve(c)
		}
	}()
	l.node, err = gossip.New(gossip.Config{Name: "liar", BindAddr: ip, BindPort: -1, AdvertiseAddr: ip,
		Key: key, Local: true, Seeds: []string{seed}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.node.Close() })
	l.node.SetStatus(gossip.Status{Role: gossip.RolePeer, Phase: gossip.PhaseSeeding, TorrentAddr: l.addr()})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := l.node.Join(ctx); err != nil {
		t.Fatal(err)
	}
	go l.dialWorkstations(t.Context())
	return l
}

func (l *haveAllLiar) addr() string { return l.ln.Addr().String() }

// dialWorkstations connects to the workstations that expect this member
// to dial them (see dials), as an honest workstation would.
func (l *haveAllLiar) dialWorkstations(ctx context.Context) {
	dialled := map[string]bool{}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(l.ip)}}
	for ctx.Err() == nil {
		for _, m := range l.node.Members() {
			a := m.Status.TorrentAddr
			if m.Status.Role != gossip.RolePeer || a == "" || a == l.addr() || dialled[a] || !dials(l.addr(), a) {
				continue
			}
			dialled[a] = true
			if c, err := d.DialContext(ctx, "tcp", a); err == nil {
				go l.serve(c)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// serve lies on one connection until it closes.
func (l *haveAllLiar) serve(c net.Conn) {
	l.mu.Lock()
	l.open = append(l.open, c)
	l.mu.Unlock()
	defer c.Close()
	if err := btwire.Handshake(c, l.infoHash, [20]byte([]byte("-LIAR0-have-them-all"))); err != nil {
		return
	}
	l.conns.Add(1)
	if _, err := c.Write(append(btwire.HaveAll(l.pieces), btwire.Message(btwire.Unchoke, nil)...)); err != nil {
		return
	}
	go func() {
		if l.answer != nil {
			return // the answers keep it alive
		}
		// Keep the connection alive.
		for {
			time.Sleep(time.Second)
			if _, err := c.Write([]byte{0, 0, 0, 0}); err != nil {
				return
			}
		}
	}()
	for {
		id, b, err := btwire.ReadMessage(c, 1<<20)
		if err != nil {
			return
		}
		if id == btwire.Request {
			l.requests.Add(1)
			if l.answer != nil && len(b) == 12 && !l.answer(c, binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:]), binary.BigEndian.Uint32(b[8:])) {
				<-l.t.Context().Done()
				return
			}
		}
	}
}

// TestHaveAllLiar: a lab member that claims every piece and never sends
// one does not stop the print server from dealing this workstation its
// pieces. (The workstation asks the print server only for pieces no
// workstation it is connected to has; before the fix it believed the
// liar, asked for nothing, and without the web seed never finished.)
func TestHaveAllLiar(t *testing.T) {
	srv, im, pub, key := testServer(t)
	mi, err := metainfo.LoadFromFile(im.TorrentPath())
	if err != nil {
		t.Fatal(err)
	}
	liar := startLiar(t, "127.0.0.66", srv.Lab().GossipAddr, key, mi)

	var logs syncbuf.Buffer
	a, err := New(Config{Server: srv.Lab().HTTPAddr, Target: t.TempDir(), PublicKey: pub, LabKey: key,
		Local: true, ListenIP: "127.0.0.1", Linger: -1, NoWebSeed: true,
		// Slow enough that the liar is connected long before the
		// download ends (2.8 MB: about 7 s).
		Rate:   400 << 10,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	err = a.Run(ctx)
	t.Logf("the liar had %d connections and %d requests", liar.conns.Load(), liar.requests.Load())
	if err != nil {
		t.Fatalf("with a have-all liar in the lab: %v\n%s", err, logs.String())
	}
	if liar.conns.Load() == 0 {
		t.Fatalf("the workstation never connected to the liar: the test proved nothing\n%s", logs.String())
	}
	if dealt := metric(t, srv, "labseed_server_dealt_bytes_total"); dealt != im.Manifest.PayloadBytes {
		t.Errorf("the print server dealt %d bytes, want the payload, %d", dealt, im.Manifest.PayloadBytes)
	}
}
