package peer

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"
	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/internal/syncbuf"
	"github.com/labseed/labseed/swarm"
)

// TestResumeDamagedStaging is a power cut that kept the piece bitmap but
// not the data: a workstation resumes with every piece recorded verified,
// but the staged bytes of two chunks are damaged on disk. Their chunk
// hashes fail, their pieces are verified again and the bad ones fetched
// again: the run must finish, without the web seed to rescue it.
//
// Before the fix, re-verifying the good pieces of a damaged chunk counted
// them verified a second time, so the count reached the payload size while
// a piece was missing; and the feeders, which stop once everything is
// verified, had stopped already: nothing fetched the bad pieces any more.
func TestResumeDamagedStaging(t *testing.T) {
	srv, im, pub, key := testServer(t)
	m := im.Manifest
	if len(m.Chunks) < 2 {
		t.Fatalf("the test image has %d chunks, want at least 2", len(m.Chunks))
	}
	mi, err := metainfo.LoadFromFile(im.TorrentPath())
	if err != nil {
		t.Fatal(err)
	}
	info, err := mi.UnmarshalInfo()
	if err != nil {
		t.Fatal(err)
	}

	// The staging area as a run that verified every piece leaves it.
	target := filepath.Join(t.TempDir(), "target")
	tdir := filepath.Join(target, chunker.StateDirName, "torrent")
	if err := os.MkdirAll(tdir, 0o700); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(im.PayloadPath())
	if err != nil {
		t.Fatal(err)
	}
	payload, err := os.Create(filepath.Join(tdir, info.Name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(payload, src); err != nil {
		t.Fatal(err)
	}
	src.Close()
	bm, err := swarm.OpenBitmap(filepath.Join(tdir, "pieces.bitmap"), info.NumPieces())
	if err != nil {
		t.Fatal(err)
	}
	for p := range info.NumPieces() {
		if err := bm.Set(p, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := bm.Close(); err != nil {
		t.Fatal(err)
	}
	// Damage one piece of the first chunk and one of the last: the other
	// pieces of those chunks are good and verify again.
	for _, c := range []int{0, len(m.Chunks) - 1} {
		ch := m.Chunks[c]
		if _, err := payload.WriteAt([]byte("power cut"), ch.Offset+ch.Size/2); err != nil {
			t.Fatal(err)
		}
	}
	if err := payload.Close(); err != nil {
		t.Fatal(err)
	}

	var logs syncbuf.Buffer
	a, err := New(Config{Server: srv.Lab().HTTPAddr, Target: target, PublicKey: pub, LabKey: key,
		Local: true, ListenIP: "127.0.0.1", Linger: -1, NoWebSeed: true,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := a.Run(ctx); err != nil {
		t.Fatalf("resume with damaged staging: %v\n%s", err, logs.String())
	}
	if dealt := metric(t, srv, "labseed_server_dealt_bytes_total"); dealt == 0 || dealt > 2*m.PieceLength {
		t.Errorf("the print server dealt %d bytes, want the two damaged pieces (%d bytes each)\n%s", dealt, m.PieceLength, logs.String())
	}
}
