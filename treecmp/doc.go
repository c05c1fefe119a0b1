// Package treecmp compares two directory trees, typically two root
// filesystems, entry by entry, for exactness tests: an image extracted by
// labseed must be indistinguishable from the tree it was made from.
//
// Scan records one Entry per path: type, permission and setuid/setgid/sticky
// bits, numeric owner, size, nanosecond mtime, SHA-256 of regular files,
// symlink targets, device numbers, extended attributes of every namespace and
// hard-link identity. Symlinks are never followed. Compare scans two trees and
// reports every difference as a human-readable line, sorted by path, so a test
// can print them as they are:
//
//	diffs, err := treecmp.Compare(want, got, treecmp.Options{Ignore: []string{".labseed"}})
//	if err != nil {
//		t.Fatal(err)
//	}
//	for _, d := range diffs {
//		t.Error(d) // e.g. "usr/bin/su: mode 0755 != 04755"
//	}
//
// What is not compared: atime and ctime, inode numbers, the size of
// directories (it depends on the filesystem) and the allocation of sparse
// files (only their apparent size and contents).
package treecmp
