package swarm

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
)

const testPieceLength = 256 << 10

var loopback = netip.MustParseAddr("127.0.0.1")

// writePayload writes size pseudo-random bytes to dir/name and returns the
// path.
func writePayload(t testing.TB, dir, name string, size int64, seed uint64) string {
	t.Helper()
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}))
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		n := min(left, int64(len(buf)))
		for i := range buf[:n] {
			buf[i] = byte(r.Uint32())
		}
		if _, err := f.Write(buf[:n]); err != nil {
			t.Fatal(err)
		}
		left -= n
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// makeTorrent builds the single-file v1 metainfo of the file at path.
func makeTorrent(t testing.TB, path string) *metainfo.MetaInfo {
	t.Helper()
	info := metainfo.Info{PieceLength: testPieceLength}
	if err := info.BuildFromFilePath(path); err != nil {
		t.Fatal(err)
	}
	b, err := bencode.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	return &metainfo.MetaInfo{InfoBytes: b}
}

// testClient is one client with its storage on 127.0.0.1.
type testClient struct {
	cl *torrent.Client
	st *Storage
}

// newTestClient starts a client on 127.0.0.1 and a free port; mutate, if
// not nil, edits the anacrolix configuration first.
func newTestClient(t testing.TB, cfg Config, mutate func(*torrent.ClientConfig)) testClient {
	t.Helper()
	if cfg.Storage == nil {
		cfg.Storage = NewStorage()
	}
	cfg.ListenIP = "127.0.0.1"
	// clientConfig and startClient take Port as NewClient resolves it:
	// 0 is a free port.
	tc, err := clientConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(tc)
	}
	cl, err := startClient(cfg, tc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cl.Close()
		if err := cfg.Storage.Close(); err != nil {
			t.Errorf("close storage: %v", err)
		}
	})
	return testClient{cl: cl, st: cfg.Storage}
}

// addr is the client's torrent address.
func (c testClient) addr() netip.AddrPort {
	return netip.AddrPortFrom(loopback, uint16(c.cl.LocalPort()))
}

// add registers f and adds mi, asking for blocks of f.BlockSize.
func (c testClient) add(t testing.TB, mi *metainfo.MetaInfo, f Files) *torrent.Torrent {
	t.Helper()
	c.st.Register(mi.HashInfoBytes(), f)
	tor, err := AddTorrent(c.cl, mi, f.BlockSize)
	if err != nil {
		t.Fatal(err)
	}
	return tor
}

// peerInfo is how gossip would hand c to another client.
func (c testClient) peerInfo() torrent.PeerInfo {
	return torrent.PeerInfo{Addr: c.addr(), Source: torrent.PeerSourceDirect}
}

// waitComplete waits for tor to complete or ctx to end; on failure it logs
// the status of the clients given.
func waitComplete(ctx context.Context, t testing.TB, tor *torrent.Torrent, clients ...testClient) {
	t.Helper()
	select {
	case <-tor.Complete().On():
	case <-ctx.Done():
		var buf bytes.Buffer
		for _, c := range clients {
			c.cl.WriteStatus(&buf)
		}
		t.Fatalf("%s not complete: %d of %d bytes (%+v)\n%s", tor.Name(), tor.BytesCompleted(), tor.Length(), NewMeter().Update(tor), buf.String())
	}
}

// poll calls cond every 10 ms until it is true or ctx ends.
func poll(ctx context.Context, cond func() bool) bool {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
	return true
}

// sameFile fails t unless the files at a and b hold the same bytes.
func sameFile(t testing.TB, a, b string) {
	t.Helper()
	fa, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for off := int64(0); ; {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			t.Fatalf("%s and %s differ in the MiB at offset %d", a, b, off)
		}
		if ea != nil || eb != nil {
			if ea != eb {
				t.Fatalf("%s and %s differ in length (%v, %v)", a, b, ea, eb)
			}
			return
		}
		off += int64(na)
	}
}
