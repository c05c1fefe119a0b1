package swarm

import (
	"context"
	"maps"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/anacrolix/torrent"
)

// TestMeterKeepsClosedConnections has a leecher download from a server and
// a peer while a Meter follows it, then both close their connections: the
// Meter still counts what came over them.
func TestMeterKeepsClosedConnections(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	src := writePayload(t, t.TempDir(), "image.payload", 8<<20, 5)
	mi := makeTorrent(t, src)

	// Rate-limited so that both get to serve a share.
	server := newTestClient(t, Config{UploadRate: 8 << 20}, nil)
	serverTor := server.add(t, mi, Files{Path: src, ReadOnly: true, Completion: AllComplete()})
	other := newTestClient(t, Config{UploadRate: 8 << 20}, nil)
	otherTor := other.add(t, mi, Files{Path: src, ReadOnly: true, Completion: AllComplete()})

	leecher := newTestClient(t, Config{}, nil)
	dst := filepath.Join(t.TempDir(), "image.payload")
	tor := leecher.add(t, mi, Files{Path: dst})
	m := NewMeter(server.addr().String())
	tor.AddPeers([]torrent.PeerInfo{server.peerInfo(), other.peerInfo()})
	tor.DownloadAll()
	poll(ctx, func() bool {
		m.Update(tor)
		return tor.Complete().Bool()
	})
	waitComplete(ctx, t, tor, leecher, server, other)
	sameFile(t, src, dst)
	done := m.Update(tor)
	t.Logf("complete: %+v", done)
	if done.FromServer == 0 || done.FromPeers == 0 || done.FromServer+done.FromPeers != tor.Length() || done.Peers != 2 {
		t.Errorf("traffic %+v: want %d bytes from the server and the peer, both connected", done, tor.Length())
	}

	serverTor.Drop()
	otherTor.Drop()
	if !poll(ctx, func() bool { return m.Update(tor).Peers == 0 }) {
		t.Fatalf("connections still open: %+v", m.Traffic())
	}
	tr := m.Traffic()
	t.Logf("closed: %+v; a new meter: %+v", tr, NewMeter(server.addr().String()).Update(tor))
	if tr.FromServer != done.FromServer || tr.FromPeers != done.FromPeers || tr.Received() != tor.Length() {
		t.Errorf("traffic after the connections closed %+v, want %+v with no peers", tr, done)
	}
}

func TestNewMeterServerAddrs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		addrs   []string
		exact   []netip.AddrPort
		anyPort []netip.Addr
	}{
		{"none", nil, nil, nil},
		{"IP and port", []string{"10.77.0.1:6881"}, []netip.AddrPort{netip.MustParseAddrPort("10.77.0.1:6881")}, nil},
		{"IPv4-mapped", []string{"[::ffff:10.77.0.1]:6881"}, []netip.AddrPort{netip.MustParseAddrPort("10.77.0.1:6881")}, nil},
		{"bare IP", []string{"10.77.0.1"}, nil, []netip.Addr{netip.MustParseAddr("10.77.0.1")}},
		{"unparsable ignored", []string{"", "printserver:6881", "10.77.0.1:port"}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMeter(tc.addrs...)
			exact := slices.SortedFunc(maps.Keys(m.exact), netip.AddrPort.Compare)
			anyPort := slices.SortedFunc(maps.Keys(m.anyPort), netip.Addr.Compare)
			if !slices.Equal(exact, tc.exact) || !slices.Equal(anyPort, tc.anyPort) {
				t.Errorf("NewMeter(%q): exact %v, any port %v; want %v, %v", tc.addrs, exact, anyPort, tc.exact, tc.anyPort)
			}
		})
	}
}
