package store

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/internal/fixture"
	"github.com/labseed/labseed/keys"
)

// small chunks, so that a small image has many.
var smallChunks = chunker.Config{ChunkMin: 16 << 10, ChunkAvg: 64 << 10, ChunkMax: 256 << 10, PieceLength: 16 << 10}

func genImage(t testing.TB, seed uint64, size int64) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := fixture.GenerateImage(&b, fixture.ImageOptions{TotalBytes: size, Seed: seed, Gzip: true}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func publish(t testing.TB, s *Store, name string, in []byte) *Image {
	t.Helper()
	cfg := smallChunks
	cfg.Name = name
	im, err := s.Publish(context.Background(), bytes.NewReader(in), cfg)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	return im
}

func openStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestPublishKeepsTwo publishes four versions: each becomes current, the
// two newest are kept, and every kept version is whole and verifies.
func TestPublishKeepsTwo(t *testing.T) {
	s := openStore(t)
	idir := filepath.Join(s.Dir(), "images", "lab")
	for v := 1; v <= 4; v++ {
		im := publish(t, s, "lab", genImage(t, uint64(v), 512<<10))
		if im.Manifest.Version != v {
			t.Fatalf("publish %d made version %d", v, im.Manifest.Version)
		}
		cur, err := s.Image("lab")
		if err != nil {
			t.Fatal(err)
		}
		if cur.Manifest.Version != v || cur.Manifest.InfoHash != im.Manifest.InfoHash {
			t.Fatalf("after publishing v%d, current is v%d", v, cur.Manifest.Version)
		}
		if !cur.Complete() {
			t.Fatalf("v%d has no %s", v, CompleteFile)
		}
		if link, err := os.Readlink(filepath.Join(idir, "current")); err != nil || link != "v"+strconv.Itoa(v) {
			t.Fatalf("current -> %q, %v; want v%d", link, err, v)
		}
		vs, err := versions(idir)
		if err != nil {
			t.Fatal(err)
		}
		want := []int{v}
		if v > 1 {
			want = []int{v - 1, v}
		}
		if !equalInts(vs, want) {
			t.Fatalf("after publishing v%d the store holds versions %v, want %v", v, vs, want)
		}
	}
	ents, _ := os.ReadDir(idir)
	for _, e := range ents {
		if n := e.Name(); n != "v3" && n != "v4" && n != "current" && n != ".lock" {
			t.Errorf("left in the image directory: %s", n)
		}
	}
	for _, v := range []int{3, 4} {
		pub, _ := s.PublicKey()
		im, err := LoadImage(filepath.Join(idir, "v"+strconv.Itoa(v)), pub)
		if err != nil {
			t.Fatal(err)
		}
		if err := im.Verify(context.Background(), nil); err != nil {
			t.Errorf("kept v%d: %v", v, err)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestVersionSwapIsAtomic reads the current version over and over while
// versions are published: every read finds a whole, signed version, never
// a missing or half-written one, and versions only go up.
func TestVersionSwapIsAtomic(t *testing.T) {
	s := openStore(t)
	publish(t, s, "lab", genImage(t, 1, 256<<10))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	for range 2 {
		wg.Go(func() {
			last, reads := 0, 0
			for {
				select {
				case <-stop:
					if reads == 0 {
						errc <- errors.New("no read")
					}
					return
				default:
				}
				// A fresh Store each time, as another process would open it.
				r, err := Open(s.Dir())
				if err == nil {
					var im *Image
					if im, err = r.Image("lab"); err == nil {
						if v := im.Manifest.Version; v < last {
							err = errors.New("current went back from v" + strconv.Itoa(last) + " to v" + strconv.Itoa(v))
						} else {
							last = v
							_, err = os.Stat(im.PayloadPath())
						}
					}
				}
				if err != nil {
					errc <- err
					return
				}
				reads++
			}
		})
	}
	for v := 2; v <= 6; v++ {
		publish(t, s, "lab", genImage(t, uint64(v), 256<<10))
	}
	close(stop)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Errorf("reading the current version while publishing: %v", err)
	}
}

// TestPublishRemovesLeftovers: a publish cut short leaves its temporary
// directory and maybe a temporary link; they are never taken for a
// version, and the next publish removes them.
func TestPublishRemovesLeftovers(t *testing.T) {
	s := openStore(t)
	publish(t, s, "lab", genImage(t, 1, 256<<10))
	idir := filepath.Join(s.Dir(), "images", "lab")
	tmp := filepath.Join(idir, publishTmp+"123")
	os.Mkdir(tmp, 0o700)
	os.WriteFile(filepath.Join(tmp, "lab-v2.chunks"), []byte("half"), 0o644)
	os.Symlink("v9", filepath.Join(idir, "current.tmp-abc"))
	if im, err := s.Image("lab"); err != nil || im.Manifest.Version != 1 {
		t.Fatalf("with leftovers, Image = %v, %v; want v1", im, err)
	}
	im := publish(t, s, "lab", genImage(t, 2, 256<<10))
	if im.Manifest.Version != 2 {
		t.Fatalf("published v%d, want v2", im.Manifest.Version)
	}
	for _, p := range []string{tmp, filepath.Join(idir, "current.tmp-abc")} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s left after the next publish: %v", p, err)
		}
	}
}

// damage flips a byte in the middle of chunk i of the version's payload.
func damage(t *testing.T, im *Image, i int) {
	t.Helper()
	f, err := os.OpenFile(im.PayloadPath(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := im.Manifest.Chunks[i]
	b := make([]byte, 1)
	off := c.Offset + c.Size/2
	f.ReadAt(b, off)
	b[0] ^= 0x10
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyNamesDamagedChunk damages chunks and the torrent and checks
// that Verify names each.
func TestVerifyNamesDamagedChunk(t *testing.T) {
	s := openStore(t)
	im := publish(t, s, "lab", genImage(t, 1, 1<<20))
	if err := im.Verify(context.Background(), nil); err != nil {
		t.Fatalf("fresh image: %v", err)
	}
	n := len(im.Manifest.Chunks)
	if n < 4 {
		t.Fatalf("only %d chunks", n)
	}
	damage(t, im, 1)
	damage(t, im, n-2)
	err := im.Verify(context.Background(), nil)
	if !errors.Is(err, ErrDamaged) {
		t.Fatalf("Verify of a damaged payload: %v, want ErrDamaged", err)
	}
	for _, want := range []string{"chunk 1 ", "chunk " + strconv.Itoa(n-2) + " ", "torrent piece", "publish it again"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "chunk 0 ") {
		t.Errorf("error names an intact chunk: %v", err)
	}

	im2 := publish(t, s, "other", genImage(t, 2, 256<<10))
	if err := os.Truncate(im2.PayloadPath(), im2.Manifest.PayloadBytes-1); err != nil {
		t.Fatal(err)
	}
	if err := im2.Verify(context.Background(), nil); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "bytes") {
		t.Errorf("Verify of a short payload: %v", err)
	}
	im3 := publish(t, s, "third", genImage(t, 3, 256<<10))
	tb, _ := os.ReadFile(im3.TorrentPath())
	tb[len(tb)/2] ^= 1
	os.WriteFile(im3.TorrentPath(), tb, 0o644)
	if err := im3.Verify(context.Background(), nil); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "torrent") {
		t.Errorf("Verify with a damaged torrent: %v", err)
	}
}

// TestUncleanVersionVerified: a version without its complete marker (as an
// older labseed, which did not sync, left it) is verified before the store
// hands it out: an intact one gets its marker, a damaged one is refused
// with the damaged chunk named, and the other images are still listed.
func TestUncleanVersionVerified(t *testing.T) {
	s := openStore(t)
	good := publish(t, s, "good", genImage(t, 1, 512<<10))
	bad := publish(t, s, "bad", genImage(t, 2, 512<<10))
	for _, im := range []*Image{good, bad} {
		if err := os.Remove(filepath.Join(im.Dir, CompleteFile)); err != nil {
			t.Fatal(err)
		}
	}
	damage(t, bad, 2)

	r, err := Open(s.Dir()) // as the server does after a restart
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Image("good"); err != nil {
		t.Fatalf("intact version without its marker: %v", err)
	}
	if _, err := os.Stat(filepath.Join(good.Dir, CompleteFile)); err != nil {
		t.Errorf("verified version did not get its marker: %v", err)
	}
	_, err = r.Image("bad")
	if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "chunk 2 ") || !strings.Contains(err.Error(), "not closed cleanly") {
		t.Fatalf("damaged version without its marker: %v; want ErrDamaged naming chunk 2", err)
	}
	if _, err := os.Stat(filepath.Join(bad.Dir, CompleteFile)); !os.IsNotExist(err) {
		t.Errorf("damaged version got a marker: %v", err)
	}
	imgs, err := r.Images()
	if !errors.Is(err, ErrDamaged) {
		t.Errorf("Images: error %v, want the damaged image's", err)
	}
	if len(imgs) != 1 || imgs[0].Manifest.Name != "good" {
		t.Errorf("Images listed %d images, want the good one only", len(imgs))
	}
	// A version with its marker is trusted as it is: damage after publish
	// is for 'labseed verify'.
	r2, _ := Open(s.Dir())
	damage(t, good, 0)
	if _, err := r2.Image("good"); err != nil {
		t.Errorf("version with its marker: %v", err)
	}
}

// TestKeyFileModes checks the modes of the key files and what an export
// holds: nothing that signs.
func TestKeyFileModes(t *testing.T) {
	s := openStore(t)
	if _, err := s.SigningKey(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LabKey(); err != nil {
		t.Fatal(err)
	}
	kdir := filepath.Join(s.Dir(), "keys")
	mode := func(p string) os.FileMode {
		t.Helper()
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return st.Mode().Perm()
	}
	if m := mode(kdir); m != 0o700 {
		t.Errorf("%s has mode %o, want 700", kdir, m)
	}
	ents, err := os.ReadDir(kdir)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, e := range ents {
		names[e.Name()] = true
		want := os.FileMode(0o600) // every secret
		if strings.HasSuffix(e.Name(), ".pub") {
			want = 0o644
		}
		if m := mode(filepath.Join(kdir, e.Name())); m != want {
			t.Errorf("%s has mode %o, want %o", e.Name(), m, want)
		}
	}
	for _, n := range []string{keys.SigningKeyFile, keys.PublicKeyFile, keys.LabKeyFile} {
		if !names[n] {
			t.Errorf("no %s in %s", n, kdir)
		}
	}
	// The same key comes back.
	k1, _ := s.SigningKey()
	s2, _ := Open(s.Dir())
	if k2, _ := s2.SigningKey(); !k1.Equal(k2) {
		t.Error("the signing key changed when the store was opened again")
	}

	out := filepath.Join(t.TempDir(), "export")
	files, err := s.ExportKeys(out)
	if err != nil {
		t.Fatal(err)
	}
	ents, _ = os.ReadDir(out)
	if len(ents) != 2 || len(files) != 2 {
		t.Fatalf("export holds %d files (%v), want image.pub and lab.key", len(ents), files)
	}
	if _, err := os.Stat(filepath.Join(out, keys.SigningKeyFile)); !os.IsNotExist(err) {
		t.Fatalf("the signing key was exported: %v", err)
	}
	if m := mode(filepath.Join(out, keys.LabKeyFile)); m != 0o600 {
		t.Errorf("exported lab.key has mode %o, want 600", m)
	}
	pub, err := keys.ReadPublicKey(filepath.Join(out, keys.PublicKeyFile))
	if err != nil || !pub.Equal(k1.Public()) {
		t.Errorf("exported public key: %v", err)
	}
	lab, _ := s.LabKey()
	if k, err := keys.ReadHexKey(filepath.Join(out, keys.LabKeyFile)); err != nil || !bytes.Equal(k, lab) {
		t.Errorf("exported lab key: %v", err)
	}
}

// TestPublishReusesCompressedChunks publishes a second version that
// changes two files: the chunks it shares with the first are taken from
// the store instead of being compressed again; a damaged copy in the store
// is compressed again, and another level takes none.
func TestPublishReusesCompressedChunks(t *testing.T) {
	s := openStore(t)
	v1img := genImage(t, 9, 2<<20)
	v2img, err := fixture.ChangeFiles(v1img, 40, 2)
	if err != nil {
		t.Fatal(err)
	}
	v1 := publish(t, s, "lab", v1img)
	if v1.Reused != 0 {
		t.Fatalf("the first version reused %d chunks from an empty store", v1.Reused)
	}
	v2 := publish(t, s, "lab", v2img)
	shared := 0
	old := map[string]bool{}
	for _, c := range v1.Manifest.Chunks {
		old[c.SHA256] = true
	}
	for _, c := range v2.Manifest.Chunks {
		if old[c.SHA256] {
			shared++
		}
	}
	t.Logf("v2: %d chunks, %d shared with v1, %d reused", len(v2.Manifest.Chunks), shared, v2.Reused)
	if v2.Reused != shared || shared < len(v2.Manifest.Chunks)-4 {
		t.Fatalf("v2 reused %d chunks; %d of its %d are v1's", v2.Reused, shared, len(v2.Manifest.Chunks))
	}

	// One byte of v2's first chunk damaged on the disk: v3, the same
	// input, compresses that chunk again and publishes it whole.
	f, err := os.OpenFile(v2.PayloadPath(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	c0 := v2.Manifest.Chunks[0]
	b := make([]byte, 1)
	f.ReadAt(b, c0.Offset+c0.Size/2)
	b[0] ^= 0x10
	f.WriteAt(b, c0.Offset+c0.Size/2)
	f.Close()
	if err := os.RemoveAll(v1.Dir); err != nil {
		t.Fatal(err) // v1 holds the same chunk
	}
	v3 := publish(t, s, "lab", v2img)
	if v3.Reused != len(v2.Manifest.Chunks)-1 {
		t.Fatalf("v3 (v2's input, v2's chunk 0 damaged) reused %d chunks, want %d", v3.Reused, len(v2.Manifest.Chunks)-1)
	}
	if v3.Manifest.Chunks[0].SHA256 != c0.SHA256 {
		t.Fatal("v3's chunk 0, compressed again, is not v2's")
	}
	if err := v3.Verify(context.Background(), nil); err != nil {
		t.Fatal(err)
	}

	// Another level: nothing to reuse.
	cfg := smallChunks
	cfg.Name, cfg.Level = "lab", 1
	v4, err := s.Publish(context.Background(), bytes.NewReader(v2img), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if v4.Reused != 0 {
		t.Fatalf("a level 1 publish reused %d level 4 chunks", v4.Reused)
	}
}
