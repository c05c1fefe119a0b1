package swarm

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/anacrolix/torrent"
)

// TestBlocksArriveOnce: a leecher whose download is the bottleneck fetches
// from six seeders that hold the whole payload, and receives every block
// once. With anacrolix's own rule (RequestStealAfter 0) it moved requests
// to whichever connection had room, among them blocks a seeder had already
// written into its socket, and those arrived twice: 5-11 of ~100 blocks in
// each of six runs (StealAfter).
func TestBlocksArriveOnce(t *testing.T) {
	const size = 24 << 20
	src := writePayload(t, t.TempDir(), "image.payload", size, 3)
	mi := makeTorrent(t, src)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var seeders []testClient
	for range 6 {
		s := newTestClient(t, Config{}, nil)
		s.add(t, mi, Files{Path: src, ReadOnly: true, Completion: AllComplete()})
		seeders = append(seeders, s)
	}
	// The leecher's port is the bottleneck, as in a lab: what a seeder
	// sends waits in the sockets, where a cancel cannot reach it.
	leecher := newTestClient(t, Config{DownloadRate: 8 << 20}, nil)
	dst := filepath.Join(t.TempDir(), "image.payload")
	tor := leecher.add(t, mi, Files{Path: dst})
	for _, s := range seeders {
		tor.AddPeers([]torrent.PeerInfo{s.peerInfo()})
	}
	tor.DownloadAll()
	waitComplete(ctx, t, tor, append(seeders, leecher)...)
	sameFile(t, src, dst)
	st := tor.Stats()
	if wasted := st.ChunksReadWasted.Int64(); wasted != 0 {
		t.Errorf("%d of %d blocks received arrived twice", wasted, st.ChunksRead.Int64())
	}
	t.Logf("%d blocks read, %d useful", st.ChunksRead.Int64(), st.ChunksReadUseful.Int64())
}
