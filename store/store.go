package store

import (
	"bufio"
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
	currentLink   = "current"
)

// KeepVersions is how many versions of an image Publish keeps: the newest and
// the one before it, which a lab may still be cloning.
const KeepVersions = 2

// ErrNoImage is returned for an image name the store does not hold.
var ErrNoImage = errors.New("store: no such image")

// Store is an image store directory.
type Store struct {
	dir string
}

// Open returns the store at dir, creating the directory if needed.
func Open(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("store: no directory")
	}
	if err := os.MkdirAll(filepath.Join(dir, "images"), 0o755); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return &Store{dir: dir}, nil
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
}

// PayloadPath returns the path of the image's payload file.
func (im *Image) PayloadPath() string {
	return filepath.Join(im.Dir, chunker.TorrentName(im.Manifest.Name, im.Manifest.Version))
}

// TorrentPath returns the path of the image's torrent metainfo file.
func (im *Image) TorrentPath() string { return filepath.Join(im.Dir, TorrentFile) }

// Publish reads an image tarball from in, chunks it into a new version of the
// image cfg.Name, signs the manifest and makes it the current version.
// cfg.Version is chosen by the store.
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

	cfg.Version = 1
	if vs, err := versions(idir); err == nil && len(vs) > 0 {
		cfg.Version = vs[len(vs)-1] + 1
	}
	tmp, err := os.MkdirTemp(idir, ".publish-")
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	defer os.RemoveAll(tmp)

	pf, err := os.Create(filepath.Join(tmp, chunker.TorrentName(cfg.Name, cfg.Version)))
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	bw := bufio.NewWriterSize(pf, 4<<20)
	m, mi, err := chunker.Publish(ctx, in, bw, cfg)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := pf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	mb, err := m.Encode()
	if err != nil {
		return nil, err
	}
	sig := chunker.Sign(key, mb)
	tf, err := os.Create(filepath.Join(tmp, TorrentFile))
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	err = mi.Write(tf)
	if cerr := tf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("store: write torrent: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(tmp, SignatureFile), sig, 0o644); err != nil {
		return nil, err
	}
	// The manifest goes last: a version directory with a manifest is complete.
	if err := atomicfile.Write(filepath.Join(tmp, ManifestFile), mb, 0o644); err != nil {
		return nil, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	vdir := filepath.Join(idir, "v"+strconv.Itoa(cfg.Version))
	if err := os.Rename(tmp, vdir); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := swapSymlink(filepath.Base(vdir), filepath.Join(idir, currentLink)); err != nil {
		return nil, err
	}
	if vs, err := versions(idir); err == nil && len(vs) > KeepVersions {
		for _, v := range vs[:len(vs)-KeepVersions] {
			os.RemoveAll(filepath.Join(idir, "v"+strconv.Itoa(v)))
		}
	}
	return &Image{Dir: vdir, Manifest: m, ManifestBytes: mb, Signature: sig}, nil
}

// Images returns the current version of every image, sorted by name.
func (s *Store) Images() ([]*Image, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, "images"))
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	var imgs []*Image
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		im, err := s.Image(e.Name())
		if errors.Is(err, ErrNoImage) {
			continue
		}
		if err != nil {
			return nil, err
		}
		imgs = append(imgs, im)
	}
	return imgs, nil
}

// Image returns the current version of the named image, its signature checked.
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
	return LoadImage(real, pub)
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
		return fmt.Errorf("store: torrent: %w", err)
	}
	if got := mi.HashInfoBytes().HexString(); got != m.InfoHash {
		return fmt.Errorf("store: torrent infohash %s, manifest says %s", got, m.InfoHash)
	}
	info, err := mi.UnmarshalInfo()
	if err != nil {
		return fmt.Errorf("store: torrent: %w", err)
	}
	if info.Length != m.PayloadBytes || info.PieceLength != m.PieceLength {
		return fmt.Errorf("store: torrent covers %d bytes in %d-byte pieces, manifest says %d in %d", info.Length, info.PieceLength, m.PayloadBytes, m.PieceLength)
	}
	f, err := os.Open(im.PayloadPath())
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || st.Size() != m.PayloadBytes {
		return fmt.Errorf("store: payload %s is not %d bytes", im.PayloadPath(), m.PayloadBytes)
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
		return fmt.Errorf("store: image %s v%d is damaged (publish it again): %w", m.Name, m.Version, errors.Join(bad...))
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

// swapSymlink points link at target atomically.
func swapSymlink(target, link string) error {
	tmp := link + ".tmp-" + rand.Text()
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("store: %w", err)
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
