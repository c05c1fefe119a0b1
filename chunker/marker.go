package chunker

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// A chunk's record ("N.done" in the state directory) says that the chunk
// is applied and holds its work for Finish: a tar of the headers of its
// directories, hard links and parts of files that span chunks. It is
// written to "N.done.tmp" while the chunk is applied, a stream through a
// small buffer (the directories of an image can be tens of thousands in
// one chunk: a record of tens of megabytes, which a workstation must not
// hold in memory), and renamed into place by the commit that follows the
// target's sync. Finish and a resume read the records the same way, one
// at a time and streaming.

// paxPartLen is the length of the part of a file a chunk held, in the
// chunk's record of work for Finish (never in an image).
const paxPartLen = "LABSEED.partlen"

// markerSuffix ends the name of a chunk's record in the state directory.
const markerSuffix = ".done"

// markerMagic starts a chunk's record: the magic, the chunk's index and
// SHA-256, the length and SHA-256 of the rest, and the length of the tar
// of work for Finish that starts the rest; a sync's paths follow it, each
// ended by a NUL. The lengths are zero-padded to 20 digits, so the head
// has the same length before the rest is known and after: it is written
// last, over a placeholder. A record that does not parse, or whose rest
// does not match, was cut short by a power cut (or written by an older
// labseed): its chunk is applied again. (Records of the first format,
// without the paths, are still read.)
const (
	markerMagic  = "labseed-done-2"
	markerMagic1 = "labseed-done-1"
)

// maxMarkerHead bounds the head line of a chunk's record.
const maxMarkerHead = 256

func (a *Applier) markerPath(i int) string {
	return filepath.Join(a.state, strconv.Itoa(i)+markerSuffix)
}

// markerWriter streams chunk index's record into its temporary file.
type markerWriter struct {
	a      *Applier
	index  int
	f      *os.File
	bw     *bufio.Writer
	sum    hash.Hash
	n      int64 // bytes of the rest written
	tarLen int64 // the tar's share of them, set by endTar
}

// createMarker starts chunk i's record, the head's placeholder written.
func (a *Applier) createMarker(i int) (*markerWriter, error) {
	f, err := os.OpenFile(a.markerPath(i)+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("chunker: write state: %w", noSpace(err))
	}
	w := &markerWriter{a: a, index: i, f: f, bw: bufio.NewWriterSize(f, 32<<10), sum: sha256.New()}
	if _, err := w.bw.WriteString(w.head()); err != nil {
		w.abort()
		return nil, fmt.Errorf("chunker: write state: %w", noSpace(err))
	}
	return w, nil
}

// head returns the record's head for what has been written so far.
func (w *markerWriter) head() string {
	return fmt.Sprintf("%s %d %s %020d %x %020d\n", markerMagic, w.index, w.a.m.Chunks[w.index].SHA256, w.n, w.sum.Sum(nil), w.tarLen)
}

// Write adds p to the rest of the record.
func (w *markerWriter) Write(p []byte) (int, error) {
	n, err := w.bw.Write(p)
	w.sum.Write(p[:n])
	w.n += int64(n)
	return n, err
}

// endTar marks the end of the tar of work for Finish: what follows are a
// sync's paths.
func (w *markerWriter) endTar() { w.tarLen = w.n }

// close writes the head over its placeholder and closes the file. The
// commit renames it into place.
func (w *markerWriter) close() error {
	err := w.bw.Flush()
	if err == nil {
		_, err = w.f.WriteAt([]byte(w.head()), 0)
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(w.f.Name())
		return fmt.Errorf("chunker: write state: %w", noSpace(err))
	}
	return nil
}

// abort closes and removes the unfinished record.
func (w *markerWriter) abort() {
	w.f.Close()
	os.Remove(w.f.Name())
}

// commitMarker renames chunk i's finished record into place. The caller
// syncs.
func (a *Applier) commitMarker(i int) error {
	name := a.markerPath(i)
	if err := os.Rename(name+".tmp", name); err != nil {
		return fmt.Errorf("chunker: write state: %w", err)
	}
	return nil
}

// readMarker checks chunk i's record and returns the paths it names (a
// sync's), or an error if the record is missing or damaged. It calls fn,
// if not nil, for each entry of the chunk's work for Finish as it reads
// them, before the record's checksum is checked at its end: the caller
// must not act on them before readMarker returns nil.
func (a *Applier) readMarker(i int, fn func(*entry) error) ([]string, error) {
	f, err := os.Open(a.markerPath(i))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 32<<10)
	head, err := br.ReadSlice('\n')
	if err != nil || len(head) > maxMarkerHead {
		return nil, fmt.Errorf("record of chunk %d is cut short or has no head", i)
	}
	var (
		magic, chunkSum, restSum string
		index                    int
		n, tarLen                int64
	)
	fields := strings.Fields(string(head))
	switch {
	case len(fields) == 6 && fields[0] == markerMagic:
		_, err = fmt.Sscanf(string(head), "%s %d %s %d %s %d", &magic, &index, &chunkSum, &n, &restSum, &tarLen)
	case len(fields) == 5 && fields[0] == markerMagic1:
		_, err = fmt.Sscanf(string(head), "%s %d %s %d %s", &magic, &index, &chunkSum, &n, &restSum)
		tarLen = n
	default:
		err = errors.New("unknown format")
	}
	if err != nil {
		return nil, fmt.Errorf("record of chunk %d does not parse", i)
	}
	if index != i || chunkSum != a.m.Chunks[i].SHA256 || n < 0 || tarLen < 0 || tarLen > n {
		return nil, fmt.Errorf("record of chunk %d does not match its chunk", i)
	}
	sum := sha256.New()
	rest := &countingReader{r: io.TeeReader(io.LimitReader(br, n), sum)}
	tarPart := io.LimitReader(rest, tarLen)
	err = readFragment(tarPart, func(e *entry, _ io.Reader) error {
		if fn != nil {
			return fn(e)
		}
		return nil
	})
	if err == nil {
		_, err = io.Copy(io.Discard, tarPart) // the tar's end blocks
	}
	var names []string
	if err == nil {
		var b []byte
		b, err = io.ReadAll(rest)
		for _, nm := range bytes.Split(b, []byte{0}) {
			if len(nm) > 0 {
				names = append(names, string(nm))
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("record of chunk %d: %w", i, err)
	}
	if extra, _ := br.Peek(1); rest.n.Load() != n || len(extra) > 0 || restSum != hex.EncodeToString(sum.Sum(nil)) {
		return nil, fmt.Errorf("record of chunk %d does not match its checksum", i)
	}
	return names, nil
}
