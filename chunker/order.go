package chunker

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// The order publish chunks an image's entries in (unless
// Config.InputOrder). An image tarball lists its files by path, and the
// files one Debian package installs are spread all over it (usr/bin,
// usr/lib, usr/share/doc, usr/share/man...): an upgrade of five packages
// changed a few files in 29 of the 137 chunks of the clone tests' Debian
// image, and a chunk that changes travels whole. Chunked package by
// package, an upgraded package changes the chunks that hold it and
// little else. The order, which extraction does not depend on (every
// chunk is applied alone, parent directories made as needed, hard links
// and directory metadata after every chunk):
//
//  1. directories, in input order (an upgrade changes the mtimes of the
//     directories it renames files in: they change together, in one or
//     two chunks);
//  2. the files of each package, packages by name, each package's files
//     in input order: those its var/lib/dpkg/info/PKG.list names (a file
//     several lists name goes with the first package by name), then its
//     own var/lib/dpkg/info/PKG.* files (md5sums, scripts), which change
//     with it;
//  3. the files of no package (configuration, dpkg's and apt's state,
//     logs), in input order;
//  4. hard links, in input order: after every file they could link to.

// dpkgInfoDir is where dpkg keeps what each package installed.
const dpkgInfoDir = "var/lib/dpkg/info/"

// Bounds on what publish keeps in memory of the dpkg lists: a list
// larger, or lists beyond the total, are not used to order the image
// (their files are chunked as files of no package).
const (
	maxDpkgList   = 16 << 20
	maxDpkgLists  = 64 << 20
	spoolBufBytes = 1 << 20
)

// spool keeps the entries publish has read and checked, in an unlinked
// temporary file, until the input is read whole and their order known.
// Each entry is written as a tar entry (the header fragmentHeader gives,
// with the sparse record desparse set, and the data as read), at its
// offset.
type spool struct {
	f     *os.File
	w     *bufio.Writer
	cw    *countWriter
	tw    *tar.Writer
	ents  []spoolEntry
	lists map[string][]byte // dpkg list of each package (by its list's stem: PKG or PKG:ARCH)
	listN int               // bytes in lists
}

// spoolEntry is one entry in the spool.
type spoolEntry struct {
	name string
	typ  byte
	off  int64 // where its header starts in the spool
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func newSpool(dir string) (*spool, error) {
	f, err := os.CreateTemp(dir, ".labseed-spool-")
	if err != nil {
		return nil, fmt.Errorf("chunker: spool file: %w (set the spool directory, or publish in input order)", err)
	}
	// Unlinked at once: nothing is left behind if publish is killed.
	os.Remove(f.Name())
	sp := &spool{f: f, w: bufio.NewWriterSize(f, spoolBufBytes), lists: map[string][]byte{}}
	sp.cw = &countWriter{w: sp.w}
	sp.tw = tar.NewWriter(sp.cw)
	return sp, nil
}

func (sp *spool) close() { sp.f.Close() }

// add writes a checked entry to the spool.
func (sp *spool) add(name string, hdr *tar.Header, data io.Reader) error {
	if err := sp.tw.Flush(); err != nil { // the previous entry's padding
		return fmt.Errorf("chunker: spool: %w", err)
	}
	h := fragmentHeader(name, hdr, 0, hdr.Size)
	if v, ok := hdr.PAXRecords[paxSparseSize]; ok {
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords[paxSparseSize] = v
	}
	sp.ents = append(sp.ents, spoolEntry{name: name, typ: hdr.Typeflag, off: sp.cw.n})
	if err := sp.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("chunker: spool: %w", err)
	}
	if hdr.Typeflag != tar.TypeReg {
		return nil
	}
	var list *bytes.Buffer
	stem, ok := dpkgListStem(name)
	if ok && hdr.Size <= maxDpkgList && sp.listN+int(hdr.Size) <= maxDpkgLists {
		list = bytes.NewBuffer(make([]byte, 0, hdr.Size))
		data = io.TeeReader(data, list)
	}
	if n, err := io.Copy(sp.tw, data); err != nil || n != hdr.Size {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("the archive is truncated in this entry's data: %w", err)
		}
		return fmt.Errorf("chunker: spool: %w", err)
	}
	if list != nil {
		sp.lists[stem] = list.Bytes()
		sp.listN += list.Len()
	}
	return nil
}

// dpkgListStem returns PKG (or PKG:ARCH) for var/lib/dpkg/info/PKG.list.
func dpkgListStem(name string) (string, bool) {
	base, ok := strings.CutPrefix(name, dpkgInfoDir)
	if !ok || strings.Contains(base, "/") {
		return "", false
	}
	stem, ok := strings.CutSuffix(base, ".list")
	return stem, ok && stem != ""
}

// packageOrder returns the order to chunk the spool's entries in: indexes
// into sp.ents (see the comment at the top of this file).
func (sp *spool) packageOrder() []int {
	stems := make([]string, 0, len(sp.lists))
	for st := range sp.lists {
		stems = append(stems, st)
	}
	slices.Sort(stems)
	pkg := map[string]int{} // stem -> its rank
	owner := map[string]int{}
	for i, st := range stems {
		pkg[st] = i
		for _, l := range strings.Split(string(sp.lists[st]), "\n") {
			n, err := cleanName(strings.TrimPrefix(l, "/"))
			if err != nil || n == "." {
				continue
			}
			if _, ok := owner[n]; !ok {
				owner[n] = i
			}
		}
	}
	const (
		dirs = iota
		packaged
		unowned
		links
	)
	type key struct{ group, pkg int }
	keys := make([]key, len(sp.ents))
	for i, e := range sp.ents {
		switch {
		case e.typ == tar.TypeDir:
			keys[i] = key{dirs, 0}
		case e.typ == tar.TypeLink:
			keys[i] = key{links, 0}
		default:
			keys[i] = key{unowned, 0}
			if p, ok := owner[e.name]; ok {
				keys[i] = key{packaged, p}
			} else if p, ok := dpkgInfoPackage(e.name, pkg); ok {
				keys[i] = key{packaged, p}
			}
		}
	}
	order := make([]int, len(sp.ents))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		ka, kb := keys[a], keys[b]
		if ka.group != kb.group {
			return ka.group - kb.group
		}
		return ka.pkg - kb.pkg
	})
	return order
}

// dpkgInfoPackage returns the rank of the package that
// var/lib/dpkg/info/PKG.EXT (or PKG:ARCH.EXT) belongs to.
func dpkgInfoPackage(name string, pkg map[string]int) (int, bool) {
	base, ok := strings.CutPrefix(name, dpkgInfoDir)
	if !ok || strings.Contains(base, "/") {
		return 0, false
	}
	i := strings.LastIndexByte(base, '.')
	if i <= 0 {
		return 0, false
	}
	p, ok := pkg[base[:i]]
	return p, ok
}

// chunkSpool chunks the spooled entries in packageOrder.
func (s *scanner) chunkSpool(ctx context.Context) error {
	sp := s.spool
	if err := errors.Join(sp.tw.Close(), sp.w.Flush()); err != nil {
		return fmt.Errorf("chunker: spool: %w", err)
	}
	total := sp.cw.n
	order := sp.packageOrder()
	br := bufio.NewReaderSize(nil, 256<<10)
	var done int64
	in := s.input.n.Load()
	for _, i := range order {
		if err := ctx.Err(); err != nil {
			return err
		}
		e := sp.ents[i]
		end := total
		if i+1 < len(sp.ents) {
			end = sp.ents[i+1].off
		}
		br.Reset(io.NewSectionReader(sp.f, e.off, end-e.off))
		tr := tar.NewReader(br)
		hdr, err := tr.Next()
		if err != nil {
			return fmt.Errorf("chunker: spool: read entry %q back: %w", e.name, err)
		}
		if err := s.chunk(e.name, hdr, tr); err != nil {
			var ee *EntryError
			if errors.As(err, &ee) {
				return err
			}
			return &EntryError{Name: e.name, Err: err}
		}
		if s.progress != nil {
			done += end - e.off
			s.progress(in/10 + int64(float64(in)*0.9*float64(done)/float64(total)))
		}
	}
	return nil
}
