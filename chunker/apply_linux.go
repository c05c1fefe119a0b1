package chunker

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// errNoSpace is the error a full file system returns.
var errNoSpace error = unix.ENOSPC

// checkOS reports whether extraction works here: it does on Linux.
func checkOS() error { return nil }

// syncFS writes every dirty page and inode of the file system holding f to
// disk (syncfs(2)), with the journal commit that makes it durable.
func syncFS(f *os.File) error { return unix.Syncfs(int(f.Fd())) }

// writer applies entries to the target. Parent directories are opened through
// the Applier's os.Root, which refuses any path that leaves the target; the
// entry itself is then created relative to that directory with *at system
// calls that do not follow a symbolic link in the last component.
// A writer is used by one goroutine.
type writer struct {
	a    *Applier
	dirs map[string]*os.File
	cmp  []byte            // a sync's: what the target holds, to compare with
	seen map[int64]readRef // a sync's: the regions the rebuild of the chunk read
}

func (a *Applier) newWriter() *writer {
	return &writer{a: a, dirs: map[string]*os.File{}}
}

func (w *writer) close() {
	for _, f := range w.dirs {
		f.Close()
	}
}

// mkdir makes sure directory d exists in the target.
func (w *writer) mkdir(d string) error {
	if d == "." {
		return nil
	}
	if _, ok := w.a.made.Load(d); ok {
		return nil
	}
	if err := w.a.root.MkdirAll(d, 0o755); err != nil {
		return err
	}
	w.a.made.Store(d, true)
	return nil
}

// dir returns a descriptor of directory d in the target, creating it if
// needed (a sync's: see syncDir). The descriptors it returns stay open
// until the writer's next entry (evict).
func (w *writer) dir(d string) (int, error) {
	if f, ok := w.dirs[d]; ok {
		return int(f.Fd()), nil
	}
	if w.a.sync {
		return w.syncDir(d)
	}
	if err := w.mkdir(d); err != nil {
		return -1, err
	}
	f, err := w.a.root.Open(d)
	if err != nil {
		return -1, err
	}
	w.dirs[d] = f
	return int(f.Fd()), nil
}

// evict closes the cached directory descriptors when there are many:
// called between entries, never while an entry holds descriptors.
func (w *writer) evict() {
	if len(w.dirs) > 64 {
		for k, f := range w.dirs {
			f.Close()
			delete(w.dirs, k)
		}
	}
}

// apply writes one entry and reports whether it has work for Finish.
func (w *writer) apply(e *entry, data []byte) (later bool, err error) {
	w.evict()
	h := e.hdr
	switch h.Typeflag {
	case tar.TypeDir:
		if w.a.sync {
			_, err := w.dir(h.Name)
			return true, err
		}
		return true, w.mkdir(h.Name)
	case tar.TypeLink:
		return true, nil
	}
	parent, base := parentBase(h.Name)
	dirfd, err := w.dir(parent)
	if err != nil {
		return false, err
	}
	switch h.Typeflag {
	case tar.TypeReg:
		return e.split(), w.file(dirfd, base, e, data)
	case tar.TypeSymlink:
		return false, w.symlink(dirfd, base, h)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return false, w.node(dirfd, base, h)
	}
	return false, fmt.Errorf("%w %q", ErrEntryType, h.Typeflag)
}

func (w *writer) file(dirfd int, base string, e *entry, data []byte) error {
	if w.a.sync {
		if e.split() {
			return w.syncPart(dirfd, base, e, data)
		}
		return w.syncFile(dirfd, base, e, data)
	}
	fd, err := unix.Openat(dirfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return pathErr("create", err)
	}
	defer unix.Close(fd)
	holes, err := pwriteSparse(fd, data, e.offset)
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if holes || e.split() {
		if err := unix.Ftruncate(fd, e.total); err != nil {
			return fmt.Errorf("truncate: %w", err)
		}
	}
	if e.split() {
		return nil // metadata once every part is in: Finish
	}
	return w.a.setMeta(fd, dirfd, base, e, nil)
}

// fileMeta applies the metadata of a file that spans chunks.
func (w *writer) fileMeta(e *entry) error {
	w.evict()
	parent, base := parentBase(e.hdr.Name)
	dirfd, err := w.dir(parent)
	if err != nil {
		return err
	}
	fd, err := unix.Openat(dirfd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return pathErr("open", err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Size != e.total {
		return fmt.Errorf("%w: file is %d bytes, image says %d", ErrIncomplete, st.Size, e.total)
	}
	return w.a.setMeta(fd, dirfd, base, e, nil)
}

func (w *writer) symlink(dirfd int, base string, h *tar.Header) error {
	err := unix.Symlinkat(h.Linkname, dirfd, base)
	if errors.Is(err, unix.EEXIST) {
		buf := make([]byte, len(h.Linkname)+1)
		n, rerr := unix.Readlinkat(dirfd, base, buf)
		if rerr == nil && n == len(h.Linkname) && string(buf[:n]) == h.Linkname {
			err = errUnchanged
		} else if err = w.replace(dirfd, base); err == nil {
			err = unix.Symlinkat(h.Linkname, dirfd, base)
		}
	}
	if err = w.a.count(err); err != nil {
		return pathErr("symlink", err)
	}
	return w.a.setMetaAt(dirfd, base, h, false)
}

func (w *writer) node(dirfd int, base string, h *tar.Header) error {
	mode := uint32(h.Mode & 0o777)
	switch h.Typeflag {
	case tar.TypeChar:
		mode |= unix.S_IFCHR
	case tar.TypeBlock:
		mode |= unix.S_IFBLK
	case tar.TypeFifo:
		mode |= unix.S_IFIFO
	}
	dev := int(unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor)))
	err := unix.Mknodat(dirfd, base, mode, dev)
	if errors.Is(err, unix.EEXIST) {
		var st unix.Stat_t
		if serr := unix.Fstatat(dirfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); serr == nil &&
			st.Mode&unix.S_IFMT == mode&unix.S_IFMT && (mode&unix.S_IFMT == unix.S_IFIFO || st.Rdev == uint64(dev)) {
			err = errUnchanged
		} else if err = w.replace(dirfd, base); err == nil {
			err = unix.Mknodat(dirfd, base, mode, dev)
		}
	}
	if err = w.a.count(err); err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("mknod: %w (device nodes need root)", err)
		}
		return pathErr("mknod", err)
	}
	return w.a.setMetaAt(dirfd, base, h, true)
}

func (w *writer) link(e *entry) error {
	w.evict()
	op, ob := parentBase(e.hdr.Linkname)
	np, nb := parentBase(e.hdr.Name)
	ofd, err := w.dir(op)
	if err != nil {
		return err
	}
	nfd, err := w.dir(np)
	if err != nil {
		return err
	}
	err = unix.Linkat(ofd, ob, nfd, nb, 0)
	if errors.Is(err, unix.EEXIST) {
		var a, b unix.Stat_t
		if unix.Fstatat(ofd, ob, &a, unix.AT_SYMLINK_NOFOLLOW) == nil &&
			unix.Fstatat(nfd, nb, &b, unix.AT_SYMLINK_NOFOLLOW) == nil && a.Dev == b.Dev && a.Ino == b.Ino {
			return nil
		}
		if err = w.replace(nfd, nb); err == nil {
			err = unix.Linkat(ofd, ob, nfd, nb, 0)
		}
	}
	if err != nil {
		return pathErr("link to "+e.hdr.Linkname, err)
	}
	return nil
}

func (w *writer) dirMeta(e *entry) error {
	w.evict()
	parent, base := parentBase(e.hdr.Name)
	dirfd, err := w.dir(parent)
	if err != nil {
		return err
	}
	fd, err := unix.Openat(dirfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return pathErr("open directory", err)
	}
	defer unix.Close(fd)
	return w.a.setMeta(fd, dirfd, base, e, nil)
}

// rootMeta applies the metadata of the image's "." entry to the target itself.
func (a *Applier) rootMeta() error {
	if a.rootHdr == nil {
		return nil
	}
	fd, err := unix.Open(a.target, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	e := &entry{hdr: a.rootHdr}
	if err := a.setMeta(fd, -1, "", e, nil); err != nil {
		return &EntryError{Name: ".", Err: err}
	}
	return setTimes(unix.AT_FDCWD, a.target, a.rootHdr, 0)
}

// setMeta applies owner, mode, extended attributes and mtime, in that order:
// chown clears setuid bits, and a write or chown clears security.capability.
// With dirfd < 0 the mtime is left to the caller. st, if not nil, is
// the file's fstat (a sync's file kept as it was): owner, mode and mtime
// are then set only where they differ, since each is an inode write.
func (a *Applier) setMeta(fd, dirfd int, base string, e *entry, st *unix.Stat_t) error {
	h := e.hdr
	chown := a.sameOwner && (st == nil || int(st.Uid) != h.Uid || int(st.Gid) != h.Gid)
	if chown {
		if err := unix.Fchown(fd, h.Uid, h.Gid); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	// chown clears the setuid and setgid bits: chmod after it.
	if chown || st == nil || st.Mode&0o7777 != uint32(h.Mode&0o7777) {
		if err := unix.Fchmod(fd, uint32(h.Mode&0o7777)); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	err := e.xattrs(func(name, value string) error {
		return a.xattrErr(unix.Fsetxattr(fd, name, []byte(value), 0))
	})
	if err != nil {
		return err
	}
	if a.sync {
		if err := a.dropXattrs(e, func(b []byte) (int, error) { return unix.Flistxattr(fd, b) },
			func(n string) error { return unix.Fremovexattr(fd, n) }); err != nil {
			return err
		}
	}
	if dirfd < 0 || st != nil && st.Mtim == unix.NsecToTimespec(h.ModTime.UnixNano()) {
		return nil
	}
	return setTimes(dirfd, base, h, unix.AT_SYMLINK_NOFOLLOW)
}

// setMetaAt is setMeta for entries that cannot be opened: symlinks and device nodes.
func (a *Applier) setMetaAt(dirfd int, base string, h *tar.Header, chmod bool) error {
	if a.sameOwner {
		if err := unix.Fchownat(dirfd, base, h.Uid, h.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	if chmod {
		if err := unix.Fchmodat(dirfd, base, uint32(h.Mode&0o7777), 0); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	proc := fmt.Sprintf("/proc/self/fd/%d/%s", dirfd, base)
	e := &entry{hdr: h}
	err := e.xattrs(func(name, value string) error {
		return a.xattrErr(unix.Lsetxattr(proc, name, []byte(value), 0))
	})
	if err != nil {
		return err
	}
	if a.sync {
		if err := a.dropXattrs(e, func(b []byte) (int, error) { return unix.Llistxattr(proc, b) },
			func(n string) error { return unix.Lremovexattr(proc, n) }); err != nil {
			return err
		}
	}
	return setTimes(dirfd, base, h, unix.AT_SYMLINK_NOFOLLOW)
}

// xattrErr lets an unprivileged extraction skip attributes it may not set,
// as tar does.
func (a *Applier) xattrErr(err error) error {
	if err != nil && !a.sameOwner && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOTSUP)) {
		return nil
	}
	return err
}

func setTimes(dirfd int, name string, h *tar.Header, flags int) error {
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(h.ModTime.UnixNano())}
	if err := unix.UtimesNanoAt(dirfd, name, ts, flags); err != nil {
		return fmt.Errorf("set mtime: %w", err)
	}
	return nil
}

// pathErr explains the errors a sysadmin can act on.
func pathErr(op string, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("%s: the path is a symbolic link in the target: %w", op, err)
	case errors.Is(err, unix.EISDIR):
		return fmt.Errorf("%s: the path is a directory in the target: %w", op, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

var zeroBlock [4096]byte

// pwriteSparse writes p at off, leaving aligned all-zero 4 KiB blocks as
// holes. It reports whether it left any.
func pwriteSparse(fd int, p []byte, off int64) (bool, error) {
	const bs = len(zeroBlock)
	if len(p) < 2*bs {
		return false, pwriteAll(fd, p, off)
	}
	holes := false
	start := 0
	for i := 0; i < len(p); {
		next := min(i+bs-int((off+int64(i))%int64(bs)), len(p))
		if next-i == bs && bytes.Equal(p[i:next], zeroBlock[:]) {
			if start < i {
				if err := pwriteAll(fd, p[start:i], off+int64(start)); err != nil {
					return holes, err
				}
			}
			start = next
			holes = true
		}
		i = next
	}
	if start < len(p) {
		return holes, pwriteAll(fd, p[start:], off+int64(start))
	}
	return holes, nil
}

func pwriteAll(fd int, p []byte, off int64) error {
	for len(p) > 0 {
		n, err := unix.Pwrite(fd, p, off)
		if err != nil {
			return err
		}
		p = p[n:]
		off += int64(n)
	}
	return nil
}
