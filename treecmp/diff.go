package treecmp

import (
	"fmt"
	"maps"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Diff returns the differences between two scans as human-readable lines,
// nil when there is none. Lines are ordered by path (bytewise), and for one
// path in a fixed order of fields:
//
//	only in a: etc/foo
//	usr/bin/x: type file != symlink
//	usr/bin/x: mode 0755 != 04755
//	usr/bin/x: owner 0:0 != 4242:4343
//	usr/bin/x: size 10 != 12
//	usr/bin/x: content sha256 9f86d081884c7d65 != 60303ae22b998861
//	usr/bin/x: symlink target "a" != "b"
//	dev/null: rdev 1,3 != 1,5
//	usr/bin/x: xattr user.a "1" != "2"
//	usr/bin/x: xattr user.b only in a
//	usr/bin/x: hard-link group usr/bin/perl != (none)
//	usr/bin/x: mtime 2024-01-02T03:04:05.000000001Z != 2024-01-02T03:04:05.000000000Z
//
// A directory only in one tree is listed once, with the number of entries
// below it: "only in b: var/cache (and 42 entries below)".
//
// Paths that are not printable UTF-8 (or contain spaces) are printed with
// %q. When the types differ no other field of that path is compared. Of
// opt, only SkipMtimeDirs is used; Ignore applies while scanning.
func Diff(a, b map[string]Entry, opt Options) []string {
	paths := slices.Sorted(maps.Keys(a))
	for p := range b {
		if _, ok := a[p]; !ok {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	// An entry only in one tree whose parent is also only in that tree is
	// counted under its top-most such ancestor instead of listed.
	below := make(map[string]int)
	onlyTop := func(p string, in map[string]Entry) (string, bool) {
		top, hidden := p, false
		for top != "." {
			parent := path.Dir(top)
			if _, ok := in[parent]; ok {
				break
			}
			top, hidden = parent, true
		}
		return top, hidden
	}
	for _, p := range paths {
		_, inA := a[p]
		_, inB := b[p]
		other := a
		if !inB {
			other = b
		} else if inA {
			continue
		}
		if top, hidden := onlyTop(p, other); hidden {
			below[top]++
		}
	}
	var out []string
	for _, p := range paths {
		ea, inA := a[p]
		eb, inB := b[p]
		if inA && inB {
			out = diffEntry(out, fmtPath(p), ea, eb, opt)
			continue
		}
		side, other := "a", b
		if !inA {
			side, other = "b", a
		}
		if _, hidden := onlyTop(p, other); hidden {
			continue
		}
		line := "only in " + side + ": " + fmtPath(p)
		switch n := below[p]; n {
		case 0:
		case 1:
			line += " (and 1 entry below)"
		default:
			line += fmt.Sprintf(" (and %d entries below)", n)
		}
		out = append(out, line)
	}
	return out
}

// diffEntry appends the differences between two entries of the same path.
func diffEntry(out []string, p string, a, b Entry, opt Options) []string {
	add := func(format string, args ...any) {
		out = append(out, p+": "+fmt.Sprintf(format, args...))
	}
	if a.Type != b.Type {
		add("type %s != %s", a.Type, b.Type)
		return out
	}
	if a.Mode != b.Mode {
		add("mode %s != %s", fmtMode(a.Mode), fmtMode(b.Mode))
	}
	if a.UID != b.UID || a.GID != b.GID {
		add("owner %d:%d != %d:%d", a.UID, a.GID, b.UID, b.GID)
	}
	if a.Type == TypeFile {
		if a.Size != b.Size {
			add("size %d != %d", a.Size, b.Size)
		} else if a.SHA256 != b.SHA256 {
			add("content sha256 %.16s != %.16s", a.SHA256, b.SHA256)
		}
	}
	if a.Link != b.Link {
		add("symlink target %q != %q", a.Link, b.Link)
	}
	if a.Rdev != b.Rdev {
		add("rdev %s != %s", fmtDev(a.Rdev), fmtDev(b.Rdev))
	}
	names := slices.Sorted(maps.Keys(a.Xattrs))
	for n := range b.Xattrs {
		if _, ok := a.Xattrs[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		va, inA := a.Xattrs[n]
		vb, inB := b.Xattrs[n]
		switch {
		case !inB:
			add("xattr %s only in a", fmtPath(n))
		case !inA:
			add("xattr %s only in b", fmtPath(n))
		case va != vb:
			add("xattr %s %q != %q", fmtPath(n), va, vb)
		}
	}
	if a.LinkGroup != b.LinkGroup {
		add("hard-link group %s != %s", fmtGroup(a.LinkGroup), fmtGroup(b.LinkGroup))
	}
	if a.MtimeNs != b.MtimeNs && !(opt.SkipMtimeDirs && a.Type == TypeDir) {
		add("mtime %s != %s", fmtTime(a.MtimeNs), fmtTime(b.MtimeNs))
	}
	return out
}

// fmtPath returns p as it is when it is printable UTF-8 without spaces,
// else quoted with %q.
func fmtPath(p string) string {
	if q := strconv.Quote(p); q[1:len(q)-1] != p || strings.Contains(p, " ") || p == "" {
		return q
	}
	return p
}

// fmtGroup formats a LinkGroup.
func fmtGroup(g string) string {
	if g == "" {
		return "(none)"
	}
	return fmtPath(g)
}

// fmtMode formats m as the octal mode chmod takes, e.g. 04755.
func fmtMode(m os.FileMode) string {
	v := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		v |= 0o1000
	}
	return "0" + strconv.FormatUint(uint64(v), 8)
}

// fmtDev formats a device number as major,minor (Linux encoding).
func fmtDev(d uint64) string {
	major := (d>>8)&0xfff | (d>>32)&^0xfff
	minor := d&0xff | (d>>12)&^0xff
	return fmt.Sprintf("%d,%d", major, minor)
}

// fmtTime formats nanoseconds since the epoch in UTC with all nine
// fractional digits, so that times differing by 1ns look different.
func fmtTime(ns int64) string {
	return time.Unix(0, ns).UTC().Format("2006-01-02T15:04:05.000000000Z07:00")
}
