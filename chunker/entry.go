package chunker

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
)

// PAX records labseed adds to the entries of a tar fragment. A regular file
// that spans chunks appears in each of them with the part it holds: the
// header's Size is the part's length, LABSEED.offset where it starts in the
// file and LABSEED.size the whole file's size.
const (
	paxOffset = "LABSEED.offset"
	paxSize   = "LABSEED.size"
	paxXattr  = "SCHILY.xattr."
)

// StateDirName is the directory an Applier keeps its state in, at the top of
// the target unless configured elsewhere. Images may not contain it.
const StateDirName = ".labseed"

// maxFileSize bounds the size a fragment may declare for a file (16 TiB).
const maxFileSize = 1 << 44

// EntryError is an error about one tar entry of an image.
type EntryError struct {
	Name string // the entry's name as it appears in the tar
	Err  error
}

func (e *EntryError) Error() string { return fmt.Sprintf("entry %q: %v", e.Name, e.Err) }

// Unwrap returns the underlying error.
func (e *EntryError) Unwrap() error { return e.Err }

// Errors about entries, wrapped in EntryError.
var (
	ErrUnsafePath   = errors.New("chunker: path leaves the image root (absolute or ..)")
	ErrReservedPath = errors.New("chunker: path " + StateDirName + " is reserved for labseed's state")
	ErrDuplicate    = errors.New("chunker: duplicate entry (repack the image so each path appears once)")
	ErrThroughLink  = errors.New("chunker: entry is written through a symbolic link")
	ErrLinkTarget   = errors.New("chunker: hard link to a path that is not an earlier regular file of the image")
	ErrEntryType    = errors.New("chunker: unsupported entry type")
	ErrFragment     = errors.New("chunker: malformed fragment header")
)

// cleanName turns a tar entry name into the canonical relative form used in
// fragments ("." for the root, no leading "./", no trailing "/"), or rejects
// it when it could leave the root.
func cleanName(name string) (string, error) {
	if name == "" || strings.IndexByte(name, 0) >= 0 {
		return "", ErrUnsafePath
	}
	if strings.HasPrefix(name, "/") {
		return "", ErrUnsafePath
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", ErrUnsafePath
		}
	}
	n := path.Clean(name)
	if n == ".." || strings.HasPrefix(n, "../") || strings.HasPrefix(n, "/") {
		return "", ErrUnsafePath
	}
	if n == StateDirName || strings.HasPrefix(n, StateDirName+"/") {
		return "", ErrReservedPath
	}
	return n, nil
}

// entry is one entry of a tar fragment.
type entry struct {
	hdr    *tar.Header
	offset int64 // where hdr's data starts in the file
	total  int64 // the whole file's size
	pos    int64 // where hdr's data starts in the fragment (readFragmentBytes)
}

// split reports whether the entry holds only part of a file.
func (e *entry) split() bool { return e.offset != 0 || e.hdr.Size != e.total }

// xattrs calls fn for each extended attribute of the entry.
func (e *entry) xattrs(fn func(name, value string) error) error {
	for k, v := range e.hdr.PAXRecords {
		if name, ok := strings.CutPrefix(k, paxXattr); ok && name != "" {
			if err := fn(name, v); err != nil {
				return fmt.Errorf("xattr %s: %w", name, err)
			}
		}
	}
	return nil
}

// fragmentHeader builds the header written into a fragment for hdr's part of
// size n at offset off.
func fragmentHeader(name string, hdr *tar.Header, off, n int64) *tar.Header {
	h := &tar.Header{
		Typeflag: hdr.Typeflag,
		Name:     name,
		Linkname: hdr.Linkname,
		Mode:     hdr.Mode & 0o7777,
		Uid:      hdr.Uid,
		Gid:      hdr.Gid,
		ModTime:  hdr.ModTime,
		Devmajor: hdr.Devmajor,
		Devminor: hdr.Devminor,
		Format:   tar.FormatPAX,
	}
	for k, v := range hdr.PAXRecords {
		if strings.HasPrefix(k, paxXattr) {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords[k] = v
		}
	}
	if h.Typeflag == tar.TypeReg {
		h.Size = n
		if off != 0 || n != hdr.Size {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords[paxOffset] = strconv.FormatInt(off, 10)
			h.PAXRecords[paxSize] = strconv.FormatInt(hdr.Size, 10)
		}
	}
	return h
}

// readFragment reads a tar fragment from r and calls fn for every entry with
// a reader of its data. It validates every header: a fragment comes from the
// network and is untrusted even when its hash matched a signed manifest.
func readFragment(r io.Reader, fn func(e *entry, data io.Reader) error) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read fragment: %w", err)
		}
		e, err := parseEntry(hdr)
		if err != nil {
			return &EntryError{Name: hdr.Name, Err: err}
		}
		if err := fn(e, tr); err != nil {
			return err
		}
	}
}

// readFragmentBytes is readFragment for a fragment in memory: fn gets each
// entry's data as a slice of raw, not a copy (a workstation writes a
// gigabyte of file data per image straight from the decompressed chunks).
func readFragmentBytes(raw []byte, fn func(e *entry, data []byte) error) error {
	br := bytes.NewReader(raw)
	return readFragment(br, func(e *entry, _ io.Reader) error {
		// The tar reader reads a header's blocks and no further, and skips
		// the data of the entry before with a Seek: the reader is at the
		// first byte of this entry's data.
		start := int64(len(raw)) - int64(br.Len())
		if e.hdr.Size > int64(len(raw))-start {
			return &EntryError{Name: e.hdr.Name, Err: fmt.Errorf("%w: data runs past the end of the fragment", ErrFragment)}
		}
		e.pos = start
		return fn(e, raw[start:start+e.hdr.Size])
	})
}

// parseEntry validates one fragment header.
func parseEntry(hdr *tar.Header) (*entry, error) {
	n, err := cleanName(hdr.Name)
	if err != nil {
		return nil, err
	}
	if n != hdr.Name {
		return nil, fmt.Errorf("%w: name is not canonical", ErrFragment)
	}
	if hdr.Uid < 0 || hdr.Gid < 0 || hdr.Uid > 1<<32-1 || hdr.Gid > 1<<32-1 {
		return nil, fmt.Errorf("%w: uid/gid out of range", ErrFragment)
	}
	if hdr.Mode&^0o7777 != 0 {
		return nil, fmt.Errorf("%w: mode %o", ErrFragment, hdr.Mode)
	}
	if hasSparseRecords(hdr) {
		// archive/tar would expand it: its data would not be the bytes
		// that follow the header. Publish never writes one.
		return nil, fmt.Errorf("%w: a tar sparse entry", ErrFragment)
	}
	e := &entry{hdr: hdr, total: hdr.Size}
	switch hdr.Typeflag {
	case tar.TypeReg:
		if n == "." {
			return nil, fmt.Errorf("%w: the root is not a file", ErrFragment)
		}
		off, hasOff := hdr.PAXRecords[paxOffset]
		size, hasSize := hdr.PAXRecords[paxSize]
		if hasOff != hasSize {
			return nil, fmt.Errorf("%w: %s without %s", ErrFragment, paxOffset, paxSize)
		}
		if hasOff {
			if e.offset, err = strconv.ParseInt(off, 10, 64); err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrFragment, paxOffset, err)
			}
			if e.total, err = strconv.ParseInt(size, 10, 64); err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrFragment, paxSize, err)
			}
		}
		if e.offset < 0 || e.total < 0 || e.total > maxFileSize || hdr.Size > e.total-e.offset {
			return nil, fmt.Errorf("%w: part %d+%d of a %d-byte file", ErrFragment, e.offset, hdr.Size, e.total)
		}
	case tar.TypeDir, tar.TypeFifo, tar.TypeChar, tar.TypeBlock:
		if hdr.Size != 0 {
			return nil, fmt.Errorf("%w: non-file entry with data", ErrFragment)
		}
		if hdr.Typeflag != tar.TypeDir && n == "." {
			return nil, fmt.Errorf("%w: the root must be a directory", ErrFragment)
		}
		if hdr.Devmajor < 0 || hdr.Devminor < 0 || hdr.Devmajor > 1<<12-1 || hdr.Devminor > 1<<20-1 {
			return nil, fmt.Errorf("%w: device %d,%d", ErrFragment, hdr.Devmajor, hdr.Devminor)
		}
	case tar.TypeSymlink:
		if hdr.Linkname == "" || strings.IndexByte(hdr.Linkname, 0) >= 0 || n == "." {
			return nil, fmt.Errorf("%w: symlink", ErrFragment)
		}
	case tar.TypeLink:
		t, err := cleanName(hdr.Linkname)
		if err != nil || t != hdr.Linkname || t == "." || n == "." {
			return nil, fmt.Errorf("%w: hard link to %q", ErrLinkTarget, hdr.Linkname)
		}
	default:
		return nil, fmt.Errorf("%w %q", ErrEntryType, hdr.Typeflag)
	}
	return e, nil
}
