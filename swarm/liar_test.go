package swarm

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/anacrolix/torrent"
)

// aliasDialer lets one test client see other clients, all listening on
// 127.0.0.1, under distinct made-up addresses from TEST-NET-1 (RFC 5737):
// anacrolix bans by IP, and in a real lab every machine has its own. It
// dials only aliases it knows, so no packet ever leaves 127.0.0.1.
type aliasDialer map[netip.AddrPort]netip.AddrPort

func (d aliasDialer) Dial(ctx context.Context, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, err
	}
	real, ok := d[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())]
	if !ok {
		return nil, fmt.Errorf("aliasDialer: no alias %s", addr)
	}
	var nd net.Dialer
	return nd.DialContext(ctx, "tcp4", real.String())
}

func (aliasDialer) DialerNetwork() string { return "tcp4" }

// TestLyingPeer has a leecher download from an honest seeder and from a
// "liar" whose payload has a flipped byte in every other piece but whose
// Completion says everything is complete.
//
// What anacrolix v1.59.1 does with the liar: every piece that fails its
// hash check counts in PiecesDirtiedBad (Traffic.HashFailures). If the
// failed piece's data came from a single untrusted connection, that
// connection's IP is banned for the life of the client (Client.BadPeerIPs,
// stored in IPv4-in-IPv6 form): every connection from that IP is dropped and
// the IP is refused from then on, by AddPeers, dialing and accepting alike. If
// several connections contributed, nobody is banned then, but when the piece
// later passes, "smart ban" bans the IPs whose blocks differed from the good
// data (stored in plain IPv4 form, which drops their connections but, unlike
// the other form, does not stop them from being added and dialed again).
// Peers added with PeerInfo.Trusted are exempt from the first rule only. A
// web seed that sent bad data is suspended for a minute instead.
//
// The leecher asks for blocks of a whole piece (BlockSize: each piece from
// one peer, hashed by the storage, selfHashingPiece) and, as a syncing
// workstation does, of 32 KiB (a piece from several peers, hashed by
// anacrolix's smart-ban writer).
func TestLyingPeer(t *testing.T) {
	for _, bs := range []int{BlockSize, 32 << 10} {
		t.Run(fmt.Sprintf("blocks of %d KiB", bs>>10), func(t *testing.T) { testLyingPeer(t, bs) })
	}
}

func testLyingPeer(t *testing.T, blockSize int) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	src := writePayload(t, t.TempDir(), "image.payload", 8<<20, 4)
	mi := makeTorrent(t, src)
	info, err := mi.UnmarshalInfo()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	for p := 0; p < info.NumPieces(); p += 2 {
		b[int64(p)*info.PieceLength+1000] ^= 0xff
	}
	liarPath := filepath.Join(t.TempDir(), info.Name)
	if err := os.WriteFile(liarPath, b, 0o644); err != nil {
		t.Fatal(err)
	}

	// Rate-limited so that both seeders get to serve a share.
	honest := newTestClient(t, Config{UploadRate: 8 << 20}, nil)
	honest.add(t, mi, Files{Path: src, ReadOnly: true, Completion: AllComplete()})
	liar := newTestClient(t, Config{UploadRate: 8 << 20}, nil)
	liar.add(t, mi, Files{Path: liarPath, ReadOnly: true, Completion: AllComplete()})

	honestAddr := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.10"), honest.addr().Port())
	liarAddr := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.66"), liar.addr().Port())
	leecher := newTestClient(t, Config{}, func(tc *torrent.ClientConfig) {
		tc.DialForPeerConns = false // only aliasDialer dials
	})
	leecher.cl.AddDialer(aliasDialer{honestAddr: honest.addr(), liarAddr: liar.addr()})
	dst := filepath.Join(t.TempDir(), info.Name)
	tor := leecher.add(t, mi, Files{Path: dst, BlockSize: blockSize})
	leecher.st.mu.Lock()
	pl := leecher.st.open[mi.HashInfoBytes()]
	leecher.st.mu.Unlock()
	if pl == nil {
		t.Fatal("the leecher's payload is not open after AddTorrent")
	}
	if _, self := pl.pieceImpl(0).(selfHashingPiece); self != (blockSize >= testPieceLength) {
		t.Errorf("blocks of %d bytes, pieces of %d: self-hashing %v", blockSize, testPieceLength, self)
	}
	tor.AddPeers([]torrent.PeerInfo{
		{Addr: honestAddr, Source: torrent.PeerSourceDirect},
		{Addr: liarAddr, Source: torrent.PeerSourceDirect},
	})
	tor.DownloadAll()
	waitComplete(ctx, t, tor, leecher, honest, liar)
	sameFile(t, src, dst)

	tr := NewMeter(honestAddr.String()).Update(tor)
	banned := map[netip.Addr]bool{}
	for _, s := range leecher.cl.BadPeerIPs() {
		if a, err := netip.ParseAddr(s); err == nil {
			banned[a.Unmap()] = true
		}
	}
	t.Logf("traffic %+v, banned %v", tr, leecher.cl.BadPeerIPs())
	if tr.HashFailures == 0 {
		t.Error("no hash failures counted")
	}
	if !banned[liarAddr.Addr()] {
		t.Errorf("liar %s not banned (banned: %v)", liarAddr.Addr(), leecher.cl.BadPeerIPs())
	}
	if banned[honestAddr.Addr()] {
		t.Errorf("honest seeder %s banned", honestAddr.Addr())
	}
	if tr.FromServer == 0 {
		t.Errorf("nothing counted from the honest seeder %s: %+v", honestAddr, tr)
	}
}
