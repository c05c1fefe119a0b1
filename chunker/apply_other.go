//go:build !linux

package chunker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
)

// errNoSpace is the error a full file system returns.
var errNoSpace error = syscall.ENOSPC

// ErrUnsupportedOS is returned by NewApplier on systems other than Linux:
// extraction needs Linux's openat, mknodat and extended attributes.
var ErrUnsupportedOS = errors.New("chunker: extraction works on Linux only (it needs openat, mknodat and Linux extended attributes)")

// checkOS refuses to extract on a system other than Linux.
func checkOS() error { return fmt.Errorf("%w; this is %s", ErrUnsupportedOS, runtime.GOOS) }

// syncFS syncs f; NewApplier refuses before it is called.
func syncFS(f *os.File) error { return f.Sync() }

// writer is not implemented off Linux; NewApplier refuses before one is made.
type writer struct{ seen map[int64]readRef }

func (a *Applier) newWriter() *writer                                    { return &writer{} }
func (w *writer) close()                                                 {}
func (w *writer) apply(*entry, []byte) (bool, error)                     { return false, checkOS() }
func (w *writer) fileMeta(*entry) error                                  { return checkOS() }
func (w *writer) link(*entry) error                                      { return checkOS() }
func (w *writer) dirMeta(*entry) error                                   { return checkOS() }
func (a *Applier) rootMeta() error                                       { return checkOS() }
func (w *writer) clearGaps(*fileWork) error                              { return checkOS() }
func (a *Applier) removeExtra(context.Context, map[string]bool) error    { return checkOS() }
func (a *Applier) reclaimPath(string)                                    {}
func (a *Applier) rebuild(int, []byte) ([]byte, map[int64]readRef, bool) { return nil, nil, false }
