package peer

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/swarm"
)

// localChunks finds, for a sync, the chunks of the image that the payload
// kept in the target by the last run (chunker.InstalledPayload) holds: it
// reads each chunk of the same SHA-256 there, checks it against the signed
// manifest, and copies it into the staging payload. The pieces the copied
// chunks cover whole are marked verified in bitmap, so that the torrent
// client seeds them and the workstation asks no one for them; the chunks
// themselves are applied at once (the tracker's local). Nothing the disk
// holds is trusted: a chunk that does not check out is fetched. Chunks
// applied already (a resumed sync) are left out.
func (s *Session) localChunks(bitmap swarm.Completion, numPieces int) (map[int]bool, error) {
	m := s.im.Manifest
	local := map[int]bool{}
	target := s.a.cfg.Target
	rec, old, err := chunker.ReadInstalled(target)
	switch {
	case errors.Is(err, chunker.ErrNotInstalled):
		s.a.log.Info("sync: no record of an image installed here: every chunk is fetched")
		return local, nil
	case err != nil:
		s.a.log.Warn("sync: the record of the image installed here is unusable: every chunk is fetched", "err", err)
		return local, nil
	case !rec.Payload:
		s.a.log.Info("sync: no payload kept here: every chunk is fetched", "installed", fmt.Sprintf("%s-v%d", rec.Name, rec.Version))
		return local, nil
	}
	start := time.Now()
	kept, err := os.Open(chunker.InstalledPayload(target))
	if err != nil {
		s.a.log.Warn("sync: the payload kept here is unusable: every chunk is fetched", "err", err)
		return local, nil
	}
	defer kept.Close()
	bySum := make(map[string]chunker.Chunk, len(old.Chunks))
	for _, c := range old.Chunks {
		bySum[c.SHA256] = c
	}
	_, statErr := os.Stat(s.payload)
	created := errors.Is(statErr, fs.ErrNotExist)
	staging, err := os.OpenFile(s.payload, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("peer: staging: %w", err)
	}
	defer staging.Close()
	if err := staging.Truncate(m.PayloadBytes); err != nil {
		return nil, fmt.Errorf("peer: staging: %w", err)
	}
	var buf []byte
	var bad, bytes int64
	for i, c := range m.Chunks {
		oc, ok := bySum[c.SHA256]
		if !ok || oc.Size != c.Size || s.ap.Applied(i) {
			continue
		}
		if int64(cap(buf)) < c.Size {
			buf = make([]byte, c.Size)
		}
		b := buf[:c.Size]
		if _, err := kept.ReadAt(b, oc.Offset); err != nil {
			bad++
			continue
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != c.SHA256 {
			bad++
			continue
		}
		if _, err := staging.WriteAt(b, c.Offset); err != nil {
			return nil, fmt.Errorf("peer: staging: %w", err)
		}
		local[i] = true
		bytes += c.Size
	}
	if err := staging.Sync(); err != nil {
		return nil, fmt.Errorf("peer: staging: %w", err)
	}
	// A piece is verified when every chunk it overlaps was copied; the
	// others are fetched (those a copied chunk shares with a missing one
	// too: a piece is the smallest unit that travels).
	covered := 0
	// What is left to fetch: the pieces that hold bytes of a chunk not
	// found, and among their bytes those of chunks found (edge: they
	// travel whole between workstations; the print server leaves them
	// out).
	var fetchPieces, fetchBytes, edgeBytes int64
	for p := range numPieces {
		lo := int64(p) * m.PieceLength
		hi := min(lo+m.PieceLength, m.PayloadBytes)
		whole := true
		var found int64
		for c := chunkAt(m, lo); c < len(m.Chunks) && m.Chunks[c].Offset < hi; c++ {
			whole = whole && local[c]
			if local[c] {
				found += min(hi, m.Chunks[c].Offset+m.Chunks[c].Size) - max(lo, m.Chunks[c].Offset)
			}
		}
		if !whole {
			fetchPieces++
			fetchBytes += hi - lo
			edgeBytes += found
		}
		switch complete, _ := bitmap.Get(p); {
		case whole && !complete:
			err = bitmap.Set(p, true)
			covered++
		case !whole && !complete && created:
			// Known missing: not worth hashing when the torrent starts.
			err = bitmap.Set(p, false)
		}
		if err != nil {
			return nil, fmt.Errorf("peer: staging: %w", err)
		}
	}
	s.a.log.Info("sync: chunks found in the payload kept here", "installed", fmt.Sprintf("%s-v%d", rec.Name, rec.Version),
		"chunks", len(local), "of", len(m.Chunks), "bytes", bytes, "damaged", bad, "pieces", covered, "seconds", time.Since(start).Seconds(),
		"fetch_pieces", fetchPieces, "fetch_bytes", fetchBytes, "edge_bytes", edgeBytes)
	return local, nil
}

// diskOnly reports whether every piece holding bytes of chunk c holds only
// bytes of chunks found on the disk (localChunks): no such piece is
// fetched, so the chunk's bytes in staging are the ones localChunks
// checked against the signed manifest and copied there, and nothing else
// writes them.
func (s *Session) diskOnly(c int) bool {
	m := s.im.Manifest
	ch := m.Chunks[c]
	for _, off := range []int64{ch.Offset, ch.Offset + ch.Size - 1} {
		lo := off / m.PieceLength * m.PieceLength
		hi := min(lo+m.PieceLength, m.PayloadBytes)
		for o := chunkAt(m, lo); o < len(m.Chunks) && m.Chunks[o].Offset < hi; o++ {
			if !s.local[o] {
				return false
			}
		}
	}
	return true
}
