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
	"github.com/labseed/labseed/internal/atomicfile"
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
	// SyncBytes is how many uncompressed bytes of applied chunks may wait
	// in the page cache before the Applier syncs the target's file system
	// (syncfs) and records them as applied; default DefaultSyncBytes. A
	// chunk counts as applied after a restart only once its data was
	// synced, so a power cut costs at most this much work again and never
	// leaves a chunk recorded whose data did not reach the disk. Negative:
	// sync only in Finish and Close.
	SyncBytes int64
	// Logger receives debug detail; nil discards.
	Logger *slog.Logger
}

// DefaultSyncBytes is ApplyConfig.SyncBytes's default. Extracting 300 MiB
// of tar onto ext4 (a direct-I/O loop device on the CI machine's disk),
// a sync every 64 MiB took 2.5 % longer than one sync at the end, a sync
// after every chunk 58 % longer (BenchmarkApplySync).
const DefaultSyncBytes = 64 << 20

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
	targetDir *os.File // synced (syncfs) before markers are renamed
	stateDir  *os.File // synced after markers are renamed
	syncBytes int64
	syncFS    func(*os.File) error // syncfs; replaced in benchmarks

	mu      sync.Mutex
	done    []bool
	busy    []bool
	ndone   int
	applied atomic.Int64 // raw bytes applied
	pending []marker     // applied, not yet synced and recorded
	waiting int64        // raw bytes of the pending chunks
	rootHdr *tar.Header  // the image's "." entry, set by Finish
	bufs    sync.Pool    // *[]byte: buffers for decompressed chunks

	commitMu sync.Mutex // one commit at a time
}

// marker is the record of one applied chunk, waiting for the sync that
// lets it be renamed into place.
type marker struct {
	index    int
	deferred []byte // the chunk's work for Finish (a tar of headers)
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
		syncBytes: cfg.SyncBytes,
		syncFS:    syncFS,
	}
	if a.syncBytes == 0 {
		a.syncBytes = DefaultSyncBytes
	}
	if cfg.SameOwner != nil {
		a.sameOwner = *cfg.SameOwner
	}
	if err := a.openState(); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			a.closeFiles()
		}
	}()
	if a.targetDir, err = os.Open(target); err != nil {
		return nil, fmt.Errorf("chunker: open target: %w", err)
	}
	if a.stateDir, err = os.Open(state); err != nil {
		return nil, fmt.Errorf("chunker: open state: %w", err)
	}
	if a.root, err = os.OpenRoot(target); err != nil {
		return nil, fmt.Errorf("chunker: open target: %w", err)
	}
	a.dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0),
		zstd.WithDecoderMaxMemory(MaxChunkRawSize), zstd.WithDecoderMaxWindow(MaxChunkRawSize))
	if err != nil {
		return nil, err
	}
	ok = true
	return a, nil
}

// closeFiles closes what NewApplier opened.
func (a *Applier) closeFiles() error {
	var errs []error
	for _, f := range []*os.File{a.targetDir, a.stateDir} {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	if a.root != nil {
		errs = append(errs, a.root.Close())
	}
	if a.dec != nil {
		a.dec.Close()
	}
	return errors.Join(errs...)
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
			name := e.Name()
			if strings.HasSuffix(name, markerSuffix+".tmp") {
				os.Remove(filepath.Join(a.state, name)) // a marker being written when the run stopped
				continue
			}
			n, ok := strings.CutSuffix(name, markerSuffix)
			if !ok {
				continue
			}
			i, err := strconv.Atoi(n)
			if err != nil || i < 0 || i >= len(a.done) || a.done[i] {
				continue
			}
			if _, err := a.readMarker(i); err != nil {
				// Written but never synced: the power went before the
				// sync that follows the rename. The chunk is applied again.
				a.log.Warn("damaged record of an applied chunk (power cut?): applying the chunk again", "chunk", i, "err", err)
				if err := os.Remove(filepath.Join(a.state, name)); err != nil {
					return fmt.Errorf("chunker: remove damaged state: %w", err)
				}
				continue
			}
			a.done[i] = true
			a.ndone++
			a.applied.Add(a.m.Chunks[i].RawSize)
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
	// Synced, with the state directory: an image file lost to a power cut
	// would make the resume refuse the target as another image's.
	if err := atomicfile.Write(filepath.Join(a.state, stateImageFile), []byte(id+"\n"), 0o600); err != nil {
		return fmt.Errorf("chunker: write state: %w", err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(a.state)); err != nil {
		return fmt.Errorf("chunker: sync %s: %w", filepath.Dir(a.state), err)
	}
	return nil
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
	deferred, err := a.apply(ctx, i, data)
	if err != nil {
		return &ChunkError{i, noSpace(err)}
	}
	a.mu.Lock()
	a.done[i] = true
	a.ndone++
	a.pending = append(a.pending, marker{index: i, deferred: deferred})
	a.waiting += a.m.Chunks[i].RawSize
	due := a.syncBytes > 0 && a.waiting >= a.syncBytes
	a.mu.Unlock()
	a.applied.Add(a.m.Chunks[i].RawSize)
	if due && a.commitMu.TryLock() { // else the commit under way, or the next, takes it
		err := a.commitLocked()
		a.commitMu.Unlock()
		if err != nil {
			return &ChunkError{i, err}
		}
	}
	return nil
}

// noSpace marks a full file system's error as ErrNoSpace.
func noSpace(err error) error {
	if errors.Is(err, errNoSpace) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}

// Sync makes every chunk applied so far durable: it syncs the target's file
// system, then records the chunks as applied (renaming their records into
// the state directory) and syncs that. Apply does it every
// ApplyConfig.SyncBytes, Finish and Close before they return.
func (a *Applier) Sync() error {
	a.commitMu.Lock()
	defer a.commitMu.Unlock()
	return a.commitLocked()
}

// commitLocked is Sync with commitMu held. If the sync fails, the chunks
// waiting for it count as not applied and are applied again.
func (a *Applier) commitLocked() error {
	a.mu.Lock()
	batch := a.pending
	a.pending, a.waiting = nil, 0
	a.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	err := a.syncFS(a.targetDir)
	if err != nil {
		err = fmt.Errorf("chunker: sync the target before recording %d chunks as applied: %w", len(batch), noSpace(err))
	}
	for k := 0; err == nil && k < len(batch); k++ {
		err = a.writeMarker(batch[k])
	}
	if err == nil {
		if err = a.syncFS(a.stateDir); err != nil {
			err = fmt.Errorf("chunker: sync state: %w", noSpace(err))
		}
	}
	if err != nil {
		a.mu.Lock()
		for _, p := range batch {
			if a.done[p.index] {
				a.done[p.index] = false
				a.ndone--
				a.applied.Add(-a.m.Chunks[p.index].RawSize)
			}
		}
		a.mu.Unlock()
		return err
	}
	return nil
}

// apply writes chunk i's entries and returns its work for Finish.
func (a *Applier) apply(ctx context.Context, i int, data []byte) ([]byte, error) {
	c := a.m.Chunks[i]
	if sum := sha256.Sum256(data); int64(len(data)) != c.Size || hex.EncodeToString(sum[:]) != c.SHA256 {
		return nil, ErrChunkHash
	}
	buf := a.rawBuf(c.RawSize)
	raw, err := a.dec.DecodeAll(data, buf[:0])
	defer a.bufs.Put(&raw)
	if err != nil {
		return nil, fmt.Errorf("decompress: %w", err)
	}
	if int64(len(raw)) != c.RawSize {
		return nil, fmt.Errorf("decompressed to %d bytes, manifest says %d", len(raw), c.RawSize)
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
				if h.PAXRecords == nil { // a part of no data: a sparse file that is all hole
					h.PAXRecords = map[string]string{}
				}
				h.PAXRecords[paxOffset], h.PAXRecords[paxSize] = "0", strconv.FormatInt(e.total, 10)
			}
			h.Size = 0
			return dw.WriteHeader(&h)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := dw.Close(); err != nil {
		return nil, err
	}
	return deferred.Bytes(), nil
}

// markerSuffix ends the name of a chunk's record in the state directory.
const markerSuffix = ".done"

// markerMagic starts a chunk's record: the magic, the chunk's index and
// SHA-256, the length and SHA-256 of the rest. A record that does not
// parse, or whose rest does not match, was cut short by a power cut (or
// written by an older labseed): its chunk is applied again.
const markerMagic = "labseed-done-1"

func (a *Applier) markerPath(i int) string {
	return filepath.Join(a.state, strconv.Itoa(i)+markerSuffix)
}

// writeMarker records chunk p.index as applied: its record is written
// under a temporary name and renamed into place. The caller syncs.
func (a *Applier) writeMarker(p marker) error {
	sum := sha256.Sum256(p.deferred)
	head := fmt.Sprintf("%s %d %s %d %x\n", markerMagic, p.index, a.m.Chunks[p.index].SHA256, len(p.deferred), sum)
	name := a.markerPath(p.index)
	if err := os.WriteFile(name+".tmp", append([]byte(head), p.deferred...), 0o600); err != nil {
		return fmt.Errorf("chunker: write state: %w", noSpace(err))
	}
	if err := os.Rename(name+".tmp", name); err != nil {
		return fmt.Errorf("chunker: write state: %w", err)
	}
	return nil
}

// readMarker returns the work for Finish that chunk i's record holds, or an
// error if the record is missing or damaged.
func (a *Applier) readMarker(i int) ([]byte, error) {
	b, err := os.ReadFile(a.markerPath(i))
	if err != nil {
		return nil, err
	}
	head, rest, ok := bytes.Cut(b, []byte("\n"))
	if !ok {
		return nil, fmt.Errorf("record of chunk %d is cut short (%d bytes)", i, len(b))
	}
	var (
		magic, chunkSum, restSum string
		index, n                 int
	)
	if _, err := fmt.Sscanf(string(head), "%s %d %s %d %s", &magic, &index, &chunkSum, &n, &restSum); err != nil || magic != markerMagic {
		return nil, fmt.Errorf("record of chunk %d does not parse", i)
	}
	sum := sha256.Sum256(rest)
	if index != i || chunkSum != a.m.Chunks[i].SHA256 || n != len(rest) || restSum != hex.EncodeToString(sum[:]) {
		return nil, fmt.Errorf("record of chunk %d does not match its chunk or its checksum", i)
	}
	return rest, nil
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
	if err := a.Sync(); err != nil {
		return err
	}
	var files, dirs, links []*entry
	seen := map[string]bool{}
	for i := range a.m.Chunks {
		b, err := a.readMarker(i)
		if err != nil {
			return fmt.Errorf("chunker: state of chunk %d: %w (remove %s and extract again)", i, err, a.state)
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
	if err := a.rootMeta(); err != nil {
		return err
	}
	// What Finish changed is on disk when it returns.
	if err := a.syncFS(a.targetDir); err != nil {
		return fmt.Errorf("chunker: sync the target: %w", noSpace(err))
	}
	return nil
}

// Cleanup removes the state directory once the extraction is finished,
// restoring the target root's metadata that its removal changed, and syncs
// the target: when it returns, the extraction is on disk and done.
func (a *Applier) Cleanup() error {
	if err := os.RemoveAll(a.state); err != nil {
		return fmt.Errorf("chunker: remove state: %w", err)
	}
	if err := a.rootMeta(); err != nil {
		return err
	}
	if err := a.syncFS(a.targetDir); err != nil {
		return fmt.Errorf("chunker: sync the target: %w", noSpace(err))
	}
	return nil
}

// Close syncs and records the chunks applied since the last sync (see
// Sync), then releases the Applier's resources; it does not remove the
// state.
func (a *Applier) Close() error {
	err := a.Sync()
	return errors.Join(err, a.closeFiles())
}

// parentBase splits a canonical entry name into its directory and base name.
func parentBase(name string) (string, string) {
	return path.Dir(name), path.Base(name)
}
