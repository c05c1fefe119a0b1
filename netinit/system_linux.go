package netinit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/labseed/labseed/kmod"
	"golang.org/x/sys/unix"
)

// infoFile is what "labseed netboot build" says about the initrd
// (netboot.InfoFile).
const infoFile = "/etc/labseed/netboot"

// pathEnv is the PATH of the clone environment and of its shell.
const pathEnv = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"

// mountEarly mounts /proc, /sys, /dev (devtmpfs), /dev/pts and /run when
// this process is PID 1 of the initrd; elsewhere (a rescue system where
// someone runs "labseed netboot init" by hand) they are there already.
func mountEarly() error {
	if os.Getpid() != 1 {
		return nil
	}
	os.Setenv("PATH", strings.TrimPrefix(pathEnv, "PATH="))
	var errs []error
	for _, m := range []struct{ src, dir, typ string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"devpts", "/dev/pts", "devpts"},
		{"tmpfs", "/run", "tmpfs"},
	} {
		os.MkdirAll(m.dir, 0o755)
		err := unix.Mount(m.src, m.dir, m.typ, unix.MS_NOSUID, "")
		if err != nil && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, fmt.Errorf("mount %s on %s: %w", m.typ, m.dir, err))
		}
	}
	return errors.Join(errs...)
}

// release is the running kernel's release (uname -r).
func release() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// banner says which kernel and build this is.
func banner() string {
	built := ""
	if b, err := os.ReadFile(infoFile); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "built="); ok {
				built = ", built " + v
			}
		}
	}
	return fmt.Sprintf("(kernel %s%s)", release(), built)
}

// setup is the default Config.Setup: quiet kernel messages, the modules
// of the machine's devices, the network.
func setup(ctx context.Context, o Options, say func(string, ...any)) error {
	if os.Getpid() == 1 && !o.Verbose {
		// Driver messages would cut through the progress lines.
		os.WriteFile("/proc/sys/kernel/printk", []byte("4"), 0o644)
	}
	if err := loadModules(ctx, say); err != nil {
		return err
	}
	return network(ctx, o, say)
}

// loadModules loads the modules of every device present, then those the
// clone needs whatever the hardware (file systems and their checksums).
func loadModules(ctx context.Context, say func(string, ...any)) error {
	dir := filepath.Join("/lib/modules", release())
	l, err := kmod.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil // a kernel with everything built in, or not the initrd
	}
	if err != nil {
		return err
	}
	start := time.Now()
	loaded := l.Coldplug(ctx)
	more, _ := l.Load("af_packet", "crc32c_generic", "crc32c_intel", "ext4")
	loaded = append(loaded, more...)
	if len(loaded) > 0 {
		say("loaded %d kernel modules in %.1f s: %s", len(loaded), time.Since(start).Seconds(), strings.Join(loaded, " "))
	}
	return nil
}

// Modprobe is what the kernel runs as /sbin/modprobe in the clone
// environment ("modprobe -q -- NAME" for a file system, a crypto
// algorithm, a protocol): it loads the modules matching each name from
// the initrd's module tables.
func Modprobe(args []string) error {
	l, err := kmod.Open(filepath.Join("/lib/modules", release()))
	if err != nil {
		return err
	}
	var errs []error
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			continue // -q, --, -b...
		}
		if _, err := l.Probe(a); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// consoles returns a writer to every console the kernel writes to
// (console= of the command line: the screen and the serial port alike);
// standard output if none opens.
func consoles() io.Writer {
	mountEarly()
	var ws multiWriter
	if b, err := os.ReadFile("/sys/class/tty/console/active"); err == nil {
		for _, name := range strings.Fields(string(b)) {
			if f, err := os.OpenFile("/dev/"+name, os.O_WRONLY|unix.O_NOCTTY, 0); err == nil {
				ws = append(ws, f)
			}
		}
	}
	if len(ws) == 0 {
		return os.Stdout
	}
	return ws
}

// multiWriter writes to each writer, whatever the others do.
type multiWriter []io.Writer

func (m multiWriter) Write(p []byte) (int, error) {
	for _, w := range m {
		w.Write(p)
	}
	return len(p), nil
}

// shell runs the initrd's shell on /dev/console until it exits.
func shell(ctx context.Context) error {
	sh, err := exec.LookPath("sh")
	if err != nil {
		return errors.New("the clone environment has no shell (install busybox on the print server and run labseed netboot build again)")
	}
	tty, err := os.OpenFile("/dev/console", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer tty.Close()
	cmd := exec.CommandContext(ctx, sh)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.Env = []string{pathEnv, "HOME=/root", "TERM=linux", "PS1=labseed-clone# "}
	cmd.Dir = "/root"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	return cmd.Run()
}

// waitConsole waits d, or until a line is typed on the console (true:
// the person there wants a shell).
func waitConsole(ctx context.Context, d time.Duration) bool {
	f, err := os.OpenFile("/dev/console", os.O_RDONLY|unix.O_NOCTTY, 0)
	if err != nil {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		return false
	}
	defer f.Close()
	unix.IoctlSetInt(int(f.Fd()), unix.TCFLSH, unix.TCIFLUSH) // what was typed before does not count
	deadline := time.Now().Add(d)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		fds := []unix.PollFd{{Fd: int32(f.Fd()), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 500)
		if err != nil && !errors.Is(err, unix.EINTR) {
			time.Sleep(500 * time.Millisecond)
			continue
		}
		if n > 0 && fds[0].Revents&unix.POLLIN != 0 {
			bufio.NewReader(f).ReadString('\n')
			return true
		}
	}
	return false
}
