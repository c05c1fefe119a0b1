package clone

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// mounts is the stack of what a clone mounted, unmounted in reverse order.
// It is used from one goroutine.

// mount mounts source on target and makes the mount private, so that what
// is mounted below it (and its unmount) does not propagate to the mounts
// it shares a peer group with, such as the system's own /dev.
func (m *mounts) mount(source, target, fstype string, flags uintptr, data string) error {
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", source, target, err)
	}
	m.stack = append(m.stack, target)
	if err := unix.Mount("", target, "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make the mount on %s private: %w", target, err)
	}
	m.log.Debug("mounted", "source", source, "target", target, "fstype", fstype)
	return nil
}

// bind bind-mounts source on target (not recursively).
func (m *mounts) bind(source, target string) error {
	return m.mount(source, target, "", unix.MS_BIND, "")
}

// unmountTop unmounts the last mount.
func (m *mounts) unmountTop() error {
	if len(m.stack) == 0 {
		return nil
	}
	top := m.stack[len(m.stack)-1]
	m.stack = m.stack[:len(m.stack)-1]
	return unmount(top, m.log)
}

// unmountAll unmounts everything in reverse order, each lazily if it stays
// busy, and removes the directories it made. It goes on after errors and
// returns them all.
func (m *mounts) unmountAll() error {
	var errs []error
	for len(m.stack) > 0 {
		if err := m.unmountTop(); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(m.made) - 1; i >= 0; i-- {
		if err := os.Remove(m.made[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	m.made = nil
	return errors.Join(errs...)
}

// unmountUnder unmounts whatever is mounted at dir or below, deepest (last
// mounted) first: what a clone that was killed left behind.
func (m *mounts) unmountUnder(dir string) error {
	points, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	slices.Reverse(points)
	var errs []error
	for _, p := range points {
		m.log.Warn("unmounting what an earlier clone left mounted", "mountpoint", p)
		if err := unmount(p, m.log); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// unmount unmounts target, retrying for a few seconds while it is busy
// (a process of the chroot still exiting), then detaching it lazily: the
// kernel finishes the unmount when the last user goes, and the mount point
// is free at once.
func unmount(target string, log *slog.Logger) error {
	var err error
	for try := 0; try < 20; try++ {
		err = unix.Unmount(target, 0)
		if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			// EINVAL: not a mount point (any more).
			log.Debug("unmounted", "target", target)
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		if try == 0 {
			unix.Sync()
		}
		time.Sleep(100 * time.Millisecond)
	}
	log.Warn("busy: detaching lazily", "target", target, "err", err)
	if derr := unix.Unmount(target, unix.MNT_DETACH); derr != nil && !errors.Is(derr, unix.EINVAL) {
		return fmt.Errorf("unmount %s: %w (lazily: %v)", target, err, derr)
	}
	return nil
}

// rebootNow syncs the disks and restarts the machine.
func rebootNow() error {
	unix.Sync()
	return unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
}
