package netboot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/labseed/labseed/internal/atomicfile"
	"github.com/labseed/labseed/keys"
	"github.com/labseed/labseed/kmod"
	"github.com/labseed/labseed/store"
)

// Files Build writes into Config.Out.
const (
	KernelFile = "vmlinuz"
	InitrdFile = "initrd.img"
	BIOSFile   = "undionly.kpxe"
	UEFIFile   = "ipxe.efi"
)

// Paths inside the initrd that the clone environment's init relies on.
const (
	// LabseedPath is the labseed binary; /init and /sbin/modprobe link to it.
	LabseedPath = "/usr/bin/labseed"
	// KeysDir holds image.pub and lab.key, as "labseed keys export" writes them.
	KeysDir = keys.DefaultDir
	// InfoFile describes the build (kernel release, modules), for the init's banner.
	InfoFile = "/etc/labseed/netboot"
)

// DefaultModules are the modules the initrd carries (with their
// dependencies): the network cards, disk controllers and file systems of
// lab PCs and of virtual machines. Modules the kernel does not have (or
// has built in) are left out.
var DefaultModules = []string{
	// network
	"e1000", "e1000e", "igb", "igc", "r8169", "tg3", "bnx2", "atl1c", "alx", "8139too", "8139cp",
	"virtio_net", "af_packet",
	// disks
	"ahci", "ata_piix", "ata_generic", "nvme", "sd_mod", "virtio_blk", "virtio_scsi", "virtio_pci",
	// file systems, and the checksums they ask the kernel for
	"ext4", "xfs", "crc32c_generic", "crc32c_intel", "libcrc32c", "crc32_pclmul",
	// USB keyboards, for the shell on the console after a failure
	"xhci_pci", "ehci_pci", "ohci_pci", "uhci_hcd", "usbhid", "hid_generic",
}

// Tool is a program "labseed clone" runs, copied into the initrd with
// its libraries.
type Tool struct {
	// Name is the program's name, looked up in /usr/sbin, /usr/bin, /sbin, /bin.
	Name string
	// Package is the Debian package that has it, for the error when it is missing.
	Package string
	// Optional tools that are missing are only reported.
	Optional bool
}

// DefaultTools are what clone runs (disk.go, disk_linux.go), and busybox
// for the shell on the console when a clone fails.
var DefaultTools = []Tool{
	{"sfdisk", "fdisk", false},
	{"partx", "util-linux", false},
	{"blockdev", "util-linux", false},
	{"blkid", "util-linux", false},
	{"mkswap", "util-linux", false},
	{"mkfs.ext4", "e2fsprogs", false},
	{"mkfs.ext3", "e2fsprogs", false},
	{"e2fsck", "e2fsprogs", false},
	{"mkfs.xfs", "xfsprogs", true},
	{"xfs_repair", "xfsprogs", true},
	{"busybox", "busybox", true},
}

// Config configures Build.
type Config struct {
	// Image is the published image whose kernel and modules the initrd
	// gets; or give Kernel and Modules.
	Image *store.Image
	// Kernel is a kernel file (bzImage) and Modules its module directory
	// (/lib/modules/VERSION), used instead of an image's.
	Kernel, Modules string
	// KeysDir holds image.pub and lab.key ("labseed keys export"); required.
	KeysDir string
	// Out is the directory the files are written to; required.
	Out string
	// Labseed is the labseed binary put into the initrd; default the
	// running one.
	Labseed string
	// Modules to carry (with dependencies); default DefaultModules.
	ModuleNames []string
	// Tools to carry; default DefaultTools.
	Tools []Tool
	// Root is the tree the tools and their libraries are taken from;
	// default "/".
	Root string
	// IPXEDir holds undionly.kpxe and ipxe.efi; default /usr/lib/ipxe
	// (Debian package ipxe).
	IPXEDir string
	// Gzip compresses the initrd with gzip instead of zstd (kernels
	// without CONFIG_RD_ZSTD).
	Gzip bool
	// Progress, if set, is told what Build is doing: a stage name and,
	// while the image's chunks are read, how many of them.
	Progress func(stage string, done, total int64)
	// Logger receives details; nil discards.
	Logger *slog.Logger
}

// Result is what Build wrote.
type Result struct {
	// KernelRelease is the kernel's release (uname -r); KernelFrom says
	// where it came from.
	KernelRelease, KernelFrom string
	// Modules are the modules in the initrd; Builtin those asked for that
	// the kernel has built in, Absent those it does not have at all.
	Modules, Builtin, Absent []string
	// Tools are the programs copied; MissingTools the optional ones not found.
	Tools, MissingTools []string
	// Files is the number of entries of the initrd; RawBytes their data,
	// InitrdBytes the compressed initrd.
	Files                 int
	RawBytes, InitrdBytes int64
	// IPXE are the first stages copied; IPXEMissing says what to install
	// when they are not.
	IPXE        []string
	IPXEMissing error
	// Took is how long the build took.
	Took time.Duration
}

// ErrNoIPXE is Result.IPXEMissing when Debian's iPXE first stages are
// not installed.
var ErrNoIPXE = errors.New("netboot: no iPXE first stages (undionly.kpxe, ipxe.efi): install the Debian package ipxe (apt-get install ipxe) and run labseed netboot build again")

// Build writes the kernel, the initrd and the iPXE first stages into
// cfg.Out. Each file is replaced atomically, so a running print server
// never serves half of one.
func Build(ctx context.Context, cfg Config) (*Result, error) {
	start := time.Now()
	if cfg.Out == "" || cfg.KeysDir == "" {
		return nil, errors.New("netboot: Config.Out and Config.KeysDir are required")
	}
	if (cfg.Kernel == "") != (cfg.Modules == "") {
		return nil, errors.New("netboot: give the kernel and its modules together (--kernel /boot/vmlinuz-VERSION --modules /lib/modules/VERSION)")
	}
	if cfg.Image == nil && cfg.Kernel == "" {
		return nil, errors.New("netboot: no kernel: give an image, or --kernel and --modules")
	}
	if cfg.ModuleNames == nil {
		cfg.ModuleNames = DefaultModules
	}
	if cfg.Tools == nil {
		cfg.Tools = DefaultTools
	}
	if cfg.Root == "" {
		cfg.Root = "/"
	}
	if cfg.IPXEDir == "" {
		cfg.IPXEDir = "/usr/lib/ipxe"
	}
	if cfg.Labseed == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("netboot: the labseed binary: %w", err)
		}
		cfg.Labseed = exe
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	stage := func(s string) {
		log.Info(s)
		if cfg.Progress != nil {
			cfg.Progress(s, 0, 0)
		}
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, fmt.Errorf("netboot: %w", err)
	}

	var src source
	if cfg.Kernel != "" {
		src = &dirSource{kernelFile: cfg.Kernel, modDir: cfg.Modules}
	} else {
		stage(fmt.Sprintf("finding the kernel in image %s v%d", cfg.Image.Manifest.Name, cfg.Image.Manifest.Version))
		var err error
		src, err = openImageSource(ctx, cfg.Image, func(done, total int64) {
			if cfg.Progress != nil {
				cfg.Progress("reading the image's chunks", done, total)
			}
		})
		if err != nil {
			return nil, err
		}
	}
	res := &Result{KernelRelease: src.version(), KernelFrom: src.describe()}

	stage("reading kernel " + src.version())
	kernel, err := src.kernel(ctx)
	if err != nil {
		return nil, err
	}
	if rel := kernelRelease(kernel); rel != "" && rel != src.version() {
		return nil, fmt.Errorf("netboot: the kernel is %s but its modules are for %s: give the module directory of that kernel", rel, src.version())
	}

	a := newArchive()
	stage("choosing modules")
	if err := addModules(ctx, a, src, cfg.ModuleNames, res); err != nil {
		return nil, err
	}
	stage("adding labseed, keys and tools")
	if err := addBase(a, cfg, res); err != nil {
		return nil, err
	}

	stage("writing the initrd")
	res.RawBytes = a.bytes
	var n int
	err = atomicfile.WriteFunc(filepath.Join(cfg.Out, InitrdFile), 0o644, func(w io.Writer) error {
		cw := &countWriter{w: w}
		var zw io.WriteCloser
		if cfg.Gzip {
			zw, err = newGzip(cw)
		} else {
			zw, err = zstd.NewWriter(cw, zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithWindowSize(8<<20))
		}
		if err != nil {
			return err
		}
		if n, err = a.write(zw); err != nil {
			return err
		}
		if err := zw.Close(); err != nil {
			return err
		}
		res.InitrdBytes = cw.n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("netboot: write %s: %w", InitrdFile, err)
	}
	res.Files = n
	if err := atomicfile.Write(filepath.Join(cfg.Out, KernelFile), kernel, 0o644); err != nil {
		return nil, fmt.Errorf("netboot: write %s: %w", KernelFile, err)
	}
	stage("copying the iPXE first stages")
	for _, f := range []string{BIOSFile, UEFIFile} {
		b, err := os.ReadFile(filepath.Join(cfg.IPXEDir, f))
		if errors.Is(err, os.ErrNotExist) {
			res.IPXEMissing = fmt.Errorf("%w (%s has no %s)", ErrNoIPXE, cfg.IPXEDir, f)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("netboot: %w", err)
		}
		if err := atomicfile.Write(filepath.Join(cfg.Out, f), b, 0o644); err != nil {
			return nil, fmt.Errorf("netboot: write %s: %w", f, err)
		}
		res.IPXE = append(res.IPXE, f)
	}
	res.Took = time.Since(start)
	log.Info("netboot built", "kernel", res.KernelRelease, "modules", len(res.Modules), "initrd_bytes", res.InitrdBytes, "files", res.Files)
	return res, nil
}

// addModules puts the wanted modules, their dependencies and the module
// tables restricted to them into the archive.
func addModules(ctx context.Context, a *archive, src source, want []string, res *Result) error {
	tables, err := src.modules(ctx, []string{"modules.dep", "modules.alias", "modules.builtin"})
	if err != nil {
		return err
	}
	if tables["modules.dep"] == nil {
		return fmt.Errorf("netboot: kernel %s (%s) has no modules.dep", src.version(), src.describe())
	}
	t, err := kmod.ParseDep(bytes.NewReader(tables["modules.dep"]))
	if err != nil {
		return err
	}
	if err := t.ParseAlias(bytes.NewReader(tables["modules.alias"])); err != nil {
		return err
	}
	order, absent := t.Closure(want...)
	res.Modules = order
	builtin := map[string]bool{}
	for _, l := range strings.Fields(string(tables["modules.builtin"])) {
		builtin[kmod.Name(l)] = true
	}
	for _, m := range absent {
		if builtin[m] {
			res.Builtin = append(res.Builtin, m)
		} else {
			res.Absent = append(res.Absent, m)
		}
	}
	var rels []string
	for _, m := range order {
		rels = append(rels, t.Path[m])
	}
	files, err := src.modules(ctx, rels)
	if err != nil {
		return err
	}
	dir := "/lib/modules/" + src.version()
	for _, r := range rels {
		b, ok := files[r]
		if !ok {
			return fmt.Errorf("netboot: kernel %s: modules.dep lists %s but the file is missing", src.version(), r)
		}
		if err := a.file(path.Join(dir, r), b, 0o644); err != nil {
			return err
		}
	}
	sub := t.Subset(order)
	var dep, alias bytes.Buffer
	if err := sub.WriteDep(&dep); err != nil {
		return err
	}
	if err := sub.WriteAlias(&alias); err != nil {
		return err
	}
	if err := a.file(dir+"/modules.dep", dep.Bytes(), 0o644); err != nil {
		return err
	}
	if err := a.file(dir+"/modules.alias", alias.Bytes(), 0o644); err != nil {
		return err
	}
	if b := tables["modules.builtin"]; b != nil {
		return a.file(dir+"/modules.builtin", b, 0o644)
	}
	return nil
}

// addBase puts labseed, the keys, the tools with their libraries and the
// directories the init uses into the archive.
func addBase(a *archive, cfg Config, res *Result) error {
	bin, err := os.ReadFile(cfg.Labseed)
	if err != nil {
		return fmt.Errorf("netboot: the labseed binary: %w", err)
	}
	if err := a.file(LabseedPath, bin, 0o755); err != nil {
		return err
	}
	for _, l := range []string{"/init", "/sbin/modprobe"} {
		if err := a.symlink(l, LabseedPath); err != nil {
			return err
		}
	}
	for _, k := range []string{keys.PublicKeyFile, keys.LabKeyFile, keys.IdentityPubFile} {
		b, err := os.ReadFile(filepath.Join(cfg.KeysDir, k))
		if k == keys.IdentityPubFile && errors.Is(err, os.ErrNotExist) {
			continue // a follower's only: see keys.Workstation.IdentityKey
		}
		if err != nil {
			return fmt.Errorf("netboot: keys: %w (labseed keys export writes them)", err)
		}
		if err := a.file(path.Join(KeysDir, k), b, 0o600); err != nil {
			return err
		}
	}
	info := fmt.Sprintf("kernel=%s\nfrom=%s\nmodules=%s\nbuilt=%s\n", res.KernelRelease, res.KernelFrom,
		strings.Join(res.Modules, " "), time.Now().UTC().Format(time.RFC3339))
	if err := a.file(InfoFile, []byte(info), 0o644); err != nil {
		return err
	}
	for _, d := range []string{"/proc", "/sys", "/dev", "/run", "/tmp", "/mnt", "/root", "/var/tmp"} {
		if err := a.dir(d); err != nil {
			return err
		}
	}

	lr := newLibResolver(cfg.Root)
	var progs []string
	for _, t := range cfg.Tools {
		p := findTool(cfg.Root, t.Name)
		if p == "" {
			if t.Optional {
				res.MissingTools = append(res.MissingTools, fmt.Sprintf("%s (Debian package %s)", t.Name, t.Package))
				continue
			}
			return fmt.Errorf("netboot: %s not found in %s: install the Debian package %s", t.Name, toolDirs(cfg.Root), t.Package)
		}
		b, err := os.ReadFile(filepath.Join(cfg.Root, p))
		if err != nil {
			return fmt.Errorf("netboot: %w", err)
		}
		dst := "/usr/sbin/" + t.Name
		if t.Name == "busybox" {
			dst = "/bin/busybox"
		}
		if err := a.file(dst, b, 0o755); err != nil {
			return err
		}
		progs = append(progs, p)
		res.Tools = append(res.Tools, t.Name)
	}
	libs, err := lr.resolve(progs...)
	if err != nil {
		return err
	}
	// labseed itself is linked with the C library (cgo: uTP).
	self, err := newLibResolver("/").resolve(cfg.Labseed)
	if err != nil {
		return err
	}
	for _, l := range append(libs, self...) {
		if a.has(l) {
			continue
		}
		src := lr.host(l)
		if slices.Contains(self, l) && !slices.Contains(libs, l) {
			src = l
		}
		b, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("netboot: %w", err)
		}
		if err := a.file(l, b, 0o755); err != nil {
			return err
		}
	}
	for _, f := range []string{"/etc/mke2fs.conf"} {
		if b, err := os.ReadFile(filepath.Join(cfg.Root, f)); err == nil {
			if err := a.file(f, b, 0o644); err != nil {
				return err
			}
		}
	}
	if slices.Contains(res.Tools, "busybox") {
		return addApplets(a, cfg.Root)
	}
	return nil
}

// toolDirs says where tools are looked up.
func toolDirs(root string) string {
	var ds []string
	for _, d := range toolSearch {
		ds = append(ds, filepath.Join(root, d))
	}
	return strings.Join(ds, " ")
}

// toolSearch are where tools are looked up, in this order.
var toolSearch = []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// findTool returns the path (in the tree root) of the program name, "" if
// none.
func findTool(root, name string) string {
	for _, d := range toolSearch {
		p := path.Join(d, name)
		if fi, err := os.Stat(filepath.Join(root, p)); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// noApplet are busybox applets the initrd must not get as links: labseed
// is the init and modprobe, and the real tools stay.
var noApplet = []string{"init", "linuxrc", "modprobe", "insmod", "rmmod", "lsmod", "depmod", "modinfo"}

// addApplets links busybox's applets (a shell and the usual commands, for
// the console when a clone fails) where no real tool is.
func addApplets(a *archive, root string) error {
	if a.has("/bin/sh") {
		return nil
	}
	if err := a.symlink("/bin/sh", "busybox"); err != nil {
		return err
	}
	if root != "/" {
		return nil // the applet list comes from running busybox
	}
	out, err := exec.Command(filepath.Join(root, findTool(root, "busybox")), "--list-full").Output()
	if err != nil {
		return nil // an old busybox: the shell alone
	}
	for _, p := range strings.Fields(string(out)) {
		if slices.Contains(noApplet, path.Base(p)) || strings.Contains(p, "..") {
			continue
		}
		if slices.ContainsFunc(toolSearch, func(d string) bool { return a.has(path.Join(d, path.Base(p))) }) {
			continue
		}
		if err := a.symlink("/"+p, "/bin/busybox"); err != nil {
			return err
		}
	}
	return nil
}

// countWriter counts what passes through.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
