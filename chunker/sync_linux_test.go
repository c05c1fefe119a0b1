package chunker

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/labseed/labseed/internal/fixture"
	"github.com/labseed/labseed/treecmp"
	"golang.org/x/sys/unix"
)

// syncImages builds the root tree, v1 as GNU tar packs it (--sparse, so
// that the sparse file is published with holes), and v2: v1 with files
// changed (one in the middle of a file that spans chunks, with hard
// links), added and removed, a directory become a symbolic link and a
// symbolic link become a file. It returns both tarballs and GNU tar's
// extraction of v2.
func syncImages(t *testing.T, priv bool) (v1, v2 []byte, want string) {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := fixture.BuildRootTree(src, fixture.RootTreeOptions{BigFileSize: 3 << 20, Privileged: priv}); err != nil {
		t.Fatal(err)
	}
	pack := func(name string) []byte {
		tgz := filepath.Join(dir, name)
		run(t, "tar", "--xattrs", "--numeric-owner", "--sparse", "-C", src, "-czf", tgz, ".")
		b, err := os.ReadFile(tgz)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	v1 = pack("v1.tar.gz")
	big := filepath.Join(src, fixture.PathBig)
	f, err := os.OpenFile(big, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte("v2"), 20000), 1<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	perl := filepath.Join(src, "usr/bin/perl") // hard links in two other places
	if err := os.WriteFile(perl+".new", bytes.Repeat([]byte("perl v2\n"), 5000), 0o755); err != nil {
		t.Fatal(err)
	}
	f, _ = os.OpenFile(perl, os.O_WRONLY|os.O_TRUNC, 0)
	f.Write(bytes.Repeat([]byte("perl v2\n"), 5000))
	f.Close()
	os.Remove(perl + ".new")
	write := func(name, content string) {
		p := filepath.Join(src, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("etc/labseed.conf", "changed in v2\n")
	write("usr/share/doc/pkg99/new.txt", "added in v2\n")
	if err := os.RemoveAll(filepath.Join(src, "usr/share/doc/pkg03")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(src, "var/empty/a")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../mail", filepath.Join(src, "var/empty/a")); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(src, "etc/os-release"))
	write("etc/os-release", "ID=labseed-v2\n")
	v2 = pack("v2.tar.gz")
	want = filepath.Join(dir, "want")
	os.Mkdir(want, 0o755)
	run(t, "tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-C", want, "-xzf", filepath.Join(dir, "v2.tar.gz"))
	return v1, v2, want
}

// studentEdits changes target as students change a lab's disk; kept is
// the path of the tree that a sync keeps.
func studentEdits(t *testing.T, target string) {
	t.Helper()
	p := func(name string) string { return filepath.Join(target, name) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// An edit that keeps the size and the mtime.
	fi, err := os.Stat(p("etc/hostname"))
	must(err)
	must(os.WriteFile(p("etc/hostname"), []byte("hacked\n\n"), 0o644))
	must(os.Chtimes(p("etc/hostname"), fi.ModTime(), fi.ModTime()))
	fi, err = os.Stat(p("usr/bin/dash"))
	must(err)
	f, err := os.OpenFile(p("usr/bin/dash"), os.O_WRONLY, 0)
	must(err)
	f.WriteAt([]byte("X"), 1000)
	f.Close()
	must(os.Chtimes(p("usr/bin/dash"), fi.ModTime(), fi.ModTime()))
	must(os.Chmod(p("usr/bin/wall"), 0o777))
	// Owner and mtime changed, the content kept.
	if os.Geteuid() == 0 {
		must(os.Lchown(p("usr/bin/wall"), 1234, 5678))
	}
	must(os.Chtimes(p("usr/bin/wall"), time.Unix(1e9, 0), time.Unix(1e9, 0)))
	must(os.MkdirAll(p("usr/local-junk/sub"), 0o755))
	must(os.WriteFile(p("usr/local-junk/sub/game"), []byte("game"), 0o755))
	must(os.WriteFile(p("etc/cron.d-evil"), []byte("* * * * * root sh\n"), 0o644))
	must(os.Remove(p("usr/share/doc/pkg00/file01.txt")))
	must(os.Remove(p("usr/bin/mawk")))
	must(os.Symlink("/tmp", p("usr/bin/mawk")))
	// A directory of the image become a link to elsewhere in the tree:
	// the image's files must not be written through it.
	must(os.MkdirAll(p("tmp/pkg05"), 0o755))
	must(os.RemoveAll(p("usr/share/doc/pkg05")))
	must(os.Symlink("../../../tmp/pkg05", p("usr/share/doc/pkg05")))
	must(unix.Setxattr(p("usr/bin/su"), "user.student", []byte("x"), 0))
	must(os.Link(p("usr/bin/dash"), p("tmp/dash-link")))
	// Two files of the image, both empty, made one: ln -f.
	must(os.Remove(p("var/log/empty.log")))
	must(os.Link(p("etc/empty.conf"), p("var/log/empty.log")))
	must(os.Remove(p("usr/lib/os-release")))
	must(unix.Mkfifo(p("usr/lib/os-release"), 0o644))
	// Data in the sparse file's hole, and the file that spans chunks cut.
	f, err = os.OpenFile(p(fixture.PathSparse), os.O_WRONLY, 0)
	must(err)
	_, err = f.WriteAt([]byte("in the hole"), fixture.SparseSize/2)
	must(err)
	f.Close()
	must(os.Truncate(p(fixture.PathBig), 1<<20))
	// Immutable (chattr +i), as extlinux makes its ldlinux.sys: a file
	// the image does not hold, and one it does.
	must(os.WriteFile(p("boot/ldlinux.sys"), []byte("boot"), 0o444))
	for _, name := range []string{"boot/ldlinux.sys", "usr/bin/ping"} {
		if out, err := exec.Command("chattr", "+i", p(name)).CombinedOutput(); err != nil {
			t.Logf("chattr +i %s: %v %s (no inode flags here?)", name, err, out)
		}
		t.Cleanup(func() { exec.Command("chattr", "-i", p(name)).Run() })
	}
	// In the kept path.
	must(os.WriteFile(p("home/ghost/.profile"), []byte("mine\n"), 0o644))
	must(os.WriteFile(p("home/ghost/notes"), []byte("notes\n"), 0o600))
}

// TestSyncAgainstGNUTar extracts v1, changes the tree as students do, and
// syncs it to v2, interrupting the sync halfway: the tree equals GNU tar's
// extraction of v2, but for the kept path, which is as the students left it.
// It does so twice: with v1 recorded as installed with its skeletons (the
// chunks v2 shares with v1 are rebuilt from the disk where the students
// left them intact, one skeleton is damaged), and without (every chunk
// is decompressed).
func TestSyncAgainstGNUTar(t *testing.T) {
	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("GNU tar not installed")
	}
	priv := os.Geteuid() == 0
	v1, v2, want := syncImages(t, priv)
	m1, p1 := publish(t, v1, smallChunks)
	m2, p2 := publish(t, v2, smallChunks)
	var shared []string
	for _, c := range m2.Chunks {
		if slices.ContainsFunc(m1.Chunks, func(o Chunk) bool { return o.SHA256 == c.SHA256 }) {
			shared = append(shared, c.SHA256)
		}
	}
	t.Logf("v1 %d chunks, v2 %d chunks, %d shared", len(m1.Chunks), len(m2.Chunks), len(shared))
	for _, installed := range []bool{false, true} {
		t.Run(map[bool]string{false: "decompressed", true: "rebuilt"}[installed], func(t *testing.T) {
			testSync(t, m1, m2, p1, p2, want, installed, shared)
		})
	}
}

func testSync(t *testing.T, m1, m2 *Manifest, p1, p2 []byte, want string, installed bool, shared []string) {
	target := filepath.Join(t.TempDir(), "target")
	if !installed {
		applyAll(t, newApplier(t, m1, target), p1, rand.Perm(len(m1.Chunks)))
	} else {
		installWithSkeletons(t, m1, p1, target)
		// A skeleton damaged: its chunk is decompressed.
		sk := filepath.Join(InstalledDir(target), skeletonDirName, shared[0])
		b, err := os.ReadFile(sk)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 1
		if err := os.WriteFile(sk, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	studentEdits(t, target)
	const kept = "home/ghost"
	before, err := treecmp.Scan(filepath.Join(target, kept), treecmp.Options{})
	if err != nil {
		t.Fatal(err)
	}

	// Half the chunks, then the run stops; a run that does not ask for a
	// sync resumes it as a sync.
	order := rand.Perm(len(m2.Chunks))
	a, err := NewApplier(m2, ApplyConfig{Target: target, Sync: true, Keep: []string{"/" + kept, "srv/not-there"}})
	if err != nil {
		t.Fatal(err)
	}
	if !a.Syncing() {
		t.Fatal("Syncing() is false")
	}
	ctx := context.Background()
	for _, i := range order[:len(order)/2] {
		if err := a.Apply(ctx, i, chunk(m2, p2, i)); err != nil {
			t.Fatalf("Apply(%d): %v", i, err)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := NewApplier(m2, ApplyConfig{Target: filepath.Join(t.TempDir(), "x")}); err != nil {
		t.Fatal(err)
	}
	a = newApplier(t, m2, target)
	if !a.Syncing() {
		t.Fatal("the resumed run does not sync")
	}
	applyAll(t, a, p2, order)
	st := a.Stats()
	t.Logf("sync: %+v", st)

	diffs, err := treecmp.Compare(want, target, treecmp.Options{Ignore: []string{StateDirName, kept}})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Errorf("GNU tar's v2 vs the synced tree: %s", d)
	}
	after, err := treecmp.Scan(filepath.Join(target, kept), treecmp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range treecmp.Diff(before, after, treecmp.Options{}) {
		t.Errorf("the kept path changed: %s", d)
	}
	ents, err := os.ReadDir(filepath.Join(target, StateDirName))
	switch {
	case !installed && !errors.Is(err, os.ErrNotExist):
		t.Errorf("state left after Cleanup: %v", err)
	case installed && (len(ents) != 1 || ents[0].Name() != InstalledDirName):
		t.Errorf("state left after Cleanup: %v, want the installed record only", ents)
	}
	// tmp/pkg05 and tmp/dash-link, usr/local-junk (3 entries), etc/cron.d-evil.
	if st.Removed < 6 || st.Unchanged == 0 || st.Written == 0 {
		t.Errorf("stats %+v: want at least 6 removed and some unchanged and written", st)
	}
	// The students' edits and the damaged skeleton leave some of the
	// shared chunks to decompress (st counts the resumed run's only).
	if installed && (st.Rebuilt == 0 || st.Rebuilt >= int64(len(shared))) {
		t.Errorf("%d chunks rebuilt from the disk, want some of the %d shared, not all", st.Rebuilt, len(shared))
	}
	if !installed && st.Rebuilt != 0 {
		t.Errorf("%d chunks rebuilt from the disk without skeletons", st.Rebuilt)
	}
}

// installWithSkeletons extracts m into target as labseed peer does: the
// image recorded as installed with its chunks' skeletons.
func installWithSkeletons(t testing.TB, m *Manifest, payload []byte, target string) {
	t.Helper()
	a, err := NewApplier(m, ApplyConfig{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()
	for _, i := range rand.Perm(len(m.Chunks)) {
		if err := a.Apply(ctx, i, chunk(m, payload, i)); err != nil {
			t.Fatalf("Apply(%d): %v", i, err)
		}
	}
	if err := a.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	if err := WriteInstalled(target, m, "", a.SkeletonDir(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := a.Cleanup(); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(filepath.Join(InstalledDir(target), skeletonDirName))
	if err != nil || len(ents) != len(m.Chunks) {
		t.Fatalf("%d skeletons kept, want %d: %v", len(ents), len(m.Chunks), err)
	}
}

// TestSyncRebuilds syncs a tree that is the image already, recorded as
// installed with its skeletons: every chunk is rebuilt from the disk,
// none decompressed. Then a student edits a file keeping its size and
// mtime: its chunk no longer rebuilds (it is decompressed and the file
// written again), the others still do.
func TestSyncRebuilds(t *testing.T) {
	in := genImage(t, 3, 4<<20)
	m, payload := publish(t, in, smallChunks)
	target := filepath.Join(t.TempDir(), "target")
	installWithSkeletons(t, m, payload, target)
	ref, err := treecmp.Scan(target, cmpOpts)
	if err != nil {
		t.Fatal(err)
	}
	sync := func() SyncStats {
		t.Helper()
		a, err := NewApplier(m, ApplyConfig{Target: target, Sync: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		ctx := context.Background()
		fromDisk := 0
		for _, i := range rand.Perm(len(m.Chunks)) {
			// As labseed peer does: the bytes only for a chunk the
			// disk cannot give.
			ok, err := a.ApplyFromDisk(ctx, i)
			if err != nil {
				t.Fatalf("ApplyFromDisk(%d): %v", i, err)
			}
			if ok {
				fromDisk++
			} else if err := a.Apply(ctx, i, chunk(m, payload, i)); err != nil {
				t.Fatalf("Apply(%d): %v", i, err)
			}
		}
		if int64(fromDisk) != a.Stats().Rebuilt {
			t.Errorf("%d chunks applied from the disk, %d rebuilt", fromDisk, a.Stats().Rebuilt)
		}
		if err := a.Finish(ctx); err != nil {
			t.Fatal(err)
		}
		if err := WriteInstalled(target, m, "", a.SkeletonDir(), time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := a.Cleanup(); err != nil {
			t.Fatal(err)
		}
		got, err := treecmp.Scan(target, cmpOpts)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range treecmp.Diff(ref, got, cmpOpts) {
			t.Errorf("the tree differs from the image: %s", d)
		}
		return a.Stats()
	}
	if st := sync(); st.Rebuilt != int64(len(m.Chunks)) || st.Written != 0 {
		t.Errorf("stats %+v: want all %d chunks rebuilt, nothing written", st, len(m.Chunks))
	}
	// The largest file, edited in its middle.
	var big string
	var size int64
	filepath.Walk(target, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && fi.Size() > size && !strings.Contains(p, StateDirName) {
			big, size = p, fi.Size()
		}
		return nil
	})
	fi, err := os.Stat(big)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(big, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	f.ReadAt(b, size/2)
	f.WriteAt([]byte{b[0] ^ 0xff}, size/2)
	f.Close()
	os.Chtimes(big, fi.ModTime(), fi.ModTime())
	if st := sync(); st.Rebuilt != int64(len(m.Chunks)-1) || st.Written != 1 {
		t.Errorf("stats %+v after an edit of %s keeping size and mtime: want %d chunks rebuilt, 1 entry written", st, big, len(m.Chunks)-1)
	}
}

// TestSyncIdentical syncs a tree that is the image already: nothing is
// written or removed.
func TestSyncIdentical(t *testing.T) {
	in := genImage(t, 3, 4<<20)
	m, payload := publish(t, in, smallChunks)
	target := filepath.Join(t.TempDir(), "target")
	applyAll(t, newApplier(t, m, target), payload, rand.Perm(len(m.Chunks)))
	ref, err := treecmp.Scan(target, cmpOpts)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	a, err := NewApplier(m, ApplyConfig{Target: target, Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	applyAll(t, a, payload, rand.Perm(len(m.Chunks)))
	if st := a.Stats(); st.Written != 0 || st.Removed != 0 || st.Unchanged == 0 {
		t.Errorf("stats %+v: want nothing written or removed", st)
	}
	got, err := treecmp.Scan(target, cmpOpts)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range treecmp.Diff(ref, got, cmpOpts) {
		t.Errorf("the tree changed: %s", d)
	}
}

// TestInstalled writes and reads the record of an installed image, keeps
// the payload beside it, and RemoveState spares it.
func TestInstalled(t *testing.T) {
	in := genImage(t, 4, 1<<20)
	m, payload := publish(t, in, smallChunks)
	target := t.TempDir()
	if _, _, err := ReadInstalled(target); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("ReadInstalled of an empty target: %v", err)
	}
	state := filepath.Join(target, StateDirName)
	os.MkdirAll(filepath.Join(state, "torrent"), 0o700)
	staged := filepath.Join(state, "torrent", "x.chunks")
	if err := os.WriteFile(staged, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1700000000, 0)
	if err := WriteInstalled(target, m, staged, "", now); err != nil {
		t.Fatal(err)
	}
	rec, got, err := ReadInstalled(target)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Name != m.Name || rec.Version != m.Version || rec.ID != m.ID() || !rec.Payload || !rec.Time.Equal(now) || got.ID() != m.ID() {
		t.Errorf("record %+v, manifest %s: want %s v%d %s", rec, got.ID(), m.Name, m.Version, m.ID())
	}
	if b, err := os.ReadFile(InstalledPayload(target)); err != nil || !bytes.Equal(b, payload) {
		t.Errorf("kept payload: %d bytes, %v", len(b), err)
	}
	os.WriteFile(filepath.Join(state, "image"), []byte("x"), 0o600)
	if err := RemoveState(target); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(state)
	if len(ents) != 1 || ents[0].Name() != InstalledDirName {
		t.Errorf("after RemoveState: %v", ents)
	}
	os.WriteFile(filepath.Join(InstalledDir(target), "record.json"), []byte("{"), 0o600)
	if _, _, err := ReadInstalled(target); err == nil || errors.Is(err, ErrNotInstalled) {
		t.Errorf("a damaged record: %v", err)
	}
}

// TestRemoveStateRelative: the record of the installed image is kept
// whether the target and its state directory are given relative to the
// working directory or not ("labseed peer --target tgt" lost it: the
// Applier holds the target absolute, the state directory as given).
func TestRemoveStateRelative(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	state := filepath.Join(dir, "tgt", StateDirName)
	for _, c := range []struct{ target, state string }{
		{filepath.Join(dir, "tgt"), filepath.Join("tgt", StateDirName)},
		{"tgt", state},
		{"./tgt/", "tgt/" + StateDirName},
	} {
		os.MkdirAll(filepath.Join(state, InstalledDirName), 0o700)
		os.WriteFile(filepath.Join(state, "image"), []byte("x"), 0o600)
		if err := removeState(c.target, c.state); err != nil {
			t.Fatal(err)
		}
		if ents, _ := os.ReadDir(state); len(ents) != 1 || ents[0].Name() != InstalledDirName {
			t.Errorf("target %q, state %q: the state directory holds %v, want only %s", c.target, c.state, ents, InstalledDirName)
		}
	}
	// Another state directory goes whole.
	other := filepath.Join(dir, "elsewhere")
	os.MkdirAll(filepath.Join(other, InstalledDirName), 0o700)
	if err := removeState("tgt", "elsewhere"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(other); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a state directory not the target's own is left: %v", err)
	}
}

// BenchmarkSyncRebuild measures what a sync of a tree that holds the
// image costs in CPU (the lab bench's sync is bound by the CPU of eight
// workstations on two cores): the chunks rebuilt from their skeletons
// and the files (labseed since format 3), against the baseline, every
// chunk decompressed and compared with the files (the skeletons moved
// away), in the same run:
//
//	go test -run '^$' -bench BenchmarkSyncRebuild -benchtime 3x ./chunker
//	LABSEED_BENCH_IMAGE=/var/cache/labseed-bench/debian-clone-systemd.tar.gz go test ...
//
// It reports the CPU seconds of each and rebuilt/decompressed. The image
// is a generated one (many small files of compressible words), or the
// tarball LABSEED_BENCH_IMAGE names.
func BenchmarkSyncRebuild(b *testing.B) {
	var buf bytes.Buffer
	if f := os.Getenv("LABSEED_BENCH_IMAGE"); f != "" {
		in, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		buf.Write(in)
	} else if err := fixture.GenerateImage(&buf, fixture.ImageOptions{TotalBytes: 256 << 20, Seed: 9, Gzip: true}); err != nil {
		b.Fatal(err)
	}
	m, payload := publish(b, buf.Bytes(), Config{Name: "bench"})
	target := filepath.Join(b.TempDir(), "target")
	installWithSkeletons(b, m, payload, target)
	skel := filepath.Join(InstalledDir(target), skeletonDirName)
	cpu := func() time.Duration {
		var ru unix.Rusage
		unix.Getrusage(unix.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	ctx := context.Background()
	var spent [2]time.Duration
	b.ResetTimer()
	for range b.N {
		for k, rebuild := range []bool{true, false} {
			if !rebuild {
				os.Rename(skel, skel+".away")
			}
			start := cpu()
			a, err := NewApplier(m, ApplyConfig{Target: target, Sync: true})
			if err != nil {
				b.Fatal(err)
			}
			for i := range m.Chunks {
				ok, err := a.ApplyFromDisk(ctx, i)
				if err == nil && !ok {
					err = a.Apply(ctx, i, chunk(m, payload, i))
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			if err := a.Finish(ctx); err != nil {
				b.Fatal(err)
			}
			if err := a.Cleanup(); err != nil {
				b.Fatal(err)
			}
			spent[k] += cpu() - start
			if got := a.Stats().Rebuilt; rebuild != (got == int64(len(m.Chunks))) {
				b.Fatalf("%d of %d chunks rebuilt (rebuild %v)", got, len(m.Chunks), rebuild)
			}
			a.Close()
			if !rebuild {
				os.Rename(skel+".away", skel)
			}
		}
	}
	b.ReportMetric(spent[0].Seconds()/float64(b.N), "rebuilt-cpu-s")
	b.ReportMetric(spent[1].Seconds()/float64(b.N), "decompressed-cpu-s")
	b.ReportMetric(spent[0].Seconds()/spent[1].Seconds(), "rebuilt/decompressed")
	var skelBytes int64
	ents, _ := os.ReadDir(skel)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil {
			skelBytes += fi.Size()
		}
	}
	b.Logf("%d chunks, %d entries, %d MiB of tar, %d MiB published; skeletons %d KiB, %d bytes per entry",
		len(m.Chunks), m.Entries, m.TarBytes>>20, m.PayloadBytes>>20, skelBytes>>10, skelBytes/int64(m.Entries))
}

// TestSyncRedirectedSkeleton: skeletons are on the disk, not trusted. One
// is changed to read file a's data from file b (which holds a's bytes)
// and file d's data from file a, after a student wrote d's bytes into a
// (same size and mtime): every fragment still rebuilds to the image's
// bytes, and a is still found changed and written anew.
func TestSyncRedirectedSkeleton(t *testing.T) {
	const size = 64 << 10
	content := map[string][]byte{"a": bytes.Repeat([]byte("a"), size), "b": bytes.Repeat([]byte("a"), size), "d": bytes.Repeat([]byte("d"), size)}
	var in bytes.Buffer
	tw := tar.NewWriter(&in)
	mtime := time.Unix(1700000000, 0)
	for _, name := range []string{"a", "b", "d"} {
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: mtime})
		tw.Write(content[name])
	}
	tw.Close()
	m, payload := publish(t, in.Bytes(), smallChunks)
	target := filepath.Join(t.TempDir(), "target")
	installWithSkeletons(t, m, payload, target)
	if err := os.WriteFile(filepath.Join(target, "a"), content["d"], 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(filepath.Join(target, "a"), mtime, mtime)
	dec, _ := zstd.NewReader(nil)
	defer dec.Close()
	redirect := map[string]string{"a": "b", "d": "a"}
	for i, c := range m.Chunks {
		raw, err := dec.DecodeAll(chunk(m, payload, i), nil)
		if err != nil {
			t.Fatal(err)
		}
		var refs []dataRef
		readFragmentBytes(raw, func(e *entry, data []byte) error {
			if len(data) > 0 {
				name := e.hdr.Name
				if to, ok := redirect[name]; ok {
					name = to
				}
				refs = append(refs, dataRef{pos: e.pos, n: int64(len(data)), name: name, off: e.offset})
			}
			return nil
		})
		if err := os.WriteFile(filepath.Join(InstalledDir(target), skeletonDirName, c.SHA256), buildSkeleton(raw, refs), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	a, err := NewApplier(m, ApplyConfig{Target: target, Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()
	for i := range m.Chunks {
		if ok, err := a.ApplyFromDisk(ctx, i); err != nil || !ok {
			t.Fatalf("chunk %d of a redirected skeleton: rebuilt %v, %v; want rebuilt (its bytes are the image's)", i, ok, err)
		}
	}
	if err := a.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	for name, want := range content {
		if got, err := os.ReadFile(filepath.Join(target, name)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s after the sync: %.8q…, %v; want %.8q…", name, got, err, want)
		}
	}
	if st := a.Stats(); st.Written != 1 {
		t.Errorf("stats %+v: want a written anew", st)
	}
}
