//go:build !linux

package netinit

import (
	"context"
	"errors"
	"io"
	"os"
	"time"
)

var errLinux = errors.New("netinit: the clone environment runs on Linux only")

func banner() string              { return "" }
func consoles() io.Writer         { return os.Stdout }
func shell(context.Context) error { return errLinux }

func setup(context.Context, Options, func(string, ...any)) error { return errLinux }

func waitConsole(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	return false
}

// Modprobe loads kernel modules; Linux only.
func Modprobe([]string) error { return errLinux }
