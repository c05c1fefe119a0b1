package netboot

import (
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	"github.com/cavaliergopher/cpio"
)

// archive is the tree of the initrd, written as a newc cpio (the format
// the kernel unpacks: Documentation/driver-api/early-userspace/buffer-format).
type archive struct {
	nodes map[string]*node // by path without the leading "/"
	bytes int64            // file data
}

type node struct {
	mode   cpio.FileMode // type and permissions
	data   []byte        // a file's bytes
	target string        // a symlink's target
}

func newArchive() *archive { return &archive{nodes: map[string]*node{}} }

// clean turns an absolute path into the archive's key; it refuses paths
// that leave the root.
func clean(p string) (string, error) {
	c := strings.TrimPrefix(path.Clean("/"+p), "/")
	if c == "" || strings.HasPrefix(c, "..") {
		return "", fmt.Errorf("netboot: bad initrd path %q", p)
	}
	return c, nil
}

// dir adds a directory and its parents.
func (a *archive) dir(p string) error {
	c, err := clean(p)
	if err != nil {
		return err
	}
	for d := c; d != "."; d = path.Dir(d) {
		if n, ok := a.nodes[d]; ok {
			if n.mode&cpio.ModeType != cpio.TypeDir {
				return fmt.Errorf("netboot: initrd path %s is both a directory and a file", d)
			}
			continue
		}
		a.nodes[d] = &node{mode: cpio.TypeDir | 0o755}
	}
	return nil
}

// add adds a node at p, with its parent directories; a path already
// present keeps what it has unless replace.
func (a *archive) add(p string, n *node, replace bool) error {
	c, err := clean(p)
	if err != nil {
		return err
	}
	if old, ok := a.nodes[c]; ok {
		if !replace {
			return nil
		}
		a.bytes -= int64(len(old.data))
	}
	if parent := path.Dir(c); parent != "." {
		if err := a.dir(parent); err != nil {
			return err
		}
	}
	a.nodes[c] = n
	a.bytes += int64(len(n.data))
	return nil
}

// file adds a regular file, replacing what p held.
func (a *archive) file(p string, data []byte, perm cpio.FileMode) error {
	return a.add(p, &node{mode: cpio.TypeReg | perm&0o7777, data: data}, true)
}

// symlink adds a symbolic link unless p is taken.
func (a *archive) symlink(p, target string) error {
	return a.add(p, &node{mode: cpio.TypeSymlink | 0o777, target: target}, false)
}

// has reports whether p is in the archive.
func (a *archive) has(p string) bool {
	c, err := clean(p)
	_, ok := a.nodes[c]
	return err == nil && ok
}

// write writes the archive as newc cpio to w, parents before children, in
// a fixed order (the same tree gives the same bytes). It returns the
// number of entries.
func (a *archive) write(w io.Writer) (int, error) {
	names := make([]string, 0, len(a.nodes))
	for n := range a.nodes {
		names = append(names, n)
	}
	slices.Sort(names) // a parent is a prefix of its children: it sorts first
	cw := cpio.NewWriter(w)
	for _, name := range names {
		n := a.nodes[name]
		h := &cpio.Header{Name: name, Mode: n.mode, Links: 1}
		var body []byte
		switch n.mode & cpio.ModeType {
		case cpio.TypeReg:
			body = n.data
		case cpio.TypeSymlink:
			body = []byte(n.target)
		case cpio.TypeDir:
			h.Links = 2
		}
		h.Size = int64(len(body))
		if err := cw.WriteHeader(h); err != nil {
			return 0, fmt.Errorf("netboot: initrd %s: %w", name, err)
		}
		if _, err := cw.Write(body); err != nil {
			return 0, fmt.Errorf("netboot: initrd %s: %w", name, err)
		}
	}
	if err := cw.Close(); err != nil {
		return 0, fmt.Errorf("netboot: initrd: %w", err)
	}
	return len(names), nil
}
