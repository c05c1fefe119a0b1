package clone

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/internal/fixture"
	"github.com/labseed/labseed/store"
	"github.com/labseed/labseed/treecmp"
	"golang.org/x/sys/unix"
)

// syncChunks publishes the sync test's images in small chunks and pieces,
// so that a few changed files change a few of many chunks.
var syncChunks = chunker.Config{Name: "lab1", Level: 1, ChunkMin: 128 << 10, ChunkAvg: 512 << 10, ChunkMax: 2 << 20, PieceLength: 32 << 10}

// tarTree returns a tar stream of dir, as sysadmins make one.
func tarTree(dir string) func(io.Writer) error {
	return func(w io.Writer) error {
		cmd := exec.Command("tar", "-C", dir, "--xattrs", "--numeric-owner", "-cf", "-", ".")
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = w, &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("tar: %w: %s", err, stderr.String())
		}
		return nil
	}
}

// syncTree is the fixture system with 16 MiB of data files, some of which
// are text, and a home directory.
func syncTree(t *testing.T) string {
	t.Helper()
	tree := filepath.Join(t.TempDir(), "tree")
	if err := fixture.BuildSystemTree(tree, fixture.SystemTreeOptions{Extlinux: true}); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	data := filepath.Join(tree, "usr/share/data")
	os.MkdirAll(data, 0o755)
	for i := range 48 {
		b := make([]byte, 200<<10+r.IntN(300<<10))
		for j := range b {
			b[j] = byte('a' + r.IntN(20))
		}
		if err := os.WriteFile(filepath.Join(data, fmt.Sprintf("f%02d", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(tree, "home/teacher"), 0o755)
	os.WriteFile(filepath.Join(tree, "home/teacher/readme"), []byte("the teacher's\n"), 0o644)
	return tree
}

// mounted mounts partition n of d, runs fn on it and unmounts it.
func (d *testDisk) mounted(t *testing.T, n int, fn func(root string)) {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount(d.part(n), dir, "ext4", 0, ""); err != nil {
		t.Fatalf("mount %s: %v", d.part(n), err)
	}
	defer func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	}()
	fn(dir)
}

// dealt returns the payload bytes the print server dealt so far.
func (l *testLab) dealt() int64 {
	l.t.Helper()
	rec := httptest.NewRecorder()
	l.srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", api.PathMetrics, nil))
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "labseed_server_dealt_bytes_total "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return int64(f)
		}
	}
	l.t.Fatal("no labseed_server_dealt_bytes_total")
	return 0
}

// publish publishes the tar stream image as the lab's next version and
// waits until the print server serves it.
func (l *testLab) publish(image func(io.Writer) error, cfg chunker.Config) *store.Image {
	l.t.Helper()
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(image(pw)) }()
	im, err := l.st.Publish(l.t.Context(), pr, cfg)
	if err != nil {
		l.t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if ims := l.srv.Status().Images; len(ims) == 1 && ims[0].Version == im.Manifest.Version {
			return im
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("the print server does not serve v%d", im.Manifest.Version)
		}
	}
}

// lastDetail returns testMAC's last report, "STEP STATE: DETAIL".
func (l *testLab) lastDetail(t *testing.T) string {
	rs := l.reports(t)
	if len(rs) == 0 {
		return ""
	}
	return rs[len(rs)-1].Step + " " + rs[len(rs)-1].State + ": " + rs[len(rs)-1].Detail
}

// TestCloneSync re-images a disk that holds v1, changed as students
// change a lab's machine, with v2: the clone syncs it; when the image is
// in, the tree equals v2 extracted afresh (but for the kept /home, left as
// the students left it); the print server sends no more than the changed
// chunks; nothing stays mounted. Then a damaged file system, a disk
// without labseed's record and --full get a full clone.
func TestCloneSync(t *testing.T) {
	needRoot(t)
	if os.Getenv("LABSEED_LONG") == "" {
		t.Skip("five clones onto a loop device: set LABSEED_LONG=1")
	}
	if _, err := exec.LookPath("debugfs"); err != nil {
		t.Skip("debugfs is not installed (Debian: e2fsprogs)")
	}
	tree := syncTree(t)
	conf := labConf + "keep = /home\n"
	l := newTestLabConfig(t, tarTree(tree), conf, syncChunks)
	d := newTestDisk(t, 1<<30)
	r := l.cloneConfig(t, d)
	r.run(t, t.Context(), false)
	mustContain(t, "the first clone's console", r.console.String(), "making the ext4 file system", "full clone: the disk had no partition table")

	// What students do to a lab machine.
	var keptBefore map[string]treecmp.Entry
	d.mounted(t, 1, func(root string) {
		p := func(name string) string { return filepath.Join(root, name) }
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		fi, err := os.Stat(p("usr/share/data/f03"))
		must(err)
		f, err := os.OpenFile(p("usr/share/data/f03"), os.O_WRONLY, 0)
		must(err)
		_, err = f.WriteAt([]byte("STUDENT"), 1000)
		must(err)
		f.Close()
		must(os.Chtimes(p("usr/share/data/f03"), fi.ModTime(), fi.ModTime()))
		must(os.Chmod(p("usr/share/data/f04"), 0o777))
		must(os.MkdirAll(p("usr/games/student"), 0o755))
		must(os.WriteFile(p("usr/games/student/game"), bytes.Repeat([]byte("g"), 1<<20), 0o755))
		must(os.WriteFile(p("etc/student.conf"), []byte("mine\n"), 0o644))
		must(os.Remove(p("usr/share/data/f05")))
		must(os.Remove(p("usr/share/data/f06")))
		must(os.Symlink("/etc/passwd", p("usr/share/data/f06")))
		must(os.MkdirAll(p("home/student"), 0o700))
		must(os.WriteFile(p("home/student/notes"), []byte("notes\n"), 0o600))
		must(os.WriteFile(p("home/teacher/readme"), []byte("changed by a student\n"), 0o644))
		keptBefore, err = treecmp.Scan(p("home"), treecmp.Options{})
		must(err)
	})

	// v2: a few files changed, added and removed.
	write := func(name string, b []byte) {
		os.MkdirAll(filepath.Dir(filepath.Join(tree, name)), 0o755)
		if err := os.WriteFile(filepath.Join(tree, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f20, _ := os.ReadFile(filepath.Join(tree, "usr/share/data/f20"))
	copy(f20[len(f20)/2:], "v2 of this file")
	write("usr/share/data/f20", f20)
	write("usr/share/data/f33", []byte("v2 made this one short\n"))
	write("usr/share/doc/new-in-v2", []byte("new\n"))
	os.Remove(filepath.Join(tree, "usr/share/data/f40"))
	im1, err := l.st.Image("lab1")
	if err != nil {
		t.Fatal(err)
	}
	im2 := l.publish(tarTree(tree), syncChunks)
	var changed int64
	for _, c := range im2.Manifest.Chunks {
		if !slices.ContainsFunc(im1.Manifest.Chunks, func(o chunker.Chunk) bool { return o.SHA256 == c.SHA256 }) {
			changed += c.Size
		}
	}
	fresh := filepath.Join(t.TempDir(), "fresh")
	a, err := chunker.NewApplier(im2.Manifest, chunker.ApplyConfig{Target: fresh})
	if err != nil {
		t.Fatal(err)
	}
	if err := im2.Extract(t.Context(), a, nil, 2); err != nil {
		t.Fatal(err)
	}
	a.Cleanup()
	a.Close()

	dealt := l.dealt()
	r = l.cloneConfig(t, d)
	checked := false
	r.cfg.afterFetch = func(root string) error {
		checked = true
		opts := treecmp.Options{Ignore: []string{chunker.StateDirName, "home", "lost+found"}}
		diffs, err := treecmp.Compare(fresh, root, opts)
		if err != nil {
			return err
		}
		for _, d := range diffs {
			t.Errorf("v2 extracted vs the synced disk: %s", d)
		}
		kept, err := treecmp.Scan(filepath.Join(root, "home"), treecmp.Options{})
		if err != nil {
			return err
		}
		for _, d := range treecmp.Diff(keptBefore, kept, treecmp.Options{}) {
			t.Errorf("the kept /home changed: %s", d)
		}
		return nil
	}
	r.run(t, t.Context(), false)
	if !checked {
		t.Fatal("the synced tree was not checked")
	}
	out := r.console.String()
	mustContain(t, "the sync's console", out, "syncing "+d.part(1)+": it holds lab1 v1", "synced: ", "done: ")
	if strings.Contains(out, "making the ext4") {
		t.Errorf("the sync formatted the disk:\n%s", out)
	}
	got := l.dealt() - dealt
	t.Logf("the sync fetched %d bytes; the chunks that changed hold %d: %.2f", got, changed, float64(got)/float64(changed))
	if float64(got) > 1.2*float64(changed) {
		t.Errorf("the sync fetched %d bytes, more than 1.2 x the %d bytes of the chunks that changed", got, changed)
	}
	if det := l.lastDetail(t); !strings.Contains(det, "done done: synced: ") {
		t.Errorf("the last report: %q", det)
	}
	d.mounted(t, 1, func(root string) {
		if rec, _, err := chunker.ReadInstalled(root); err != nil || rec.Version != 2 {
			t.Errorf("the record after the sync: %+v, %v", rec, err)
		}
		// The configuration and the bootloader ran as after a full clone.
		if got := readFile(t, root, "etc/hostname"); got != "ws07\n" {
			t.Errorf("etc/hostname = %q", got)
		}
		mustContain(t, "extlinux.conf", readFile(t, root, "boot/extlinux/extlinux.conf"), "APPEND root=UUID="+blkidUUID(t, d.part(1)))
	})

	// A damaged file system: a cleared inode that a directory names.
	if out, err := exec.Command("debugfs", "-w", "-R", "clri /etc/hostname", d.part(1)).CombinedOutput(); err != nil {
		t.Fatalf("debugfs: %v: %s", err, out)
	}
	r = l.cloneConfig(t, d)
	r.run(t, t.Context(), false)
	mustContain(t, "the console of a damaged file system's clone", r.console.String(),
		"full clone: the file system on "+d.part(1)+" is damaged", "making the ext4 file system")
	if det := l.lastDetail(t); !strings.Contains(det, "full clone: the file system on") {
		t.Errorf("the last report: %q", det)
	}

	// No record: a full clone, which records v2.
	d.mounted(t, 1, func(root string) {
		if err := os.RemoveAll(filepath.Join(root, chunker.StateDirName)); err != nil {
			t.Fatal(err)
		}
	})
	r = l.cloneConfig(t, d)
	r.run(t, t.Context(), false)
	mustContain(t, "the console of a clone without a record", r.console.String(), "holds no record of an image installed by labseed", "making the ext4 file system")

	// --full formats a disk that could be synced.
	r = l.cloneConfig(t, d)
	r.cfg.Full = true
	r.run(t, t.Context(), false)
	mustContain(t, "the console of a clone with --full", r.console.String(), "full clone: --full", "making the ext4 file system")
}
