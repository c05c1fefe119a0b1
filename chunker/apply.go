package chunker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
)

// ApplyConfig configures an Applier. Zero values mean the defaults.
type ApplyConfig struct {
	// Target is the directory the image is extracted into; required. It must be
	// empty (a lost+found directory aside) or hold this Applier's own state from
	// an earlier, interrupted run of the same image.
	Target string
	// StateDir holds what the Applier must remember between chunks and across
	// restarts; default Target/.labseed.
	StateDir string
	// SameOwner applies the entries' uid and gid; default true when running as root.
	SameOwner *bool
	// Logger receives debug detail; nil discards.
	Logger *slog.Logger
}

// ChunkError is an error applying one chunk.
type ChunkError struct {
	Index int
	Err   error
}

func (e *ChunkError) Error() string { return fmt.Sprintf("chunk %d: %v", e.Index, e.Err) }

// Unwrap returns the underlying error.
func (e *ChunkError) Unwrap() error { return e.Err }

// Errors an Applier returns, wrapped with the chunk or path they concern.
var (
	ErrChunkHash    = errors.New("chunker: chunk does not match the manifest's SHA-256")
	ErrNotEmpty     = errors.New("chunker: target is not empty")
	ErrOtherImage   = errors.New("chunker: target holds a partial extraction of another image")
	ErrIncomplete   = errors.New("chunker: not every chunk has been applied")
	ErrNoSpace      = errors.New("chunker: no space left on the target (free space or use a bigger disk, then run again: the extraction resumes)")
	errApplyingTwin = errors.New("chunker: chunk is being applied already")
)

// Applier extracts the chunks of one image into a target directory, in any
// order, each as soon as it is available. Apply may be called from several
// goroutines at once; Finish once, after every chunk was applied.
type Applier struct {
	m         *Manifest
	root      *os.Root
	target    string
	state     string
	sameOwner bool
	log       *slog.Logger
	dec       *zstd.Decoder
	made      sync.Map // directories known to exist

	mu      sync.Mutex
	done    []bool
	busy    []bool
	ndone   int
	applied atomic.Int64 // raw bytes applied
	rootHdr *tar.Header  // the image's "." entry, set by Finish
	bufs    sync.Pool    // *[]byte: buffers for decompressed chunks
}

// rawBuf returns a buffer of at least n bytes for a decompressed chunk,
// reusing one when it can: chunks are megabytes each, and allocating one per
// chunk made the garbage collector, not the disk, set the pace of a
// workstation on a loaded machine.
func (a *Applier) rawBuf(n int64) []byte {
	if p, ok := a.bufs.Get().(*[]byte); ok && int64(cap(*p)) >= n {
		return *p
	}
	return make([]byte, 0, n)
}

// stateImageFile names the image the state directory belongs to.
const stateImageFile = "image"

// StateImage returns the ID (Manifest.ID) of the image whose interrupted
// extraction the state directory stateDir holds; an error if it holds
// none.
func StateImage(stateDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, stateImageFile))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// NewApplier prepares the extraction of m into cfg.Target, resuming an earlier
// one if the state directory says so.
func NewApplier(m *Manifest, cfg ApplyConfig) (*Applier, error) {
	if err := checkOS(); err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if cfg.Target == "" {
		return nil, errors.New("chunker: no target directory")
	}
	target, err := filepath.Abs(cfg.Target)
	if err != nil {
		return nil, err
	}
	state := cfg.StateDir
	if state == "" {
		state = filepath.Join(target, StateDirName)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Applier{
		m:         m,
		target:    target,
		state:     state,
		sameOwner: os.Geteuid() == 0,
		log:       log,
		done:      make([]bool, len(m.Chunks)),
		busy:      make([]bool, len(m.Chunks)),
	}
	if cfg.SameOwner != nil {
		a.sameOwner = *cfg.SameOwner
	}
	if err := a.openState(); err != nil {
		return nil, err
	}
	if a.root, err = os.OpenRoot(target); err != nil {
		return nil, fmt.Errorf("chunker: open target: %w", err)
	}
	a.dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0),
		zstd.WithDecoderMaxMemory(MaxChunkRawSize), zstd.WithDecoderMaxWindow(MaxChunkRawSize))
	if err != nil {
		a.root.Close()
		return nil, err
	}
	return a, nil
}

// openState checks the target and loads the record of chunks already applied.
func (a *Applier) openState() error {
	id := a.m.ID()
	b, err := os.ReadFile(filepath.Join(a.state, stateImageFile))
	switch {
	case err == nil:
		if got := strings.TrimSpace(string(b)); got != id {
			return fmt.Errorf("%w (%s holds image %.12s, this is %s v%d, %.12s): remove it or use an empty target",
				ErrOtherImage, a.state, got, a.m.Name, a.m.Version, id)
		}
		ents, err := os.ReadDir(a.state)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if n, ok := strings.CutSuffix(e.Name(), ".done"); ok {
				if i, err := strconv.Atoi(n); err == nil && i >= 0 && i < len(a.done) && !a.done[i] {
					a.done[i] = true
					a.ndone++
					a.applied.Add(a.m.Chunks[i].RawSize)
				}
			}
		}
		a.log.Debug("resuming extraction", "target", a.target, "applied", a.ndone, "chunks", len(a.done))
		return nil
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("chunker: read state: %w", err)
	}
	if err := os.MkdirAll(a.target, 0o755); err != nil {
		return fmt.Errorf("chunker: create target: %w", err)
	}
	ents, err := os.ReadDir(a.target)
	if err != nil {
		return fmt.Errorf("chunker: read target: %w", err)
	}
	for _, e := range ents {
		if e.Name() != "lost+found" && filepath.Join(a.target, e.Name()) != a.state {
			return fmt.Errorf("%w: %s contains %q; labseed extracts onto an empty file system or resumes its own extraction", ErrNotEmpty, a.target, e.Name())
		}
	}
	if err := os.MkdirAll(a.state, 0o700); err != nil {
		return fmt.Errorf("chunker: create state: %w", err)
	}
	return writeFileAtomic(filepath.Join(a.state, stateImageFile), []byte(id+"\n"))
}

// Manifest returns the manifest being applied.
func (a *Applier) Manifest() *Manifest { return a.m }

// Applied reports whether chunk i has been applied.
func (a *Applier) Applied(i int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.done[i]
}

// Progress returns the number of chunks applied and the uncompressed bytes they hold.
func (a *Applier) Progress() (chunks int, rawBytes int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ndone, a.applied.Load()
}

// Apply verifies chunk i's compressed bytes against the manifest and extracts
// them. Applying a chunk that was applied already does nothing.
func (a *Applier) Apply(ctx context.Context, i int, data []byte) error {
	if i < 0 || i >= len(a.m.Chunks) {
		return fmt.Errorf("chunker: chunk %d out of range (image has %d)", i, len(a.m.Chunks))
	}
	a.mu.Lock()
	if a.done[i] {
		a.mu.Unlock()
		return nil
	}
	if a.busy[i] {
		a.mu.Unlock()
		return &ChunkError{i, errApplyingTwin}
	}
	a.busy[i] = true
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.busy[i] = false
		a.mu.Unlock()
	}()
	if err := a.apply(ctx, i, data); err != nil {
		if errors.Is(err, errNoSpace) {
			err = fmt.Errorf("%w: %w", ErrNoSpace, err)
		}
		return &ChunkError{i, err}
	}
	a.mu.Lock()
	a.done[i] = true
	a.ndone++
	a.mu.Unlock()
	a.applied.Add(a.m.Chunks[i].RawSize)
	return nil
}

func (a *Applier) apply(ctx context.Context, i int, data []byte) error {
	c := a.m.Chunks[i]
	if sum := sha256.Sum256(data); int64(len(data)) != c.Size || hex.EncodeToString(sum[:]) != c.SHA256 {
		return ErrChunkHash
	}
	buf := a.rawBuf(c.RawSize)
	raw, err := a.dec.DecodeAll(data, buf[:0])
	defer a.bufs.Put(&raw)
	if err != nil {
		return fmt.Errorf("decompress: %w", err)
	}
	if int64(len(raw)) != c.RawSize {
		return fmt.Errorf("decompressed to %d bytes, manifest says %d", len(raw), c.RawSize)
	}
	w := a.newWriter()
	defer w.close()
	var deferred bytes.Buffer
	dw := tar.NewWriter(&deferred)
	err = readFragment(bytes.NewReader(raw), func(e *entry, r io.Reader) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		later, err := w.apply(e, r)
		if err != nil {
			return &EntryError{Name: e.hdr.Name, Err: err}
		}
		if later {
			h := *e.hdr
			if h.Typeflag == tar.TypeReg {
				h = *fragmentHeader(h.Name, e.hdr, 0, 0)
				h.PAXRecords[paxOffset], h.PAXRecords[paxSize] = "0", strconv.FormatInt(e.total, 10)
			}
			h.Size = 0
			return dw.WriteHeader(&h)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := dw.Close(); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(a.state, strconv.Itoa(i)+".done"), deferred.Bytes())
}

// Finish does what needs every chunk: metadata of files that span chunks,
// hard links, then the metadata of directories, deepest first.
func (a *Applier) Finish(ctx context.Context) error {
	a.mu.Lock()
	missing := len(a.done) - a.ndone
	a.mu.Unlock()
	if missing > 0 {
		return fmt.Errorf("%w: %d of %d chunks missing", ErrIncomplete, missing, len(a.done))
	}
	var files, dirs, links []*entry
	seen := map[string]bool{}
	for i := range a.m.Chunks {
		b, err := os.ReadFile(filepath.Join(a.state, strconv.Itoa(i)+".done"))
		if err != nil {
			return fmt.Errorf("chunker: read state of chunk %d: %w", i, err)
		}
		err = readFragment(bytes.NewReader(b), func(e *entry, _ io.Reader) error {
			if seen[e.hdr.Name] {
				return nil
			}
			seen[e.hdr.Name] = true
			switch e.hdr.Typeflag {
			case tar.TypeReg:
				files = append(files, e)
			case tar.TypeDir:
				dirs = append(dirs, e)
			case tar.TypeLink:
				links = append(links, e)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("chunker: state of chunk %d: %w", i, err)
		}
	}
	w := a.newWriter()
	defer w.close()
	for _, e := range files {
		if err := w.fileMeta(e); err != nil {
			return &EntryError{Name: e.hdr.Name, Err: err}
		}
	}
	for _, e := range links {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := w.link(e); err != nil {
			return &EntryError{Name: e.hdr.Name, Err: err}
		}
	}
	// Deepest first, so setting a directory's mtime is the last change inside its parent.
	slices.SortFunc(dirs, func(x, y *entry) int {
		return strings.Count(y.hdr.Name, "/") - strings.Count(x.hdr.Name, "/")
	})
	for _, e := range dirs {
		if e.hdr.Name == "." {
			a.rootHdr = e.hdr
			continue
		}
		if err := w.dirMeta(e); err != nil {
			return &EntryError{Name: e.hdr.Name, Err: err}
		}
	}
	return a.rootMeta()
}

// Cleanup removes the state directory once the extraction is finished,
// restoring the target root's metadata that its removal changed.
func (a *Applier) Cleanup() error {
	if err := os.RemoveAll(a.state); err != nil {
		return fmt.Errorf("chunker: remove state: %w", err)
	}
	return a.rootMeta()
}

// Close releases the Applier's resources; it does not remove the state.
func (a *Applier) Close() error {
	a.dec.Close()
	return a.root.Close()
}

// writeFileAtomic writes b to name through a temporary file and a rename.
func writeFileAtomic(name string, b []byte) error {
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}

// parentBase splits a canonical entry name into its directory and base name.
func parentBase(name string) (string, string) {
	return path.Dir(name), path.Base(name)
}
