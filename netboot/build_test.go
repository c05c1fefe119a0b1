package netboot

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/store"
)

func need(t *testing.T, bins ...string) {
	t.Helper()
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed (Debian: cpio, libarchive-tools, libc-bin)", b)
		}
	}
}

// TestArchiveCpio writes a tree and reads it back with GNU cpio and
// bsdcpio, which follow the newc rules the kernel unpacks by.
func TestArchiveCpio(t *testing.T) {
	need(t, "cpio", "bsdcpio")
	a := newArchive()
	must(t, a.file("/usr/bin/labseed", []byte("#!labseed\n"), 0o755))
	must(t, a.symlink("/init", "/usr/bin/labseed"))
	must(t, a.file("/etc/labseed/keys/lab.key", []byte("00\n"), 0o600))
	must(t, a.file("/odd", []byte("12345"), 0o644)) // a size that needs padding
	must(t, a.dir("/proc"))
	must(t, a.symlink("/init", "elsewhere")) // taken: kept as it was
	if err := a.file("/usr/bin/labseed/x", nil, 0o644); err == nil {
		t.Error("a file under a file accepted")
	}
	var buf bytes.Buffer
	n, err := a.write(&buf)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"etc", "etc/labseed", "etc/labseed/keys", "etc/labseed/keys/lab.key", "init", "odd", "proc", "usr", "usr/bin", "usr/bin/labseed"}
	if n != len(want) {
		t.Errorf("%d entries, want %d", n, len(want))
	}
	for _, tool := range [][]string{{"cpio", "-t", "--quiet"}, {"bsdcpio", "-t", "--quiet"}} {
		cmd := exec.Command(tool[0], tool[1:]...)
		cmd.Stdin = bytes.NewReader(buf.Bytes())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", tool[0], err, out)
		}
		if got := strings.Fields(string(out)); !slices.Equal(got, want) {
			t.Errorf("%s lists %q, want %q", tool[0], got, want)
		}
	}
	dir := t.TempDir()
	cmd := exec.Command("cpio", "-i", "-d", "--quiet", "--no-absolute-filenames")
	cmd.Dir, cmd.Stdin = dir, bytes.NewReader(buf.Bytes())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "odd")); string(b) != "12345" {
		t.Errorf("odd holds %q", b)
	}
	if l, _ := os.Readlink(filepath.Join(dir, "init")); l != "/usr/bin/labseed" {
		t.Errorf("init links to %q", l)
	}
	if fi, err := os.Stat(filepath.Join(dir, "etc/labseed/keys/lab.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("lab.key: %v %v", fi.Mode(), err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// lddLibs returns what ldd says prog loads (interpreter included).
func lddLibs(t *testing.T, prog string) []string {
	t.Helper()
	out, err := exec.Command("ldd", prog).Output()
	if err != nil {
		t.Skipf("ldd %s: %v", prog, err)
	}
	var libs []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			libs = append(libs, path.Base(f[2]))
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			libs = append(libs, path.Base(f[0]))
		}
	}
	slices.Sort(libs)
	return libs
}

// TestLibraries resolves the libraries of this machine's sfdisk and
// mkfs.ext4 as ldd does, then in a tree holding only them, where a
// missing one is named.
func TestLibraries(t *testing.T) {
	need(t, "ldd")
	for _, name := range []string{"sfdisk", "mkfs.ext4"} {
		p := findTool("/", name)
		if p == "" {
			t.Skipf("no %s here", name)
		}
		libs, err := newLibResolver("/").resolve(p)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range libs {
			got = append(got, path.Base(l))
		}
		slices.Sort(got)
		if want := lddLibs(t, p); !slices.Equal(got, want) {
			t.Errorf("%s: resolved %q, ldd says %q", name, got, want)
		}

		// The same in a tree of its own.
		root := t.TempDir()
		copyInto := func(p string) {
			b, err := os.ReadFile(p)
			must(t, err)
			must(t, os.MkdirAll(filepath.Join(root, path.Dir(p)), 0o755))
			must(t, os.WriteFile(filepath.Join(root, p), b, 0o755))
		}
		copyInto(p)
		for _, l := range libs {
			copyInto(l)
		}
		again, err := newLibResolver(root).resolve(p)
		if err != nil || !slices.Equal(again, libs) {
			t.Errorf("in a tree: %q, %v; want %q", again, err, libs)
		}
		var lib string
		for _, l := range libs {
			if strings.Contains(l, "libc.so") {
				lib = l
			}
		}
		os.Remove(filepath.Join(root, lib))
		if _, err := newLibResolver(root).resolve(p); err == nil || !strings.Contains(err.Error(), path.Base(lib)) {
			t.Errorf("without %s: %v", lib, err)
		}
	}
}

// fakeKernel is a bzImage-shaped file whose setup header names rel.
func fakeKernel(rel string) []byte {
	b := make([]byte, 0x1000)
	copy(b[0x202:], "HdrS")
	b[0x20e] = 0x00
	b[0x20f] = 0x02 // version string at 0x200 + 0x200
	copy(b[0x400:], rel+" (debian-kernel@lists.debian.org) #1 SMP\x00")
	return b
}

// moduleTree writes a module directory with a few real-looking modules.
func moduleTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{
		"modules.dep": []byte(`kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/lib/crc16.ko:
kernel/drivers/net/ethernet/intel/e1000/e1000.ko:
kernel/drivers/ata/ahci.ko: kernel/drivers/ata/libahci.ko
kernel/drivers/ata/libahci.ko:
kernel/drivers/gpu/drm/nouveau/nouveau.ko:
`),
		"modules.alias":   []byte("alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000\nalias fs-ext4 ext4\nalias pci:v000010DEd*sv*sd*bc03sc*i00* nouveau\n"),
		"modules.builtin": []byte("kernel/drivers/scsi/sd_mod.ko\n"),
	}
	for _, m := range []string{"ext4", "mbcache", "jbd2", "crc16", "e1000", "ahci", "libahci", "nouveau"} {
		files[m] = nil
	}
	out := map[string][]byte{}
	for _, line := range strings.Split(string(files["modules.dep"]), "\n") {
		if p, _, ok := strings.Cut(line, ":"); ok {
			out[p] = bytes.Repeat([]byte(path.Base(p)), 3000) // split across chunks when published
		}
	}
	for _, n := range []string{"modules.dep", "modules.alias", "modules.builtin"} {
		out[n] = files[n]
	}
	for rel, b := range out {
		must(t, os.MkdirAll(filepath.Join(dir, path.Dir(rel)), 0o755))
		must(t, os.WriteFile(filepath.Join(dir, rel), b, 0o644))
	}
	return out
}

// keysDir writes a store's exported keys.
func keysDir(t *testing.T, st *store.Store) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	if _, err := st.ExportKeys(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// listInitrd lists a built initrd with bsdtar (zstd or gzip).
func listInitrd(t *testing.T, file string) map[string]bool {
	t.Helper()
	out, err := exec.Command("bsdtar", "-tf", file).CombinedOutput()
	if err != nil {
		t.Fatalf("bsdtar -tf %s: %v\n%s", file, err, out)
	}
	got := map[string]bool{}
	for _, l := range strings.Fields(string(out)) {
		got["/"+l] = true
	}
	return got
}

func TestBuildFromDirs(t *testing.T) {
	need(t, "bsdtar", "cpio")
	tmp := t.TempDir()
	const rel = "6.1.0-28-amd64"
	mods := filepath.Join(tmp, "lib/modules", rel)
	moduleTree(t, mods)
	kernel := filepath.Join(tmp, "vmlinuz-"+rel)
	must(t, os.WriteFile(kernel, fakeKernel(rel), 0o644))
	st, err := store.Open(filepath.Join(tmp, "store"))
	must(t, err)
	ipxe := filepath.Join(tmp, "ipxe")
	must(t, os.MkdirAll(ipxe, 0o755))
	must(t, os.WriteFile(filepath.Join(ipxe, BIOSFile), []byte("bios"), 0o644))

	out := filepath.Join(tmp, "boot")
	var stages []string
	res, err := Build(t.Context(), Config{
		Kernel: kernel, Modules: mods, KeysDir: keysDir(t, st), Out: out, IPXEDir: ipxe,
		ModuleNames: []string{"ext4", "e1000", "ahci", "sd_mod", "igc"},
		Progress:    func(s string, _, _ int64) { stages = append(stages, s) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.KernelRelease != rel || len(res.Modules) != 7 || !slices.Equal(res.Builtin, []string{"sd_mod"}) || !slices.Equal(res.Absent, []string{"igc"}) {
		t.Errorf("result %+v", res)
	}
	if !errors.Is(res.IPXEMissing, ErrNoIPXE) || !slices.Equal(res.IPXE, []string{BIOSFile}) {
		t.Errorf("iPXE %v, missing %v", res.IPXE, res.IPXEMissing)
	}
	if len(stages) == 0 {
		t.Error("no progress")
	}
	got := listInitrd(t, filepath.Join(out, InitrdFile))
	for _, p := range []string{"/init", "/sbin/modprobe", LabseedPath, KeysDir + "/image.pub", KeysDir + "/lab.key",
		"/lib/modules/" + rel + "/kernel/fs/jbd2/jbd2.ko", "/lib/modules/" + rel + "/modules.alias",
		"/usr/sbin/sfdisk", "/usr/sbin/mkfs.ext4", "/proc", "/dev"} {
		if !got[p] {
			t.Errorf("initrd has no %s", p)
		}
	}
	if got["/lib/modules/"+rel+"/kernel/drivers/gpu/drm/nouveau/nouveau.ko"] {
		t.Error("initrd has a module nobody asked for")
	}
	if got["/etc/labseed/keys/image.key"] || got["/etc/labseed/keys/admin.key"] {
		t.Error("initrd holds a secret key")
	}
	for p := range got {
		if strings.HasSuffix(p, ".so.6") && strings.Contains(p, "libc") {
			return
		}
	}
	t.Error("initrd has no libc for its tools")
}

func TestBuildGzipCpio(t *testing.T) {
	need(t, "cpio")
	tmp := t.TempDir()
	const rel = "6.1.0-9-amd64"
	mods := filepath.Join(tmp, rel)
	moduleTree(t, mods)
	kernel := filepath.Join(tmp, "vmlinuz")
	must(t, os.WriteFile(kernel, fakeKernel(rel), 0o644))
	st, err := store.Open(filepath.Join(tmp, "store"))
	must(t, err)
	out := filepath.Join(tmp, "boot")
	_, err = Build(t.Context(), Config{Kernel: kernel, Modules: mods, KeysDir: keysDir(t, st), Out: out, Gzip: true,
		Tools: []Tool{{Name: "blkid", Package: "util-linux"}}})
	must(t, err)
	f, err := os.Open(filepath.Join(out, InitrdFile))
	must(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	must(t, err)
	cmd := exec.Command("cpio", "-t", "--quiet")
	cmd.Stdin = zr
	list, err := cmd.Output()
	must(t, err)
	if !strings.Contains(string(list), "usr/sbin/blkid\n") || !strings.Contains(string(list), "lib/modules/"+rel+"/kernel/fs/ext4/ext4.ko\n") {
		t.Errorf("cpio -t lists:\n%s", list)
	}

	// A kernel whose release differs from its modules' is refused.
	must(t, os.WriteFile(kernel, fakeKernel("6.1.0-10-amd64"), 0o644))
	if _, err := Build(t.Context(), Config{Kernel: kernel, Modules: mods, KeysDir: keysDir(t, st), Out: out}); err == nil || !strings.Contains(err.Error(), "6.1.0-10-amd64") {
		t.Errorf("mismatched kernel: %v", err)
	}
	// A missing required tool names its package.
	must(t, os.WriteFile(kernel, fakeKernel(rel), 0o644))
	_, err = Build(t.Context(), Config{Kernel: kernel, Modules: mods, KeysDir: keysDir(t, st), Out: out,
		Tools: []Tool{{Name: "mkfs.nothing", Package: "nothing-progs"}}})
	if err == nil || !strings.Contains(err.Error(), "nothing-progs") {
		t.Errorf("missing tool: %v", err)
	}
}

// imageTar is a merged-/usr root with two kernels, one without modules.
func imageTar(t *testing.T, mods map[string][]byte, rels ...string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	tw := tar.NewWriter(zw)
	add := func(h *tar.Header, data []byte) {
		h.ModTime, h.Format = time.Unix(1700000000, 0), tar.FormatPAX
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(data))
		}
		must(t, tw.WriteHeader(h))
		tw.Write(data)
	}
	add(&tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	add(&tar.Header{Name: "./lib", Typeflag: tar.TypeSymlink, Linkname: "usr/lib", Mode: 0o777}, nil)
	add(&tar.Header{Name: "./boot/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	add(&tar.Header{Name: "./boot/vmlinuz-5.10.0-1-amd64", Typeflag: tar.TypeReg, Mode: 0o644}, fakeKernel("5.10.0-1-amd64"))
	for _, rel := range rels {
		k := append(fakeKernel(rel), bytes.Repeat([]byte("kernel"), 100000)...) // 600 kB: split
		add(&tar.Header{Name: "./boot/vmlinuz-" + rel, Typeflag: tar.TypeReg, Mode: 0o644}, k)
		var names []string
		for n := range mods {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			add(&tar.Header{Name: "./usr/lib/modules/" + rel + "/" + n, Typeflag: tar.TypeReg, Mode: 0o644}, mods[n])
		}
	}
	add(&tar.Header{Name: "./etc/hostname", Typeflag: tar.TypeReg, Mode: 0o644}, []byte("master\n"))
	must(t, tw.Close())
	must(t, zw.Close())
	return b.Bytes()
}

// TestBuildFromImage publishes an image with a kernel and builds from
// its chunks: the kernel and modules are the image's bytes.
func TestBuildFromImage(t *testing.T) {
	need(t, "bsdtar")
	tmp := t.TempDir()
	mods := moduleTree(t, filepath.Join(tmp, "mods"))
	st, err := store.Open(filepath.Join(tmp, "store"))
	must(t, err)
	small := chunker.Config{Name: "lab1", ChunkMin: 16 << 10, ChunkAvg: 64 << 10, ChunkMax: 128 << 10}
	img, err := st.Publish(t.Context(), bytes.NewReader(imageTar(t, mods, "6.1.0-9-amd64", "6.1.0-28-amd64")), small)
	must(t, err)
	out := filepath.Join(tmp, "boot")
	var chunksRead int64
	res, err := Build(t.Context(), Config{Image: img, KeysDir: keysDir(t, st), Out: out,
		ModuleNames: []string{"ext4", "e1000"}, Tools: []Tool{},
		Progress: func(s string, done, total int64) {
			if total > 0 {
				chunksRead = done
			}
		}})
	must(t, err)
	if res.KernelRelease != "6.1.0-28-amd64" || res.KernelFrom != "image lab1 v1" || len(res.Modules) != 5 {
		t.Errorf("result %+v", res)
	}
	if chunksRead != int64(len(img.Manifest.Chunks)) {
		t.Errorf("progress reached %d of %d chunks", chunksRead, len(img.Manifest.Chunks))
	}
	k, err := os.ReadFile(filepath.Join(out, KernelFile))
	must(t, err)
	if kernelRelease(k) != "6.1.0-28-amd64" || len(k) != 0x1000+600000 {
		t.Errorf("kernel written: %d bytes, release %q", len(k), kernelRelease(k))
	}
	x := t.TempDir()
	if out, err := exec.Command("bsdtar", "-xf", filepath.Join(out, InitrdFile), "-C", x).CombinedOutput(); err != nil {
		t.Fatalf("bsdtar -x: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(x, "lib/modules/6.1.0-28-amd64/kernel/fs/ext4/ext4.ko"))
	if err != nil || !bytes.Equal(got, mods["kernel/fs/ext4/ext4.ko"]) {
		t.Errorf("ext4.ko in the initrd differs from the image's (%d bytes, %v)", len(got), err)
	}

	// An image without a kernel: the error says so and names the flags.
	img2, err := st.Publish(t.Context(), bytes.NewReader(imageTar(t, nil)), chunker.Config{Name: "nokernel"})
	must(t, err)
	_, err = Build(context.Background(), Config{Image: img2, KeysDir: keysDir(t, st), Out: out, Tools: []Tool{}})
	if !errors.Is(err, ErrNoKernel) || !strings.Contains(err.Error(), "--kernel") {
		t.Errorf("image without a kernel: %v", err)
	}
}

func TestCompareVersions(t *testing.T) {
	vs := []string{"6.1.0-28-amd64", "5.10.0-1-amd64", "6.1.0-9-amd64", "6.12.1-amd64", "6.1.0-28-rt-amd64"}
	slices.SortFunc(vs, compareVersions)
	want := []string{"5.10.0-1-amd64", "6.1.0-9-amd64", "6.1.0-28-amd64", "6.1.0-28-rt-amd64", "6.12.1-amd64"}
	if !slices.Equal(vs, want) {
		t.Errorf("sorted %q, want %q", vs, want)
	}
}
