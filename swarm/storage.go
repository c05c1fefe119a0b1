package swarm

import (
	"cmp"
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"

	g "github.com/anacrolix/generics"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"
	"github.com/labseed/labseed/internal/bufpool"
)

// ErrReadOnly is returned when the client tries to write to a payload
// registered with Files.ReadOnly.
var ErrReadOnly = errors.New("swarm: payload is read-only")

// Files says where the payload of one torrent lives and how its piece
// completion is kept.
type Files struct {
	// Path is the payload file. Required. A missing file is created
	// sparse, at full length (its parent directory must exist); an existing
	// shorter one is extended, a longer one truncated, and pieces past its
	// old end are never trusted as complete. A ReadOnly file must exist
	// with exactly the torrent's length.
	Path string
	// ReadOnly opens the payload read-only: the seeder's store is never
	// written. A write attempt fails with ErrReadOnly (the client then stops
	// downloading the torrent). Default false.
	ReadOnly bool
	// Completion records which pieces are verified. The Storage owns it
	// from Register on and closes it when the torrent's storage is closed
	// (Torrent.Drop, Client.Close) or, if never opened, with the Storage.
	// Default: AllComplete() if ReadOnly, else an in-memory record that a
	// restart forgets.
	Completion Completion
	// OnPiece, if not nil, is called after the client recorded piece as
	// verified (complete) or as failing its hash check (not complete):
	// after a download, or after the check of a piece whose state was
	// unknown when the torrent was added. It is not called for pieces the
	// Completion already reported complete. It runs on the client's
	// hashing goroutines, may be called concurrently and must not block
	// (hand the index to a buffered channel or a queue).
	OnPiece func(piece int, complete bool)
	// BlockSize is the block the client asks its peers for in this
	// torrent (AddTorrent's blockSize; 0: BlockSize). A piece of one block
	// hashes itself (selfHashingPiece); a longer one goes through
	// anacrolix's smart-ban hashing, which finds which of the peers that
	// sent its blocks sent a bad one.
	BlockSize int
	// MaxRequests is the most blocks the client keeps requested from one
	// peer in this torrent; 0: MaxRequests.
	MaxRequests int
}

// Storage stores single-file payloads with classic pread/pwrite I/O, never
// mmap: mapped pages would count in the process's RSS, and a peer must stay
// under 256 MiB RSS while downloading a 1 GB image. It implements
// storage.ClientImplCloser; give it to NewClient as Config.Storage.
//
// A Storage serves one client. Its methods are safe for concurrent use.
type Storage struct {
	mu     sync.Mutex
	reg    map[metainfo.Hash]Files
	open   map[metainfo.Hash]*payload
	closed bool
}

var _ storage.ClientImplCloser = (*Storage)(nil)

// NewStorage returns an empty Storage.
func NewStorage() *Storage {
	return &Storage{
		reg:  make(map[metainfo.Hash]Files),
		open: make(map[metainfo.Hash]*payload),
	}
}

// Register tells the storage where the payload of torrent ih lives, before
// the torrent is added to a client. The next OpenTorrent for ih consumes the
// registration: register again before adding the torrent again after
// Torrent.Drop. Registering ih again before it is opened replaces the
// registration and closes the replaced Completion.
func (s *Storage) Register(ih metainfo.Hash, f Files) {
	s.mu.Lock()
	old, ok := s.reg[ih]
	s.reg[ih] = f
	s.mu.Unlock()
	if ok && old.Completion != nil && old.Completion != f.Completion {
		old.Completion.Close()
	}
}

// OpenTorrent opens the registered payload of infoHash. The client calls it
// when the torrent's info is known (at once for AddTorrent with a
// metainfo).
func (s *Storage) OpenTorrent(_ context.Context, info *metainfo.Info, infoHash metainfo.Hash) (storage.TorrentImpl, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return storage.TorrentImpl{}, errors.New("swarm: storage closed")
	}
	f, ok := s.reg[infoHash]
	if !ok {
		return storage.TorrentImpl{}, fmt.Errorf("swarm: torrent %s (%s) is not registered: call Storage.Register before adding it", infoHash.HexString(), info.BestName())
	}
	if _, busy := s.open[infoHash]; busy {
		return storage.TorrentImpl{}, fmt.Errorf("swarm: torrent %s (%s) is already open", infoHash.HexString(), info.BestName())
	}
	p, err := openPayload(info, f)
	if err != nil {
		return storage.TorrentImpl{}, fmt.Errorf("swarm: torrent %s: %w", info.BestName(), err)
	}
	p.close = func() error {
		s.mu.Lock()
		if s.open[infoHash] == p {
			delete(s.open, infoHash)
		}
		s.mu.Unlock()
		return p.closeFiles()
	}
	delete(s.reg, infoHash)
	s.open[infoHash] = p
	return storage.TorrentImpl{
		Piece: func(mp metainfo.Piece) storage.PieceImpl { return p.pieceImpl(mp.Index()) },
		PieceWithHash: func(mp metainfo.Piece, _ g.Option[[]byte]) storage.PieceImpl {
			return p.pieceImpl(mp.Index())
		},
		Close: p.close,
		NewReader: func() storage.TorrentReader {
			return torrentReader{io.NewSectionReader(p.f, 0, p.length)}
		},
	}, nil
}

// maxRequests is the most blocks the client keeps requested from one
// peer in torrent ih (Files.MaxRequests); MaxRequests when ih is not open.
func (s *Storage) maxRequests(ih metainfo.Hash) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.open[ih]; ok {
		return p.maxRequests
	}
	return MaxRequests
}

// Close closes every payload still open, and the Completions of those
// and of registrations never opened. Call it after the client is closed.
// It is idempotent.
func (s *Storage) Close() error {
	s.mu.Lock()
	s.closed = true
	open := make([]*payload, 0, len(s.open))
	for _, p := range s.open {
		open = append(open, p)
	}
	var unopened []Completion
	for ih, f := range s.reg {
		if f.Completion != nil {
			unopened = append(unopened, f.Completion)
		}
		delete(s.reg, ih)
	}
	s.mu.Unlock()
	var errs []error
	for _, p := range open {
		errs = append(errs, p.close())
	}
	for _, c := range unopened {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// payload is one open torrent.
type payload struct {
	path     string
	f        *os.File
	readOnly bool
	length   int64
	// validUpTo is the length of the file's old contents: pieces that
	// start at or past it hold no data yet, so an unknown completion there
	// means incomplete and is not worth hashing. 0 for a file just created.
	validUpTo   int64
	completion  Completion
	onPiece     func(int, bool)
	blockSize   int64 // Files.BlockSize
	maxRequests int   // Files.MaxRequests
	pieces      []piece
	hashBufs    bufpool.Pool // SelfHash's buffers
	close       func() error
	closeOnce   sync.Once
	closeErr    error
}

func openPayload(info *metainfo.Info, f Files) (*payload, error) {
	if f.Path == "" {
		return nil, errors.New("no payload path registered")
	}
	if info.IsDir() {
		return nil, fmt.Errorf("%d files: labseed torrents carry exactly one file", len(info.Files))
	}
	if info.PieceLength <= 0 || info.Length <= 0 {
		return nil, fmt.Errorf("bad info: length %d, piece length %d", info.Length, info.PieceLength)
	}
	p := &payload{
		path:        f.Path,
		readOnly:    f.ReadOnly,
		length:      info.Length,
		completion:  f.Completion,
		onPiece:     f.OnPiece,
		blockSize:   int64(cmp.Or(f.BlockSize, BlockSize)),
		maxRequests: cmp.Or(f.MaxRequests, MaxRequests),
	}
	if p.completion == nil {
		if f.ReadOnly {
			p.completion = AllComplete()
		} else {
			p.completion = &memoryCompletion{}
		}
	}
	var err error
	if f.ReadOnly {
		err = p.openReadOnly()
	} else {
		err = p.openWritable()
	}
	if err != nil {
		return nil, err
	}
	n := info.NumPieces()
	p.pieces = make([]piece, n)
	for i := range p.pieces {
		mp := info.Piece(i)
		p.pieces[i] = piece{p: p, index: i, off: mp.Offset(), length: mp.Length()}
	}
	// A piece recorded complete whose bytes are not in the file (the
	// payload was deleted or truncated behind the bitmap's back) must be
	// downloaded again.
	for i := int(p.validUpTo / info.PieceLength); i < n; i++ {
		if pc := p.pieces[i]; pc.off+pc.length <= p.validUpTo {
			continue
		}
		if complete, _ := p.completion.Get(i); complete {
			if err := p.completion.Set(i, false); err != nil {
				p.closeFiles()
				return nil, fmt.Errorf("reset completion of piece %d past the end of %s: %w", i, p.path, err)
			}
		}
	}
	return p, nil
}

func (p *payload) openReadOnly() error {
	f, err := os.Open(p.path)
	if err != nil {
		return fmt.Errorf("open payload: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open payload: %w", err)
	}
	if fi.Size() != p.length {
		f.Close()
		return fmt.Errorf("payload %s is %d bytes, the torrent says %d: wrong file or damaged store", p.path, fi.Size(), p.length)
	}
	p.f = f
	p.validUpTo = p.length
	return nil
}

func (p *payload) openWritable() error {
	f, err := os.OpenFile(p.path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	created := err == nil
	if errors.Is(err, fs.ErrExist) {
		f, err = os.OpenFile(p.path, os.O_RDWR, 0)
	}
	if err != nil {
		return fmt.Errorf("open payload: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open payload: %w", err)
	}
	p.validUpTo = min(fi.Size(), p.length)
	if created {
		p.validUpTo = 0
	}
	if fi.Size() != p.length {
		// Sparse: blocks are allocated as pieces arrive.
		if err := f.Truncate(p.length); err != nil {
			f.Close()
			return fmt.Errorf("size payload %s to %d bytes: %w", p.path, p.length, err)
		}
	}
	p.f = f
	return nil
}

// closeFiles closes the payload file and the Completion once.
func (p *payload) closeFiles() error {
	p.closeOnce.Do(func() {
		var errs []error
		if err := p.f.Close(); err != nil && !errors.Is(err, fs.ErrClosed) {
			errs = append(errs, fmt.Errorf("swarm: close payload: %w", err))
		}
		if err := p.completion.Close(); err != nil {
			errs = append(errs, err)
		}
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}

// pieceImpl returns what anacrolix gets for piece i: the piece, hashing
// itself if it is at most one block long (selfHashingPiece).
func (p *payload) pieceImpl(i int) storage.PieceImpl {
	pc := &p.pieces[i]
	if pc.length <= p.blockSize {
		return selfHashingPiece{pc}
	}
	return pc
}

// torrentReader reads the whole payload; closing it leaves the shared file
// open.
type torrentReader struct{ *io.SectionReader }

func (torrentReader) Close() error { return nil }

// piece is one piece of a payload. It implements storage.PieceImpl and
// storage.Flusher.
type piece struct {
	p      *payload
	index  int
	off    int64
	length int64
}

var (
	_ storage.PieceImpl = (*piece)(nil)
	_ storage.Flusher   = (*piece)(nil)
)

// ReadAt reads from the piece at off (relative to the piece): one pread.
func (pc *piece) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 || off >= pc.length {
		return 0, io.EOF
	}
	short := int64(len(b)) > pc.length-off
	if short {
		b = b[:pc.length-off]
	}
	n, err := pc.p.f.ReadAt(b, pc.off+off)
	if err == nil && short {
		err = io.EOF
	}
	return n, err
}

// WriteAt writes to the piece at off (relative to the piece): one pwrite.
func (pc *piece) WriteAt(b []byte, off int64) (int, error) {
	if pc.p.readOnly {
		return 0, fmt.Errorf("write piece %d of %s: %w", pc.index, pc.p.path, ErrReadOnly)
	}
	if off < 0 || off+int64(len(b)) > pc.length {
		return 0, fmt.Errorf("swarm: write [%d,%d) outside piece %d of length %d", off, off+int64(len(b)), pc.index, pc.length)
	}
	return pc.p.f.WriteAt(b, pc.off+off)
}

// Flush does nothing. anacrolix calls it after the piece passed its hash
// check and before MarkComplete. An fsync per piece (one per 256 KiB) made
// every workstation wait on its disk's journal a thousand times per image;
// without it, a process killed with -9 loses nothing (the page cache keeps
// the data) and after a power cut a piece marked complete may hold stale
// bytes: the peer then finds its chunk's SHA-256 wrong, and verifies and
// fetches those pieces again (peer.download.requeue).
func (pc *piece) Flush() error { return nil }

// selfHashingPiece is a piece that anacrolix hashes by calling SelfHash
// (storage.SelfHashing), not by copying it through its "smart ban" writer.
// That writer keeps a copy of every piece it hashes, to find which peer
// sent a bad block when a piece made of several peers' blocks fails its
// check: with a piece of one block (labseed's 256 KiB pieces and blocks)
// only one peer ever sends a piece's data, and anacrolix bans that peer
// for a failed piece anyway (TestLyingPeer). The copy was 3 % of a lab
// bench workstation's CPU profile, and its buffers a good part of the
// garbage.
type selfHashingPiece struct{ *piece }

var _ storage.SelfHashing = selfHashingPiece{}

// SelfHash returns the SHA-1 of the piece's bytes in the file (BitTorrent
// v1's piece hash), read with one pread into a reused buffer.
func (pc selfHashingPiece) SelfHash() (metainfo.Hash, error) {
	buf := pc.p.hashBufs.Get(int(pc.length))
	defer pc.p.hashBufs.Put(buf)
	if n, err := pc.p.f.ReadAt(buf, pc.off); n < len(buf) {
		return metainfo.Hash{}, fmt.Errorf("swarm: hash piece %d of %s: %w", pc.index, pc.p.path, err)
	}
	return sha1.Sum(buf), nil
}

// MarkComplete records the piece as verified.
func (pc *piece) MarkComplete() error {
	err := pc.p.completion.Set(pc.index, true)
	// The data is verified whether or not the record could be written
	// (anacrolix keeps the piece complete in memory either way).
	if pc.p.onPiece != nil {
		pc.p.onPiece(pc.index, true)
	}
	return err
}

// MarkNotComplete records the piece as failing its check.
func (pc *piece) MarkNotComplete() error {
	err := pc.p.completion.Set(pc.index, false)
	if pc.p.onPiece != nil {
		pc.p.onPiece(pc.index, false)
	}
	return err
}

// Completion reports the piece's state from the Completion; unknown pieces
// past the file's old end are reported incomplete without hashing.
func (pc *piece) Completion() storage.Completion {
	complete, known := pc.p.completion.Get(pc.index)
	if !known && pc.off >= pc.p.validUpTo {
		return storage.Completion{Ok: true, Complete: false}
	}
	return storage.Completion{Ok: known, Complete: complete}
}
