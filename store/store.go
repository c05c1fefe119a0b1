package store

import (
	"bufio"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/anacrolix/torrent/metainfo"
	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/internal/atomicfile"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// File names inside an image version's directory.
const (
	ManifestFile  = "manifest.json"
	SignatureFile = "manifest.sig"
	TorrentFile   = "image.torrent"
	// CompleteFile is written last by Publish, after every other file of the
	// version was synced. A version without it (published by an older
	// labseed, which did not sync, or copied in by hand) is verified before
	// the store hands it out.
	CompleteFile = "complete"
	currentLink  = "current"
)

// completeMagic is what CompleteFile holds.
const completeMagic = "labseed-complete-1\n"

// KeepVersions is how many versions of an image Publish keeps: the newest and
// the one before it, which a lab may still be cloning.
const KeepVersions = 2

// Errors of the store.
var (
	// ErrNoImage is returned for an image name the store does not hold.
	ErrNoImage = errors.New("store: no such image")
	// ErrDamaged is returned for a version whose files do not match its
	// signed manifest.
	ErrDamaged = errors.New("store: image is damaged")
)

// Store is an image store directory. Its methods may be called from
// several goroutines at once.
type Store struct {
	dir string

	mu      sync.Mutex
	checked map[string]error // versions without CompleteFile, verified once
}

// Open returns the store at dir, creating the directory if needed.
func Open(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("store: no directory")
	}
	if err := os.MkdirAll(filepath.Join(dir, "images"), 0o755); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return &Store{dir: dir, checked: map[string]error{}}, nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// Image is one published version of an image.
type Image struct {
	// Dir is the version's directory.
	Dir string
	// Manifest is the decoded, signature-checked manifest.
	Manifest *chunker.Manifest
	// ManifestBytes and Signature are the manifest as stored and its signature.
	ManifestBytes, Signature []byte
	// Reused is, for the Image Publish returns, how many of its chunks
	// were taken compressed from the store's other versions instead of
	// being compressed again; 0 otherwise.
	Reused int
}

// PayloadPath returns the path of the image's payload file.
func (im *Image) PayloadPath() string {
	return filepath.Join(im.Dir, chunker.TorrentName(im.Manifest.Name, im.Manifest.Version))
}

// TorrentPath returns the path of the image's torrent metainfo file.
func (im *Image) TorrentPath() string { return filepath.Join(im.Dir, TorrentFile) }

// Publish reads an image tarball from in, chunks it into a new version of the
// image cfg.Name, signs the manifest and makes it the current version.
// cfg.Version is chosen by the store. Unless cfg.Reuse is set, the chunks
// that the store's versions (of any image) already hold compressed at
// cfg.Level are taken from them instead of being compressed again; the
// Image returned counts them (Image.Reused).
func (s *Store) Publish(ctx context.Context, in io.Reader, cfg chunker.Config) (*Image, error) {
	if !chunker.ValidName(cfg.Name) {
		return nil, fmt.Errorf("store: invalid image name %q: use 1-64 letters, digits, '.', '_' or '-'", cfg.Name)
	}
	key, err := s.SigningKey()
	if err != nil {
		return nil, err
	}
	if _, err := s.LabKey(); err != nil {
		return nil, err
	}
	idir := filepath.Join(s.dir, "images", cfg.Name)
	if err := os.MkdirAll(idir, 0o755); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	unlock, err := lock(filepath.Join(idir, ".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()

	removeLeftovers(idir)

	cfg.Version = 1
	if vs, err := versions(idir); err == nil && len(vs) > 0 {
		cfg.Version = vs[len(vs)-1] + 1
	}
	tmp, err := os.MkdirTemp(idir, publishTmp)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	defer os.RemoveAll(tmp)
	if cfg.SpoolDir == "" {
		cfg.SpoolDir = tmp // on the store's file system, which has room for the image
	}
	var stored *compressedChunks
	if cfg.Reuse == nil {
		stored = s.compressedAt(cmp.Or(cfg.Level, chunker.DefaultLevel))
		cfg.Reuse = stored.find
	}

	// Every file is synced before the manifest, the manifest before the
	// complete marker, and the marker before the rename that makes the
	// version visible: a power cut leaves either no new version or a whole one.
	m, mi, err := writePayload(ctx, filepath.Join(tmp, chunker.TorrentName(cfg.Name, cfg.Version)), filepath.Join(tmp, PublishingFile), in, cfg)
	if err != nil {
		return nil, err
	}
	mb, err := m.Encode()
	if err != nil {
		return nil, err
	}
	sig := chunker.Sign(key, mb)
	if err := atomicfile.WriteFunc(filepath.Join(tmp, TorrentFile), 0o644, mi.Write); err != nil {
		return nil, fmt.Errorf("store: write torrent: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(tmp, SignatureFile), sig, 0o644); err != nil {
		return nil, fmt.Errorf("store: write signature: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(tmp, ManifestFile), mb, 0o644); err != nil {
		return nil, fmt.Errorf("store: write manifest: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(tmp, CompleteFile), []byte(completeMagic), 0o644); err != nil {
		return nil, fmt.Errorf("store: write %s: %w", CompleteFile, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	vdir := filepath.Join(idir, "v"+strconv.Itoa(cfg.Version))
	if err := os.Rename(tmp, vdir); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := atomicfile.SyncDir(idir); err != nil {
		return nil, fmt.Errorf("store: sync %s: %w", idir, err)
	}
	if err := swapSymlink(filepath.Base(vdir), filepath.Join(idir, currentLink)); err != nil {
		return nil, err
	}
	// The list of the chunks written (Publishing) is of no use any more.
	os.Remove(filepath.Join(vdir, PublishingFile))
	if vs, err := versions(idir); err == nil && len(vs) > KeepVersions {
		for _, v := range vs[:len(vs)-KeepVersions] {
			os.RemoveAll(filepath.Join(idir, "v"+strconv.Itoa(v)))
		}
		atomicfile.SyncDir(idir)
	}
	im := &Image{Dir: vdir, Manifest: m, ManifestBytes: mb, Signature: sig}
	if stored != nil {
		im.Reused = stored.reused(m)
	}
	return im, nil
}

// publishTmp starts the name of the directory a version is written in
// before it is renamed to vN.
const publishTmp = ".publish-"

// removeLeftovers removes what a publish that was killed (or lost its
// power) left in the image directory idir: its temporary version directory
// and a temporary link. The caller holds the image's lock.
func removeLeftovers(idir string) {
	ents, _ := os.ReadDir(idir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), publishTmp) || strings.HasPrefix(e.Name(), currentLink+".tmp-") {
			os.RemoveAll(filepath.Join(idir, e.Name()))
		}
	}
}

// writePayload publishes in into the payload file name, synced. Each
// chunk is listed in the file journal (PublishingFile) once its bytes are
// in the payload file, for the print server to serve to its followers
// while the publish goes on.
func writePayload(ctx context.Context, name, journal string, in io.Reader, cfg chunker.Config) (*chunker.Manifest, *metainfo.MetaInfo, error) {
	pf, err := os.Create(name)
	if err != nil {
		return nil, nil, fmt.Errorf("store: %w", err)
	}
	jf, err := os.Create(journal)
	if err != nil {
		pf.Close()
		return nil, nil, fmt.Errorf("store: %w", err)
	}
	defer jf.Close()
	bw := bufio.NewWriterSize(pf, 4<<20)
	written := cfg.Written
	cfg.Written = func(c chunker.Chunk) error {
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("write payload: %w", err)
		}
		if _, err := fmt.Fprintf(jf, "%s %d %d\n", c.SHA256, c.Offset, c.Size); err != nil {
			return fmt.Errorf("store: %w", err)
		}
		if written != nil {
			return written(c)
		}
		return nil
	}
	m, mi, err := chunker.Publish(ctx, in, bw, cfg)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		if err = pf.Sync(); err != nil {
			err = fmt.Errorf("store: sync payload: %w", err)
		}
	}
	if cerr := pf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, nil, err
	}
	return m, mi, nil
}

// Images returns the current version of every image, sorted by name.
//
// An image that cannot be used (a bad signature, a damaged version not
// closed cleanly) does not keep the others from being listed: Images
// returns the ones that can be used together with an error naming the
// others.
func (s *Store) Images() ([]*Image, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, "images"))
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	var imgs []*Image
	var errs []error
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		im, err := s.Image(e.Name())
		if errors.Is(err, ErrNoImage) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		imgs = append(imgs, im)
	}
	return imgs, errors.Join(errs...)
}

// Image returns the current version of the named image, its signature
// checked. A version without its CompleteFile (not closed cleanly) is
// verified first, once per Store: if intact it gets the file, if not Image
// returns an error wrapping ErrDamaged that names what is damaged.
func (s *Store) Image(name string) (*Image, error) {
	if !chunker.ValidName(name) {
		return nil, fmt.Errorf("%w %q", ErrNoImage, name)
	}
	dir := filepath.Join(s.dir, "images", name, currentLink)
	real, err := filepath.EvalSymlinks(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w %q in %s (see 'labseed images')", ErrNoImage, name, s.dir)
	}
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	pub, err := s.PublicKey()
	if err != nil {
		return nil, err
	}
	im, err := LoadImage(real, pub)
	if err != nil {
		return nil, err
	}
	if err := s.checkComplete(im); err != nil {
		return nil, err
	}
	return im, nil
}

// checkComplete verifies a version that lacks its CompleteFile, once per
// Store, and writes the file if the version is intact.
func (s *Store) checkComplete(im *Image) error {
	if im.Complete() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err, ok := s.checked[im.Dir]; ok {
		return err
	}
	err := im.Verify(context.Background(), nil)
	if err != nil {
		err = fmt.Errorf("store: %s v%d was not closed cleanly (no %s: a power cut during publish?), and verifying it found: %w",
			im.Manifest.Name, im.Manifest.Version, filepath.Join(im.Dir, CompleteFile), err)
	} else {
		// Best effort: a store this process may not write keeps the
		// result in s.checked only.
		atomicfile.Write(filepath.Join(im.Dir, CompleteFile), []byte(completeMagic), 0o644)
	}
	s.checked[im.Dir] = err
	return err
}

// Complete reports whether the version was closed cleanly: its CompleteFile,
// which publish writes after syncing every other file, is there.
func (im *Image) Complete() bool {
	b, err := os.ReadFile(filepath.Join(im.Dir, CompleteFile))
	return err == nil && string(b) == completeMagic
}

// LoadImage reads the image version in dir and checks its signature with pub.
func LoadImage(dir string, pub ed25519.PublicKey) (*Image, error) {
	mb, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	sig, err := os.ReadFile(filepath.Join(dir, SignatureFile))
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	m, err := chunker.VerifyManifest(pub, mb, sig)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", dir, err)
	}
	return &Image{Dir: dir, Manifest: m, ManifestBytes: mb, Signature: sig}, nil
}

// ReadChunk returns the compressed bytes of chunk i as stored (not verified).
func (im *Image) ReadChunk(f io.ReaderAt, i int) ([]byte, error) {
	c := im.Manifest.Chunks[i]
	b := make([]byte, c.Size)
	if _, err := f.ReadAt(b, c.Offset); err != nil {
		return nil, fmt.Errorf("store: read chunk %d: %w", i, err)
	}
	return b, nil
}

// Verify re-reads the payload and checks every chunk's SHA-256, every torrent
// piece hash and the torrent's infohash against the signed manifest.
// progress, if set, is called with the payload bytes checked so far.
func (im *Image) Verify(ctx context.Context, progress func(int64)) error {
	m := im.Manifest
	mi, err := metainfo.LoadFromFile(im.TorrentPath())
	if err != nil {
		return fmt.Errorf("%w: torrent %s: %w", ErrDamaged, im.TorrentPath(), err)
	}
	if got := mi.HashInfoBytes().HexString(); got != m.InfoHash {
		return fmt.Errorf("%w: torrent %s has infohash %s, the manifest says %s (publish it again)", ErrDamaged, im.TorrentPath(), got, m.InfoHash)
	}
	info, err := mi.UnmarshalInfo()
	if err != nil {
		return fmt.Errorf("%w: torrent %s: %w", ErrDamaged, im.TorrentPath(), err)
	}
	if info.Length != m.PayloadBytes || info.PieceLength != m.PieceLength {
		return fmt.Errorf("%w: torrent covers %d bytes in %d-byte pieces, manifest says %d in %d", ErrDamaged, info.Length, info.PieceLength, m.PayloadBytes, m.PieceLength)
	}
	f, err := os.Open(im.PayloadPath())
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || st.Size() != m.PayloadBytes {
		size := int64(-1)
		if err == nil {
			size = st.Size()
		}
		return fmt.Errorf("%w: payload %s is %d bytes, the manifest says %d (publish it again)", ErrDamaged, im.PayloadPath(), size, m.PayloadBytes)
	}
	var bad []error
	piece := sha1.New()
	var inPiece, pos int64
	pieceIdx := 0
	for i, c := range m.Chunks {
		if err := ctx.Err(); err != nil {
			return err
		}
		b, err := im.ReadChunk(f, i)
		if err != nil {
			return err
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != c.SHA256 {
			bad = append(bad, fmt.Errorf("chunk %d (bytes %d-%d): SHA-256 does not match the manifest", i, c.Offset, c.Offset+c.Size))
		}
		for len(b) > 0 {
			k := min(m.PieceLength-inPiece, int64(len(b)))
			piece.Write(b[:k])
			b, inPiece, pos = b[k:], inPiece+k, pos+k
			if inPiece == m.PieceLength || pos == m.PayloadBytes {
				if !pieceOK(info, pieceIdx, piece.Sum(nil)) {
					bad = append(bad, fmt.Errorf("torrent piece %d: SHA-1 does not match", pieceIdx))
				}
				piece.Reset()
				inPiece = 0
				pieceIdx++
			}
		}
		if progress != nil {
			progress(pos)
		}
	}
	if pieceIdx != info.NumPieces() {
		bad = append(bad, fmt.Errorf("torrent has %d pieces, payload makes %d", info.NumPieces(), pieceIdx))
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s v%d in %s (publish it again): %w", ErrDamaged, m.Name, m.Version, im.Dir, errors.Join(bad...))
	}
	return nil
}

func pieceOK(info metainfo.Info, i int, sum []byte) bool {
	if i >= info.NumPieces() {
		return false
	}
	return string(info.Piece(i).V1Hash().Value.Bytes()) == string(sum)
}

// versions lists the version numbers present in an image directory, ascending.
func versions(idir string) ([]int, error) {
	ents, err := os.ReadDir(idir)
	if err != nil {
		return nil, err
	}
	var vs []int
	for _, e := range ents {
		if v, ok := strings.CutPrefix(e.Name(), "v"); ok && e.IsDir() {
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				if _, err := os.Stat(filepath.Join(idir, e.Name(), ManifestFile)); err == nil {
					vs = append(vs, n)
				}
			}
		}
	}
	slices.Sort(vs)
	return vs, nil
}

// swapSymlink points link at target atomically and durably.
func swapSymlink(target, link string) error {
	tmp := link + ".tmp-" + rand.Text()
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("store: %w", err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(link)); err != nil {
		return fmt.Errorf("store: sync %s: %w", filepath.Dir(link), err)
	}
	return nil
}

// lock takes an exclusive lock on the file name, waiting for it.
func lock(name string) (func(), error) {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("store: lock %s: %w", name, err)
	}
	return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}

// Extract applies the image's chunks to a with the given number of workers,
// in the given order (nil: payload order), then finishes the extraction.
// It does not remove a's state directory: see chunker.Applier.Cleanup.
func (im *Image) Extract(ctx context.Context, a *chunker.Applier, order []int, workers int) error {
	if order == nil {
		order = make([]int, len(im.Manifest.Chunks))
		for i := range order {
			order[i] = i
		}
	}
	f, err := os.Open(im.PayloadPath())
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer f.Close()
	g, gctx := errgroup.WithContext(ctx)
	next := make(chan int)
	g.Go(func() error {
		defer close(next)
		for _, i := range order {
			select {
			case next <- i:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	for range max(workers, 1) {
		g.Go(func() error {
			for i := range next {
				if a.Applied(i) {
					continue
				}
				b, err := im.ReadChunk(f, i)
				if err != nil {
					return err
				}
				if err := a.Apply(gctx, i, b); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return a.Finish(ctx)
}
