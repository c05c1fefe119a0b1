package chunker

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Versions of the image format a Manifest describes (docs/FORMAT.md).
const (
	// FormatVersion is the newest format, 3: format 2 with each chunk's
	// RawBLAKE3, which lets a sync check the chunks a disk already holds
	// without decompressing them (docs/FORMAT.md). Every image is
	// published in it.
	FormatVersion = 3
	// SparseFormatVersion is format 2: images holding sparse files,
	// carried as their data segments (a file that is all hole is a part
	// of no data, which labseed before format 2 could not apply). Labseed
	// before format 3 published images without sparse files in format 1.
	SparseFormatVersion = 2
	// MinFormatVersion is the oldest format this labseed reads: format 1,
	// the images without sparse files that labseed published before
	// format 3.
	MinFormatVersion = 1
)

// Limits that a manifest must respect; they bound what a hostile manifest can
// make an Applier allocate.
const (
	// MaxChunkRawSize is the largest uncompressed chunk any manifest may declare.
	MaxChunkRawSize = 256 << 20
	// MaxChunks is the largest number of chunks in one image.
	MaxChunks = 1 << 20
)

// ErrBadSignature is returned when a manifest's signature does not verify.
var ErrBadSignature = errors.New("chunker: manifest signature does not verify")

// Manifest describes a published image. It is stored as JSON next to its
// ed25519 signature; the signature covers the stored bytes exactly.
type Manifest struct {
	Format  int       `json:"format"`
	Name    string    `json:"name"`
	Version int       `json:"version"`
	Created time.Time `json:"created"`
	// InputBytes is the size of the tarball given to publish (compressed, as given).
	InputBytes int64 `json:"input_bytes"`
	// TarBytes is the sum of the chunks' uncompressed sizes.
	TarBytes int64 `json:"tar_bytes"`
	// PayloadBytes is the sum of the chunks' compressed sizes: the bytes that travel.
	PayloadBytes int64 `json:"payload_bytes"`
	// FileBytes is the sum of the sizes of the regular files in the image.
	FileBytes int64 `json:"file_bytes"`
	// Entries is the number of tar entries in the image.
	Entries int `json:"entries"`
	// Level is the compression level the chunks were compressed with:
	// 1-4 klauspost/compress's levels, 5-19 the zstd program's (Config.Level).
	// Workstations do not need it: every level decodes the same way.
	Level  int     `json:"level"`
	Chunks []Chunk `json:"chunks"`
	// InfoHash is the hex BitTorrent v1 infohash of the metainfo over the payload.
	InfoHash string `json:"infohash"`
	// PieceLength is the torrent's piece length in bytes.
	PieceLength int64 `json:"piece_length"`
}

// Chunk is one independently extractable part of an image.
type Chunk struct {
	// Offset is where the chunk starts in the payload.
	Offset int64 `json:"offset"`
	// Size is the compressed size in bytes.
	Size int64 `json:"size"`
	// RawSize is the size of the uncompressed tar fragment.
	RawSize int64 `json:"raw_size"`
	// SHA256 is the hex SHA-256 of the compressed bytes.
	SHA256 string `json:"sha256"`
	// RawBLAKE3 is the hex BLAKE3-256 of the uncompressed tar fragment
	// (format 3; empty before). BLAKE3, not SHA-256: a sync hashes every
	// fragment the disk holds, and BLAKE3 hashes 3 times faster here.
	RawBLAKE3 string `json:"raw_blake3,omitempty"`
}

var (
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	hexRE  = regexp.MustCompile(`^[0-9a-f]+$`)
)

// ValidName reports whether s may name an image: 1 to 64 characters of letters,
// digits, '.', '_' and '-', starting with a letter or digit.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// Encode returns the manifest's canonical JSON encoding, the bytes that get signed.
func (m *Manifest) Encode() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// DecodeManifest parses and validates a manifest. It rejects anything an
// Applier could not safely use: unknown fields, overlapping or oversized
// chunks, malformed hashes.
func DecodeManifest(b []byte) (*Manifest, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("chunker: decode manifest: %w", err)
	}
	if dec.More() {
		return nil, errors.New("chunker: decode manifest: trailing data after the JSON object")
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks the manifest's internal consistency.
func (m *Manifest) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("chunker: invalid manifest: "+format, a...)
	}
	if m.Format < MinFormatVersion || m.Format > FormatVersion {
		return bad("format %d, this labseed reads formats %d to %d (update labseed, and the netboot image, on the workstations)", m.Format, MinFormatVersion, FormatVersion)
	}
	if !ValidName(m.Name) {
		return bad("image name %q", m.Name)
	}
	if m.Version < 1 {
		return bad("version %d", m.Version)
	}
	if len(m.Chunks) == 0 || len(m.Chunks) > MaxChunks {
		return bad("%d chunks", len(m.Chunks))
	}
	if len(m.InfoHash) != 40 || !hexRE.MatchString(m.InfoHash) {
		return bad("infohash %q", m.InfoHash)
	}
	if m.PieceLength < 16<<10 || m.PieceLength > 64<<20 || m.PieceLength&(m.PieceLength-1) != 0 {
		return bad("piece length %d", m.PieceLength)
	}
	var off, raw int64
	for i, c := range m.Chunks {
		if c.Offset != off {
			return bad("chunk %d starts at %d, want %d", i, c.Offset, off)
		}
		if c.Size <= 0 || c.Size > MaxChunkRawSize+(1<<20) {
			return bad("chunk %d size %d", i, c.Size)
		}
		if c.RawSize <= 0 || c.RawSize > MaxChunkRawSize {
			return bad("chunk %d raw size %d", i, c.RawSize)
		}
		if len(c.SHA256) != 64 || !hexRE.MatchString(c.SHA256) {
			return bad("chunk %d sha256 %q", i, c.SHA256)
		}
		if hasRaw := m.Format >= FormatVersion; hasRaw != (c.RawBLAKE3 != "") {
			return bad("chunk %d raw_blake3 %q in a format %d manifest (format %d has one for every chunk, older ones none)", i, c.RawBLAKE3, m.Format, FormatVersion)
		}
		if c.RawBLAKE3 != "" && (len(c.RawBLAKE3) != 64 || !hexRE.MatchString(c.RawBLAKE3)) {
			return bad("chunk %d raw_blake3 %q", i, c.RawBLAKE3)
		}
		off += c.Size
		raw += c.RawSize
	}
	if off != m.PayloadBytes {
		return bad("payload is %d bytes, chunks add up to %d", m.PayloadBytes, off)
	}
	if raw != m.TarBytes {
		return bad("tar is %d bytes, chunks add up to %d", m.TarBytes, raw)
	}
	return nil
}

// ID is the manifest's identity: the hex SHA-256 of its canonical encoding.
func (m *Manifest) ID() string {
	b, err := m.Encode()
	if err != nil {
		panic(err) // a Manifest always marshals
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Sign returns the ed25519 signature of the manifest's encoding b.
func Sign(key ed25519.PrivateKey, b []byte) []byte { return ed25519.Sign(key, b) }

// VerifyManifest checks sig over the manifest bytes b with pub and decodes them.
func VerifyManifest(pub ed25519.PublicKey, b, sig []byte) (*Manifest, error) {
	if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, b, sig) {
		return nil, ErrBadSignature
	}
	return DecodeManifest(b)
}

// Uncovered returns the ranges of payload bytes [off, end), in order, that
// no chunk c with have(c) holds: what a workstation that has those chunks
// still needs of the payload there (a deal skips the rest).
func (m *Manifest) Uncovered(have func(c int) bool, off, end int64) [][2]int64 {
	var out [][2]int64
	if off >= end {
		return nil
	}
	// The first chunk that ends after off.
	lo, hi := 0, len(m.Chunks)-1
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if m.Chunks[mid].Offset <= off {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	for c := lo; c < len(m.Chunks) && m.Chunks[c].Offset < end; c++ {
		ch := m.Chunks[c]
		s, e := max(ch.Offset, off), min(ch.Offset+ch.Size, end)
		if s >= e || have(c) {
			continue
		}
		if n := len(out); n > 0 && out[n-1][1] == s {
			out[n-1][1] = e
		} else {
			out = append(out, [2]int64{s, e})
		}
	}
	return out
}
