package hosts

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labseed/labseed/internal/atomicfile"
)

// The files of a lab's configuration, in its directory (the store).
const (
	HostsFile     = "hosts.csv" // the hosts table
	SettingsFile  = "lab.conf"  // the lab settings
	TemplatesDir  = "templates" // templates/all/PATH and templates/IMAGE/PATH
	HooksDir      = "hooks"     // hook scripts, run in name order
	maxConfigFile = 1 << 20     // bound on every template and hook
)

// ErrUnknownHost is returned (wrapped) by WhoAmI for a machine the table
// does not know when auto-enrolment is off or impossible.
var ErrUnknownHost = errors.New("hosts: unknown machine")

// DB is a lab's hosts table and settings, kept in hosts.csv and lab.conf of
// a directory. Hand edits of either file are picked up on the next call;
// a file that does not parse is reported by every call until it is fixed
// (the server keeps running). Writes are atomic. Safe for concurrent use.
type DB struct {
	dir string

	mu                sync.Mutex
	hostsMod, confMod fileStamp
	hosts             []Host
	settings          map[string]string
}

// fileStamp tells whether a file changed since it was read.
type fileStamp struct {
	mod  time.Time
	size int64
	ok   bool
}

func stamp(name string) fileStamp {
	fi, err := os.Stat(name)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{fi.ModTime(), fi.Size(), true}
}

// Open opens the lab configuration in dir. Missing files mean an empty
// table and the default settings.
func Open(dir string) (*DB, error) {
	db := &DB{dir: dir}
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := db.refresh(); err != nil {
		return nil, err
	}
	return db, nil
}

// refresh re-reads the files that changed. Called with mu held.
func (db *DB) refresh() error {
	hp, cp := filepath.Join(db.dir, HostsFile), filepath.Join(db.dir, SettingsFile)
	if st := stamp(cp); st != db.confMod || db.settings == nil {
		settings, err := readFile(cp, ParseSettings)
		if err != nil {
			return err
		}
		if settings == nil {
			settings, _ = ParseSettings(strings.NewReader(""))
		}
		db.settings, db.confMod = settings, st
	}
	if st := stamp(hp); st != db.hostsMod {
		hosts, err := readFile(hp, ParseCSV)
		if err != nil {
			return err
		}
		db.hosts, db.hostsMod = hosts, st
	}
	return nil
}

// readFile parses name with parse; a missing file gives the zero value.
func readFile[T any](name string, parse func(io.Reader) (T, error)) (T, error) {
	var zero T
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return zero, nil
	}
	if err != nil {
		return zero, err
	}
	defer f.Close()
	v, err := parse(f)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", name, err)
	}
	return v, nil
}

func cloneHosts(hosts []Host) []Host {
	out := slices.Clone(hosts)
	for i := range out {
		out[i].Settings = maps.Clone(out[i].Settings)
		out[i].Groups = slices.Clone(out[i].Groups)
	}
	return out
}

// Hosts returns the table.
func (db *DB) Hosts() ([]Host, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := db.refresh(); err != nil {
		return nil, err
	}
	return cloneHosts(db.hosts), nil
}

// Settings returns the lab settings (lab.conf over the defaults).
func (db *DB) Settings() (map[string]string, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := db.refresh(); err != nil {
		return nil, err
	}
	return maps.Clone(db.settings), nil
}

// Import replaces the table with the CSV in r, after validating all of it:
// on any error nothing changes.
func (db *DB) Import(r io.Reader) error {
	hosts, err := ParseCSV(io.LimitReader(r, 64<<20))
	if err != nil {
		return err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.save(hosts)
}

// Export writes the table as CSV.
func (db *DB) Export(w io.Writer) error {
	hosts, err := db.Hosts()
	if err != nil {
		return err
	}
	return WriteCSV(w, hosts)
}

// save writes hosts to hosts.csv atomically and makes it the table.
// Called with mu held.
func (db *DB) save(hosts []Host) error {
	var buf bytes.Buffer
	if err := WriteCSV(&buf, hosts); err != nil {
		return err
	}
	name := filepath.Join(db.dir, HostsFile)
	if err := atomicfile.Write(name, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("saving the hosts table: %w", err)
	}
	db.hosts, db.hostsMod = hosts, stamp(name)
	return nil
}

// SetNextBoot sets the next boot (BootLocal or BootClone) of the hosts with
// the given MACs, or of every host when macs is empty. It returns how many
// hosts were marked; a MAC not in the table is an error and marks nothing.
func (db *DB) SetNextBoot(macs []net.HardwareAddr, boot string) (int, error) {
	return db.mark(macs, len(macs) == 0, boot, "")
}

// Mark sets the next boot of the hosts with the given MACs (at least one)
// and, when image is not empty, the image their clone installs: the
// host's image column, left empty when lab.conf's image is that one. A
// MAC not in the table is an error and marks nothing.
func (db *DB) Mark(macs []net.HardwareAddr, boot, image string) (int, error) {
	if len(macs) == 0 {
		return 0, errors.New("hosts: mark: no host given")
	}
	if image != "" {
		if err := checkWord(image); err != nil {
			return 0, fmt.Errorf("image %q: %w", image, err)
		}
	}
	return db.mark(macs, false, boot, image)
}

func (db *DB) mark(macs []net.HardwareAddr, all bool, boot, image string) (int, error) {
	if boot != BootLocal && boot != BootClone {
		return 0, fmt.Errorf("next boot %q: must be %s or %s", boot, BootLocal, BootClone)
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := db.refresh(); err != nil {
		return 0, err
	}
	hosts := cloneHosts(db.hosts)
	set := func(h *Host) {
		h.NextBoot = boot
		switch {
		case image == "":
		case db.settings[KeyImage] == image:
			delete(h.Settings, KeyImage)
		default:
			if h.Settings == nil {
				h.Settings = map[string]string{}
			}
			h.Settings[KeyImage] = image
		}
	}
	n := 0
	for _, mac := range macs {
		i := slices.IndexFunc(hosts, func(h Host) bool { return slices.Equal(h.MAC, mac) })
		if i < 0 {
			return 0, fmt.Errorf("%w: %s is not in the hosts table", ErrUnknownHost, mac)
		}
		set(&hosts[i])
		n++
	}
	if all {
		for i := range hosts {
			set(&hosts[i])
		}
		n = len(hosts)
	}
	return n, db.save(hosts)
}

// ErrNoGroup is returned (wrapped) by Select for a group no host is in.
var ErrNoGroup = errors.New("hosts: no such group")

// Selection names hosts of the table: every one (All), those of a group
// (Group), or some by MAC (MACs); one of the three.
type Selection struct {
	All   bool
	Group string
	MACs  []net.HardwareAddr
}

// Select returns the hosts sel names, in the table's order (MACs: in
// theirs). A MAC not in the table is an ErrUnknownHost, a group no host is
// in an ErrNoGroup that names the groups there are, and an empty table or
// selection an error.
func (db *DB) Select(sel Selection) ([]Host, error) {
	n := 0
	for _, b := range []bool{sel.All, sel.Group != "", len(sel.MACs) > 0} {
		if b {
			n++
		}
	}
	if n != 1 {
		return nil, errors.New("hosts: select all hosts, a group, or MACs (one of them)")
	}
	hosts, err := db.Hosts()
	if err != nil {
		return nil, err
	}
	var out []Host
	switch {
	case sel.All:
		if len(hosts) == 0 {
			return nil, fmt.Errorf("%w: the hosts table is empty (import one: labseed hosts import FILE; docs/hosts.md)", ErrUnknownHost)
		}
		return hosts, nil
	case sel.Group != "":
		var all []string
		for _, h := range hosts {
			if h.InGroup(sel.Group) {
				out = append(out, h)
			}
			for _, g := range h.Groups {
				if !slices.Contains(all, g) {
					all = append(all, g)
				}
			}
		}
		if len(out) == 0 {
			there := "the table has no group column"
			if len(all) > 0 {
				slices.Sort(all)
				there = "the table's groups: " + strings.Join(all, ", ")
			}
			return nil, fmt.Errorf("%w: no host is in group %q (%s)", ErrNoGroup, sel.Group, there)
		}
		return out, nil
	}
	for _, mac := range sel.MACs {
		i := slices.IndexFunc(hosts, func(h Host) bool { return slices.Equal(h.MAC, mac) })
		if i < 0 {
			return nil, fmt.Errorf("%w: %s is not in the hosts table", ErrUnknownHost, mac)
		}
		if !slices.ContainsFunc(out, func(h Host) bool { return slices.Equal(h.MAC, mac) }) {
			out = append(out, hosts[i])
		}
	}
	return out, nil
}

// WhoAmI returns the identity of the machine with the given MACs (all of
// its interfaces, the one it boots from first): the first MAC in the table,
// or else, with auto-enrolment on, macs[0] enrolled with the next free host
// name and address.
func (db *DB) WhoAmI(macs []net.HardwareAddr) (Identity, error) {
	if len(macs) == 0 {
		return Identity{}, fmt.Errorf("who am I: no MAC address given")
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := db.refresh(); err != nil {
		return Identity{}, err
	}
	for _, mac := range macs {
		if i := slices.IndexFunc(db.hosts, func(h Host) bool { return slices.Equal(h.MAC, mac) }); i >= 0 {
			return db.withFiles(db.identity(db.hosts[i], false))
		}
	}
	h, err := db.enroll(macs[0])
	if err != nil {
		return Identity{}, err
	}
	return db.withFiles(db.identity(h, true))
}

// Identities returns the identity of every host of the table, without the
// lab's templates and hooks.
func (db *DB) Identities() ([]Identity, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := db.refresh(); err != nil {
		return nil, err
	}
	return db.identities(), nil
}

// Lookup returns the identity of mac's host, without the lab's templates
// and hooks; ok is false when the table does not hold mac. It is the
// network boot's view of the table (package pxe asks it on every request):
// a hand edit that does not parse is no error here, the last good table
// answers, while the other calls report the error until it is fixed.
func (db *DB) Lookup(mac net.HardwareAddr) (id Identity, ok bool) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.refresh()
	i := slices.IndexFunc(db.hosts, func(h Host) bool { return slices.Equal(h.MAC, mac) })
	if i < 0 {
		return Identity{}, false
	}
	return db.identity(db.hosts[i], false), true
}

// List returns the identity of every host of the table, as Lookup: from
// the last good table when a hand edit does not parse.
func (db *DB) List() []Identity {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.refresh()
	return db.identities()
}

func (db *DB) identities() []Identity {
	out := make([]Identity, len(db.hosts))
	for i, h := range db.hosts {
		out[i] = db.identity(h, false)
	}
	return out
}

// enroll adds mac with the next free host name and address. Called with mu held.
func (db *DB) enroll(mac net.HardwareAddr) (Host, error) {
	s := db.settings
	if s[KeyEnroll] == "off" {
		return Host{}, fmt.Errorf("%w: %s is not in the hosts table and auto-enrolment is off (enroll = off in %s)", ErrUnknownHost, mac, SettingsFile)
	}
	if s[KeyEnrollRange] == "" {
		return Host{}, fmt.Errorf("%w: %s is not in the hosts table and %s has no enroll_range to enrol it from", ErrUnknownHost, mac, SettingsFile)
	}
	first, last, _ := parseRange(s[KeyEnrollRange])
	h := Host{MAC: mac, NextBoot: BootLocal}
	for ip := first; ; ip = ip.Next() {
		if !slices.ContainsFunc(db.hosts, func(o Host) bool { return o.IP == ip }) {
			h.IP = ip
			break
		}
		if ip == last {
			return Host{}, fmt.Errorf("%w: %s cannot be enrolled: every address of enroll_range %s is taken", ErrUnknownHost, mac, s[KeyEnrollRange])
		}
	}
	for n := 1; ; n++ {
		name := fmt.Sprintf(s[KeyEnrollName], n)
		if !slices.ContainsFunc(db.hosts, func(o Host) bool { return o.Hostname == name }) {
			h.Hostname = name
			break
		}
	}
	if err := db.save(append(cloneHosts(db.hosts), h)); err != nil {
		return Host{}, err
	}
	return h, nil
}

// identity merges h's settings over the lab's. Called with mu held.
func (db *DB) identity(h Host, enrolled bool) Identity {
	s := maps.Clone(db.settings)
	for k, v := range h.Settings {
		s[k] = v
	}
	prefix, _ := prefixLen(s[KeyNetmask])
	swap, _ := strconv.Atoi(s[KeySwapMiB])
	root, _ := strconv.Atoi(s[KeyRootMiB])
	id := Identity{
		MAC: h.MAC.String(), Hostname: h.Hostname, Domain: s[KeyDomain],
		IP: h.IP.String(), Prefix: prefix, Gateway: s[KeyGateway], DNS: splitList(s[KeyDNS]),
		PrinterQueue: s[KeyPrinterQueue], PrinterServer: s[KeyPrinterServer],
		Display: s[KeyDisplay], Image: s[KeyImage], Filesystem: s[KeyFilesystem],
		SwapMiB: swap, RootMiB: root, Bootloader: s[KeyBootloader], NextBoot: h.NextBoot, Enrolled: enrolled,
		BootArgs: s[KeyBootArgs], OnFailure: s[KeyOnFailure], Groups: slices.Clone(h.Groups),
	}
	if keep := splitList(s[KeyKeep]); len(keep) > 0 {
		id.Keep = keep
	}
	for k, v := range s {
		if _, known := settingCheck[k]; !known {
			if id.Vars == nil {
				id.Vars = map[string]string{}
			}
			id.Vars[k] = v
		}
	}
	return id
}

// withFiles adds the lab's templates and hooks to id. Called with mu held.
func (db *DB) withFiles(id Identity) (Identity, error) {
	var err error
	if id.Templates, err = db.templates(id.Image); err != nil {
		return Identity{}, err
	}
	if id.Hooks, err = db.hooks(); err != nil {
		return Identity{}, err
	}
	return id, nil
}

// templates reads templates/all/ and then templates/IMAGE/ (which wins),
// keyed by the path in the new system.
func (db *DB) templates(image string) (map[string]string, error) {
	out := map[string]string{}
	dirs := []string{"all"}
	if image != "" {
		dirs = append(dirs, image)
	}
	for _, d := range dirs {
		root := filepath.Join(db.dir, TemplatesDir, d)
		err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) && p == root {
				return fs.SkipDir
			}
			if err != nil || !e.Type().IsRegular() {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			b, err := readSmall(p)
			if err != nil {
				return err
			}
			out[path.Clean(filepath.ToSlash(rel))] = string(b)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("lab templates: %w", err)
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// hooks reads the hook scripts in name order, skipping hidden files and
// editor backups (names ending in ~).
func (db *DB) hooks() ([]Hook, error) {
	entries, err := os.ReadDir(filepath.Join(db.dir, HooksDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lab hooks: %w", err)
	}
	var out []Hook
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") || strings.HasSuffix(e.Name(), "~") {
			continue
		}
		b, err := readSmall(filepath.Join(db.dir, HooksDir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("lab hooks: %w", err)
		}
		out = append(out, Hook{Name: e.Name(), Script: string(b)})
	}
	return out, nil
}

func readSmall(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigFile+1))
	if err == nil && len(b) > maxConfigFile {
		err = fmt.Errorf("%s: larger than %d bytes", name, maxConfigFile)
	}
	return b, err
}

// Report checks a report of mac's clone; one of StateDone ends the clone:
// the host's next boot returns to BootLocal. The reports themselves are
// the print server's record of the machine (package lifecycle).
func (db *DB) Report(mac net.HardwareAddr, r Report) error {
	if r.State != StateRunning && r.State != StateDone && r.State != StateFailed {
		return fmt.Errorf("clone report: state %q: must be %s, %s or %s", r.State, StateRunning, StateDone, StateFailed)
	}
	if len(r.Step) > 64 || len(r.Error) > 4096 || len(r.Detail) > 1024 {
		return fmt.Errorf("clone report: step, error or detail too long")
	}
	if r.State != StateDone {
		return nil
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := db.refresh(); err != nil {
		return err
	}
	i := slices.IndexFunc(db.hosts, func(h Host) bool { return slices.Equal(h.MAC, mac) })
	if i < 0 || db.hosts[i].NextBoot == BootLocal {
		return nil
	}
	hosts := cloneHosts(db.hosts)
	hosts[i].NextBoot = BootLocal
	return db.save(hosts)
}
