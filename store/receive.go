package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/anacrolix/torrent/metainfo"
	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/internal/atomicfile"
)

// Files of a version being received (Receive), besides those of a version.
const (
	// ReceivedFile lists the chunks of a version being received whose
	// bytes are synced in its payload.
	ReceivedFile = "received"
	// OriginFile, in a version's directory, says where the version came
	// from: the upstream print server it was replicated from and when.
	// A version published here has none.
	OriginFile = "origin"
	// receivePrefix starts the name of the directory a version is
	// received in (images/NAME/.receive-vN); no reader of the store sees it.
	receivePrefix = ".receive-v"
	receivedMagic = "labseed-received-1\n"
)

// ErrBadChunk is returned (wrapped) by Receive.Put for bytes that are not
// the chunk the signed manifest names.
var ErrBadChunk = errors.New("store: chunk does not match the signed manifest")

// Receive is a version of an image being received from another print
// server (labseed serve --upstream): its signed manifest and torrent first,
// then its chunks, in any order, each checked against the manifest; it
// becomes a version of the store, the current one if newest, only once
// every chunk is in and the whole version verified (Commit). Until then it
// is a directory no reader of the store sees (images/NAME/.receive-vN), and
// a Receive of the same version opened again (after a restart or a power
// cut) resumes with the chunks it had synced.
//
// Its methods may be called from several goroutines at once.
type Receive struct {
	s   *Store
	im  *Image
	dir string
	f   *os.File

	mu      sync.Mutex
	have    []bool // synced and recorded
	pending []int  // written, not yet synced
	closed  bool
}

// Receive opens the receiving of the version whose signed manifest,
// signature and torrent are given: the signature is checked with the
// store's image key (PublicKey: on a follower, the upstream's it pinned)
// and the torrent against the manifest's infohash before anything is
// written. An error wrapping chunker.ErrBadSignature means the manifest is
// not signed with that key. A version the store already holds is
// ErrExists.
func (s *Store) Receive(manifest, sig, torrent []byte) (*Receive, error) {
	pub, err := s.PublicKey()
	if err != nil {
		return nil, err
	}
	m, err := chunker.VerifyManifest(pub, manifest, sig)
	if err != nil {
		return nil, fmt.Errorf("store: the manifest received: %w", err)
	}
	mi, err := metainfo.Load(bytes.NewReader(torrent))
	if err != nil {
		return nil, fmt.Errorf("store: the torrent of %s v%d: %w", m.Name, m.Version, err)
	}
	if got := mi.HashInfoBytes().HexString(); got != m.InfoHash {
		return nil, fmt.Errorf("store: the torrent of %s v%d has infohash %s, its signed manifest says %s", m.Name, m.Version, got, m.InfoHash)
	}
	idir := filepath.Join(s.dir, "images", m.Name)
	if _, err := os.Stat(filepath.Join(idir, "v"+strconv.Itoa(m.Version), CompleteFile)); err == nil {
		return nil, fmt.Errorf("%w: %s v%d", ErrExists, m.Name, m.Version)
	}
	if err := os.MkdirAll(idir, 0o755); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	dir := filepath.Join(idir, receivePrefix+strconv.Itoa(m.Version))
	if old, err := os.ReadFile(filepath.Join(dir, ManifestFile)); err != nil || !bytes.Equal(old, manifest) {
		// Another manifest of this version (the upstream's store was
		// made anew) or none yet: start afresh.
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	im := &Image{Dir: dir, Manifest: m, ManifestBytes: manifest, Signature: sig}
	for _, w := range []struct {
		name string
		b    []byte
	}{{TorrentFile, torrent}, {SignatureFile, sig}, {ManifestFile, manifest}} {
		if old, err := os.ReadFile(filepath.Join(dir, w.name)); err == nil && bytes.Equal(old, w.b) {
			continue
		}
		if err := atomicfile.Write(filepath.Join(dir, w.name), w.b, 0o644); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
	}
	f, err := os.OpenFile(im.PayloadPath(), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := f.Truncate(m.PayloadBytes); err != nil {
		f.Close()
		return nil, fmt.Errorf("store: %w", err)
	}
	r := &Receive{s: s, im: im, dir: dir, f: f, have: readReceived(filepath.Join(dir, ReceivedFile), len(m.Chunks))}
	return r, nil
}

// ErrExists is returned (wrapped) by Receive for a version the store holds.
var ErrExists = errors.New("store: version already in the store")

// readReceived reads a ReceivedFile: n flags, all false when the file is
// missing or does not parse (then every chunk is fetched again).
func readReceived(name string, n int) []bool {
	have := make([]bool, n)
	b, err := os.ReadFile(name)
	rest, ok := strings.CutPrefix(string(b), receivedMagic)
	if err != nil || !ok {
		return have
	}
	bits, err := hex.DecodeString(strings.TrimSpace(rest))
	if err != nil || len(bits) != (n+7)/8 {
		return have
	}
	for i := range have {
		have[i] = bits[i/8]&(0x80>>(i%8)) != 0
	}
	return have
}

// Manifest returns the version's signed manifest.
func (r *Receive) Manifest() *chunker.Manifest { return r.im.Manifest }

// Have reports whether chunk i is in (synced).
func (r *Receive) Have(i int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.have[i]
}

// Missing returns the chunks not in yet (not synced), in payload order.
func (r *Receive) Missing() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int
	for i, h := range r.have {
		if !h && !containsInt(r.pending, i) {
			out = append(out, i)
		}
	}
	return out
}

// ErrNotHeld is returned by Receive.ReadChunk for a chunk not in (yet).
var ErrNotHeld = errors.New("store: chunk not received yet")

// ReadChunk returns the compressed bytes of chunk i, once it is in
// (checked against the signed manifest when it was put, and synced); a
// chunk not in, or a Receive closed, is ErrNotHeld. Followers of one
// upstream serve each other so the chunks of a version they are still
// receiving.
func (r *Receive) ReadChunk(i int) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i < 0 || i >= len(r.have) || !r.have[i] || r.closed {
		return nil, ErrNotHeld
	}
	return r.im.ReadChunk(r.f, i)
}

// Count returns how many chunks are in (synced) and how many the version has.
func (r *Receive) Count() (have, total int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, h := range r.have {
		if h {
			have++
		}
	}
	return have, len(r.have)
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// Put writes chunk i's compressed bytes b into the payload after checking
// them against the signed manifest (size and SHA-256; an error wrapping
// ErrBadChunk otherwise, and nothing is written). The chunk counts as in
// once Sync has run.
func (r *Receive) Put(i int, b []byte) error {
	m := r.im.Manifest
	if i < 0 || i >= len(m.Chunks) {
		return fmt.Errorf("store: %s v%d has no chunk %d", m.Name, m.Version, i)
	}
	c := m.Chunks[i]
	if int64(len(b)) != c.Size {
		return fmt.Errorf("%w: chunk %d of %s v%d is %d bytes, the manifest says %d", ErrBadChunk, i, m.Name, m.Version, len(b), c.Size)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != c.SHA256 {
		return fmt.Errorf("%w: chunk %d of %s v%d has SHA-256 %x, the manifest says %s", ErrBadChunk, i, m.Name, m.Version, sum, c.SHA256)
	}
	if _, err := r.f.WriteAt(b, c.Offset); err != nil {
		return fmt.Errorf("store: write chunk %d of %s v%d: %w", i, m.Name, m.Version, err)
	}
	r.mu.Lock()
	if !r.have[i] && !containsInt(r.pending, i) {
		r.pending = append(r.pending, i)
	}
	r.mu.Unlock()
	return nil
}

// Sync makes the chunks Put since the last Sync count as in: the payload
// is synced, then the list of chunks in is replaced (and synced), so that
// after a power cut no chunk counts as in whose bytes are not on disk.
func (r *Receive) Sync() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pending) == 0 {
		return nil
	}
	if err := r.f.Sync(); err != nil {
		return fmt.Errorf("store: sync %s: %w", r.f.Name(), err)
	}
	for _, i := range r.pending {
		r.have[i] = true
	}
	r.pending = r.pending[:0]
	return r.writeReceived()
}

// writeReceived writes the ReceivedFile; r.mu is held.
func (r *Receive) writeReceived() error {
	bits := make([]byte, (len(r.have)+7)/8)
	for i, h := range r.have {
		if h {
			bits[i/8] |= 0x80 >> (i % 8)
		}
	}
	if err := atomicfile.Write(filepath.Join(r.dir, ReceivedFile), []byte(receivedMagic+hex.EncodeToString(bits)+"\n"), 0o644); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// Reuse puts every missing chunk that the store already holds, in a
// version of any image or in another version being received, with the
// same SHA-256 (content-defined chunks shared with an earlier version),
// and syncs. It returns how many chunks, and bytes, it found there; each
// is checked against the signed manifest as it is put.
func (r *Receive) Reuse(ctx context.Context) (chunks int, n int64, err error) {
	missing := r.Missing()
	if len(missing) == 0 {
		return 0, 0, nil
	}
	want := map[string][]int{}
	for _, i := range missing {
		want[r.im.Manifest.Chunks[i].SHA256] = append(want[r.im.Manifest.Chunks[i].SHA256], i)
	}
	for _, src := range r.s.chunkSources(r.dir) {
		if len(want) == 0 {
			break
		}
		f, err := os.Open(src.payload)
		if err != nil {
			continue
		}
		for j, c := range src.m.Chunks {
			if ctx.Err() != nil {
				f.Close()
				return chunks, n, ctx.Err()
			}
			is, ok := want[c.SHA256]
			if !ok || (src.have != nil && !src.have[j]) {
				continue
			}
			b := make([]byte, c.Size)
			if _, err := f.ReadAt(b, c.Offset); err != nil {
				continue
			}
			for _, i := range is {
				if r.Put(i, b) == nil { // a damaged copy is fetched
					chunks++
					n += int64(len(b))
				}
			}
			delete(want, c.SHA256)
		}
		f.Close()
	}
	return chunks, n, r.Sync()
}

// chunkSource is a payload of the store and its manifest: a version (have
// nil: every chunk) or a version being received (have: its chunks in).
type chunkSource struct {
	payload string
	m       *chunker.Manifest
	have    []bool
}

// chunkSources lists every payload of the store but the one of the
// receive directory skip, newest versions first. Manifests are read
// without their signature checked: what is taken from them is checked
// against the manifest being received.
func (s *Store) chunkSources(skip string) []chunkSource {
	var out []chunkSource
	imgs, _ := os.ReadDir(filepath.Join(s.dir, "images"))
	for _, ie := range imgs {
		idir := filepath.Join(s.dir, "images", ie.Name())
		vs, _ := os.ReadDir(idir)
		for k := len(vs) - 1; k >= 0; k-- {
			name := vs[k].Name()
			dir := filepath.Join(idir, name)
			if !vs[k].IsDir() || dir == skip {
				continue
			}
			receiving := strings.HasPrefix(name, receivePrefix)
			if !receiving && !strings.HasPrefix(name, "v") {
				continue
			}
			mb, err := os.ReadFile(filepath.Join(dir, ManifestFile))
			if err != nil {
				continue
			}
			m, err := chunker.DecodeManifest(mb)
			if err != nil {
				continue
			}
			src := chunkSource{payload: filepath.Join(dir, chunker.TorrentName(m.Name, m.Version)), m: m}
			if receiving {
				src.have = readReceived(filepath.Join(dir, ReceivedFile), len(m.Chunks))
			}
			out = append(out, src)
		}
	}
	return out
}

// Commit makes the version, once every chunk is in, a version of the
// store: its payload, torrent and infohash are verified against the signed
// manifest (a chunk found damaged counts as missing again, and Commit
// returns an error wrapping ErrDamaged), then origin (where it came from),
// the complete marker, the rename to vN, and, when it is the newest
// version, the swap of current; the older versions beyond KeepVersions are
// removed. Commit closes r.
func (r *Receive) Commit(ctx context.Context, origin string) (*Image, error) {
	if err := r.Sync(); err != nil {
		return nil, err
	}
	m := r.im.Manifest
	if have, total := r.Count(); have < total {
		return nil, fmt.Errorf("store: %s v%d: %d of %d chunks in", m.Name, m.Version, have, total)
	}
	if err := r.im.Verify(ctx, nil); err != nil {
		if errors.Is(err, ErrDamaged) {
			r.recheck()
		}
		return nil, err
	}
	r.Close()
	line := fmt.Sprintf("%s %s\n", origin, time.Now().UTC().Format(time.RFC3339))
	if err := atomicfile.Write(filepath.Join(r.dir, OriginFile), []byte(line), 0o644); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(r.dir, CompleteFile), []byte(completeMagic), 0o644); err != nil {
		return nil, fmt.Errorf("store: write %s: %w", CompleteFile, err)
	}
	os.Remove(filepath.Join(r.dir, ReceivedFile))
	idir := filepath.Dir(r.dir)
	unlock, err := lock(filepath.Join(idir, ".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	vdir := filepath.Join(idir, "v"+strconv.Itoa(m.Version))
	if err := os.RemoveAll(vdir); err != nil { // a version without its marker
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := os.Rename(r.dir, vdir); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := atomicfile.SyncDir(idir); err != nil {
		return nil, fmt.Errorf("store: sync %s: %w", idir, err)
	}
	if vs, err := versions(idir); err == nil && len(vs) > 0 && vs[len(vs)-1] == m.Version {
		if err := swapSymlink(filepath.Base(vdir), filepath.Join(idir, currentLink)); err != nil {
			return nil, err
		}
		if len(vs) > KeepVersions {
			for _, v := range vs[:len(vs)-KeepVersions] {
				os.RemoveAll(filepath.Join(idir, "v"+strconv.Itoa(v)))
			}
			atomicfile.SyncDir(idir)
		}
	}
	// Versions being received that are older than this one are of no use
	// any more (their chunks that this one shares are in it).
	ents, _ := os.ReadDir(idir)
	for _, e := range ents {
		if v, ok := strings.CutPrefix(e.Name(), receivePrefix); ok {
			if n, err := strconv.Atoi(v); err == nil && n < m.Version {
				os.RemoveAll(filepath.Join(idir, e.Name()))
			}
		}
	}
	im := &Image{Dir: vdir, Manifest: m, ManifestBytes: r.im.ManifestBytes, Signature: r.im.Signature}
	return im, nil
}

// recheck hashes every chunk in again and counts those that do not match
// as missing.
func (r *Receive) recheck() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, c := range r.im.Manifest.Chunks {
		b := make([]byte, c.Size)
		if _, err := r.f.ReadAt(b, c.Offset); err != nil {
			r.have[i] = false
			continue
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != c.SHA256 {
			r.have[i] = false
		}
	}
	r.writeReceived()
}

// Close syncs what was Put and closes the payload file; what is in stays
// for the next Receive of the version. Close after Commit does nothing.
func (r *Receive) Close() error {
	r.mu.Lock()
	closed := r.closed
	r.closed = true
	r.mu.Unlock()
	if closed {
		return nil
	}
	err := r.Sync()
	if cerr := r.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Origin returns where a version came from (its OriginFile's first
// word: the upstream print server), "" for a version published here.
func (im *Image) Origin() string {
	b, err := os.ReadFile(filepath.Join(im.Dir, OriginFile))
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}
