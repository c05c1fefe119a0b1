// Package atomicfile replaces files so that a crash or a full disk leaves
// either the old file or the new one, never a part of it: the hosts table,
// the lease file, the store's keys and manifests.
package atomicfile

import (
	"io"
	"os"
	"path/filepath"
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
	if d, err := os.Open(filepath.Dir(name)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
