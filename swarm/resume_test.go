package swarm

import (
	"bytes"
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anacrolix/torrent"
)

// TestResumeSkipsVerifiedPieces stops a leecher half-way, restarts it with
// the same bitmap and payload file and checks that it downloads only what it
// had not verified, and that pieces written but not recorded are found by
// hashing rather than downloaded.
func TestResumeSkipsVerifiedPieces(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	src := writePayload(t, t.TempDir(), "image.payload", 16<<20, 3)
	mi := makeTorrent(t, src)
	info, err := mi.UnmarshalInfo()
	if err != nil {
		t.Fatal(err)
	}
	n := info.NumPieces()

	// 8 MiB/s: the whole payload takes 2 s, time enough to stop half-way.
	seeder := newTestClient(t, Config{UploadRate: 8 << 20}, nil)
	seeder.add(t, mi, Files{Path: src, ReadOnly: true})

	dir := t.TempDir()
	dst, bm := filepath.Join(dir, info.Name), filepath.Join(dir, info.Name+".bitmap")

	// First run, stopped once half the pieces are verified.
	comp, err := OpenBitmap(bm, n)
	if err != nil {
		t.Fatal(err)
	}
	var verified atomic.Int64
	first := newTestClient(t, Config{}, nil)
	tor := first.add(t, mi, Files{Path: dst, Completion: comp, OnPiece: func(_ int, ok bool) {
		if ok {
			verified.Add(1)
		}
	}})
	tor.AddPeers([]torrent.PeerInfo{seeder.peerInfo()})
	tor.DownloadAll()
	if !poll(ctx, func() bool { return verified.Load() >= int64(n/2) }) {
		var buf bytes.Buffer
		first.cl.WriteStatus(&buf)
		seeder.cl.WriteStatus(&buf)
		t.Fatalf("first run verified %d of %d pieces\n%s", verified.Load(), n, buf.String())
	}
	first.cl.Close() // closes the torrent's storage, and with it the bitmap

	// What did it leave verified? Forget three of those pieces, as if the
	// peer had been killed between writing them and recording them: their
	// data is in the file, the restarted client must find it by hashing.
	comp, err = OpenBitmap(bm, n)
	if err != nil {
		t.Fatal(err)
	}
	var done int
	var doneBytes int64
	var forgotten []int
	for i := range n {
		if c, _ := comp.Get(i); c {
			done++
			doneBytes += info.Piece(i).Length()
			if len(forgotten) < 3 {
				forgotten = append(forgotten, i)
				if err := comp.Set(i, false); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := comp.Close(); err != nil {
		t.Fatal(err)
	}
	if done < n/2 || done == n {
		t.Fatalf("first run left %d of %d pieces verified, want at least half and not all", done, n)
	}

	// Second run.
	comp, err = OpenBitmap(bm, n)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range forgotten {
		if c, known := comp.Get(i); c || known {
			t.Fatalf("forgotten piece %d: complete %v known %v, want unknown", i, c, known)
		}
	}
	var mu sync.Mutex
	rechecked := map[int]bool{}
	second := newTestClient(t, Config{}, nil)
	tor = second.add(t, mi, Files{Path: dst, Completion: comp, OnPiece: func(i int, ok bool) {
		mu.Lock()
		rechecked[i] = ok
		mu.Unlock()
	}})
	tor.AddPeers([]torrent.PeerInfo{seeder.peerInfo()})
	tor.DownloadAll()
	waitComplete(ctx, t, tor, second, seeder)
	sameFile(t, src, dst)

	st := tor.Stats()
	got, limit := st.BytesReadData.Int64(), info.Length-doneBytes
	t.Logf("first run verified %d of %d pieces; second run read %d bytes of piece data (limit %d): %+v", done, n, got, limit, NewMeter().Update(tor))
	if got > limit {
		t.Errorf("second run read %d bytes of piece data, want at most %d: verified pieces were downloaded again", got, limit)
	}
	if h := st.PiecesDirtiedBad.Int64(); h != 0 {
		t.Errorf("%d hash failures counted, want 0 (start-up checks of empty pieces are not failures)", h)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, i := range forgotten {
		if !rechecked[i] {
			t.Errorf("forgotten piece %d was not re-verified by hashing", i)
		}
	}
}
