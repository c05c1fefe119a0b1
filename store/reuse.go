package store

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"sync"

	"github.com/labseed/labseed/chunker"
)

// compressedChunks finds, for Publish, the chunks the store already holds
// compressed at one level, by the BLAKE3 sum of their uncompressed bytes
// (chunker.Config.Reuse): a new version of an image shares most of its
// chunks with the one before, and they need not be compressed again.
type compressedChunks struct {
	byRaw map[[32]byte]storedChunk

	mu      sync.Mutex
	offered map[[32]byte]string // raw sum → SHA-256 of the bytes returned
}

// storedChunk is where a compressed chunk lies in the store.
type storedChunk struct {
	payload      string
	offset, size int64
	rawSize      int64
	sha256       string
}

// compressedAt indexes every chunk of the store's versions, and of the
// versions being received, compressed at level. Manifests are read without
// their signatures checked: chunker.Publish takes a chunk only if it
// decodes to the bytes being published.
func (s *Store) compressedAt(level int) *compressedChunks {
	c := &compressedChunks{byRaw: map[[32]byte]storedChunk{}, offered: map[[32]byte]string{}}
	for _, src := range s.chunkSources("") {
		if src.m.Level != level {
			continue
		}
		for j, ch := range src.m.Chunks {
			var sum [32]byte
			if ch.RawBLAKE3 == "" || (src.have != nil && !src.have[j]) {
				continue
			}
			if _, err := hex.Decode(sum[:], []byte(ch.RawBLAKE3)); err != nil {
				continue
			}
			if _, ok := c.byRaw[sum]; !ok {
				c.byRaw[sum] = storedChunk{payload: src.payload, offset: ch.Offset, size: ch.Size, rawSize: ch.RawSize, sha256: ch.SHA256}
			}
		}
	}
	return c
}

// find is chunker.Config.Reuse.
func (c *compressedChunks) find(rawSum [32]byte, rawSize int64) []byte {
	sc, ok := c.byRaw[rawSum]
	if !ok || sc.rawSize != rawSize || sc.size <= 0 || sc.size > chunker.MaxChunkRawSize {
		return nil
	}
	f, err := os.Open(sc.payload)
	if err != nil {
		return nil
	}
	defer f.Close()
	b := make([]byte, sc.size)
	if _, err := f.ReadAt(b, sc.offset); err != nil {
		return nil
	}
	// A copy damaged on the disk is not offered; so the chunks of the new
	// version with the SHA-256 offered are those taken (see reused).
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != sc.sha256 {
		return nil
	}
	c.mu.Lock()
	c.offered[rawSum] = sc.sha256
	c.mu.Unlock()
	return b
}

// reused counts the chunks of m that are bytes find returned: the chunks
// Publish did not compress again. (It took them only if they decode to
// the chunk's bytes; a chunk compressed instead cannot have the same bytes,
// since find returns only bytes with the SHA-256 their manifest gives.)
func (c *compressedChunks) reused(m *chunker.Manifest) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, ch := range m.Chunks {
		var sum [32]byte
		hex.Decode(sum[:], []byte(ch.RawBLAKE3))
		if sha, ok := c.offered[sum]; ok && sha == ch.SHA256 {
			n++
		}
	}
	return n
}
