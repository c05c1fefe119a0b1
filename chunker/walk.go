package chunker

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Entry is one tar entry of a chunk, as ChunkReader.Walk gives it. A
// regular file that spans chunks appears once in each: Offset is where
// this part starts in the file, FileSize the whole file's size, and
// Header.Size this part's length.
type Entry struct {
	// Header is the entry's header; Name is canonical ("usr/bin/ls",
	// "." for the root).
	Header *tar.Header
	// Offset and FileSize place a regular file's part (0 and Header.Size
	// for a file held whole).
	Offset, FileSize int64
}

// ChunkReader reads the entries of single chunks of an image without
// extracting them, e.g. to find some files of a published image. It is
// not safe for concurrent use; use one per goroutine.
type ChunkReader struct {
	m   *Manifest
	dec *zstd.Decoder
	buf []byte
}

// NewChunkReader returns a reader of m's chunks.
func NewChunkReader(m *Manifest) (*ChunkReader, error) {
	dec, err := newChunkDecoder(1)
	if err != nil {
		return nil, err
	}
	return &ChunkReader{m: m, dec: dec}, nil
}

// Close releases the decoder.
func (r *ChunkReader) Close() { r.dec.Close() }

// Walk checks chunk i's compressed bytes data against the manifest,
// decompresses them and calls fn for every entry, with a reader of the
// entry's data (valid during the call). An error of fn stops the walk and
// is returned.
func (r *ChunkReader) Walk(i int, data []byte, fn func(e Entry, data io.Reader) error) error {
	if i < 0 || i >= len(r.m.Chunks) {
		return fmt.Errorf("chunk %d: the image has %d chunks", i, len(r.m.Chunks))
	}
	c := r.m.Chunks[i]
	if sum := sha256.Sum256(data); int64(len(data)) != c.Size || hex.EncodeToString(sum[:]) != c.SHA256 {
		return &ChunkError{Index: i, Err: ErrChunkHash}
	}
	raw, err := r.dec.DecodeAll(data, r.buf[:0])
	if err != nil {
		return &ChunkError{Index: i, Err: fmt.Errorf("decompress: %w", err)}
	}
	r.buf = raw
	if int64(len(raw)) != c.RawSize {
		return &ChunkError{Index: i, Err: fmt.Errorf("decompressed to %d bytes, manifest says %d", len(raw), c.RawSize)}
	}
	err = readFragmentBytes(raw, func(e *entry, d []byte) error {
		return fn(Entry{Header: e.hdr, Offset: e.offset, FileSize: e.total}, bytes.NewReader(d))
	})
	if err != nil {
		return &ChunkError{Index: i, Err: err}
	}
	return nil
}
