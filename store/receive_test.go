package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/internal/fixture"
	"github.com/labseed/labseed/keys"
)

// receiveFrom opens the receiving, in dst, of the version im of another store.
func receiveFrom(t *testing.T, dst *Store, im *Image) (*Receive, error) {
	t.Helper()
	tb, err := os.ReadFile(im.TorrentPath())
	if err != nil {
		t.Fatal(err)
	}
	return dst.Receive(im.ManifestBytes, im.Signature, tb)
}

// putChunks puts the chunks is of src's payload into r.
func putChunks(t *testing.T, r *Receive, src *Image, is []int) int64 {
	t.Helper()
	f, err := os.Open(src.PayloadPath())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var n int64
	for _, i := range is {
		b, err := src.ReadChunk(f, i)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Put(i, b); err != nil {
			t.Fatal(err)
		}
		n += int64(len(b))
	}
	return n
}

// TestReceive replicates two versions from one store into a follower's:
// the key pinned, v1 whole, v2 with only its new chunks put (the rest
// reused), a half-received version invisible and resumed after a reopen,
// a bad chunk and a manifest signed by another key refused.
func TestReceive(t *testing.T) {
	ctx := context.Background()
	up, fol := openStore(t), openStore(t)
	v1img := genImage(t, 7, 2<<20)
	v2img, err := fixture.ChangeFiles(v1img, 40, 2)
	if err != nil {
		t.Fatal(err)
	}
	v1 := publish(t, up, "lab", v1img)
	v2 := publish(t, up, "lab", v2img)

	pub, _ := up.PublicKey()
	if pinned, err := fol.PinImageKey(pub); err != nil || !pinned {
		t.Fatalf("pin: %v, %v", pinned, err)
	}
	if pinned, err := fol.PinImageKey(pub); err != nil || pinned {
		t.Fatalf("pin again: %v, %v", pinned, err)
	}
	if !fol.Follower() {
		t.Fatal("a store with a pinned key is not a follower's")
	}
	if _, err := fol.SigningKey(); !errors.Is(err, ErrFollower) {
		t.Fatalf("SigningKey on a follower: %v", err)
	}

	// v1, half of it, then a restart.
	r, err := receiveFrom(t, fol, v1)
	if err != nil {
		t.Fatal(err)
	}
	all := r.Missing()
	half := all[:len(all)/2]
	putChunks(t, r, v1, half)
	if err := r.Put(all[len(all)-1], make([]byte, v1.Manifest.Chunks[all[len(all)-1]].Size)); !errors.Is(err, ErrBadChunk) {
		t.Fatalf("a chunk of zeros: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := fol.Image("lab"); !errors.Is(err, ErrNoImage) {
		t.Fatalf("a half-received image is visible: %v", err)
	}
	if imgs, err := fol.Images(); len(imgs) != 0 || err != nil {
		t.Fatalf("Images lists %d, %v", len(imgs), err)
	}
	r, err = receiveFrom(t, fol, v1)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(r.Missing()); got != len(all)-len(half) {
		t.Fatalf("after a restart %d chunks missing, want %d", got, len(all)-len(half))
	}
	if _, err := r.Commit(ctx, "up:7480"); err == nil {
		t.Fatal("Commit of a half version")
	}
	putChunks(t, r, v1, r.Missing())
	got, err := r.Commit(ctx, "up:7480")
	if err != nil {
		t.Fatal(err)
	}
	if cur, err := fol.Image("lab"); err != nil || cur.Manifest.InfoHash != v1.Manifest.InfoHash || cur.Origin() != "up:7480" || got.Origin() != "up:7480" {
		t.Fatalf("after commit: %v, %v", cur, err)
	}

	// v2: only the changed chunks are put.
	r, err = receiveFrom(t, fol, v2)
	if err != nil {
		t.Fatal(err)
	}
	reused, _, err := r.Reuse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	missing := r.Missing()
	t.Logf("v2: %d chunks, %d reused, %d to fetch", len(v2.Manifest.Chunks), reused, len(missing))
	if len(missing) == 0 || len(missing) > 4 || reused+len(missing) != len(v2.Manifest.Chunks) {
		t.Fatalf("v2: %d reused, %d missing of %d", reused, len(missing), len(v2.Manifest.Chunks))
	}
	putChunks(t, r, v2, missing)
	if _, err := r.Commit(ctx, "up:7480"); err != nil {
		t.Fatal(err)
	}
	cur, err := fol.Image("lab")
	if err != nil || cur.Manifest.Version != 2 {
		t.Fatalf("current after v2: %v, %v", cur, err)
	}
	if err := cur.Verify(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := receiveFrom(t, fol, v2); !errors.Is(err, ErrExists) {
		t.Fatalf("receiving v2 again: %v", err)
	}

	// Another key's image is refused before anything is written.
	other := openStore(t)
	o1 := publish(t, other, "evil", v1img)
	if _, err := receiveFrom(t, fol, o1); !errors.Is(err, chunker.ErrBadSignature) {
		t.Fatalf("another key's manifest: %v", err)
	}
	if _, err := os.Stat(filepath.Join(fol.Dir(), "images", "evil")); err == nil {
		t.Fatal("another key's image left a directory")
	}
	opub, _ := other.PublicKey()
	if _, err := fol.PinImageKey(opub); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("pinning another key: %v", err)
	}
	if _, err := up.PinImageKey(opub); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("pinning another key on a publishing store: %v", err)
	}

	// A follower signs its identities with its own key, and exports it.
	idk, err := fol.IdentityKey()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if files, err := fol.ExportKeys(dir); err != nil || len(files) != 3 {
		t.Fatalf("export: %v, %v", files, err)
	}
	w, err := keys.ReadWorkstation(dir)
	if err != nil || !w.PublicKey.Equal(pub) || !w.IdentityKey.Equal(idk.Public()) {
		t.Fatalf("exported: %+v, %v", w, err)
	}
	if _, err := os.Stat(filepath.Join(fol.Dir(), "keys", keys.SigningKeyFile)); err == nil {
		t.Fatal("a follower got an image.key")
	}
	// The upstream signs identities with its image key, and exports two files.
	if k, err := up.IdentityKey(); err != nil || !pub.Equal(k.Public()) {
		t.Fatalf("upstream identity key: %v", err)
	}
	if files, err := up.ExportKeys(t.TempDir()); err != nil || len(files) != 2 {
		t.Fatalf("upstream export: %v, %v", files, err)
	}
}
