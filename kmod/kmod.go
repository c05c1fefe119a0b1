// Package kmod reads a kernel's module tables (modules.dep, modules.alias)
// and loads modules with their dependencies: what modprobe does, for the
// clone environment, which has no kmod tools. The netboot builder uses the
// tables to pick the modules it puts into the initrd; the clone
// environment's init uses them to load the modules its devices need.
package kmod

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
)

// Name returns the module name of a module file path or of a name as
// modprobe takes it: the base name without ".ko" (and a compression
// suffix), dashes as underscores (the kernel treats them alike).
func Name(p string) string {
	b := path.Base(p)
	for _, s := range []string{".xz", ".zst", ".gz"} {
		b = strings.TrimSuffix(b, s)
	}
	b = strings.TrimSuffix(b, ".ko")
	return strings.ReplaceAll(b, "-", "_")
}

// Table is a kernel's module tables: every module's file and
// dependencies (modules.dep) and the aliases that map device modaliases
// and request_module names to modules (modules.alias).
type Table struct {
	// Path maps a module name to its file, relative to /lib/modules/VERSION.
	Path map[string]string
	// Deps maps a module name to the names of the modules it needs.
	Deps map[string][]string
	// Aliases are the alias patterns in file order.
	Aliases []Alias
}

// Alias is one line of modules.alias: a glob pattern (fnmatch, as
// modprobe matches) and the module it names.
type Alias struct {
	Pattern, Module string
}

// ParseDep reads modules.dep: "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko ..."
// per line.
func ParseDep(r io.Reader) (*Table, error) {
	t := &Table{Path: map[string]string{}, Deps: map[string][]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		file, deps, ok := strings.Cut(line, ":")
		if !ok || file == "" {
			return nil, fmt.Errorf("kmod: modules.dep line %d: no \"file:\" in %q", n, line)
		}
		name := Name(file)
		t.Path[name] = file
		var ds []string
		for _, d := range strings.Fields(deps) {
			ds = append(ds, Name(d))
		}
		t.Deps[name] = ds
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("kmod: modules.dep: %w", err)
	}
	return t, nil
}

// ParseAlias reads modules.alias ("alias PATTERN MODULE" lines) into t.
func (t *Table) ParseAlias(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) != 3 || f[0] != "alias" {
			return fmt.Errorf("kmod: modules.alias line %d: want \"alias PATTERN MODULE\", got %q", n, sc.Text())
		}
		t.Aliases = append(t.Aliases, Alias{Pattern: f[1], Module: Name(f[2])})
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("kmod: modules.alias: %w", err)
	}
	return nil
}

// Closure returns the modules names need, dependencies first (an order in
// which they can be loaded), each once. Names the table does not know are
// returned in missing.
func (t *Table) Closure(names ...string) (order, missing []string) {
	seen := map[string]bool{}
	var visit func(string, int)
	visit = func(n string, depth int) {
		if seen[n] || depth > 64 {
			return
		}
		seen[n] = true
		for _, d := range t.Deps[n] {
			visit(d, depth+1)
		}
		order = append(order, n)
	}
	for _, n := range names {
		n = Name(n)
		if _, ok := t.Path[n]; !ok {
			if !slices.Contains(missing, n) {
				missing = append(missing, n)
			}
			continue
		}
		visit(n, 0)
	}
	return order, missing
}

// Match returns the modules whose aliases match s (a device's modalias,
// or a name the kernel asks modprobe for, like "fs-ext4" or
// "crypto-crc32c"), each once, in the alias file's order. A module name
// matches itself.
func (t *Table) Match(s string) []string {
	var out []string
	if _, ok := t.Path[Name(s)]; ok && !strings.ContainsAny(s, ":*") {
		out = append(out, Name(s))
	}
	for _, a := range t.Aliases {
		if slices.Contains(out, a.Module) {
			continue
		}
		if ok, err := path.Match(a.Pattern, s); err == nil && ok {
			out = append(out, a.Module)
		}
	}
	return out
}

// Subset returns the table restricted to the named modules (whose
// dependencies must be among them): what an initrd holding only those
// modules should ship.
func (t *Table) Subset(names []string) *Table {
	s := &Table{Path: map[string]string{}, Deps: map[string][]string{}}
	keep := map[string]bool{}
	for _, n := range names {
		if p, ok := t.Path[n]; ok {
			keep[n] = true
			s.Path[n] = p
			s.Deps[n] = t.Deps[n]
		}
	}
	for _, a := range t.Aliases {
		if keep[a.Module] {
			s.Aliases = append(s.Aliases, a)
		}
	}
	return s
}

// WriteDep writes the table as modules.dep, sorted by file.
func (t *Table) WriteDep(w io.Writer) error {
	names := make([]string, 0, len(t.Path))
	for n := range t.Path {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int { return strings.Compare(t.Path[a], t.Path[b]) })
	bw := bufio.NewWriter(w)
	for _, n := range names {
		fmt.Fprintf(bw, "%s:", t.Path[n])
		for _, d := range t.Deps[n] {
			fmt.Fprintf(bw, " %s", t.Path[d])
		}
		bw.WriteString("\n")
	}
	return bw.Flush()
}

// WriteAlias writes the table's aliases as modules.alias.
func (t *Table) WriteAlias(w io.Writer) error {
	bw := bufio.NewWriter(w)
	for _, a := range t.Aliases {
		fmt.Fprintf(bw, "alias %s %s\n", a.Pattern, a.Module)
	}
	return bw.Flush()
}
