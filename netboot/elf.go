package netboot

import (
	"bufio"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// defaultLibDirs are the directories the dynamic loader searches after
// the RUNPATH and ld.so.conf (glibc's trusted directories on Debian).
var defaultLibDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
	"/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
	"/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// libResolver finds the shared libraries ELF programs need, in a tree
// (root "/" for the running system).
type libResolver struct {
	root string
	dirs []string // ld.so.conf's, then the defaults
}

func newLibResolver(root string) *libResolver {
	r := &libResolver{root: root}
	r.dirs = append(r.ldSoConf("/etc/ld.so.conf", 0), defaultLibDirs...)
	return r
}

// host returns the path of p (absolute in the tree) on this machine.
func (r *libResolver) host(p string) string { return filepath.Join(r.root, p) }

// ldSoConf reads the directories of an ld.so.conf file and its includes.
func (r *libResolver) ldSoConf(name string, depth int) []string {
	f, err := os.Open(r.host(name))
	if err != nil || depth > 4 {
		return nil
	}
	defer f.Close()
	var dirs []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		line = strings.TrimSpace(line)
		if inc, ok := strings.CutPrefix(line, "include "); ok {
			pattern := strings.TrimSpace(inc)
			if !path.IsAbs(pattern) {
				pattern = path.Join(path.Dir(name), pattern)
			}
			matches, _ := filepath.Glob(r.host(pattern))
			slices.Sort(matches)
			for _, m := range matches {
				rel, _ := filepath.Rel(r.root, m)
				dirs = append(dirs, r.ldSoConf("/"+filepath.ToSlash(rel), depth+1)...)
			}
			continue
		}
		if path.IsAbs(line) {
			dirs = append(dirs, path.Clean(line))
		}
	}
	return dirs
}

// resolve returns the interpreter and every shared library the programs
// (absolute paths in the tree) need, directly or through each other, as
// the paths the loader finds them at. Statically linked programs need
// nothing. A library found nowhere is an error naming it and who needs it.
func (r *libResolver) resolve(progs ...string) ([]string, error) {
	var out, interps []string
	seen := map[string]bool{}
	queue := slices.Clone(progs)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		f, err := elf.Open(r.host(p))
		if err != nil {
			return nil, fmt.Errorf("netboot: %s: %w", p, err)
		}
		needed, interp, runpath, err := dynInfo(f)
		class, machine := f.Class, f.Machine
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("netboot: %s: %w", p, err)
		}
		if interp != "" && !seen[interp] {
			if _, err := os.Stat(r.host(interp)); err != nil {
				return nil, fmt.Errorf("netboot: %s needs the interpreter %s: %w", p, interp, err)
			}
			seen[interp] = true
			out = append(out, interp)
			interps = append(interps, interp)
		}
		dirs := slices.Clone(runpath)
		for i, d := range dirs {
			dirs[i] = strings.ReplaceAll(strings.ReplaceAll(d, "${ORIGIN}", path.Dir(p)), "$ORIGIN", path.Dir(p))
		}
		dirs = append(dirs, r.dirs...)
		for _, lib := range needed {
			if slices.ContainsFunc(interps, func(o string) bool { return path.Base(o) == lib }) {
				continue // the interpreter, already loaded under its soname
			}
			found := ""
			if strings.Contains(lib, "/") {
				found = lib
			} else {
				for _, d := range dirs {
					if r.compatible(path.Join(d, lib), class, machine) {
						found = path.Join(d, lib)
						break
					}
				}
			}
			if found == "" {
				return nil, fmt.Errorf("netboot: %s needs %s, found in none of %s", p, lib, strings.Join(dirs, " "))
			}
			if !seen[found] {
				seen[found] = true
				out = append(out, found)
				queue = append(queue, found)
			}
		}
	}
	return out, nil
}

// compatible reports whether p is an ELF library the program of that
// class and machine can load.
func (r *libResolver) compatible(p string, class elf.Class, machine elf.Machine) bool {
	f, err := elf.Open(r.host(p))
	if err != nil {
		return false
	}
	defer f.Close()
	return f.Class == class && f.Machine == machine
}

// dynInfo returns an ELF file's DT_NEEDED libraries, its interpreter
// (PT_INTERP) and its DT_RUNPATH (or DT_RPATH) directories.
func dynInfo(f *elf.File) (needed []string, interp string, runpath []string, err error) {
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return nil, "", nil, fmt.Errorf("PT_INTERP: %w", err)
			}
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	if f.Section(".dynamic") == nil && f.SectionByType(elf.SHT_DYNAMIC) == nil {
		return nil, interp, nil, nil // static
	}
	needed, err = f.ImportedLibraries()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return nil, "", nil, err
	}
	for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
		if vs, _ := f.DynString(tag); len(vs) > 0 {
			for _, v := range vs {
				runpath = append(runpath, filepath.SplitList(v)...)
			}
			break
		}
	}
	return needed, interp, runpath, nil
}
