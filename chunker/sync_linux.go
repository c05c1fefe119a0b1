package chunker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// A sync (ApplyConfig.Sync) writes into a tree it does not trust: every
// path is reached with *at calls that do not follow symbolic links, an
// entry is compared with what the target holds before anything is
// written, and whatever stands in the way of the image's entry is removed.

// syncDir returns a descriptor of directory d of the image, making sure
// that d and every directory above it is a directory in the target: a
// missing one is made, a file or a symbolic link in its place is removed
// and replaced by a directory. (os.Root would follow a symbolic link
// that stays inside the target: a student's /usr/share/doc -> /tmp/x
// would have the image's files written into /tmp/x.)
func (w *writer) syncDir(d string) (int, error) {
	if f, ok := w.dirs[d]; ok {
		return int(f.Fd()), nil
	}
	var fd int
	if d == "." {
		var err error
		if fd, err = unix.Open(w.a.target, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
			return -1, err
		}
	} else {
		pfd, err := w.syncDir(path.Dir(d))
		if err != nil {
			return -1, err
		}
		if fd, err = w.a.openDir(pfd, path.Base(d)); err != nil {
			return -1, err
		}
	}
	w.dirs[d] = os.NewFile(uintptr(fd), d)
	return fd, nil
}

// openDir opens directory base in dirfd without following a symbolic
// link, making it when it is missing or replacing what is there instead.
func (a *Applier) openDir(dirfd int, base string) (int, error) {
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	for try := 0; ; try++ {
		fd, err := unix.Openat(dirfd, base, flags, 0)
		if err == nil {
			clearFlags(fd)
			return fd, nil
		}
		if try == 3 {
			return -1, pathErr("open directory "+base, err)
		}
		switch {
		case errors.Is(err, unix.ENOENT):
			err = unix.Mkdirat(dirfd, base, 0o755)
			if err == nil {
				a.written.Add(1)
			}
		case errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.ELOOP):
			// A file or a symbolic link where the image has a directory.
			err = unix.Unlinkat(dirfd, base, 0)
			if err == nil {
				a.removed.Add(1)
			}
		}
		// EEXIST, ENOENT, EISDIR: another writer made or replaced it.
		if err != nil && !errors.Is(err, unix.EEXIST) && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EISDIR) {
			return -1, pathErr("make directory "+base, err)
		}
	}
}

// replace removes what is at base in dirfd, to put an entry of the image
// there: a directory with everything in it. Nothing there is no error.
func (w *writer) replace(dirfd int, base string) error {
	if !w.a.sync {
		return unix.Unlinkat(dirfd, base, 0)
	}
	n, err := removeTree(dirfd, base)
	if n > 1 {
		w.a.removed.Add(n - 1) // what was in a directory the entry replaces
	}
	return err
}

// removeTree removes base in dirfd, a directory with everything in it,
// without following symbolic links or crossing into another file system
// (a mount point in the way is an error), and returns how many entries it
// removed. Nothing there is no error.
func removeTree(dirfd int, base string) (int64, error) {
	err := unix.Unlinkat(dirfd, base, 0)
	if errors.Is(err, unix.EPERM) && clearFlagsAt(dirfd, base) {
		err = unix.Unlinkat(dirfd, base, 0) // it was immutable (extlinux's ldlinux.sys is)
	}
	switch {
	case err == nil:
		return 1, nil
	case errors.Is(err, unix.ENOENT):
		return 0, nil
	case !errors.Is(err, unix.EISDIR):
		return 0, pathErr("remove "+base, err)
	}
	fd, err := unix.Openat(dirfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, pathErr("open directory "+base, err)
	}
	f := os.NewFile(uintptr(fd), base)
	defer f.Close()
	var st, pst unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, err
	}
	if err := unix.Fstat(dirfd, &pst); err == nil && st.Dev != pst.Dev {
		return 0, fmt.Errorf("remove %s: another file system is mounted there (unmount it)", base)
	}
	clearFlags(fd)
	var n int64
	for {
		names, err := f.Readdirnames(1024)
		for _, c := range names {
			k, err := removeTree(fd, c)
			n += k
			if err != nil {
				return n, fmt.Errorf("in %s: %w", base, err)
			}
		}
		if err == io.EOF || len(names) == 0 {
			break
		}
		if err != nil {
			return n, fmt.Errorf("read directory %s: %w", base, err)
		}
	}
	if err := unix.Unlinkat(dirfd, base, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return n, pathErr("remove directory "+base, err)
	}
	return n + 1, nil
}

// sameData reports whether the file fd holds data at off.
func (w *writer) sameData(fd int, data []byte, off int64) (bool, error) {
	if w.cmp == nil {
		w.cmp = make([]byte, 1<<20)
	}
	for len(data) > 0 {
		b := w.cmp[:min(len(w.cmp), len(data))]
		n, err := unix.Pread(fd, b, off)
		if err != nil {
			return false, fmt.Errorf("read: %w", err)
		}
		if n < len(b) || !bytes.Equal(b, data[:n]) {
			return false, nil
		}
		data, off = data[n:], off+int64(n)
	}
	return true, nil
}

// regular opens base in dirfd, with flags, if it is a regular file that
// no other file of the image has claimed (claim); fd is -1 if it is not.
// It is stat'ed first: a FIFO or a device in the place of a file is never
// opened.
func (w *writer) regular(dirfd int, base, name string, flags int) (fd int, st unix.Stat_t, err error) {
	if err := unix.Fstatat(dirfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return -1, st, nil
		}
		return -1, st, pathErr("stat", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return -1, st, nil
	}
	const open = unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK
	fd, err = unix.Openat(dirfd, base, unix.O_RDONLY|open, 0)
	if err != nil {
		return -1, st, pathErr("open", err)
	}
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || !w.a.claim(st, name) {
		unix.Close(fd)
		return -1, st, err
	}
	// Read-only first: an immutable file opens for writing only once its
	// flags are cleared.
	if clearFlags(fd) || flags != unix.O_RDONLY {
		rw, err := unix.Openat(dirfd, base, flags|open, 0)
		unix.Close(fd)
		if err != nil {
			return -1, st, pathErr("open", err)
		}
		fd = rw
	}
	return fd, st, nil
}

// inodeFlags are the inode flags (chattr) that stop a sync from changing
// or removing a file: no extraction makes them, a sync removes them.
const inodeFlags = 0x10 | 0x20 // FS_IMMUTABLE_FL, FS_APPEND_FL of linux/fs.h

// clearFlags removes inodeFlags from the file fd, if it has them. A file
// system without inode flags has nothing to remove.
func clearFlags(fd int) bool {
	f, err := unix.IoctlGetInt(fd, unix.FS_IOC_GETFLAGS)
	if err != nil || f&inodeFlags == 0 {
		return false
	}
	return unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, f&^inodeFlags) == nil
}

// clearFlagsAt is clearFlags for base in dirfd, a regular file or a
// directory (nothing else is opened).
func clearFlagsAt(dirfd int, base string) bool {
	var st unix.Stat_t
	if unix.Fstatat(dirfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
		return false
	}
	flags := unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		flags |= unix.O_DIRECTORY
	case unix.S_IFREG:
	default:
		return false
	}
	fd, err := unix.Openat(dirfd, base, flags, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return clearFlags(fd)
}

// reclaimPath claims name's inode if it is a regular file (reclaim).
func (a *Applier) reclaimPath(name string) {
	var st unix.Stat_t
	if unix.Lstat(filepath.Join(a.target, filepath.FromSlash(name)), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
		a.claim(st, name)
	}
}

// claim records that the file of the image name uses the target's inode
// of st, and reports whether no other file of the image (other than by
// the image's hard links, which Finish makes) uses it: a student's
// "ln -f a b" of two files of the image must give two files again. Names
// outside the image that share an inode are removed by Finish.
func (a *Applier) claim(st unix.Stat_t, name string) bool {
	if st.Nlink == 1 {
		return true
	}
	got, _ := a.inodes.LoadOrStore([2]uint64{st.Dev, st.Ino}, name)
	return got.(string) == name
}

// syncFile is file for a sync, for a file the entry holds whole: a file
// of the target with this content keeps it (its metadata is set), any
// other is replaced by a new file.
func (w *writer) syncFile(dirfd int, base string, e *entry, data []byte) error {
	fd, st, err := w.regular(dirfd, base, e.hdr.Name, unix.O_RDONLY)
	if err != nil {
		return err
	}
	if fd >= 0 {
		same := st.Size == e.total
		if same && !w.unchangedSince(e, &st) {
			same, err = w.sameData(fd, data, 0)
		}
		if err == nil && same {
			w.a.unchanged.Add(1)
			err = w.a.setMeta(fd, dirfd, base, e, &st)
		}
		unix.Close(fd)
		if err != nil || same {
			return err
		}
	}
	if err := w.replace(dirfd, base); err != nil {
		return err
	}
	fd, err = unix.Openat(dirfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return pathErr("create", err)
	}
	defer unix.Close(fd)
	holes, err := pwriteSparse(fd, data, 0)
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if holes {
		if err := unix.Ftruncate(fd, e.total); err != nil {
			return fmt.Errorf("truncate: %w", err)
		}
	}
	w.a.written.Add(1)
	return w.a.setMeta(fd, dirfd, base, e, nil)
}

// syncPart is file for a sync, for a part of a file that spans chunks:
// the part is written where the file differs from it, into the file the
// other parts share (made anew if the target has something else there);
// Finish sets the metadata and clears what no part covers (clearGaps).
func (w *writer) syncPart(dirfd int, base string, e *entry, data []byte) error {
	mu := w.a.fileLock(e.hdr.Name)
	mu.Lock()
	fd, st, err := w.regular(dirfd, base, e.hdr.Name, unix.O_RDWR)
	fresh := false
	if err == nil && fd < 0 {
		if err = w.replace(dirfd, base); err == nil {
			fd, err = unix.Openat(dirfd, base, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
			fresh = true
			st = unix.Stat_t{}
		}
	}
	mu.Unlock()
	if err != nil {
		return pathErr("create", err)
	}
	defer unix.Close(fd)
	same := false
	if !fresh && st.Size >= e.offset+int64(len(data)) {
		if same = w.unchangedSince(e, &st); !same {
			if same, err = w.sameData(fd, data, e.offset); err != nil {
				return err
			}
		}
	}
	if same {
		w.a.unchanged.Add(1)
	} else {
		if fresh {
			_, err = pwriteSparse(fd, data, e.offset)
		} else {
			err = pwriteAll(fd, data, e.offset)
		}
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		w.a.written.Add(1)
	}
	if st.Size != e.total {
		if err := unix.Ftruncate(fd, e.total); err != nil {
			return fmt.Errorf("truncate: %w", err)
		}
	}
	return nil
}

// clearGaps makes the ranges of a file that no part of the image covers
// (the holes of a sparse file) read as zeros: data the target holds
// there is cut out of the file (a hole punched), or overwritten with
// zeros where the file system cannot punch holes. Only the target's data
// is read (SEEK_DATA), not its holes.
func (w *writer) clearGaps(f *fileWork) error {
	gaps := f.gaps()
	if len(gaps) == 0 {
		return nil
	}
	parent, base := parentBase(f.e.hdr.Name)
	dirfd, err := w.dir(parent)
	if err != nil {
		return err
	}
	fd, err := unix.Openat(dirfd, base, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return pathErr("open", err)
	}
	defer unix.Close(fd)
	zero := make([]byte, 64<<10)
	for _, g := range gaps {
		for at := g[0]; at < g[1]; {
			d, err := unix.Seek(fd, at, unix.SEEK_DATA)
			if errors.Is(err, unix.ENXIO) || (err == nil && d >= g[1]) {
				break // no data up to the gap's end
			}
			if err != nil {
				return fmt.Errorf("seek data: %w", err)
			}
			end, err := unix.Seek(fd, d, unix.SEEK_HOLE)
			if err != nil {
				return fmt.Errorf("seek hole: %w", err)
			}
			end = min(end, g[1])
			var nonzero bool
			for off := d; off < end && !nonzero; off += int64(len(zero)) {
				b := w.cmpBuf()[:min(int64(len(zero)), end-off)]
				n, err := unix.Pread(fd, b, off)
				if err != nil {
					return fmt.Errorf("read: %w", err)
				}
				nonzero = !bytes.Equal(b[:n], zero[:n])
			}
			if nonzero {
				if err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, d, end-d); err != nil {
					for off := d; off < end; off += int64(len(zero)) {
						if err := pwriteAll(fd, zero[:min(int64(len(zero)), end-off)], off); err != nil {
							return fmt.Errorf("write zeros: %w", err)
						}
					}
				}
				w.a.written.Add(1)
			}
			at = end
		}
	}
	return nil
}

func (w *writer) cmpBuf() []byte {
	if w.cmp == nil {
		w.cmp = make([]byte, 1<<20)
	}
	return w.cmp
}

// dropXattrs removes the extended attributes an entry's file has and the
// image does not give it: list and remove are flistxattr/fremovexattr or
// their l* forms.
func (a *Applier) dropXattrs(e *entry, list func([]byte) (int, error), remove func(string) error) error {
	var buf []byte
	n, err := list(nil)
	for err == nil && n > 0 {
		buf = make([]byte, n)
		if n, err = list(buf); errors.Is(err, unix.ERANGE) {
			n, err = list(nil) // grew in between
			continue
		}
		break
	}
	if err != nil {
		return a.xattrErr(fmt.Errorf("list xattrs: %w", err))
	}
	if n == 0 {
		return nil
	}
	want := map[string]bool{}
	e.xattrs(func(name, _ string) error { want[name] = true; return nil })
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" || want[name] {
			continue
		}
		if err := remove(name); err != nil && !errors.Is(err, unix.ENODATA) {
			if err := a.xattrErr(err); err != nil {
				return fmt.Errorf("remove xattr %s: %w", name, err)
			}
		}
	}
	return nil
}

// removeExtra removes from the target everything the image does not hold
// (inImage, every path of the image), but for the kept paths, the
// directories above them, the state directory and lost+found at the top.
func (a *Applier) removeExtra(ctx context.Context, inImage map[string]bool) error {
	state := ""
	if rel, err := filepath.Rel(a.target, a.state); err == nil && !strings.HasPrefix(rel, "..") {
		state = filepath.ToSlash(rel)
	}
	fd, err := unix.Open(a.target, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	return a.removeIn(ctx, fd, ".", inImage, state)
}

// removeIn is removeExtra in directory dir (descriptor fd, closed when it
// returns).
func (a *Applier) removeIn(ctx context.Context, fd int, dir string, inImage map[string]bool, state string) error {
	f := os.NewFile(uintptr(fd), dir)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("chunker: read directory %s: %w", dir, err)
	}
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := name
		if dir != "." {
			p = dir + "/" + name
		}
		if (dir == "." && (name == StateDirName || name == "lost+found")) || p == state || a.kept(p) {
			continue
		}
		if inImage[p] || a.aboveKept(p) {
			var st unix.Stat_t
			if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return fmt.Errorf("chunker: %s: %w", p, err)
			}
			if st.Mode&unix.S_IFMT != unix.S_IFDIR {
				continue
			}
			cfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("chunker: open directory %s: %w", p, err)
			}
			if err := a.removeIn(ctx, cfd, p, inImage, state); err != nil {
				return err
			}
			continue
		}
		n, err := removeTree(fd, name)
		a.removed.Add(n)
		if err != nil {
			return &EntryError{Name: p, Err: fmt.Errorf("remove what the image does not hold: %w", err)}
		}
		a.log.Debug("removed", "path", p, "entries", n)
	}
	return nil
}

// rebuild rebuilds chunk i of a sync into buf from the skeleton the
// installed record keeps for a chunk of the same SHA-256 and the files
// of the target, and reports whether the fragment so rebuilt has the
// manifest's RawBLAKE3 (BLAKE3-256): then it is the chunk's fragment, byte for byte.
// Files are read, never written, reached from the target's top with
// O_NOFOLLOW at every step; only regular files are opened.
// It also returns the regions it read, with their files as they were when
// read: the apply that follows need not read again a file's region that
// was read from that very file and place, unchanged since.
func (a *Applier) rebuild(i int, buf []byte) ([]byte, map[int64]readRef, bool) {
	c := a.m.Chunks[i]
	if c.RawBLAKE3 == "" {
		return nil, nil, false
	}
	sk, err := a.readInstalledSkeleton(c.SHA256, c.RawSize)
	if err != nil {
		return nil, nil, false
	}
	r := diskReader{target: a.target, dirs: map[string]int{}}
	defer r.close()
	out, regions, err := rebuildFragment(sk, c.RawSize, buf, r.read)
	if err != nil || !a.rebuilt(i, out) {
		return nil, nil, false
	}
	return out, regions, true
}

// keyOf is the identity and state of the file st describes.
func keyOf(st *unix.Stat_t) fileKey {
	return fileKey{dev: st.Dev, ino: st.Ino, ctime: st.Ctim.Nano(), size: st.Size}
}

// unchangedSince reports whether the rebuild of this writer's chunk read
// e's data from e's own file at e's own offset, and the file, as st
// describes it, has not changed since (the same inode, size and ctime:
// any write or truncation changes the ctime): then the file holds e's
// data. (The skeleton may send any region to any file: only a region read
// from its entry's own place says something about that place.)
func (w *writer) unchangedSince(e *entry, st *unix.Stat_t) bool {
	r, ok := w.seen[e.pos]
	return ok && r.name == e.hdr.Name && r.off == e.offset && r.n == e.hdr.Size && r.key == keyOf(st)
}

// diskReader reads files of the target for rebuild.
type diskReader struct {
	target string
	dirs   map[string]int // descriptors of the directories opened
}

func (r *diskReader) close() {
	for _, fd := range r.dirs {
		unix.Close(fd)
	}
}

// dir opens directory d of the target, without following a symbolic link.
func (r *diskReader) dir(d string) (int, error) {
	if fd, ok := r.dirs[d]; ok {
		return fd, nil
	}
	var fd int
	var err error
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	if d == "." {
		fd, err = unix.Open(r.target, flags, 0)
	} else {
		var pfd int
		if pfd, err = r.dir(path.Dir(d)); err != nil {
			return -1, err
		}
		fd, err = unix.Openat(pfd, path.Base(d), flags, 0)
	}
	if err != nil {
		return -1, err
	}
	r.dirs[d] = fd
	return fd, nil
}

// read fills p from the regular file name at off, and returns the
// file's key.
func (r *diskReader) read(name string, off int64, p []byte) (fileKey, error) {
	if len(r.dirs) > 64 {
		r.close()
		clear(r.dirs)
	}
	parent, base := parentBase(name)
	dirfd, err := r.dir(parent)
	if err != nil {
		return fileKey{}, err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fileKey{}, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fileKey{}, errSkeleton
	}
	fd, err := unix.Openat(dirfd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fileKey{}, err
	}
	defer unix.Close(fd)
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fileKey{}, errSkeleton
	}
	for len(p) > 0 {
		n, err := unix.Pread(fd, p, off)
		if err != nil {
			return fileKey{}, err
		}
		if n == 0 {
			return fileKey{}, io.ErrUnexpectedEOF
		}
		p, off = p[n:], off+int64(n)
	}
	return keyOf(&st), nil
}
