package clone

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func (s *system) close() { s.root.Close() }

// hookDir is where hook scripts are written in the new system: on the
// tmpfs mounted on its /run, gone with the unmount.
const hookDir = "run/labseed-hooks"

// mountSystem is the mount step: it binds the cloning system's /proc,
// /sys, /dev and /dev/pts into the new system and mounts a tmpfs on its
// /run, for the commands run in its chroot.
func (c *cloner) mountSystem(ctx context.Context) error {
	root, err := os.OpenRoot(c.cfg.Mountpoint)
	if err != nil {
		return err
	}
	c.sys = &system{dir: c.cfg.Mountpoint, root: root}
	for _, b := range []struct{ src, dst string }{
		{"/proc", "proc"}, {"/sys", "sys"}, {"/dev", "dev"}, {"/dev/pts", "dev/pts"},
	} {
		if _, err := os.Stat(b.src); err != nil {
			c.log.Warn("not on this system: not bound into the new one", "dir", b.src)
			continue
		}
		if err := c.mountDir(b.dst); err != nil {
			return err
		}
		if err := c.mounts.bind(b.src, filepath.Join(c.sys.dir, b.dst)); err != nil {
			return err
		}
	}
	if err := c.mountDir("run"); err != nil {
		return err
	}
	if err := c.mounts.mount("tmpfs", filepath.Join(c.sys.dir, "run"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return err
	}
	if err := c.diskByUUID(); err != nil {
		return err
	}
	c.sys.data = c.templateData(c.resolved.String())
	return nil
}

// mountDir makes sure the new system's directory name (relative) is a
// directory to mount on: a symlink there could point out of the new system.
func (c *cloner) mountDir(name string) error {
	fi, err := c.sys.root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return c.sys.root.MkdirAll(name, 0o755)
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("the new system's /%s is not a directory (%s): cannot mount on it", name, fi.Mode().Type())
	}
	return nil
}

// diskByUUID gives the chroot /dev/disk/by-uuid links to the new file
// systems when the cloning system has no udev to make them: grub-mkconfig
// writes root=UUID=... only if the link exists (root=/dev/sda1 otherwise).
// They go on a tmpfs over the chroot's /dev/disk, so the cloning system's
// /dev is left alone but for an empty /dev/disk made (and removed) when it
// has none.
func (c *cloner) diskByUUID() error {
	links := map[string]string{}
	for _, p := range []Partition{c.disk.root.Partition, c.disk.swap.Partition} {
		if p.UUID == "" {
			continue
		}
		if _, err := os.Stat("/dev/disk/by-uuid/" + p.UUID); err != nil {
			links[p.UUID] = "../../" + strings.TrimPrefix(p.Device, "/dev/")
		}
	}
	if len(links) == 0 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(c.sys.dir, "dev")); err != nil {
		return nil
	}
	dir := filepath.Join(c.sys.dir, "dev/disk")
	if _, err := os.Lstat("/dev/disk"); errors.Is(err, fs.ErrNotExist) {
		if err := os.Mkdir("/dev/disk", 0o755); err != nil {
			return err
		}
		c.mounts.made = append(c.mounts.made, "/dev/disk")
	}
	if err := c.mounts.mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755"); err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(dir, "by-uuid"), 0o755); err != nil {
		return err
	}
	for uuid, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, "by-uuid", uuid)); err != nil {
			return err
		}
	}
	return nil
}

// chrootPath is PATH in the new system.
const chrootPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// env is the environment of the commands run in the new system: a clean
// one with the host's identity as LABSEED_ variables (LABSEED_HOSTNAME,
// LABSEED_IP, ..., and LABSEED_X_NAME for each lab variable x_name).
func (c *cloner) env() []string {
	d := c.sys.data
	env := []string{
		"PATH=" + chrootPath, "HOME=/root", "LC_ALL=C", "TERM=dumb", "DEBIAN_FRONTEND=noninteractive",
		"LABSEED_HOSTNAME=" + d.Hostname, "LABSEED_DOMAIN=" + d.Domain, "LABSEED_FQDN=" + d.FQDN,
		"LABSEED_IP=" + d.IP, "LABSEED_PREFIX=" + strconv.Itoa(d.Prefix), "LABSEED_NETMASK=" + d.Netmask,
		"LABSEED_GATEWAY=" + d.Gateway, "LABSEED_DNS=" + strings.Join(d.DNS, " "), "LABSEED_MAC=" + d.MAC,
		"LABSEED_INTERFACE=" + d.Interface, "LABSEED_NETWORK=" + d.Network,
		"LABSEED_PRINTER_QUEUE=" + d.PrinterQueue, "LABSEED_PRINTER_SERVER=" + d.PrinterServer,
		"LABSEED_DISPLAY=" + d.Display, "LABSEED_IMAGE=" + d.Image, "LABSEED_DISK=" + d.Disk,
		"LABSEED_ROOT=" + d.Root.Device, "LABSEED_ROOT_UUID=" + d.Root.UUID,
		"LABSEED_SWAP=" + d.Swap.Device, "LABSEED_SWAP_UUID=" + d.Swap.UUID, "LABSEED_SERVER=" + d.Server,
	}
	for k, v := range d.Vars {
		if varName.MatchString(k) {
			env = append(env, "LABSEED_"+strings.ToUpper(k)+"="+v)
		}
	}
	return env
}

var varName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// chroot runs argv in the new system's chroot (argv[0] is a path in it),
// logging its output line by line; the error names what ran and ends with
// the last lines of its output. The command's whole process group is
// killed when ctx is cancelled.
func (c *cloner) chroot(ctx context.Context, what string, argv ...string) error {
	out := &lineLog{log: c.log, what: what}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Path = argv[0] // resolved in the chroot, not here
	cmd.Env = c.env()
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: c.sys.dir, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	c.log.Info("running in the new system", "cmd", what, "argv", argv)
	err := cmd.Run()
	out.flush()
	if err != nil {
		return fmt.Errorf("%s: %w%s", what, err, lines(out.tail()))
	}
	return nil
}

// lineLog logs a command's output line by line and keeps the last lines.
type lineLog struct {
	log  *slog.Logger
	what string
	mu   sync.Mutex
	part []byte
	last [][]byte
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.part = append(l.part, p...)
	for {
		i := bytes.IndexByte(l.part, '\n')
		if i < 0 {
			break
		}
		l.line(l.part[:i])
		l.part = l.part[i+1:]
	}
	return len(p), nil
}

func (l *lineLog) line(b []byte) {
	b = bytes.TrimRight(b, "\r")
	l.log.Info("output", "cmd", l.what, "line", string(b))
	l.last = append(l.last, bytes.Clone(b))
	if len(l.last) > 8 {
		l.last = l.last[1:]
	}
}

func (l *lineLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.part) > 0 {
		l.line(l.part)
		l.part = nil
	}
}

func (l *lineLog) tail() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Join(l.last, []byte("\n"))
}

// hookName is what a hook's name may be: it becomes a file name.
var hookName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

// runHooks is the hooks step: the lab's hook scripts, in order, each in the
// new system's chroot with the LABSEED_ variables; the first that fails
// fails the step. A script starting with "#!" runs with its interpreter
// (from the new system), any other with /bin/sh.
func (c *cloner) runHooks(ctx context.Context) error {
	if len(c.id.Hooks) == 0 {
		return nil
	}
	if err := c.sys.root.MkdirAll(hookDir, 0o700); err != nil {
		return err
	}
	for _, h := range c.id.Hooks {
		if !hookName.MatchString(h.Name) || strings.HasPrefix(h.Name, ".") {
			return fmt.Errorf("hook %q: use letters, digits, '.', '_' and '-' in hook names", h.Name)
		}
		p := path.Join(hookDir, h.Name)
		if err := c.sys.root.WriteFile(p, []byte(h.Script), 0o700); err != nil {
			return fmt.Errorf("hook %s: %w", h.Name, err)
		}
		argv := []string{"/bin/sh", "/" + p}
		if strings.HasPrefix(h.Script, "#!") {
			argv = []string{"/" + p}
		}
		c.say("hook %s", h.Name)
		if err := c.chroot(ctx, "hook "+h.Name, argv...); err != nil {
			return err
		}
	}
	return nil
}
