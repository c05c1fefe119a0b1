//go:build !linux

package clone

import (
	"context"
	"errors"
)

// errNotLinux is what every step that touches disks, mounts or chroots
// says off Linux: the clone environment is Linux, but the labseed binary
// that a sysadmin runs on a laptop (hosts, status, deploy) builds anywhere.
var errNotLinux = errors.New("clone: re-imaging a disk needs Linux")

func (c *cloner) prepareDisk(context.Context) error { return errNotLinux }
func (c *cloner) mountRoot() error                  { return errNotLinux }
func (c *cloner) mountSystem(context.Context) error { return errNotLinux }
func (c *cloner) runHooks(context.Context) error    { return errNotLinux }
func (c *cloner) chroot(context.Context, string, ...string) error {
	return errNotLinux
}
func (s *system) close()                              {}
func (m *mounts) unmountAll() error                   { return nil }
func rebootNow() error                                { return errNotLinux }
func blockDevNum(string) (maj, min uint32, err error) { return 0, 0, errNotLinux }
func claimed(string) bool                             { return false }
func autoDisk() (string, error)                       { return "", errNotLinux }
