package peer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/internal/fixture"
	"github.com/labseed/labseed/internal/seedertest"
	"github.com/labseed/labseed/internal/syncbuf"
	"github.com/labseed/labseed/seeder"
	"github.com/labseed/labseed/store"
	"github.com/labseed/labseed/treecmp"
)

// syncChunks are small chunks and pieces, so that a test image has many of
// both and a few changed files change a few chunks.
var syncChunks = chunker.Config{Name: "lab1", Level: 1, ChunkMin: 64 << 10, ChunkAvg: 256 << 10, ChunkMax: 1 << 20, PieceLength: 16 << 10}

// nextVersion returns the tar v1 with a few regular files changed, two
// removed and one added.
func nextVersion(t *testing.T, v1 []byte) []byte {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(v1))
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	files := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg && len(data) > 1000 {
			files++
			switch files {
			case 40, 41:
				continue // removed
			case 100, 300, 500:
				copy(data[len(data)/2:], "changed in v2")
				h.ModTime = h.ModTime.Add(time.Hour)
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	tw.WriteHeader(&tar.Header{Name: "./usr/share/doc/added-in-v2", Typeflag: tar.TypeReg, Mode: 0o644, Size: 4, ModTime: time.Unix(1800000000, 0)})
	tw.Write([]byte("new\n"))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestSync: a workstation that holds v1 from a full fetch syncs to v2:
// the chunks v1 shares with v2 come from its disk (the payload kept
// beside the record of v1), only the others from the print server; the
// tree equals v2 extracted afresh, and the record says v2.
func TestSync(t *testing.T) {
	var v1 bytes.Buffer
	if err := fixture.GenerateImage(&v1, fixture.ImageOptions{TotalBytes: 24 << 20, Seed: 5, NoDevices: os.Geteuid() != 0}); err != nil {
		t.Fatal(err)
	}
	v2 := nextVersion(t, v1.Bytes())
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	im1, err := st.Publish(t.Context(), bytes.NewReader(v1.Bytes()), syncChunks)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := st.PublicKey()
	key, _ := st.LabKey()
	cfg := seeder.LocalConfig()
	cfg.Store, cfg.LabKey = st, key
	srv := seedertest.Start(t, cfg)
	target := filepath.Join(t.TempDir(), "target")
	run := func(sync bool, want int) (Progress, string, error) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if ims := srv.Status().Images; len(ims) == 1 && ims[0].Version == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the print server does not serve v%d", want)
			}
		}
		var logs syncbuf.Buffer
		var last Progress
		a, err := New(Config{Server: srv.Lab().HTTPAddr, Target: target, PublicKey: pub, LabKey: key, Sync: sync,
			Local: true, ListenIP: "127.0.0.1", Linger: -1, NoWebSeed: true, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
			Progress: func(p Progress) { last = p }})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		err = a.Run(ctx)
		return last, logs.String(), err
	}
	if _, logs, err := run(false, 1); err != nil {
		t.Fatalf("v1: %v\n%s", err, logs)
	}
	rec, _, err := chunker.ReadInstalled(target)
	if err != nil || rec.Version != 1 || !rec.Payload {
		t.Fatalf("after v1 the record is %+v, %v", rec, err)
	}
	dealt1 := metric(t, srv, "labseed_server_dealt_bytes_total")

	im2, err := st.Publish(t.Context(), bytes.NewReader(v2), syncChunks)
	if err != nil {
		t.Fatal(err)
	}
	m2 := im2.Manifest
	local := map[int]bool{}
	var changed int64
	for i, c := range m2.Chunks {
		if slices.ContainsFunc(im1.Manifest.Chunks, func(o chunker.Chunk) bool { return o.SHA256 == c.SHA256 }) {
			local[i] = true
		} else {
			changed += c.Size
		}
	}
	t.Logf("v2: %d chunks, %d of them in v1; %d bytes of changed chunks", len(m2.Chunks), len(local), changed)
	// A chunk of the payload kept on the disk is damaged (between two
	// good ones): the sync's check finds it and it is fetched.
	damaged := -1
	for i := 1; i+1 < len(m2.Chunks) && damaged < 0; i++ {
		if local[i-1] && local[i] && local[i+1] {
			damaged = i
		}
	}
	if damaged < 0 {
		t.Fatal("no chunk of v2 between two of v1's")
	}
	for _, o := range im1.Manifest.Chunks {
		if o.SHA256 == m2.Chunks[damaged].SHA256 {
			f, err := os.OpenFile(chunker.InstalledPayload(target), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteAt([]byte("damaged"), o.Offset+o.Size/2)
			f.Close()
			break
		}
	}
	delete(local, damaged)
	changed += m2.Chunks[damaged].Size

	if _, _, err := run(false, 2); !errors.Is(err, chunker.ErrNotEmpty) {
		t.Fatalf("a full fetch into the tree of v1: %v, want ErrNotEmpty", err)
	}
	p, logs, err := run(true, 2)
	if err != nil {
		t.Fatalf("v2: %v\n%s", err, logs)
	}
	if !p.Sync || p.ChunksLocal != len(local) || p.ChunksFetched != len(m2.Chunks)-len(local) || p.FilesRemoved != 2 {
		t.Errorf("progress: sync %v, %d chunks local, %d fetched, %d removed; want %d local, %d fetched, 2 removed",
			p.Sync, p.ChunksLocal, p.ChunksFetched, p.FilesRemoved, len(local), len(m2.Chunks)-len(local))
	}
	dealt := metric(t, srv, "labseed_server_dealt_bytes_total") - dealt1
	t.Logf("the print server dealt %d bytes: %.2f x the changed and damaged chunks", dealt, float64(dealt)/float64(changed))
	// The pieces at the edges of a changed chunk hold bytes of unchanged
	// ones: the print server leaves them out (api.HeaderDealLocal); the
	// damaged chunk's bytes it sends.
	if dealt != changed {
		t.Errorf("the print server dealt %d bytes, want the changed and damaged chunks' %d\n%s", dealt, changed, logs)
	}
	if !strings.Contains(logs, "damaged=1") {
		t.Errorf("the sync's log does not say one chunk on the disk was damaged:\n%s", logs)
	}
	// Every chunk v1 shares with v2 is rebuilt from the tree on the disk
	// (its skeleton kept with the record of v1), the one whose bytes in
	// the kept payload were damaged too: its files are intact.
	if want := fmt.Sprintf("chunks_rebuilt=%d", len(local)+1); !strings.Contains(logs, want) {
		t.Errorf("the sync's log does not say %s:\n%s", want, logs)
	}

	fresh := filepath.Join(t.TempDir(), "fresh")
	a, err := chunker.NewApplier(m2, chunker.ApplyConfig{Target: fresh})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := im2.Extract(t.Context(), a, nil, 2); err != nil {
		t.Fatal(err)
	}
	if err := a.Cleanup(); err != nil {
		t.Fatal(err)
	}
	diffs, err := treecmp.Compare(fresh, target, treecmp.Options{Ignore: []string{chunker.StateDirName}})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Errorf("v2 extracted vs synced: %s", d)
	}
	if rec, _, err := chunker.ReadInstalled(target); err != nil || rec.Version != 2 || rec.ID != m2.ID() {
		t.Errorf("after v2 the record is %+v, %v", rec, err)
	}
	ents, _ := os.ReadDir(filepath.Join(target, chunker.StateDirName))
	if len(ents) != 1 || ents[0].Name() != chunker.InstalledDirName {
		t.Errorf("the staging data left: %v", ents)
	}
}
