package kmod

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// moduleInitCompressedFile is finit_module's flag for a compressed module
// file (.ko.xz, .ko.zst), which the kernel decompresses itself.
const moduleInitCompressedFile = 4

// Loader loads the modules of one kernel with finit_module(2).
type Loader struct {
	// Dir is the kernel's module directory, /lib/modules/VERSION.
	Dir string
	// Table is its module table.
	Table *Table
	// Log receives a line per module loaded or failed; nil discards.
	Log *slog.Logger

	tried map[string]error
}

// Open reads the module tables of dir (/lib/modules/VERSION).
func Open(dir string) (*Loader, error) {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("kmod: %w", err)
	}
	defer f.Close()
	t, err := ParseDep(f)
	if err != nil {
		return nil, err
	}
	a, err := os.Open(filepath.Join(dir, "modules.alias"))
	if err == nil {
		defer a.Close()
		if err := t.ParseAlias(a); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("kmod: %w", err)
	}
	return &Loader{Dir: dir, Table: t}, nil
}

func (l *Loader) log() *slog.Logger {
	if l.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l.Log
}

// Loaded reports whether the kernel has module name (loaded or built in
// with a /sys/module entry).
func Loaded(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/module", Name(name)))
	return err == nil
}

// Load loads the named modules and their dependencies. A module that
// fails (no such hardware, a CPU without the feature) does not stop the
// others; the errors are joined. Modules already loaded are skipped.
func (l *Loader) Load(names ...string) (loaded []string, err error) {
	if l.tried == nil {
		l.tried = map[string]error{}
	}
	order, _ := l.Table.Closure(names...)
	var errs []error
	for _, n := range order {
		if e, ok := l.tried[n]; ok {
			if e != nil && slices.Contains(names, n) {
				errs = append(errs, e)
			}
			continue
		}
		if Loaded(n) {
			l.tried[n] = nil
			continue
		}
		e := l.insert(n)
		l.tried[n] = e
		if e != nil {
			l.log().Debug("module not loaded", "module", n, "err", e)
			errs = append(errs, e)
			continue
		}
		l.log().Debug("module loaded", "module", n)
		loaded = append(loaded, n)
	}
	return loaded, errors.Join(errs...)
}

func (l *Loader) insert(name string) error {
	p := filepath.Join(l.Dir, l.Table.Path[name])
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("module %s: %w", name, err)
	}
	defer f.Close()
	flags := 0
	if !strings.HasSuffix(p, ".ko") {
		flags = moduleInitCompressedFile
	}
	for {
		err = unix.FinitModule(int(f.Fd()), "", flags)
		if !errors.Is(err, unix.EINTR) && !errors.Is(err, unix.EAGAIN) {
			break
		}
	}
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("module %s: %w", name, err)
	}
	return nil
}

// Probe loads the modules that match s, as "modprobe -q -- s" does when
// the kernel asks for one (s a module name or an alias such as
// "fs-ext4", "crypto-crc32c" or "net-pf-17").
func (l *Loader) Probe(s string) ([]string, error) {
	ms := l.Table.Match(s)
	if len(ms) == 0 {
		return nil, fmt.Errorf("kmod: no module for %q", s)
	}
	loaded, err := l.Load(ms...)
	if len(loaded) > 0 || Loaded(ms[0]) {
		return loaded, nil // one of several candidates is enough
	}
	return loaded, err
}

// Modaliases returns the modalias of every device the kernel lists under
// sysfs (/sys/bus/*/devices/*/modalias), each once.
func Modaliases(sysfs string) []string {
	files, _ := filepath.Glob(filepath.Join(sysfs, "bus", "*", "devices", "*", "modalias"))
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, s := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if s != "" && !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// Coldplug loads the modules of every device present, and again for the
// devices those modules make appear (a disk controller's disks, virtio
// devices, the keyboard behind a USB controller), until three rounds in a
// row (about a second) load nothing new, or ctx ends. It returns the
// modules it loaded.
func (l *Loader) Coldplug(ctx context.Context) []string {
	var all []string
	done := map[string]bool{}
	quiet := 0
	for round := 0; round < 40 && quiet < 3; round++ {
		var want []string
		for _, alias := range Modaliases("/sys") {
			if done[alias] {
				continue
			}
			done[alias] = true
			for _, m := range l.Table.Match(alias) {
				if !slices.Contains(want, m) {
					want = append(want, m)
				}
			}
		}
		loaded, _ := l.Load(want...)
		all = append(all, loaded...)
		if quiet++; len(loaded) > 0 {
			quiet = 0
		}
		select {
		case <-ctx.Done():
			return all
		case <-time.After(300 * time.Millisecond): // let the new drivers probe
		}
	}
	return all
}
