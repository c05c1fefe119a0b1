package peer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/internal/syncbuf"
	"github.com/labseed/labseed/seeder"
)

// TestPhases runs an agent phase by phase: Resolve writes nothing; Fetch
// returns with the image in the target and the workstation seeding in the
// lab; Seed shows it done, records the image installed with its payload
// and removes the rest of the staging data.
func TestPhases(t *testing.T) {
	srv, published, pub, key := testServer(t)
	target := filepath.Join(t.TempDir(), "target")
	var logs syncbuf.Buffer
	a, err := New(Config{Server: srv.Lab().HTTPAddr, Target: target, PublicKey: pub, LabKey: key, Name: "ws1",
		Local: true, ListenIP: "127.0.0.1", Linger: time.Minute, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	im, err := a.Resolve(ctx)
	if err != nil {
		t.Fatalf("Resolve: %v\n%s", err, logs.String())
	}
	if want := published.Manifest; im.Manifest.ID() != want.ID() || im.String() != fmt.Sprintf("lab1-v%d", want.Version) {
		t.Errorf("resolved %s (%s), the print server serves lab1-v%d (%s)", im, im.Manifest.ID(), want.Version, want.ID())
	}
	if _, err := os.Stat(target); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Resolve touched the target: %v", err)
	}

	s, err := a.Fetch(ctx, im)
	if err != nil {
		t.Fatalf("Fetch: %v\n%s", err, logs.String())
	}
	defer s.Close()
	state := filepath.Join(target, chunker.StateDirName)
	if id, err := chunker.StateImage(state); err != nil || id != im.Manifest.ID() {
		t.Errorf("after Fetch the staging records image %q (%v), want %s", id, err, im.Manifest.ID())
	}
	if ph := phaseOf(t, srv, "ws1", api.PhaseSeeding); ph != api.PhaseSeeding {
		t.Errorf("after Fetch the lab shows ws1 %q, want seeding", ph)
	}

	// Alone in the lab, Seed need not linger.
	if err := s.Seed(ctx); err != nil {
		t.Fatalf("Seed: %v\n%s", err, logs.String())
	}
	if ents, _ := os.ReadDir(state); len(ents) != 1 || ents[0].Name() != chunker.InstalledDirName {
		t.Errorf("the staging data is still there after Seed: %v", ents)
	}
	if rec, _, err := chunker.ReadInstalled(target); err != nil || rec.ID != im.Manifest.ID() || !rec.Payload {
		t.Errorf("the record of the image installed: %+v, %v", rec, err)
	}
	s.Close() // after Seed: nothing more to do
}

// phaseOf returns host's phase in the print server's lab status once it is
// want, or after 5 s (the gossip takes a moment).
func phaseOf(t *testing.T, srv *seeder.Server, host, want string) string {
	t.Helper()
	phase := ""
	for deadline := time.Now().Add(5 * time.Second); phase != want && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, h := range srv.Status().Hosts {
			if h.Name == host {
				phase = h.Status.Phase
			}
		}
	}
	return phase
}
