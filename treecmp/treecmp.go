package treecmp

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Entry types, as stored in Entry.Type.
const (
	TypeFile    = "file"
	TypeDir     = "dir"
	TypeSymlink = "symlink"
	TypeChar    = "char"
	TypeBlock   = "block"
	TypeFIFO    = "fifo"
	TypeSocket  = "socket"
)

// Entry is what Scan records about one path.
type Entry struct {
	// Path is relative to the scanned root, slash-separated, "." for the
	// root itself. It holds the raw bytes of the names, which need not be
	// UTF-8.
	Path string
	// Type is one of TypeFile, TypeDir, TypeSymlink, TypeChar, TypeBlock,
	// TypeFIFO or TypeSocket.
	Type string
	// Mode holds the permission bits and os.ModeSetuid, os.ModeSetgid and
	// os.ModeSticky; never type bits.
	Mode os.FileMode
	// UID and GID are the numeric owner.
	UID, GID uint32
	// Size is the apparent size in bytes as lstat reports it. Compare
	// checks it for regular files only.
	Size int64
	// MtimeNs is the modification time in nanoseconds since the Unix epoch.
	MtimeNs int64
	// SHA256 is the hex SHA-256 of a regular file's contents, "" for other
	// types.
	SHA256 string
	// Link is a symlink's target, "" for other types.
	Link string
	// Rdev is the device number of a char or block device, 0 otherwise.
	Rdev uint64
	// Xattrs maps every extended attribute name (all namespaces the caller
	// may list) to its raw value; nil when there is none.
	Xattrs map[string]string
	// LinkGroup is, for a non-directory whose inode has more than one name
	// within the scanned tree, the smallest (bytewise) of those names; ""
	// otherwise. Two trees have the same hard links when every path has
	// the same LinkGroup in both.
	LinkGroup string
}

// Options tunes Scan and Compare. The zero value compares everything.
type Options struct {
	// SkipMtimeDirs leaves out the mtime of directories (including the
	// root) from the comparison, for trees whose directories were touched
	// after they were built.
	SkipMtimeDirs bool
	// Ignore lists relative, slash-separated paths that are skipped
	// together with everything below them, e.g. ".labseed".
	Ignore []string
}

// fileID identifies an inode.
type fileID struct{ dev, ino uint64 }

// scanner holds the state of one Scan.
type scanner struct {
	root    string
	ignore  []string
	entries map[string]Entry
	inodes  map[fileID][]string
}

// Scan walks the tree at root without following symlinks and returns one
// Entry per path, keyed by Entry.Path. Paths listed in opt.Ignore are left
// out.
func Scan(root string, opt Options) (map[string]Entry, error) {
	s := &scanner{
		root:    root,
		entries: make(map[string]Entry),
		inodes:  make(map[fileID][]string),
	}
	for _, ig := range opt.Ignore {
		s.ignore = append(s.ignore, path.Clean(filepath.ToSlash(ig)))
	}
	if err := s.walk("."); err != nil {
		return nil, fmt.Errorf("treecmp: scan %s: %w", root, err)
	}
	for _, names := range s.inodes {
		if len(names) < 2 {
			continue
		}
		first := slices.Min(names)
		for _, n := range names {
			e := s.entries[n]
			e.LinkGroup = first
			s.entries[n] = e
		}
	}
	return s.entries, nil
}

// ignored reports whether rel is, or is below, an ignored path.
func (s *scanner) ignored(rel string) bool {
	for _, ig := range s.ignore {
		if rel == ig || strings.HasPrefix(rel, ig+"/") {
			return true
		}
	}
	return false
}

// walk records rel and, for a directory, everything below it.
func (s *scanner) walk(rel string) error {
	if s.ignored(rel) {
		return nil
	}
	full := filepath.Join(s.root, filepath.FromSlash(rel))
	e, id, nlink, err := lstatEntry(full)
	if err != nil {
		return err
	}
	e.Path = rel
	s.entries[rel] = e
	if e.Type != TypeDir {
		if nlink > 1 {
			s.inodes[id] = append(s.inodes[id], rel)
		}
		return nil
	}
	names, err := readDirNames(full)
	if err != nil {
		return err
	}
	for _, name := range names {
		child := name
		if rel != "." {
			child = rel + "/" + name
		}
		if err := s.walk(child); err != nil {
			return err
		}
	}
	return nil
}

// readDirNames returns the sorted names in directory dir.
func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	names, err := f.Readdirnames(-1)
	err = errors.Join(err, f.Close())
	if err != nil {
		return nil, fmt.Errorf("read directory %q: %w", dir, err)
	}
	slices.Sort(names)
	return names, nil
}

// Compare scans the trees at a and b and returns their differences (see
// Diff), nil when they are identical.
func Compare(a, b string, opt Options) ([]string, error) {
	ea, err := Scan(a, opt)
	if err != nil {
		return nil, err
	}
	eb, err := Scan(b, opt)
	if err != nil {
		return nil, err
	}
	return Diff(ea, eb, opt), nil
}
