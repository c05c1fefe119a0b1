// Package atomicfile replaces files so that a crash or a full disk leaves
// either the old file or the new one, never a part of it: the hosts table,
// the lease file, the store's keys and manifests.
package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// Write replaces name with data, with permissions perm.
func Write(name string, data []byte, perm os.FileMode) error {
	return WriteFunc(name, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteFunc replaces name with what write writes, with permissions perm:
// a temporary file in the same directory is written, synced and renamed
// over name, then the directory is synced. If write or any step fails,
// name is left as it was and the temporary file is removed.
func WriteFunc(name string, perm os.FileMode, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // fails harmlessly once renamed
	err = write(f)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), name)
	}
	if err != nil {
		return err
	}
	if err := SyncDir(filepath.Dir(name)); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err // EINVAL: a file system that cannot sync directories
	}
	return nil
}

// SyncDir fsyncs the directory dir, which makes the creations, renames and
// removals of names in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
