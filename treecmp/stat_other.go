//go:build !linux

package treecmp

import (
	"errors"
	"fmt"
)

// errUnsupported is returned by Scan on platforms other than Linux.
var errUnsupported = errors.New("treecmp: only supported on Linux")

// lstatEntry is not implemented outside Linux.
func lstatEntry(full string) (Entry, fileID, uint64, error) {
	return Entry{}, fileID{}, 0, fmt.Errorf("%q: %w", full, errUnsupported)
}
