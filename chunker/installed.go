package chunker

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/labseed/labseed/internal/atomicfile"
)

// InstalledDirName is the directory, in the state directory at the top of
// a target (TARGET/.labseed/installed), that records the image labseed
// installed there: no image can use the path (StateDirName is reserved),
// and a sync leaves it alone.
const InstalledDirName = "installed"

// Files of the installed directory.
const (
	installedRecord  = "record.json" // an Installed, as JSON
	installedPayload = "payload"     // the image's payload, every chunk
)

// Installed records which image labseed put into a target, written when
// the image was extracted and in place (peer.Session.Seed): the next
// re-image of the target syncs it instead of starting from an empty file
// system, and takes the chunks it can from the payload kept beside the
// record. Nothing in it is trusted: it is on the disk being re-imaged,
// and every chunk read from the payload is checked against the signed
// manifest of the image being installed.
type Installed struct {
	// Name and Version of the image; ID its manifest's (Manifest.ID).
	Name    string `json:"name"`
	Version int    `json:"version"`
	ID      string `json:"id"`
	// Time is when the image was installed.
	Time time.Time `json:"time"`
	// Manifest is the image's manifest, which says where each chunk is in
	// the payload.
	Manifest json.RawMessage `json:"manifest"`
	// Payload is whether the payload was kept beside the record.
	Payload bool `json:"payload"`
}

// InstalledDir returns the directory that records the image installed in
// target.
func InstalledDir(target string) string {
	return filepath.Join(target, StateDirName, InstalledDirName)
}

// InstalledPayload returns the path of the payload kept in target, which
// ReadInstalled's record says whether to use.
func InstalledPayload(target string) string {
	return filepath.Join(InstalledDir(target), installedPayload)
}

// ErrNotInstalled is returned by ReadInstalled when target holds no record
// of an image labseed installed.
var ErrNotInstalled = errors.New("chunker: no record of an image installed by labseed")

// ReadInstalled returns the record of the image installed in target and
// its manifest (decoded and checked for consistency, not for a signature:
// only the chunks' places in the payload are taken from it). A missing
// record is ErrNotInstalled; a damaged one another error.
func ReadInstalled(target string) (*Installed, *Manifest, error) {
	b, err := os.ReadFile(filepath.Join(InstalledDir(target), installedRecord))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, ErrNotInstalled
	}
	if err != nil {
		return nil, nil, fmt.Errorf("chunker: read the installed record: %w", err)
	}
	var rec Installed
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, nil, fmt.Errorf("chunker: the installed record %s is damaged: %w", installedRecord, err)
	}
	m, err := DecodeManifest(rec.Manifest)
	if err != nil {
		return nil, nil, fmt.Errorf("chunker: the installed record's manifest: %w", err)
	}
	if m.Name != rec.Name || m.Version != rec.Version {
		return nil, nil, fmt.Errorf("chunker: the installed record names %s v%d but holds the manifest of %s v%d", rec.Name, rec.Version, m.Name, m.Version)
	}
	return &rec, m, nil
}

// WriteInstalled records m as the image installed in target, durably.
// payload, if not empty, is the image's payload file: it is moved (renamed:
// it must be on the target's file system) beside the record, replacing the
// one kept before; without one, the payload kept before is removed.
// skeletons, if not empty, is the directory of the chunks' skeletons
// (Applier.SkeletonDir), moved beside the record the same way; they only
// spare the next sync work, so a directory that cannot be moved is left
// (the next sync then decompresses every chunk).
func WriteInstalled(target string, m *Manifest, payload, skeletons string, now time.Time) error {
	dir := InstalledDir(target)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("chunker: record the installed image: %w", err)
	}
	keptSkel := filepath.Join(dir, skeletonDirName)
	if err := os.RemoveAll(keptSkel); err != nil {
		return fmt.Errorf("chunker: remove the skeletons kept before: %w", err)
	}
	if skeletons != "" {
		os.Rename(skeletons, keptSkel)
	}
	raw, err := m.Encode()
	if err != nil {
		return err
	}
	rec := Installed{Name: m.Name, Version: m.Version, ID: m.ID(), Time: now.UTC().Truncate(time.Second), Manifest: raw}
	kept := filepath.Join(dir, installedPayload)
	if payload != "" {
		// The payload first: a power cut between the two leaves the old
		// record over the new payload, whose chunks then fail their
		// check and are fetched. Never the other way round either way.
		if err := os.Rename(payload, kept); err != nil {
			return fmt.Errorf("chunker: keep the payload: %w", err)
		}
		if err := atomicfile.SyncDir(filepath.Dir(payload)); err != nil {
			return fmt.Errorf("chunker: keep the payload: %w", err)
		}
		rec.Payload = true
	} else if err := os.Remove(kept); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("chunker: remove the payload kept before: %w", err)
	}
	b, err := json.MarshalIndent(rec, "", " ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, installedRecord), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("chunker: record the installed image: %w", err)
	}
	return atomicfile.SyncDir(filepath.Dir(dir))
}

// StateSyncing reports whether the state directory stateDir holds an
// interrupted sync (ApplyConfig.Sync), rather than an extraction into an
// empty target.
func StateSyncing(stateDir string) bool {
	_, err := os.Stat(filepath.Join(stateDir, stateSyncFile))
	return err == nil
}

// RemoveState removes the state of an interrupted extraction or sync from
// target's state directory, keeping the record of the image installed
// (InstalledDir). A re-image that cannot resume the state (it belongs to
// a tree that was changed after it) starts again from there.
func RemoveState(target string) error {
	return removeState(target, filepath.Join(target, StateDirName))
}

// removeState removes state, the state directory of an extraction into
// target: all of it, but for the installed record when state is target's
// own (TARGET/.labseed, either path relative to the working directory or
// not: the Applier holds its target absolute).
func removeState(target, state string) error {
	own, err := filepath.Abs(filepath.Join(target, StateDirName))
	if err != nil {
		return err
	}
	if abs, err := filepath.Abs(state); err != nil || abs != own {
		return os.RemoveAll(state)
	}
	ents, err := os.ReadDir(state)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	kept := false
	for _, e := range ents {
		if e.Name() == InstalledDirName && e.IsDir() {
			kept = true
			continue
		}
		if err := os.RemoveAll(filepath.Join(state, e.Name())); err != nil {
			return err
		}
	}
	if !kept {
		return os.Remove(state)
	}
	return atomicfile.SyncDir(state)
}
