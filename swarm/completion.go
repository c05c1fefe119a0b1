package swarm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"sync"
)

// Completion records which pieces of one torrent are verified. The client
// trusts a piece reported complete without hashing it, hashes a piece whose
// state is unknown (that is how a restarted peer picks up data it wrote but
// had not verified), and downloads a piece known to be incomplete.
//
// A Storage calls Get when anacrolix asks for a piece's state (when the
// torrent is added and whenever it re-checks), Set after a piece passed
// (true) or failed (false) its hash check, and Close once when the torrent's
// storage is closed. Get and Set are called concurrently from the client's
// goroutines and must be safe for that. What Set recorded should survive
// the process being killed right after it returns.
type Completion interface {
	// Get reports whether piece is verified (complete) and whether that is
	// known at all. Unknown pieces are hashed by the client.
	Get(piece int) (complete, known bool)
	// Set records the result of piece's hash check.
	Set(piece int, complete bool) error
	// Close releases the completion's resources. Get and Set after Close
	// report unknown and fail.
	Close() error
}

// AllComplete returns the seeder's Completion: every piece is complete,
// because the image store verified the payload at publish time, so nothing is
// re-hashed when the seeder starts. Set(piece, false), which anacrolix only
// calls when a read comes back short, is remembered in memory for the life of
// the Completion; Set(piece, true) undoes it.
func AllComplete() Completion { return &allComplete{} }

type allComplete struct {
	mu     sync.Mutex
	failed map[int]bool
}

func (a *allComplete) Get(piece int) (complete, known bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return !a.failed[piece], true
}

func (a *allComplete) Set(piece int, complete bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if complete {
		delete(a.failed, piece)
		return nil
	}
	if a.failed == nil {
		a.failed = make(map[int]bool)
	}
	a.failed[piece] = true
	return nil
}

func (a *allComplete) Close() error { return nil }

// memoryCompletion is the default Completion of a writable Files: nothing
// is persisted, so a restarted process hashes every piece again.
type memoryCompletion struct {
	mu    sync.Mutex
	state map[int]bool
}

func (m *memoryCompletion) Get(piece int) (complete, known bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	complete, known = m.state[piece]
	return complete, known
}

func (m *memoryCompletion) Set(piece int, complete bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state == nil {
		m.state = make(map[int]bool)
	}
	m.state[piece] = complete
	return nil
}

func (m *memoryCompletion) Close() error { return nil }

// Bitmap file layout (all integers big-endian):
//
//	0  8 bytes  magic "LSBITMAP"
//	8  uint32   format version (1)
//	12 uint32   number of pieces
//	16 uint32   CRC-32 (IEEE) of bytes 0-15
//	20 ⌈pieces/8⌉ bytes, bit i%8 (LSB first) of byte i/8 set = piece i verified
//
// Bits are updated in place with a one-byte pwrite, which a process killed
// with SIGKILL cannot tear; unused bits of the last byte are zero.
const (
	bitmapMagic      = "LSBITMAP"
	bitmapVersion    = 1
	bitmapHeaderSize = 20
)

// ErrBitmapClosed is returned by Set on a Bitmap completion after Close.
var ErrBitmapClosed = errors.New("swarm: bitmap completion closed")

// OpenBitmap returns the peer's Completion: one bit per piece in the small
// file at path, set in place (one pwrite of one byte) when a piece is
// verified, so a peer killed with -9 resumes without downloading its verified
// pieces again.
//
// A missing file is created. A file that is not a bitmap for this many
// pieces (wrong size, magic, version, piece count or header checksum, stray
// bits) is discarded and replaced by an empty one. A clear bit means
// "unknown", not "incomplete": the client hashes those pieces, which picks up
// data written before a crash (a Storage whose payload file it just created
// knows better and reports them incomplete without hashing).
//
// The file does not record which torrent it belongs to: give every torrent
// its own path (name it by infohash), or a stale bitmap of an image with the
// same piece count would mark the wrong data verified.
func OpenBitmap(path string, pieces int) (Completion, error) {
	if pieces <= 0 || pieces > 1<<31-1 {
		return nil, fmt.Errorf("swarm: bitmap %s: piece count %d out of range", path, pieces)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("swarm: open bitmap: %w", err)
	}
	b := &bitmap{f: f, path: path, pieces: pieces, known: make([]byte, (pieces+7)/8)}
	b.bits, err = readBitmap(f, pieces)
	if err != nil {
		// Discard whatever was there: everything becomes unknown, and the
		// client re-verifies the payload.
		b.bits = make([]byte, (pieces+7)/8)
		if werr := b.rewrite(); werr != nil {
			f.Close()
			return nil, fmt.Errorf("swarm: bitmap %s: %w", path, werr)
		}
	}
	return b, nil
}

type bitmap struct {
	path   string
	pieces int

	mu     sync.Mutex
	f      *os.File
	bits   []byte // persisted: verified pieces
	known  []byte // this session only: pieces Set false (known incomplete)
	closed bool
}

var errBitmapMismatch = errors.New("not a bitmap for this torrent")

// readBitmap returns the bits in f if f is a valid bitmap for pieces.
func readBitmap(f *os.File, pieces int) ([]byte, error) {
	n := (pieces + 7) / 8
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() != int64(bitmapHeaderSize+n) {
		return nil, errBitmapMismatch
	}
	buf := make([]byte, bitmapHeaderSize+n)
	if _, err := f.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if !bytes.Equal(buf[:8], []byte(bitmapMagic)) ||
		binary.BigEndian.Uint32(buf[8:]) != bitmapVersion ||
		binary.BigEndian.Uint32(buf[12:]) != uint32(pieces) ||
		binary.BigEndian.Uint32(buf[16:]) != crc32.ChecksumIEEE(buf[:16]) {
		return nil, errBitmapMismatch
	}
	bits := buf[bitmapHeaderSize:]
	if extra := pieces % 8; extra != 0 && bits[n-1]>>extra != 0 {
		return nil, errBitmapMismatch
	}
	return bits, nil
}

// rewrite replaces the file's contents with a header and b.bits.
func (b *bitmap) rewrite() error {
	buf := make([]byte, bitmapHeaderSize, bitmapHeaderSize+len(b.bits))
	copy(buf, bitmapMagic)
	binary.BigEndian.PutUint32(buf[8:], bitmapVersion)
	binary.BigEndian.PutUint32(buf[12:], uint32(b.pieces))
	binary.BigEndian.PutUint32(buf[16:], crc32.ChecksumIEEE(buf[:16]))
	buf = append(buf, b.bits...)
	if err := b.f.Truncate(0); err != nil {
		return err
	}
	if _, err := b.f.WriteAt(buf, 0); err != nil {
		return err
	}
	return b.f.Sync()
}

func (b *bitmap) Get(piece int) (complete, known bool) {
	if piece < 0 || piece >= b.pieces {
		return false, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false, false
	}
	i, m := piece/8, byte(1)<<(piece%8)
	if b.bits[i]&m != 0 {
		return true, true
	}
	return false, b.known[i]&m != 0
}

func (b *bitmap) Set(piece int, complete bool) error {
	if piece < 0 || piece >= b.pieces {
		return fmt.Errorf("swarm: bitmap %s: piece %d out of range [0,%d)", b.path, piece, b.pieces)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrBitmapClosed
	}
	i, m := piece/8, byte(1)<<(piece%8)
	b.known[i] |= m
	old := b.bits[i]
	if complete {
		b.bits[i] |= m
	} else {
		b.bits[i] &^= m
	}
	if b.bits[i] == old {
		return nil
	}
	if _, err := b.f.WriteAt(b.bits[i:i+1], int64(bitmapHeaderSize+i)); err != nil {
		b.bits[i] = old
		return fmt.Errorf("swarm: bitmap %s: record piece %d: %w", b.path, piece, err)
	}
	return nil
}

func (b *bitmap) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	err := b.f.Close()
	if err != nil && !errors.Is(err, fs.ErrClosed) {
		return fmt.Errorf("swarm: close bitmap %s: %w", b.path, err)
	}
	return nil
}
