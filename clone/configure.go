package clone

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"text/template"

	"github.com/labseed/labseed/api"
)

// templates are the shipped configuration templates, by their path in the
// new system under templates/.
//
//go:embed templates
var templates embed.FS

// The network systems a new system can use, as detectNetwork names them
// (TemplateData.Network).
const (
	NetworkManager  = "networkmanager"
	NetworkNetworkd = "networkd"
	NetworkIfupdown = "ifupdown"
)

// TemplateData is what the configuration templates are executed with
// (text/template), and the bootloader commands. The host's identity from
// the print server is embedded: {{.Hostname}}, {{.Domain}}, {{.IP}},
// {{.Prefix}}, {{.Gateway}}, {{.DNS}} (a list), {{.MAC}},
// {{.PrinterQueue}}, {{.PrinterServer}}, {{.Display}}, {{.Vars.x_name}}
// (lab.conf's and hosts.csv's own variables; missing ones are empty);
// {{.Image}} is the image installed, NAME-vVERSION. The function join
// joins a list: {{join .DNS " "}}.
type TemplateData struct {
	api.Identity
	// FQDN is Hostname.Domain, or Hostname without a domain.
	FQDN string
	// Netmask is Prefix as a dotted quad, 255.255.255.0.
	Netmask string
	// Interface is the name of the network interface with the host's MAC
	// on the cloning system ("eth0" if none has it): usually its name in
	// the new system too (same kernel, same naming rules).
	Interface string
	// Network is the new system's network system: NetworkManager,
	// NetworkNetworkd, NetworkIfupdown, or "" when none was found.
	Network string
	// Disk is the whole disk's device; Root and Swap the new partitions
	// ({{.Root}} prints the device, {{.Root.UUID}} its UUID).
	Disk       string
	Root, Swap Partition
	// Kernel and Initrd are the newest kernel in the new system's /boot
	// and its initrd, as paths in the new system; "" if none.
	Kernel, Initrd string
	// Server is the print server, HOST:PORT.
	Server string
	// StaticResolvConf is true when the image's /etc/resolv.conf is a
	// plain file, which no resolver manager (systemd-resolved, resolvconf,
	// NetworkManager) rewrites: the clone then writes the lab's DNS there.
	StaticResolvConf bool
}

// fileTemplate is a shipped configuration file.
type fileTemplate struct {
	path string      // in the new system, and under templates/
	mode fs.FileMode // of the file written
	when func(d *TemplateData) bool
}

func always(*TemplateData) bool { return true }

func network(n string) func(*TemplateData) bool {
	return func(d *TemplateData) bool { return d.Network == n }
}

// configTemplates are written by the configure step, when their condition
// holds; a lab or image template with the same path replaces the text.
var configTemplates = []fileTemplate{
	{"etc/hostname", 0o644, always},
	{"etc/hosts", 0o644, always},
	{"etc/fstab", 0o644, always},
	{"etc/network/interfaces", 0o644, network(NetworkIfupdown)},
	{"etc/systemd/network/50-labseed.network", 0o644, network(NetworkNetworkd)},
	// NetworkManager ignores keyfiles others can read.
	{"etc/NetworkManager/system-connections/labseed.nmconnection", 0o600, network(NetworkManager)},
	{"etc/resolv.conf", 0o644, func(d *TemplateData) bool {
		return d.StaticResolvConf && len(d.DNS) > 0 && d.Network != NetworkManager
	}},
	{"etc/printcap", 0o644, func(d *TemplateData) bool { return d.PrinterQueue != "" }},
	{"etc/X11/xorg.conf.d/50-labseed-display.conf", 0o644, func(d *TemplateData) bool { return d.Display != "" }},
}

// Bootloader configuration templates, written by the bootloader step of
// their preset only.
const (
	extlinuxConf = "boot/extlinux/extlinux.conf"
	liloConf     = "etc/lilo.conf"
)

// renderedFile is a configuration file to write.
type renderedFile struct {
	path    string
	mode    fs.FileMode
	content []byte
	lab     bool // from the lab's templates
}

var funcs = template.FuncMap{"join": strings.Join}

// render executes a template's text with data; the error names it.
func render(name, text string, data *TemplateData) ([]byte, error) {
	t, err := template.New(name).Funcs(funcs).Option("missingkey=zero").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	return b.Bytes(), nil
}

// labTemplates checks the lab's template paths and returns them cleaned.
func labTemplates(in map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(in))
	for k, v := range in {
		p := path.Clean(strings.TrimPrefix(k, "/"))
		if !fs.ValidPath(p) || p == "." {
			return nil, fmt.Errorf("lab template %q: not a path in the new system", k)
		}
		out[p] = v
	}
	return out, nil
}

// shippedTemplate returns the shipped text for p, or the lab's when it has
// one; ok is false when the lab's is empty (the lab's way to not write a
// shipped file).
func shippedTemplate(p string, lab map[string]string) (text string, fromLab, ok bool, err error) {
	if t, has := lab[p]; has {
		return t, true, strings.TrimSpace(t) != "", nil
	}
	b, err := templates.ReadFile("templates/" + p)
	if err != nil {
		return "", false, false, err
	}
	return string(b), false, true, nil
}

// configFiles renders the configuration files of the configure step: the
// shipped templates that apply to this system (or the lab's replacements),
// then the lab's other templates, in path order.
func configFiles(data *TemplateData, labTmpl map[string]string) ([]renderedFile, error) {
	lab, err := labTemplates(labTmpl)
	if err != nil {
		return nil, err
	}
	var out []renderedFile
	known := map[string]bool{extlinuxConf: true, liloConf: true}
	for _, ft := range configTemplates {
		known[ft.path] = true
		if !ft.when(data) {
			continue
		}
		text, fromLab, ok, err := shippedTemplate(ft.path, lab)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		b, err := render(ft.path, text, data)
		if err != nil {
			return nil, err
		}
		out = append(out, renderedFile{path: ft.path, mode: ft.mode, content: b, lab: fromLab})
	}
	for _, p := range slices.Sorted(maps.Keys(lab)) {
		if known[p] || strings.TrimSpace(lab[p]) == "" {
			continue
		}
		b, err := render(p, lab[p], data)
		if err != nil {
			return nil, err
		}
		out = append(out, renderedFile{path: p, mode: 0o644, content: b, lab: true})
	}
	return out, nil
}

// lstater is what detectNetwork and findKernel look at the new system
// through: an *os.Root, which keeps every lookup inside the new system.
type lstater interface {
	Lstat(name string) (fs.FileInfo, error)
}

func exists(r lstater, names ...string) bool {
	return firstExisting(r, names...) != ""
}

// firstExisting returns the first of names (relative) that exists in r,
// as an absolute path in the new system, or "" when none does.
func firstExisting(r lstater, names ...string) string {
	for _, n := range names {
		if _, err := r.Lstat(n); err == nil {
			return "/" + n
		}
	}
	return ""
}

// detectNetwork tells which network system the new system uses:
// NetworkManager when it has its configuration directory and program,
// systemd-networkd when its unit is enabled, ifupdown when it has
// /etc/network/interfaces or ifup; "" when none of them.
func detectNetwork(r lstater) string {
	switch {
	case exists(r, "etc/NetworkManager") && exists(r, "usr/sbin/NetworkManager", "sbin/NetworkManager", "usr/bin/NetworkManager"):
		return NetworkManager
	case exists(r,
		"etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
		"etc/systemd/system/sockets.target.wants/systemd-networkd.socket",
		"etc/systemd/system/network-online.target.wants/systemd-networkd-wait-online.service",
		"etc/systemd/system/dbus-org.freedesktop.network1.service"):
		return NetworkNetworkd
	case exists(r, "etc/network/interfaces", "sbin/ifup", "usr/sbin/ifup"):
		return NetworkIfupdown
	}
	return ""
}

// findKernel returns the newest kernel in the new system's /boot
// (vmlinuz-VERSION) and its initrd (initrd.img-VERSION as Debian names
// it, initramfs-VERSION.img or initrd-VERSION), as paths in the new
// system; "" when there is none.
func findKernel(fsys fs.FS) (kernel, initrd string) {
	ents, err := fs.ReadDir(fsys, "boot")
	if err != nil {
		return "", ""
	}
	var best string
	for _, e := range ents {
		if v, ok := strings.CutPrefix(e.Name(), "vmlinuz-"); ok && e.Type().IsRegular() && (best == "" || versionLess(best, v)) {
			best = v
		}
	}
	if best == "" {
		return "", ""
	}
	kernel = "/boot/vmlinuz-" + best
	for _, n := range []string{"initrd.img-" + best, "initramfs-" + best + ".img", "initrd-" + best} {
		if fi, err := fs.Stat(fsys, "boot/"+n); err == nil && fi.Mode().IsRegular() {
			return kernel, "/boot/" + n
		}
	}
	return kernel, ""
}

// versionLess compares version strings by their runs of digits as numbers
// and the rest as text: 6.1.0-9 < 6.1.0-18.
func versionLess(a, b string) bool {
	for a != "" && b != "" {
		ra, rb := leadingRun(a), leadingRun(b)
		if ra != rb {
			na, errA := strconv.ParseUint(ra, 10, 64)
			nb, errB := strconv.ParseUint(rb, 10, 64)
			if errA == nil && errB == nil && na != nb {
				return na < nb
			}
			return ra < rb
		}
		a, b = a[len(ra):], b[len(rb):]
	}
	return len(a) < len(b)
}

// leadingRun returns the leading run of digits, or of non-digits, of s.
func leadingRun(s string) string {
	digit := func(c byte) bool { return c >= '0' && c <= '9' }
	i := 1
	for i < len(s) && digit(s[i]) == digit(s[0]) {
		i++
	}
	return s[:i]
}

// netmask returns a prefix length as a dotted quad.
func netmask(prefix int) string {
	return net.IP(net.CIDRMask(prefix, 32)).String()
}

// templateData gathers what the templates see, once the image is in.
func (c *cloner) templateData(imageVersion string) *TemplateData {
	d := &TemplateData{Identity: c.id, FQDN: c.id.Hostname, Netmask: netmask(c.id.Prefix),
		Interface: interfaceFor(c.id.MAC), Network: detectNetwork(c.sys.root), Disk: c.disk.dev,
		Root: c.disk.root.Partition, Swap: c.disk.swap.Partition, Server: c.cfg.Server}
	if c.id.Domain != "" {
		d.FQDN = c.id.Hostname + "." + c.id.Domain
	}
	if d.Interface == "" {
		d.Interface = "eth0"
	}
	d.Image = imageVersion
	if fi, err := c.sys.root.Lstat("etc/resolv.conf"); err == nil && fi.Mode().IsRegular() {
		d.StaticResolvConf = true
	}
	d.Kernel, d.Initrd = findKernel(c.sys.root.FS())
	return d
}

// configure is the configure step: the configuration files, a fresh
// machine-id and new SSH host keys.
func (c *cloner) configure(ctx context.Context) error {
	root := c.sys.root
	// From here on the tree is no longer the image as downloaded.
	if err := root.WriteFile(configuringMarker, nil, 0o600); err != nil {
		return fmt.Errorf("%s: %w", configuringMarker, err)
	}
	d := c.sys.data
	if d.Network == "" {
		c.say("the image has no network system labseed knows (NetworkManager, systemd-networkd, ifupdown): its network is left as it is")
		c.log.Warn("no network system found", "root", c.sys.dir)
	} else {
		c.log.Info("network system", "network", d.Network, "interface", d.Interface)
	}
	files, err := configFiles(d, c.id.Templates)
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := writeFile(root, f.path, f.content, f.mode); err != nil {
			return err
		}
		c.log.Info("configured", "file", "/"+f.path, "lab_template", f.lab)
	}
	if err := c.machineID(); err != nil {
		return err
	}
	return c.sshHostKeys(ctx)
}

// writeFile replaces name in the new system with content: a temporary
// file renamed over it (which replaces a symlink rather than writing
// where it points), with mode.
func writeFile(root *os.Root, name string, content []byte, mode fs.FileMode) error {
	if err := root.MkdirAll(path.Dir(name), 0o755); err != nil {
		return fmt.Errorf("/%s: %w", path.Dir(name), err)
	}
	tmp := path.Join(path.Dir(name), ".labseed-"+path.Base(name)+".tmp")
	if err := root.WriteFile(tmp, content, mode); err != nil {
		return fmt.Errorf("/%s: %w", name, err)
	}
	if err := root.Chmod(tmp, mode); err != nil { // whatever the umask
		root.Remove(tmp)
		return fmt.Errorf("/%s: %w", name, err)
	}
	if err := root.Rename(tmp, name); err != nil {
		root.Remove(tmp)
		return fmt.Errorf("/%s: %w", name, err)
	}
	return nil
}

// machineID gives the new system a machine-id of its own: every clone of
// an image would otherwise share the image's (DHCP client ids, journald).
func (c *cloner) machineID() error {
	b := make([]byte, 16)
	rand.Read(b)
	id := []byte(hex.EncodeToString(b) + "\n")
	if err := writeFile(c.sys.root, "etc/machine-id", id, 0o444); err != nil {
		return err
	}
	// D-Bus keeps a copy unless it is a link to /etc/machine-id.
	if fi, err := c.sys.root.Lstat("var/lib/dbus/machine-id"); err == nil && fi.Mode().IsRegular() {
		if err := writeFile(c.sys.root, "var/lib/dbus/machine-id", id, 0o444); err != nil {
			return err
		}
	}
	return nil
}

// sshHostKeys removes the image's SSH host keys, which every clone would
// share, and makes new ones with the new system's ssh-keygen.
func (c *cloner) sshHostKeys(ctx context.Context) error {
	root := c.sys.root
	if fi, err := root.Lstat("etc/ssh"); err != nil || !fi.IsDir() {
		c.log.Info("no /etc/ssh in the image: no SSH host keys to make")
		return nil
	}
	old, err := fs.Glob(root.FS(), "etc/ssh/ssh_host_*")
	if err != nil {
		return err
	}
	for _, k := range old {
		if err := root.Remove(k); err != nil {
			return fmt.Errorf("remove the image's SSH host key /%s: %w", k, err)
		}
	}
	keygen := firstExisting(root, "usr/bin/ssh-keygen", "bin/ssh-keygen")
	if keygen == "" {
		c.say("no ssh-keygen in the image: its SSH host keys (%d removed) are not made again", len(old))
		c.log.Warn("no ssh-keygen in the image", "removed", len(old))
		return nil
	}
	if err := c.chroot(ctx, "ssh-keygen", keygen, "-A"); err != nil {
		return err
	}
	c.log.Info("new SSH host keys", "removed", len(old))
	return nil
}

// errNoKernel is returned by bootloaders that need a kernel when the new
// system's /boot has none.
var errNoKernel = errors.New("no kernel in the new system's /boot (vmlinuz-VERSION)")
