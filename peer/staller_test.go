package peer

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"
	"github.com/labseed/labseed/internal/btwire"
	"github.com/labseed/labseed/internal/syncbuf"
)

// TestStallingPeer: a lab member that holds the whole image sends good
// blocks, then stops answering in the middle of a piece (half a block
// sent, the connection left open, never another byte). The workstations
// connected to it all finish: the piece it stalled in is got elsewhere.
func TestStallingPeer(t *testing.T) {
	srv, im, pub, key := testServer(t)
	mi, err := metainfo.LoadFromFile(im.TorrentPath())
	if err != nil {
		t.Fatal(err)
	}
	payload, err := os.Open(im.PayloadPath())
	if err != nil {
		t.Fatal(err)
	}
	defer payload.Close()
	const good = 6 // blocks answered whole before the stall
	var (
		answered atomic.Int32
		mu       sync.Mutex
		stalled  []uint32 // pieces it stalled in
	)
	answer := func(c net.Conn, index, begin, length uint32) bool {
		if length > 1<<20 {
			return false
		}
		block := make([]byte, length)
		if _, err := payload.ReadAt(block, int64(index)*im.Manifest.PieceLength+int64(begin)); err != nil && err != io.EOF {
			return false
		}
		p := binary.BigEndian.AppendUint32(nil, index)
		p = binary.BigEndian.AppendUint32(p, begin)
		msg := btwire.Message(btwire.Piece, append(p, block...))
		if answered.Add(1) > good {
			c.Write(msg[:len(msg)/2]) // half a block, then silence
			mu.Lock()
			stalled = append(stalled, index)
			mu.Unlock()
			return false
		}
		_, err := c.Write(msg)
		return err == nil
	}
	staller := startMember(t, "127.0.0.67", srv.Lab().GossipAddr, key, mi, answer)

	var wg sync.WaitGroup
	errs := make([]error, 2)
	logs := make([]syncbuf.Buffer, 2)
	for i := range 2 {
		a, err := New(Config{Server: srv.Lab().HTTPAddr, Target: filepath.Join(t.TempDir(), "target"), PublicKey: pub, LabKey: key,
			Local: true, ListenIP: "127.0.0." + string(rune('3'+i)), Linger: -1, NoWebSeed: true,
			// Slow enough that the staller is asked for blocks.
			Rate:   400 << 10,
			Logger: slog.New(slog.NewTextHandler(&logs[i], nil))})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			errs[i] = a.Run(ctx)
		}()
	}
	wg.Wait()
	mu.Lock()
	t.Logf("the staller had %d connections, %d requests, answered %d blocks, stalled in pieces %v", staller.conns.Load(), staller.requests.Load(), min(answered.Load(), good), stalled)
	mu.Unlock()
	for i, err := range errs {
		if err != nil {
			t.Errorf("workstation %d, with a peer that stalls in a piece: %v\n%s", i, err, logs[i].String())
		}
	}
	if len(stalled) == 0 {
		t.Fatal("the staller never stalled in a piece: the test proved nothing")
	}
}
