//go:build linux

package deb

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

// buildOnce builds the package once for all tests of this run.
var (
	buildOnce sync.Once
	buildDir  string
	buildDeb  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// build runs build.sh (as a sysadmin or CI would: no version given) and
// returns the .deb's path. It skips without LABSEED_LONG: the build takes
// a minute.
func build(t *testing.T) string {
	t.Helper()
	if os.Getenv("LABSEED_LONG") == "" {
		t.Skip("set LABSEED_LONG=1 to build the Debian package and test it (test.sh does)")
	}
	for _, bin := range []string{"dpkg-deb", "go", "git"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not found: the package build needs it (Debian packages dpkg, git; Go)", bin)
		}
	}
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "labseed-deb-test."); buildErr != nil {
			return
		}
		cmd := exec.Command("bash", "build.sh", buildDir)
		cmd.Env = append(os.Environ(), "LABSEED_DEB_VERSION=", "GOARCH="+runtime.GOARCH)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			buildErr = fmt.Errorf("build.sh: %v\n%s", err, stderr.Bytes())
			return
		}
		buildDeb = strings.TrimSpace(string(out))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildDeb
}

// run runs a command and returns its standard output and error together,
// failing the test if it fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// field is a control field of the package.
func field(t *testing.T, deb, name string) string {
	t.Helper()
	return strings.TrimSpace(run(t, "dpkg-deb", "--field", deb, name))
}

// wantVersion is the version build.sh must give this commit: VERSION,
// then ~N.gHASH unless HEAD is tagged vVERSION (".dirty" with changes).
var versionRE = regexp.MustCompile(`^([0-9]+\.[0-9]+\.[0-9]+)(~([0-9]+)\.g([0-9a-f]{7})(\.dirty)?)?$`)

// TestPackageContents checks the .deb as built: its name and version, its
// control fields, every file with its mode and owner, the conffile, the
// binary (static, runs), the man page, the copyright file and the
// changelog.
func TestPackageContents(t *testing.T) {
	deb := build(t)
	base, err := os.ReadFile("../../VERSION")
	if err != nil {
		t.Fatal(err)
	}
	version := field(t, deb, "Version")
	m := versionRE.FindStringSubmatch(version)
	if m == nil || m[1] != strings.TrimSpace(string(base)) {
		t.Fatalf("version %q: want %s~N.gHASH (VERSION file and git)", version, strings.TrimSpace(string(base)))
	}
	if m[2] != "" {
		head := strings.TrimSpace(run(t, "git", "rev-parse", "--short=7", "HEAD"))
		count := strings.TrimSpace(run(t, "git", "rev-list", "--count", "HEAD"))
		if m[3] != count || m[4] != head {
			t.Errorf("version %q: want commit count %s and hash %s", version, count, head)
		}
	}
	if got, want := filepath.Base(deb), "labseed_"+version+"_"+runtime.GOARCH+".deb"; got != want {
		t.Errorf("package file %s, want %s", got, want)
	}
	for name, want := range map[string]string{
		"Package":      "labseed",
		"Architecture": runtime.GOARCH,
		"Recommends":   "ipxe, zstd, fdisk, busybox",
		"Section":      "admin",
		"Priority":     "optional",
	} {
		if got := field(t, deb, name); got != want {
			t.Errorf("control field %s: %q, want %q", name, got, want)
		}
	}
	if got := field(t, deb, "Depends"); got != "" {
		t.Errorf("Depends: %q: the binary is static and needs nothing", got)
	}
	if !regexp.MustCompile(`^.+ <[^ ]+@[^ ]+>$`).MatchString(field(t, deb, "Maintainer")) {
		t.Errorf("Maintainer %q is not Name <email>", field(t, deb, "Maintainer"))
	}

	// Every file, with its mode and owner: nothing unexpected.
	var files []string
	for _, line := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "--contents", deb)), "\n") {
		f := strings.Fields(line) // mode owner size date time path
		if len(f) != 6 {
			t.Fatalf("dpkg-deb --contents line %q", line)
		}
		if f[1] != "root/root" {
			t.Errorf("%s is owned by %s, want root/root", f[5], f[1])
		}
		if strings.HasPrefix(f[5], "./usr/share/doc/labseed/") && strings.HasSuffix(f[5], ".md.gz") && f[0] == "-rw-r--r--" {
			continue // README and docs/, whatever their number
		}
		files = append(files, f[0]+" "+f[5])
	}
	want := []string{
		"drwxr-xr-x ./",
		"drwxr-xr-x ./etc/",
		"drwxr-xr-x ./etc/default/",
		"-rw-r--r-- ./etc/default/labseed",
		"drwxr-xr-x ./usr/",
		"drwxr-xr-x ./usr/bin/",
		"-rwxr-xr-x ./usr/bin/labseed",
		"drwxr-xr-x ./usr/lib/",
		"drwxr-xr-x ./usr/lib/systemd/",
		"drwxr-xr-x ./usr/lib/systemd/system/",
		"-rw-r--r-- ./usr/lib/systemd/system/labseed.service",
		"drwxr-xr-x ./usr/share/",
		"drwxr-xr-x ./usr/share/doc/",
		"drwxr-xr-x ./usr/share/doc/labseed/",
		"-rw-r--r-- ./usr/share/doc/labseed/changelog.gz",
		"-rw-r--r-- ./usr/share/doc/labseed/copyright",
		"drwxr-xr-x ./usr/share/lintian/",
		"drwxr-xr-x ./usr/share/lintian/overrides/",
		"-rw-r--r-- ./usr/share/lintian/overrides/labseed",
		"drwxr-xr-x ./usr/share/man/",
		"drwxr-xr-x ./usr/share/man/man1/",
		"-rw-r--r-- ./usr/share/man/man1/labseed.1.gz",
	}
	if !slices.Equal(files, want) {
		t.Errorf("package files:\n%s\nwant:\n%s", strings.Join(files, "\n"), strings.Join(want, "\n"))
	}

	ctl := t.TempDir()
	run(t, "dpkg-deb", "--control", deb, ctl)
	if b, _ := os.ReadFile(filepath.Join(ctl, "conffiles")); string(b) != "/etc/default/labseed\n" {
		t.Errorf("conffiles: %q, want /etc/default/labseed", b)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		if fi, err := os.Stat(filepath.Join(ctl, s)); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("maintainer script %s: %v %v, want mode 0755", s, fi, err)
		}
	}

	root := t.TempDir()
	run(t, "dpkg-deb", "--extract", deb, root)
	sums := exec.Command("md5sum", "--check", "--quiet", filepath.Join(ctl, "md5sums"))
	sums.Dir = root
	if out, err := sums.CombinedOutput(); err != nil {
		t.Errorf("md5sums do not match the files: %v\n%s", err, out)
	}

	// The binary: no dynamic loader, no shared library, stripped; it runs.
	bin := filepath.Join(root, "usr/bin/labseed")
	ef, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("usr/bin/labseed has a dynamic loader (PT_INTERP): build with CGO_ENABLED=0")
		}
	}
	if libs, _ := ef.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("usr/bin/labseed needs shared libraries %v", libs)
	}
	if ef.Section(".symtab") != nil {
		t.Error("usr/bin/labseed is not stripped (-ldflags=-s)")
	}
	ef.Close()
	if out := run(t, bin, "--help"); !strings.Contains(out, "usage: labseed COMMAND") {
		t.Errorf("labseed --help printed:\n%s", out)
	}

	// The man page has every command of "labseed help".
	man := gunzip(t, filepath.Join(root, "usr/share/man/man1/labseed.1.gz"))
	if !strings.HasPrefix(man, ".TH LABSEED 1 ") || !strings.Contains(man, `"labseed `+version+`"`) {
		t.Errorf("man page header: %.100q", man)
	}
	for _, c := range []string{"publish", "serve", "netboot", "clone", "hosts", "status"} {
		if !strings.Contains(man, "\n.SS "+c+"\n") {
			t.Errorf("man page has no section for %s", c)
		}
	}
	if _, err := exec.LookPath("man"); err == nil {
		out, err := exec.Command("man", "-l", filepath.Join(root, "usr/share/man/man1/labseed.1.gz")).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "labseed serve --listen 10.1.0.1") || strings.Contains(string(out), "warning") {
			t.Errorf("man -l labseed.1.gz: %v\n%.2000s", err, out)
		}
	}

	// The copyright file names the module licenses; the changelog this version.
	cr, _ := os.ReadFile(filepath.Join(root, "usr/share/doc/labseed/copyright"))
	for _, s := range []string{"Go standard library", "github.com/anacrolix/torrent v", "github.com/hashicorp/memberlist v",
		"the complete text is in /usr/share/common-licenses/MPL-2.0", "the complete text is in /usr/share/common-licenses/Apache-2.0",
		"Copyright (c) 2011 The Snappy-Go Authors"} {
		if !bytes.Contains(cr, []byte(s)) {
			t.Errorf("copyright file has no %q", s)
		}
	}
	cl := gunzip(t, filepath.Join(root, "usr/share/doc/labseed/changelog.gz"))
	if first, _, _ := strings.Cut(cl, "\n"); first != "labseed ("+version+") unstable; urgency=medium" {
		t.Errorf("changelog starts with %q", first)
	}
	for _, line := range strings.Split(cl, "\n") {
		if len(line) > 80 && !strings.HasPrefix(line, " -- ") { // the trailer names the maintainer
			t.Errorf("changelog line longer than 80 characters: %q", line)
		}
	}

	// lintian, when installed (test.sh installs it): no error, no warning.
	if _, err := exec.LookPath("lintian"); err == nil {
		out, err := exec.Command("lintian", "--fail-on", "error,warning", deb).CombinedOutput()
		if err != nil {
			t.Errorf("lintian %s: %v\n%s", deb, err, out)
		}
	} else {
		t.Log("lintian not installed: not run")
	}

	// The unit runs labseed serve with the options of /etc/default/labseed.
	unit, _ := os.ReadFile(filepath.Join(root, "usr/lib/systemd/system/labseed.service"))
	for _, s := range []string{
		"\nEnvironmentFile=-/etc/default/labseed\n",
		"\nExecStart=/usr/bin/labseed serve $LABSEED_SERVE_OPTS\n",
		"\nRestart=on-failure\n",
		"\nStateDirectory=labseed\n",
		"\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_NET_RAW\n",
		"\nWantedBy=multi-user.target\n",
	} {
		if !bytes.Contains(unit, []byte(s)) {
			t.Errorf("labseed.service has no line %q", strings.TrimSpace(s))
		}
	}
	def, _ := os.ReadFile(filepath.Join(root, "etc/default/labseed"))
	if !regexp.MustCompile(`(?m)^LABSEED_SERVE_OPTS="--listen 127\.0\.0\.1"$`).Match(def) {
		t.Errorf("/etc/default/labseed does not set LABSEED_SERVE_OPTS to the loopback default:\n%s", def)
	}
}

func gunzip(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return string(b)
}

// debianRoot extracts the Debian image of the clone tests (image:
// LABSEED_DEBIAN_IMAGE, made by bench/mkimage.sh from test.sh) into a
// temporary directory, without its kernel and modules, and returns it.
func debianRoot(t *testing.T, image string) string {
	t.Helper()
	dir := t.TempDir()
	run(t, "tar", "--numeric-owner", "-xzf", image, "-C", dir,
		"--exclude=./boot", "--exclude=./usr/lib/modules", "--exclude=./lib/modules")
	for _, f := range []string{"usr/bin/dpkg", "usr/bin/deb-systemd-helper"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Skipf("%s has no %s", image, f)
		}
	}
	return dir
}

// chroot runs a command in root and returns its output; it fails the test
// if the command fails.
func chroot(t *testing.T, root string, args ...string) string {
	t.Helper()
	out, err := chrootErr(root, args...)
	if err != nil {
		t.Fatalf("chroot %s %s: %v\n%s", root, strings.Join(args, " "), err, out)
	}
	return out
}

func chrootErr(root string, args ...string) (string, error) {
	cmd := exec.Command("chroot", append([]string{root}, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive", "HOME=/root"}
	cmd.Stdin = nil
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// snapshot lists every entry of a root tree: path, type, mode, and a
// symlink's target or a file's size (not under var/lib/dpkg and var/log,
// which dpkg rewrites).
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "proc" || rel == "sys" || rel == "dev" {
			return filepath.SkipDir
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		s := fi.Mode().String()
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			s += " -> " + target
		case fi.Mode().IsRegular() && !strings.HasPrefix(rel, "var/lib/dpkg/") && !strings.HasPrefix(rel, "var/log/"):
			s += fmt.Sprintf(" %d", fi.Size())
		}
		m[rel] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// leftovers lists the differences between two snapshots, except under the
// given path prefixes.
func leftovers(before, after map[string]string, except ...string) []string {
	var diff []string
	for p, a := range after {
		if slices.ContainsFunc(except, func(e string) bool { return p == e || strings.HasPrefix(p, e+"/") }) {
			continue
		}
		if b, ok := before[p]; !ok {
			diff = append(diff, "added "+p+" "+a)
		} else if a != b {
			diff = append(diff, "changed "+p+" "+b+" => "+a)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			diff = append(diff, "removed "+p)
		}
	}
	slices.Sort(diff)
	return diff
}

// repack makes a copy of the package with another version, for the
// upgrade steps (the same files: what matters is what dpkg does).
func repack(t *testing.T, deb, version, out string) {
	t.Helper()
	dir := t.TempDir()
	run(t, "dpkg-deb", "--raw-extract", deb, dir)
	ctl := filepath.Join(dir, "DEBIAN/control")
	b, err := os.ReadFile(ctl)
	if err != nil {
		t.Fatal(err)
	}
	b = regexp.MustCompile(`(?m)^Version: .*$`).ReplaceAll(b, []byte("Version: "+version))
	if err := os.WriteFile(ctl, b, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", dir, out)
}

// TestInstallDebian installs the package into a chroot of a real Debian
// (the clone tests' image) with "apt-get install ./labseed_*.deb", and checks the installed files, the
// store (0700), the unit's enablement (enabled, not started: the sysadmin
// configures it first), systemd-analyze verify of the unit, and the binary;
// then an upgrade (conffile edits kept, the notice to rebuild the clone
// environment, a disabled unit stays disabled), remove (the conffile and
// the store stay, the unit is masked as dh_installsystemd does) and purge:
// nothing is left but the store, which is kept because it holds images and
// keys (and removed when empty).
func TestInstallDebian(t *testing.T) {
	if os.Getenv("LABSEED_LONG") != "" && os.Geteuid() != 0 {
		t.Skip("needs root: dpkg and chroot in a Debian image")
	}
	image := os.Getenv("LABSEED_DEBIAN_IMAGE")
	if _, err := os.Stat(image); os.Getenv("LABSEED_LONG") != "" && (image == "" || err != nil) {
		t.Skipf("no Debian image (LABSEED_DEBIAN_IMAGE=%q): test.sh makes it with bench/mkimage.sh", image)
	}
	deb := build(t)
	root := debianRoot(t, image)
	version := field(t, deb, "Version")
	before := snapshot(t, root)

	copyDeb := func(src, name string) string {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "tmp", name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return "/tmp/" + name
	}
	exists := func(p string) bool { _, err := os.Lstat(filepath.Join(root, p)); return err == nil }
	wants := "etc/systemd/system/multi-user.target.wants/labseed.service"
	unitTargets := []string{"/lib/systemd/system/labseed.service", "/usr/lib/systemd/system/labseed.service"}

	// Install as the README says (apt install ./labseed_*.deb), without
	// the recommended packages: the chroot has no mirror.
	apt := []string{"apt-get", "--yes", "--no-install-recommends"}
	out := chroot(t, root, append(apt, "install", copyDeb(deb, "labseed.deb"))...)
	if !strings.Contains(out, "set the daemon's options in /etc/default/labseed, then: systemctl enable --now labseed") {
		t.Errorf("dpkg --install did not tell what to do next:\n%s", out)
	}
	for _, f := range []string{"usr/bin/labseed", "usr/lib/systemd/system/labseed.service", "etc/default/labseed",
		"usr/share/man/man1/labseed.1.gz", "usr/share/doc/labseed/copyright", "usr/share/doc/labseed/README.md.gz"} {
		if !exists(f) {
			t.Errorf("/%s not installed", f)
		}
	}
	if target, err := os.Readlink(filepath.Join(root, wants)); err != nil || !slices.Contains(unitTargets, target) {
		t.Errorf("unit not enabled: /%s -> %q, %v", wants, target, err)
	}
	if fi, err := os.Stat(filepath.Join(root, "var/lib/labseed")); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("store /var/lib/labseed: %v %v, want a directory of mode 0700", fi, err)
	}
	if out := chroot(t, root, "dpkg-query", "--show", "--showformat=${Status} ${Version}", "labseed"); out != "install ok installed "+version {
		t.Errorf("dpkg-query: %q", out)
	}

	// The unit, as the image's systemd reads it (warnings fail too:
	// systemd-analyze exits 0 on unknown keys and bad values).
	if exists("usr/bin/systemd-analyze") {
		out, err := chrootErr(root, "systemd-analyze", "verify", "--man=no", "labseed.service")
		if err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("systemd-analyze verify labseed.service: %v\n%s", err, out)
		}
	} else {
		t.Errorf("the Debian image has no systemd-analyze (systemd): cannot verify the unit")
	}

	// The binary works in the chroot, and creates the store's keys as a
	// sysadmin's first commands would.
	if out := chroot(t, root, "labseed", "--help"); !strings.Contains(out, "usage: labseed COMMAND") {
		t.Errorf("labseed --help in the chroot:\n%s", out)
	}
	chroot(t, root, "labseed", "keys", "export", "/tmp/keys")
	if !exists("var/lib/labseed/keys/image.key") {
		t.Fatal("labseed keys export made no /var/lib/labseed/keys/image.key")
	}

	// Upgrade: the sysadmin's options stay, no conffile prompt, a notice to
	// rebuild the clone environment (it carries the labseed binary).
	const opts = "LABSEED_SERVE_OPTS=\"--listen 10.1.0.1 --pxe proxy --image lab1\"\n"
	defPath := filepath.Join(root, "etc/default/labseed")
	def, _ := os.ReadFile(defPath)
	edited := append(def, opts...)
	if err := os.WriteFile(defPath, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "var/lib/labseed/boot"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/labseed/boot/initrd.img"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	v2 := filepath.Join(t.TempDir(), "v2.deb")
	repack(t, deb, version+"+t2", v2)
	out = chroot(t, root, append(apt, "install", copyDeb(v2, "labseed-v2.deb"))...)
	if !strings.Contains(out, "run 'labseed netboot build' again") {
		t.Errorf("upgrade: no notice to rebuild the clone environment:\n%s", out)
	}
	if b, _ := os.ReadFile(defPath); !bytes.Equal(b, edited) {
		t.Errorf("upgrade changed /etc/default/labseed:\n%s", b)
	}
	if exists("etc/default/labseed.dpkg-dist") || exists("etc/default/labseed.dpkg-new") {
		t.Error("upgrade left /etc/default/labseed.dpkg-*")
	}
	if !exists(wants) {
		t.Error("upgrade: the unit is no longer enabled")
	}
	// A sysadmin who disabled the unit keeps it disabled across upgrades.
	chroot(t, root, "systemctl", "disable", "labseed.service")
	if exists(wants) {
		t.Fatal("systemctl disable left the unit enabled")
	}
	v3 := filepath.Join(t.TempDir(), "v3.deb")
	repack(t, deb, version+"+t3", v3)
	chroot(t, root, "dpkg", "--install", copyDeb(v3, "labseed-v3.deb"))
	if exists(wants) {
		t.Error("upgrade enabled the unit the sysadmin had disabled")
	}
	chroot(t, root, "systemctl", "enable", "labseed.service")

	// Remove: the program goes; the conffile, the store and the
	// enablement state stay (dh_installsystemd's way: the unit is masked).
	chroot(t, root, append(apt, "remove", "labseed")...)
	for _, f := range []string{"usr/bin/labseed", "usr/lib/systemd/system/labseed.service", "usr/share/man/man1/labseed.1.gz", "usr/share/doc/labseed"} {
		if exists(f) {
			t.Errorf("dpkg --remove left /%s", f)
		}
	}
	for _, f := range []string{"etc/default/labseed", "var/lib/labseed/keys/image.key", "var/lib/labseed/boot/initrd.img"} {
		if !exists(f) {
			t.Errorf("dpkg --remove removed /%s", f)
		}
	}
	if target, _ := os.Readlink(filepath.Join(root, "etc/systemd/system/labseed.service")); target != "/dev/null" {
		t.Errorf("after remove /etc/systemd/system/labseed.service -> %q, want the mask (/dev/null)", target)
	}

	// Purge: nothing is left but the store, kept and said so.
	out = chroot(t, root, append(apt, "purge", "labseed")...)
	if !strings.Contains(out, "kept the store /var/lib/labseed") {
		t.Errorf("dpkg --purge did not say the store is kept:\n%s", out)
	}
	if !exists("var/lib/labseed/keys/image.key") {
		t.Error("dpkg --purge removed the store's keys")
	}
	// tmp: this test's files; run: systemd-analyze's; apt's caches, logs
	// and record of what was installed by hand.
	if diff := leftovers(before, snapshot(t, root), "var/lib/labseed", "tmp", "run", "var/cache/apt", "var/lib/apt", "var/log/apt"); len(diff) > 0 {
		t.Errorf("after purge the system differs from before the install:\n%s", strings.Join(diff, "\n"))
	}
	if out, _ := chrootErr(root, "dpkg-query", "--show", "--showformat=${Status}", "labseed"); strings.Contains(out, "installed") {
		t.Errorf("dpkg-query after purge: %q", out)
	}

	// An unused (empty) store goes with the purge.
	if err := os.RemoveAll(filepath.Join(root, "var/lib/labseed")); err != nil {
		t.Fatal(err)
	}
	chroot(t, root, "dpkg", "--install", "/tmp/labseed.deb")
	chroot(t, root, "dpkg", "--purge", "labseed")
	if diff := leftovers(before, snapshot(t, root), "tmp", "run", "var/cache/apt", "var/lib/apt", "var/log/apt"); len(diff) > 0 {
		t.Errorf("after install and purge of an unused package the system differs:\n%s", strings.Join(diff, "\n"))
	}
}
