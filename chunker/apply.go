package chunker

import (
	"archive/tar"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
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
	"github.com/labseed/labseed/internal/bufpool"
	"golang.org/x/sync/semaphore"
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
	// Sync makes a target that holds a tree already (an earlier image,
	// or anything at all) exactly the image, instead of extracting into
	// an empty one. Every entry is compared with what the target holds
	// at its path and written only where they differ: a regular file
	// whose content is the image's keeps its data, and its owner, mode,
	// extended attributes (extra ones removed) and mtime are set to the
	// image's. Finish then removes everything the image does not hold,
	// except Keep, the state directory and lost+found at the top.
	// Nothing in the target is trusted: a directory of the image that is
	// a symbolic link or a file in the target is made a directory again,
	// a file with more than one name is written anew, a device or FIFO
	// in the place of a file is never opened. A sync interrupted and
	// started again resumes as a sync, whatever Sync says then.
	Sync bool
	// Keep lists paths relative to Target ("home", "/home" alike) that a
	// sync leaves alone if they exist when it starts: nothing is written,
	// changed or removed at them or under them. A kept path the target
	// does not hold is extracted from the image like any other.
	Keep []string
}

// SyncStats counts what a sync (ApplyConfig.Sync) did to the target's
// entries.
type SyncStats struct {
	// Unchanged is the entries the target held as the image has them:
	// regular files (or parts of files that span chunks) with the image's
	// content, symbolic links to the same target, the same devices and
	// FIFOs. Only their metadata was set.
	Unchanged int64
	// Written is the entries written: files (or parts) whose content
	// differed or that were missing, and every other entry that was not
	// there as the image has it.
	Written int64
	// Removed is the entries removed because the image does not hold them
	// (everything under a removed directory counts).
	Removed int64
	// Rebuilt is the chunks checked against the disk without being
	// decompressed: rebuilt from their skeletons and the target's files,
	// with the signed manifest's RawBLAKE3 (skeleton.go).
	Rebuilt int64
}

// Memory for decompressed chunks. Two chunks of the largest size publish
// makes by default (DefaultChunkMax, plus a little) are decompressed at
// once; a larger chunk (an image published with a larger --chunk-size, or
// by a labseed before b2e9efc, whose chunks of tens of thousands of
// directories came to 48 MB) is decompressed alone, and its buffer is not
// kept.
const (
	maxKeptChunk  = DefaultChunkMax + 1<<20
	decodedBudget = 2 * maxKeptChunk
)

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
	applied atomic.Int64        // raw bytes applied
	pending []int               // chunks applied, their records written, not yet synced and renamed
	waiting int64               // raw bytes of the pending chunks
	rootHdr *tar.Header         // the image's "." entry, set by Finish
	bufs    bufpool.Pool        // buffers for decompressed chunks
	decoded *semaphore.Weighted // bytes of decompressed chunks held at once (decodedBudget)

	commitMu sync.Mutex // one commit at a time

	sync          bool     // ApplyConfig.Sync, or an interrupted sync resumed
	keep          []string // the kept paths that existed when the sync started
	unchanged     atomic.Int64
	written       atomic.Int64
	rebuiltChunks atomic.Int64
	unbuildable   []atomic.Bool // chunks a rebuild failed
	removed       atomic.Int64
	fileLocks     [64]sync.Mutex // a sync's parts of one file are opened one at a time
	inodes        sync.Map       // a sync's files with several names: [dev, ino] -> the image's name
}

// stateImageFile names the image the state directory belongs to.
const stateImageFile = "image"

// stateSyncFile marks the state of a sync (ApplyConfig.Sync); it holds the
// kept paths that existed when the sync started, each followed by a NUL.
const stateSyncFile = "sync"

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
		m:           m,
		target:      target,
		state:       state,
		sameOwner:   os.Geteuid() == 0,
		log:         log,
		done:        make([]bool, len(m.Chunks)),
		busy:        make([]bool, len(m.Chunks)),
		unbuildable: make([]atomic.Bool, len(m.Chunks)),
		syncBytes:   cfg.SyncBytes,
		syncFS:      syncFS,
		decoded:     semaphore.NewWeighted(decodedBudget),
	}
	// The buffers of two chunks decompressed at once are kept (a
	// workstation applies two at a time); more at once allocate, and so
	// does a chunk larger than publish makes by default.
	a.bufs.Max, a.bufs.MaxCap = 2, maxKeptChunk
	if a.syncBytes == 0 {
		a.syncBytes = DefaultSyncBytes
	}
	if cfg.SameOwner != nil {
		a.sameOwner = *cfg.SameOwner
	}
	a.sync = cfg.Sync
	for _, k := range cfg.Keep {
		c, err := cleanName(strings.TrimLeft(k, "/"))
		if err != nil || c == "." {
			return nil, fmt.Errorf("chunker: kept path %q: give a path below the target's top, without .. (and not %s)", k, StateDirName)
		}
		a.keep = append(a.keep, c)
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
	if a.dec, err = newChunkDecoder(0); err != nil {
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
			if _, err := a.readMarker(i, nil); err != nil {
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
		if err := a.resumeSync(); err != nil {
			return err
		}
		a.log.Debug("resuming extraction", "target", a.target, "applied", a.ndone, "chunks", len(a.done), "sync", a.sync)
		return nil
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("chunker: read state: %w", err)
	}
	if err := os.MkdirAll(a.target, 0o755); err != nil {
		return fmt.Errorf("chunker: create target: %w", err)
	}
	if !a.sync {
		ents, err := os.ReadDir(a.target)
		if err != nil {
			return fmt.Errorf("chunker: read target: %w", err)
		}
		for _, e := range ents {
			if e.Name() != "lost+found" && filepath.Join(a.target, e.Name()) != a.state {
				return fmt.Errorf("%w: %s contains %q; labseed extracts onto an empty file system, resumes its own extraction, or syncs a tree when asked to", ErrNotEmpty, a.target, e.Name())
			}
		}
	}
	if err := os.MkdirAll(a.state, 0o700); err != nil {
		return fmt.Errorf("chunker: create state: %w", err)
	}
	if a.sync {
		if err := a.startSync(); err != nil {
			return err
		}
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

// Syncing reports whether the Applier syncs a tree (ApplyConfig.Sync, or
// an interrupted sync resumed) rather than extracting into an empty one.
func (a *Applier) Syncing() bool { return a.sync }

// Stats returns what the sync did so far; zero when not syncing. Removed
// grows during Finish.
func (a *Applier) Stats() SyncStats {
	return SyncStats{Unchanged: a.unchanged.Load(), Written: a.written.Load(), Removed: a.removed.Load(), Rebuilt: a.rebuiltChunks.Load()}
}

// startSync decides which kept paths exist and records, before anything
// is applied, that this state is a sync's: a resumed run must compare
// again what it writes (the target holds another tree) and leave the same
// paths alone.
func (a *Applier) startSync() error {
	var keep []string
	var b bytes.Buffer
	for _, k := range a.keep {
		if _, err := os.Lstat(filepath.Join(a.target, filepath.FromSlash(k))); err == nil {
			keep = append(keep, k)
			b.WriteString(k + "\x00")
		}
	}
	a.keep = keep
	if err := atomicfile.Write(filepath.Join(a.state, stateSyncFile), b.Bytes(), 0o600); err != nil {
		return fmt.Errorf("chunker: write state: %w", err)
	}
	return nil
}

// resumeSync reads, when resuming, whether the state is a sync's and
// which paths it keeps. A sync asked for on an interrupted extraction
// (not a sync) starts syncing from there.
func (a *Applier) resumeSync() error {
	b, err := os.ReadFile(filepath.Join(a.state, stateSyncFile))
	switch {
	case err == nil:
		a.sync, a.keep = true, nil
		for _, k := range strings.Split(string(b), "\x00") {
			if k != "" {
				a.keep = append(a.keep, k)
			}
		}
		return a.reclaim()
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("chunker: read state: %w", err)
	case a.sync:
		// An interrupted extraction (not a sync) synced from here: the
		// records of its chunks do not name their paths, which Finish
		// needs to know what to remove. Apply them all again (comparing
		// is cheap where they were written already).
		for i, d := range a.done {
			if d {
				if err := os.Remove(a.markerPath(i)); err != nil && !errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("chunker: reset state: %w", err)
				}
				a.done[i] = false
			}
		}
		a.ndone = 0
		a.applied.Store(0)
		return a.startSync()
	}
	return nil
}

// fileLock returns the lock that a sync's parts of the file name take to
// open it: two chunks holding parts of one file may be applied at once,
// and only one may replace what stands in its place.
func (a *Applier) fileLock(name string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(name))
	return &a.fileLocks[h.Sum32()%uint32(len(a.fileLocks))]
}

// errUnchanged tells count that an entry was found as the image has it.
var errUnchanged = errors.New("unchanged")

// count counts an entry written (err nil) or found unchanged
// (errUnchanged), and returns the error left: nil for both.
func (a *Applier) count(err error) error {
	switch {
	case err == nil:
		a.written.Add(1)
	case errors.Is(err, errUnchanged):
		a.unchanged.Add(1)
		err = nil
	}
	return err
}

// reclaim makes, when a sync resumes, the record of which file of the
// image uses which inode (claim) that the interrupted run had made: from
// the paths of the chunks it applied, but for the image's hard links.
func (a *Applier) reclaim() error {
	for i, done := range a.done {
		if !done {
			continue
		}
		links := map[string]bool{}
		names, err := a.readMarker(i, func(e *entry) error {
			if e.hdr.Typeflag == tar.TypeLink {
				links[e.hdr.Name] = true
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("chunker: state of chunk %d: %w", i, err)
		}
		for _, n := range names {
			if !links[n] {
				a.reclaimPath(n)
			}
		}
	}
	return nil
}

// kept reports whether a sync leaves name alone: a kept path or below one.
func (a *Applier) kept(name string) bool {
	for _, k := range a.keep {
		if name == k || strings.HasPrefix(name, k+"/") {
			return true
		}
	}
	return false
}

// aboveKept reports whether name is a directory above a kept path, which
// a sync must not remove even when the image does not hold it.
func (a *Applier) aboveKept(name string) bool {
	for _, k := range a.keep {
		if name == "." || strings.HasPrefix(k, name+"/") {
			return true
		}
	}
	return false
}

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
	return a.applyChunk(ctx, i, data, false)
}

// ApplyVerified is Apply for bytes the caller has just checked against the
// manifest's SHA-256 itself, the same bytes in memory (a sync's chunks
// found on the disk, hashed as they were read): the SHA-256 is not
// computed again. The size is still checked.
func (a *Applier) ApplyVerified(ctx context.Context, i int, data []byte) error {
	return a.applyChunk(ctx, i, data, true)
}

// ApplyFromDisk applies chunk i of a sync without its compressed bytes,
// rebuilding it from the disk (skeleton.go). It reports false, having
// done nothing, when the chunk cannot be rebuilt: the caller then
// applies its bytes (Apply, ApplyVerified).
func (a *Applier) ApplyFromDisk(ctx context.Context, i int) (bool, error) {
	err := a.applyChunk(ctx, i, nil, true)
	if errors.Is(err, errNotRebuilt) {
		return false, nil
	}
	return err == nil, err
}

// errNotRebuilt is apply's answer to ApplyFromDisk for a chunk that
// cannot be rebuilt from the disk.
var errNotRebuilt = errors.New("chunker: the chunk cannot be rebuilt from the disk")

func (a *Applier) applyChunk(ctx context.Context, i int, data []byte, verified bool) error {
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
	if err := a.apply(ctx, i, data, verified); err != nil {
		if errors.Is(err, errNotRebuilt) {
			return err
		}
		return &ChunkError{i, noSpace(err)}
	}
	a.mu.Lock()
	a.done[i] = true
	a.ndone++
	a.pending = append(a.pending, i)
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
		err = a.commitMarker(batch[k])
	}
	if err == nil {
		if err = a.syncFS(a.stateDir); err != nil {
			err = fmt.Errorf("chunker: sync state: %w", noSpace(err))
		}
	}
	if err != nil {
		a.mu.Lock()
		for _, i := range batch {
			if a.done[i] {
				a.done[i] = false
				a.ndone--
				a.applied.Add(-a.m.Chunks[i].RawSize)
			}
		}
		a.mu.Unlock()
		return err
	}
	return nil
}

// apply writes chunk i's entries and its record (the work for Finish
// and, when syncing, the paths it holds: those a sync keeps left out)
// under the record's temporary name. With verified, data's SHA-256 is not
// checked (ApplyVerified).
func (a *Applier) apply(ctx context.Context, i int, data []byte, verified bool) error {
	c := a.m.Chunks[i]
	fromDisk := data == nil // ApplyFromDisk
	if int64(len(data)) != c.Size && !fromDisk {
		return ErrChunkHash
	}
	if !verified {
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != c.SHA256 {
			return ErrChunkHash
		}
	}
	held := min(c.RawSize, decodedBudget)
	if err := a.decoded.Acquire(ctx, held); err != nil {
		return err
	}
	defer a.decoded.Release(held)
	// Chunks are megabytes each: allocating one per chunk made the
	// garbage collector, not the disk, set the pace of a workstation on a
	// loaded machine.
	buf := a.bufs.Get(int(c.RawSize))
	defer a.bufs.Put(buf)
	raw, ok := []byte(nil), false
	var seen map[int64]readRef
	if a.sync && !a.unbuildable[i].Load() {
		// A chunk the disk holds as the installed image had it: checked by
		// reading the files, not by decompressing (skeleton.go).
		if raw, seen, ok = a.rebuild(i, buf[:0:c.RawSize]); ok {
			a.rebuiltChunks.Add(1)
		} else {
			a.unbuildable[i].Store(true) // not tried again with its bytes
		}
	}
	if !ok && fromDisk {
		return errNotRebuilt
	}
	if !ok {
		var err error
		if raw, err = a.dec.DecodeAll(data, buf[:0]); err != nil {
			return fmt.Errorf("decompress: %w", err)
		}
		if int64(len(raw)) != c.RawSize {
			return fmt.Errorf("decompressed to %d bytes, manifest says %d", len(raw), c.RawSize)
		}
	}
	rec, err := a.createMarker(i)
	if err != nil {
		return err
	}
	w := a.newWriter()
	defer w.close()
	w.seen = seen
	var names []string
	var refs []dataRef
	dw := tar.NewWriter(rec)
	err = readFragmentBytes(raw, func(e *entry, data []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.hdr.Typeflag == tar.TypeReg && len(data) > 0 {
			refs = append(refs, dataRef{pos: e.pos, n: int64(len(data)), name: e.hdr.Name, off: e.offset})
		}
		if a.sync {
			if a.kept(e.hdr.Name) {
				return nil
			}
			names = append(names, e.hdr.Name)
		}
		later, err := w.apply(e, data)
		if err != nil {
			return &EntryError{Name: e.hdr.Name, Err: err}
		}
		if later {
			h := *e.hdr
			if h.Typeflag == tar.TypeReg {
				// The part this chunk held, for a sync's check of
				// what no part covers (the holes of a sparse file).
				h = *fragmentHeader(h.Name, e.hdr, 0, 0)
				if h.PAXRecords == nil { // a part of no data: a sparse file that is all hole
					h.PAXRecords = map[string]string{}
				}
				h.PAXRecords[paxOffset], h.PAXRecords[paxSize] = strconv.FormatInt(e.offset, 10), strconv.FormatInt(e.total, 10)
				h.PAXRecords[paxPartLen] = strconv.FormatInt(e.hdr.Size, 10)
			}
			h.Size = 0
			if err := dw.WriteHeader(&h); err != nil {
				return fmt.Errorf("chunker: write state: %w", err)
			}
		}
		return nil
	})
	if err == nil {
		err = dw.Close()
	}
	rec.endTar()
	for k := 0; err == nil && k < len(names); k++ {
		_, err = io.WriteString(rec, names[k]+"\x00")
	}
	if err != nil {
		rec.abort()
		return err
	}
	a.writeSkeleton(i, raw, refs)
	return rec.close()
}

// Finish does what needs every chunk: metadata of files that span chunks,
// hard links, then the metadata of directories, deepest first. A sync
// first removes what the image does not hold (ApplyConfig.Sync).
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
	a.bufs.Drop()
	var dirs, links []*entry
	var files []*fileWork
	seen := map[string]bool{}
	byName := map[string]*fileWork{}
	var inImage map[string]bool
	if a.sync {
		inImage = map[string]bool{}
	}
	for i := range a.m.Chunks {
		names, err := a.readMarker(i, func(e *entry) error {
			partLen := e.hdr.PAXRecords[paxPartLen]
			// What Finish uses of the header, as a fragment holds it:
			// Finish keeps every directory of the image until its end
			// (a hundred thousand in a large one), and a header as
			// archive/tar reads it keeps all its PAX records.
			e.hdr = fragmentHeader(e.hdr.Name, e.hdr, 0, e.hdr.Size)
			if e.hdr.Typeflag == tar.TypeReg {
				f := byName[e.hdr.Name]
				if f == nil {
					f = &fileWork{e: e}
					byName[e.hdr.Name] = f
					files = append(files, f)
				}
				if n, err := strconv.ParseInt(partLen, 10, 64); err == nil && n >= 0 {
					f.parts = append(f.parts, [2]int64{e.offset, e.offset + n})
				}
				return nil
			}
			if seen[e.hdr.Name] {
				return nil
			}
			seen[e.hdr.Name] = true
			switch e.hdr.Typeflag {
			case tar.TypeDir:
				dirs = append(dirs, e)
			case tar.TypeLink:
				links = append(links, e)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("chunker: state of chunk %d: %w (remove %s and extract again)", i, err, a.state)
		}
		for _, n := range names {
			inImage[n] = true
		}
	}
	if a.sync {
		if err := a.removeExtra(ctx, inImage); err != nil {
			return err
		}
	}
	w := a.newWriter()
	defer w.close()
	for _, f := range files {
		if a.sync {
			if err := w.clearGaps(f); err != nil {
				return &EntryError{Name: f.e.hdr.Name, Err: err}
			}
		}
		if err := w.fileMeta(f.e); err != nil {
			return &EntryError{Name: f.e.hdr.Name, Err: err}
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

// fileWork is a file that spans chunks, as Finish sees it: its header and
// the parts of it the chunks held, [start, end) each.
type fileWork struct {
	e     *entry
	parts [][2]int64
}

// gaps returns the ranges of the file that no part covers, in order: the
// holes of a sparse file (none for any other).
func (f *fileWork) gaps() [][2]int64 {
	parts := slices.Clone(f.parts)
	slices.SortFunc(parts, func(x, y [2]int64) int { return cmp.Compare(x[0], y[0]) })
	var out [][2]int64
	var at int64
	for _, p := range parts {
		if p[0] > at {
			out = append(out, [2]int64{at, p[0]})
		}
		at = max(at, p[1])
	}
	if at < f.e.total {
		out = append(out, [2]int64{at, f.e.total})
	}
	return out
}

// Cleanup removes the state directory once the extraction is finished
// (but for the record of the image installed, InstalledDir, if any),
// restoring the target root's metadata that its removal changed, and syncs
// the target: when it returns, the extraction is on disk and done.
func (a *Applier) Cleanup() error {
	if err := removeState(a.target, a.state); err != nil {
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
