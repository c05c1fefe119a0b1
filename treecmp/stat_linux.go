//go:build linux

package treecmp

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// lstatEntry describes the file at full without following a symlink. It
// returns the entry (without Path and LinkGroup), its inode identity and its
// link count.
func lstatEntry(full string) (Entry, fileID, uint64, error) {
	var st unix.Stat_t
	if err := unix.Lstat(full, &st); err != nil {
		return Entry{}, fileID{}, 0, fmt.Errorf("lstat %q: %w", full, err)
	}
	e := Entry{
		Mode:    os.FileMode(st.Mode & 0o777),
		UID:     st.Uid,
		GID:     st.Gid,
		Size:    st.Size,
		MtimeNs: st.Mtim.Nano(),
	}
	if st.Mode&unix.S_ISUID != 0 {
		e.Mode |= os.ModeSetuid
	}
	if st.Mode&unix.S_ISGID != 0 {
		e.Mode |= os.ModeSetgid
	}
	if st.Mode&unix.S_ISVTX != 0 {
		e.Mode |= os.ModeSticky
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		e.Type = TypeFile
		sum, err := hashFile(full)
		if err != nil {
			return Entry{}, fileID{}, 0, err
		}
		e.SHA256 = sum
	case unix.S_IFDIR:
		e.Type = TypeDir
	case unix.S_IFLNK:
		e.Type = TypeSymlink
		target, err := os.Readlink(full)
		if err != nil {
			return Entry{}, fileID{}, 0, err
		}
		e.Link = target
	case unix.S_IFCHR:
		e.Type, e.Rdev = TypeChar, st.Rdev
	case unix.S_IFBLK:
		e.Type, e.Rdev = TypeBlock, st.Rdev
	case unix.S_IFIFO:
		e.Type = TypeFIFO
	case unix.S_IFSOCK:
		e.Type = TypeSocket
	default:
		return Entry{}, fileID{}, 0, fmt.Errorf("%q: unknown file type %#o", full, st.Mode&unix.S_IFMT)
	}
	x, err := readXattrs(full)
	if err != nil {
		return Entry{}, fileID{}, 0, err
	}
	e.Xattrs = x
	return e, fileID{dev: st.Dev, ino: st.Ino}, uint64(st.Nlink), nil
}

// hashFile returns the hex SHA-256 of the regular file at full.
func hashFile(full string) (string, error) {
	f, err := os.OpenFile(full, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %q: %w", full, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// readXattrs returns every extended attribute of full (not following a
// symlink), nil when there is none or the filesystem has no xattr support.
func readXattrs(full string) (map[string]string, error) {
	list, err := xattrCall(func(b []byte) (int, error) { return unix.Llistxattr(full, b) })
	if errors.Is(err, unix.ENOTSUP) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("llistxattr %q: %w", full, err)
	}
	var m map[string]string
	for name := range strings.SplitSeq(string(list), "\x00") {
		if name == "" {
			continue
		}
		v, err := xattrCall(func(b []byte) (int, error) { return unix.Lgetxattr(full, name, b) })
		if errors.Is(err, unix.ENODATA) {
			continue // removed since it was listed
		}
		if err != nil {
			return nil, fmt.Errorf("lgetxattr %q %s: %w", full, name, err)
		}
		if m == nil {
			m = make(map[string]string)
		}
		m[name] = string(v)
	}
	return m, nil
}

// xattrCall runs an llistxattr or lgetxattr style call, growing the buffer
// while the value grows under it (ERANGE).
func xattrCall(call func([]byte) (int, error)) ([]byte, error) {
	for range 8 {
		n, err := call(nil)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, nil
		}
		buf := make([]byte, n)
		n, err = call(buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
	return nil, unix.ERANGE
}
