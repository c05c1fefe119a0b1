package store

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/labseed/labseed/chunker"
	"golang.org/x/sys/unix"
)

// PublishingFile, in the directory of a version being published, lists
// the chunks whose bytes are in its payload file so far, a line "SHA256
// OFFSET SIZE" each, in payload order. It is removed before the version
// is made visible.
const PublishingFile = "publishing"

// maxPublishingChunks bounds the chunks listed of one publish in progress.
const maxPublishingChunks = 1 << 16

// Publishing is a publish in progress in the store (another process's
// Publish): the image's name and the chunks written so far.
type Publishing struct {
	Name string
	// ID names this publish (its temporary directory's name): another
	// publish of the same image has another.
	ID string
	// Chunks are the chunks written, in payload order (their offset,
	// size and SHA-256 as the manifest will have them).
	Chunks []chunker.Chunk
	// payload is the payload file being written.
	payload string
}

// Publishing returns the publishes in progress in the store, by image
// name: those whose publishing process still holds the image's lock (a
// publish that was killed left a directory the next one removes). Nothing
// of it is signed yet.
func (s *Store) Publishing() []Publishing {
	var out []Publishing
	imgs, _ := os.ReadDir(filepath.Join(s.dir, "images"))
	for _, ie := range imgs {
		idir := filepath.Join(s.dir, "images", ie.Name())
		ents, _ := os.ReadDir(idir)
		var tmps []string
		for _, e := range ents {
			if e.IsDir() && strings.HasPrefix(e.Name(), publishTmp) {
				tmps = append(tmps, filepath.Join(idir, e.Name()))
			}
		}
		if len(tmps) == 0 || !locked(filepath.Join(idir, ".lock")) {
			continue
		}
		for _, tmp := range tmps {
			chunks, payload := readJournal(tmp, ie.Name())
			if payload == "" {
				continue
			}
			out = append(out, Publishing{Name: ie.Name(), ID: filepath.Base(tmp), Chunks: chunks, payload: payload})
		}
	}
	return out
}

// locked reports whether another process holds the lock file name (a
// publish runs).
func locked(name string) bool {
	f, err := os.Open(name)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}

// readJournal reads the PublishingFile of the publish directory dir of
// image name: its complete lines, and the payload file ("" if there is
// none).
func readJournal(dir, name string) ([]chunker.Chunk, string) {
	jf, err := os.Open(filepath.Join(dir, PublishingFile))
	if err != nil {
		return nil, ""
	}
	defer jf.Close()
	var payload string
	if ents, _ := os.ReadDir(dir); ents != nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), name+"-v") && strings.HasSuffix(e.Name(), ".chunks") {
				payload = filepath.Join(dir, e.Name())
			}
		}
	}
	var out []chunker.Chunk
	r := bufio.NewReader(jf)
	for len(out) < maxPublishingChunks {
		line, err := r.ReadString('\n')
		if err != nil { // the last line may be half written
			break
		}
		f := strings.Fields(line)
		if len(f) != 3 || len(f[0]) != 64 {
			break
		}
		off, err1 := strconv.ParseInt(f[1], 10, 64)
		size, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil || off < 0 || size <= 0 || size > chunker.MaxChunkRawSize {
			break
		}
		out = append(out, chunker.Chunk{Offset: off, Size: size, SHA256: f[0]})
	}
	return out, payload
}

// ErrNotPublishing is returned by PublishingChunk for a chunk that no
// publish in progress has written.
var ErrNotPublishing = errors.New("store: no publish in progress has this chunk")

// PublishingChunk returns the bytes of the chunk with SHA-256 sum (hex)
// from a publish in progress, checked against sum.
func (s *Store) PublishingChunk(sum string) ([]byte, error) {
	for _, p := range s.Publishing() {
		for _, c := range p.Chunks {
			if c.SHA256 != sum {
				continue
			}
			f, err := os.Open(p.payload)
			if err != nil {
				break
			}
			b := make([]byte, c.Size)
			_, err = f.ReadAt(b, c.Offset)
			f.Close()
			if err != nil {
				break
			}
			if got := sha256.Sum256(b); hex.EncodeToString(got[:]) != sum {
				return nil, fmt.Errorf("store: chunk %s of the publish of %s in progress does not match its name", sum, p.Name)
			}
			return b, nil
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrNotPublishing, sum)
}

// ChunkSums returns the SHA-256 (hex) of every chunk the store holds in
// its versions and the versions it is receiving: those a follower need
// not fetch again.
func (s *Store) ChunkSums() map[string]bool {
	out := map[string]bool{}
	for _, src := range s.chunkSources("") {
		for j, c := range src.m.Chunks {
			if src.have == nil || src.have[j] {
				out[c.SHA256] = true
			}
		}
	}
	return out
}
