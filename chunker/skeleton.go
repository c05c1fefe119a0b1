package chunker

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"lukechampine.com/blake3"
)

// A chunk's skeleton is its tar fragment without the files' data: the
// headers and padding as they are, and for each file's data the path and
// offset where an extraction put it. Every chunk an Applier applies gets
// one in the state directory (SkeletonDir), and WriteInstalled keeps them
// beside the installed record. A sync rebuilds a chunk that the new image
// shares with the installed one from its skeleton and the files on the
// disk, and applies it when the rebuilt fragment has the BLAKE3 hash the
// signed manifest gives (Chunk.RawBLAKE3): checking a chunk costs reading
// and hashing the disk's files, not decompressing the chunk. Nothing in a
// skeleton is trusted: a damaged skeleton, or a file a student changed,
// gives another hash, and the chunk is decompressed and applied as
// before (docs/FORMAT.md).
//
// The encoding: skeletonMagic, then operations, each a uvarint kind and
// its arguments, until skelEnd:
//
//	skelLiteral n, then n bytes      bytes of the fragment
//	skelZeros n                      n zero bytes (headers are mostly zeros)
//	skelData len, name, offset, n    n bytes of the file name (its length
//	                                 len first) read at offset
const skeletonMagic = "labseed-skel-1\n"

const (
	skelEnd = iota
	skelLiteral
	skelZeros
	skelData
)

// skeletonDirName is the directory of skeletons, in the state directory
// and in the installed one; each file is named by the chunk's SHA-256.
const skeletonDirName = "skel"

// zeroRun is the shortest run of zero bytes a skeleton encodes as
// skelZeros rather than as literal bytes.
var zeroRun = make([]byte, 16)

// dataRef is where a file's data lies in a fragment, and where it lies on
// the disk after an extraction.
type dataRef struct {
	pos, n int64 // in the fragment
	name   string
	off    int64 // in the file
}

// buildSkeleton returns the skeleton of the fragment raw whose files'
// data are refs, in order.
func buildSkeleton(raw []byte, refs []dataRef) []byte {
	out := make([]byte, 0, 4096)
	out = append(out, skeletonMagic...)
	literal := func(b []byte) {
		for len(b) > 0 {
			z := bytes.Index(b, zeroRun)
			if z < 0 {
				z = len(b)
			}
			if z > 0 {
				out = binary.AppendUvarint(out, skelLiteral)
				out = binary.AppendUvarint(out, uint64(z))
				out = append(out, b[:z]...)
				b = b[z:]
			}
			n := 0
			for n < len(b) && b[n] == 0 {
				n++
			}
			if n > 0 {
				out = binary.AppendUvarint(out, skelZeros)
				out = binary.AppendUvarint(out, uint64(n))
				b = b[n:]
			}
		}
	}
	var at int64
	for _, r := range refs {
		literal(raw[at:r.pos])
		out = binary.AppendUvarint(out, skelData)
		out = binary.AppendUvarint(out, uint64(len(r.name)))
		out = append(out, r.name...)
		out = binary.AppendUvarint(out, uint64(r.off))
		out = binary.AppendUvarint(out, uint64(r.n))
		at = r.pos + r.n
	}
	literal(raw[at:])
	return binary.AppendUvarint(out, skelEnd)
}

// fileKey is a file's identity and state as fstat gives them: a file
// whose key is the same has the same data (skeleton.go's rebuild).
type fileKey struct {
	dev, ino    uint64
	ctime, size int64
}

// readRef is a region of a rebuilt fragment read from the disk: its
// dataRef, and the file as it was when read.
type readRef struct {
	dataRef
	key fileKey
}

// errSkeleton is a skeleton that does not parse, or does not fit its
// chunk.
var errSkeleton = errors.New("chunker: damaged skeleton")

// rebuildFragment appends to buf (whose capacity must be size) the
// fragment of size bytes that skeleton sk describes, reading the files'
// data with read. It returns the regions it read, by their place in the
// fragment.
func rebuildFragment(sk []byte, size int64, buf []byte, read func(name string, off int64, p []byte) (fileKey, error)) ([]byte, map[int64]readRef, error) {
	p, ok := bytes.CutPrefix(sk, []byte(skeletonMagic))
	if !ok {
		return nil, nil, errSkeleton
	}
	regions := map[int64]readRef{}
	next := func() (uint64, bool) {
		v, k := binary.Uvarint(p)
		if k <= 0 {
			return 0, false
		}
		p = p[k:]
		return v, true
	}
	// grow extends out by n bytes, if the fragment has room for them.
	out := buf[:0]
	grow := func(n uint64) ([]byte, bool) {
		if n > uint64(size-int64(len(out))) {
			return nil, false
		}
		at := len(out)
		out = out[:at+int(n)]
		return out[at:], true
	}
	for {
		kind, ok := next()
		if !ok {
			return nil, nil, errSkeleton
		}
		switch kind {
		case skelEnd:
			if len(p) != 0 || int64(len(out)) != size {
				return nil, nil, errSkeleton
			}
			return out, regions, nil
		case skelLiteral:
			n, ok := next()
			if !ok || n > uint64(len(p)) {
				return nil, nil, errSkeleton
			}
			dst, ok := grow(n)
			if !ok {
				return nil, nil, errSkeleton
			}
			copy(dst, p[:n])
			p = p[n:]
		case skelZeros:
			n, ok := next()
			dst, ok2 := grow(n)
			if !ok || !ok2 {
				return nil, nil, errSkeleton
			}
			clear(dst)
		case skelData:
			l, ok := next()
			if !ok || l == 0 || l > uint64(len(p)) {
				return nil, nil, errSkeleton
			}
			name := string(p[:l])
			p = p[l:]
			off, ok := next()
			n, ok2 := next()
			if !ok || !ok2 || off > maxFileSize {
				return nil, nil, errSkeleton
			}
			dst, ok := grow(n)
			if !ok {
				return nil, nil, errSkeleton
			}
			if c, err := cleanName(name); err != nil || c != name || c == "." {
				return nil, nil, errSkeleton
			}
			at := int64(len(out)) - int64(n)
			key, err := read(name, int64(off), dst)
			if err != nil {
				return nil, nil, err
			}
			regions[at] = readRef{dataRef{pos: at, n: int64(n), name: name, off: int64(off)}, key}
		default:
			return nil, nil, errSkeleton
		}
	}
}

// SkeletonDir returns the directory where the Applier writes the
// skeletons of the chunks it applies (in its state directory), for
// WriteInstalled.
func (a *Applier) SkeletonDir() string { return filepath.Join(a.state, skeletonDirName) }

// writeSkeleton writes chunk i's skeleton. It is an aid to the next sync,
// not part of the extraction: it is not synced on its own (the commit's
// syncfs covers it when the state is on the target's file system), and a
// skeleton that cannot be written is only logged.
func (a *Applier) writeSkeleton(i int, raw []byte, refs []dataRef) {
	dir := a.SkeletonDir()
	name := filepath.Join(dir, a.m.Chunks[i].SHA256)
	sk := buildSkeleton(raw, refs)
	err := os.WriteFile(name, sk, 0o600)
	if errors.Is(err, os.ErrNotExist) {
		if err = os.MkdirAll(dir, 0o700); err == nil {
			err = os.WriteFile(name, sk, 0o600)
		}
	}
	if err != nil {
		os.Remove(name)
		a.log.Debug("cannot keep a chunk's skeleton for the next sync", "chunk", i, "err", err)
	}
}

// readInstalledSkeleton returns the skeleton the installed record keeps
// for the chunk of SHA-256 sum, if it is no larger than a skeleton of a
// fragment of size bytes can be.
func (a *Applier) readInstalledSkeleton(sum string, size int64) ([]byte, error) {
	f, err := os.Open(filepath.Join(InstalledDir(a.target), skeletonDirName, sum))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Literal bytes and file names at worst: a name per 512-byte header.
	limit := 2*size + 4096
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: larger than its chunk allows", errSkeleton)
	}
	return b, nil
}

// rebuilt reports whether out hashes to chunk i's RawBLAKE3.
func (a *Applier) rebuilt(i int, out []byte) bool {
	sum := blake3.Sum256(out)
	return hex.EncodeToString(sum[:]) == a.m.Chunks[i].RawBLAKE3
}
