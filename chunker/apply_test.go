package chunker

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/labseed/labseed/internal/fixture"
	"github.com/labseed/labseed/treecmp"
	"lukechampine.com/blake3"
)

var cmpOpts = treecmp.Options{Ignore: []string{StateDirName}}

// applyAll applies every chunk of payload in the given order and finishes.
func applyAll(t *testing.T, a *Applier, payload []byte, order []int) {
	t.Helper()
	ctx := context.Background()
	for _, i := range order {
		if err := a.Apply(ctx, i, chunk(a.Manifest(), payload, i)); err != nil {
			t.Fatalf("Apply(%d): %v", i, err)
		}
	}
	if err := a.Finish(ctx); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if err := a.Cleanup(); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
}

func newApplier(t *testing.T, m *Manifest, target string) *Applier {
	t.Helper()
	a, err := NewApplier(m, ApplyConfig{Target: target})
	if err != nil {
		t.Fatalf("NewApplier: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// TestExactAgainstGNUTar packs a tree exercising every kind of entry with GNU
// tar, publishes it, applies the chunks in a shuffled order and compares the
// result entry by entry with what GNU tar extracts from the same tarball.
func TestExactAgainstGNUTar(t *testing.T) {
	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("GNU tar not installed")
	}
	priv := os.Geteuid() == 0
	if !priv {
		t.Log("not root: owners, device nodes and security.capability are left out")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := fixture.BuildRootTree(src, fixture.RootTreeOptions{BigFileSize: 3 << 20, Privileged: priv}); err != nil {
		t.Fatal(err)
	}
	tgz := filepath.Join(dir, "image.tar.gz")
	run(t, "tar", "--xattrs", "--numeric-owner", "-C", src, "-czf", tgz, ".")
	want := filepath.Join(dir, "want")
	os.Mkdir(want, 0o755)
	run(t, "tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-C", want, "-xzf", tgz)

	in, err := os.ReadFile(tgz)
	if err != nil {
		t.Fatal(err)
	}
	m, payload := publish(t, in, smallChunks)
	if len(m.Chunks) < 20 {
		t.Fatalf("only %d chunks; the test needs files split across chunks", len(m.Chunks))
	}
	got := filepath.Join(dir, "got")
	a := newApplier(t, m, got)
	applyAll(t, a, payload, rand.New(rand.NewPCG(1, 2)).Perm(len(m.Chunks)))

	diffs, err := treecmp.Compare(want, got, cmpOpts)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Errorf("GNU tar vs labseed: %s", d)
	}
	// The comparison must have seen the hard cases.
	ents, err := treecmp.Scan(got, cmpOpts)
	if err != nil {
		t.Fatal(err)
	}
	var links, setuid, xattrs int
	for _, e := range ents {
		if e.LinkGroup != "" {
			links++
		}
		if e.Mode&os.ModeSetuid != 0 {
			setuid++
		}
		xattrs += len(e.Xattrs)
	}
	if links < 3 || setuid == 0 || xattrs == 0 {
		t.Fatalf("tree lacks hard links (%d), setuid files (%d) or xattrs (%d)", links, setuid, xattrs)
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func genImage(t testing.TB, seed uint64, size int64) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := fixture.GenerateImage(&b, fixture.ImageOptions{TotalBytes: size, Seed: seed, Gzip: true}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestResume(t *testing.T) {
	in := genImage(t, 1, 8<<20)
	m, payload := publish(t, in, smallChunks)
	dir := t.TempDir()
	ref := filepath.Join(dir, "ref")
	applyAll(t, newApplier(t, m, ref), payload, rand.Perm(len(m.Chunks)))

	target := filepath.Join(dir, "target")
	order := rand.Perm(len(m.Chunks))
	half := order[:len(order)/2]
	a, err := NewApplier(m, ApplyConfig{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range half {
		if err := a.Apply(context.Background(), i, chunk(m, payload, i)); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	// The last chunk was applied but its record lost, as when the process is
	// killed between the two: it is applied again over its own files.
	last := half[len(half)-1]
	if err := os.Remove(filepath.Join(target, StateDirName, strconv.Itoa(last)+".done")); err != nil {
		t.Fatal(err)
	}

	b := newApplier(t, m, target)
	if n, _ := b.Progress(); n != len(half)-1 {
		t.Fatalf("resumed with %d chunks applied, want %d", n, len(half)-1)
	}
	if err := b.Finish(context.Background()); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("Finish before all chunks: %v, want ErrIncomplete", err)
	}
	applyAll(t, b, payload, order)
	diffs, err := treecmp.Compare(ref, target, cmpOpts)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Errorf("resumed vs straight extraction: %s", d)
	}
	if _, err := os.Stat(filepath.Join(target, StateDirName)); !os.IsNotExist(err) {
		t.Errorf("state directory left behind: %v", err)
	}
}

// TestResumeDamagedRecord damages the records of applied chunks as a power
// cut can (a record renamed into place before its bytes reached the disk
// reads back empty or as zeros; an older labseed wrote records without a
// checksum): a damaged record means "not applied", and the resume applies
// the chunk again and ends in the exact tree.
func TestResumeDamagedRecord(t *testing.T) {
	in := genImage(t, 12, 4<<20)
	m, payload := publish(t, in, smallChunks)
	dir := t.TempDir()
	ref := filepath.Join(dir, "ref")
	applyAll(t, newApplier(t, m, ref), payload, rand.Perm(len(m.Chunks)))

	target := filepath.Join(dir, "target")
	order := rand.Perm(len(m.Chunks))
	half := order[:len(order)/2]
	a, err := NewApplier(m, ApplyConfig{Target: target, SyncBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range half {
		if err := a.Apply(context.Background(), i, chunk(m, payload, i)); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := a.Progress(); n != len(half) {
		t.Fatalf("%d chunks applied, want %d", n, len(half))
	}
	// With SyncBytes < 0 nothing is recorded before Close.
	if _, err := os.Stat(filepath.Join(target, StateDirName, strconv.Itoa(half[0])+".done")); !os.IsNotExist(err) {
		t.Fatalf("chunk recorded before the sync: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	record := func(i int) string { return filepath.Join(target, StateDirName, strconv.Itoa(i)+".done") }
	damage := map[string]func(b []byte) []byte{
		"empty":     func([]byte) []byte { return nil },
		"zeros":     func(b []byte) []byte { return make([]byte, len(b)) },
		"cut short": func(b []byte) []byte { return b[:len(b)/2] },
		"old format (no header)": func(b []byte) []byte {
			_, rest, _ := bytes.Cut(b, []byte("\n"))
			return rest
		},
		"bit flip":        func(b []byte) []byte { b[len(b)-1] ^= 1; return b },
		"bit flip in tar": func(b []byte) []byte { b[len(b)/2] ^= 1; return b },
		"extra bytes":     func(b []byte) []byte { return append(b, "more"...) },
		"head only": func(b []byte) []byte {
			head, _, _ := bytes.Cut(b, []byte("\n"))
			return append(head, '\n')
		},
	}
	k := 0
	for what, fn := range damage {
		b, err := os.ReadFile(record(half[k]))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(record(half[k]), fn(b), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Logf("record of chunk %d: %s", half[k], what)
		k++
	}
	// A record as labseed wrote it before heads were padded still counts.
	unpadded := half[len(damage)]
	rec, err := os.ReadFile(record(unpadded))
	if err != nil {
		t.Fatal(err)
	}
	head, rest, _ := bytes.Cut(rec, []byte("\n"))
	f := strings.Fields(string(head))
	for _, k := range []int{3, 5} {
		n, _ := strconv.Atoi(f[k])
		f[k] = strconv.Itoa(n)
	}
	if err := os.WriteFile(record(unpadded), append([]byte(strings.Join(f, " ")+"\n"), rest...), 0o600); err != nil {
		t.Fatal(err)
	}
	b := newApplier(t, m, target)
	if !b.Applied(unpadded) {
		t.Errorf("chunk %d with a record of unpadded head %q counts as not applied", unpadded, strings.Join(f, " "))
	}
	if n, _ := b.Progress(); n != len(half)-len(damage) {
		t.Fatalf("resumed with %d chunks applied, want %d (damaged records must count as not applied)", n, len(half)-len(damage))
	}
	for i := range len(damage) {
		if b.Applied(half[i]) {
			t.Errorf("chunk %d with a damaged record counts as applied", half[i])
		}
	}
	applyAll(t, b, payload, order)
	diffs, err := treecmp.Compare(ref, target, cmpOpts)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Errorf("resumed over damaged records vs straight extraction: %s", d)
	}
}

func TestApplyRejectsCorruptChunk(t *testing.T) {
	in := genImage(t, 2, 1<<20)
	m, payload := publish(t, in, smallChunks)
	a := newApplier(t, m, t.TempDir())
	bad := bytes.Clone(chunk(m, payload, 0))
	bad[len(bad)/2] ^= 0x40
	err := a.Apply(context.Background(), 0, bad)
	var ce *ChunkError
	if !errors.Is(err, ErrChunkHash) || !errors.As(err, &ce) || ce.Index != 0 {
		t.Fatalf("Apply(corrupt chunk) = %v, want a ChunkError for chunk 0 wrapping ErrChunkHash", err)
	}
	if a.Applied(0) {
		t.Fatal("corrupt chunk recorded as applied")
	}
	if err := a.Apply(context.Background(), 0, chunk(m, payload, 0)); err != nil {
		t.Fatalf("good chunk after a bad one: %v", err)
	}
}

func TestTargetChecks(t *testing.T) {
	m1, _ := publish(t, genImage(t, 3, 256<<10), smallChunks)
	m2, _ := publish(t, genImage(t, 4, 256<<10), smallChunks)

	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "old-file"), nil, 0o644)
	if _, err := NewApplier(m1, ApplyConfig{Target: full}); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("non-empty target: %v, want ErrNotEmpty", err)
	}
	target := t.TempDir()
	newApplier(t, m1, target)
	if _, err := NewApplier(m2, ApplyConfig{Target: target}); !errors.Is(err, ErrOtherImage) {
		t.Fatalf("target of another image: %v, want ErrOtherImage", err)
	}
}

func blake3hex(b []byte) string {
	sum := blake3.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// rawChunkManifest makes a manifest of one chunk holding the tar fragment
// raw, as a hostile publisher could, bypassing Publish's checks.
func rawChunkManifest(t *testing.T, raw []byte) (*Manifest, []byte) {
	t.Helper()
	enc, _ := zstd.NewWriter(nil)
	z := enc.EncodeAll(raw, nil)
	m := &Manifest{Format: FormatVersion, Name: "evil", Version: 1, TarBytes: int64(len(raw)),
		PayloadBytes: int64(len(z)), InfoHash: strings.Repeat("0", 40), PieceLength: 16 << 10,
		Chunks: []Chunk{{Size: int64(len(z)), RawSize: int64(len(raw)), SHA256: sha256hex(z), RawBLAKE3: blake3hex(raw)}}}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	return m, z
}

// TestApplyHostileFragment feeds the Applier fragments that Publish would
// never write and checks that nothing lands outside the target.
func TestApplyHostileFragment(t *testing.T) {
	tests := []struct {
		name    string
		entries []tarEntry
		err     error
	}{
		{"dotdot", []tarEntry{{name: "../escaped", data: []byte("x")}}, ErrUnsafePath},
		{"absolute", []tarEntry{{name: "/escaped", data: []byte("x")}}, ErrUnsafePath},
		{"through absolute symlink", []tarEntry{{name: "lnk", typ: tar.TypeSymlink, link: "/OUT"}, {name: "lnk/escaped", data: []byte("x")}}, nil},
		{"through relative symlink", []tarEntry{{name: "lnk", typ: tar.TypeSymlink, link: "../OUT"}, {name: "lnk/escaped", data: []byte("x")}}, nil},
		{"hard link outside", []tarEntry{{name: "h", typ: tar.TypeLink, link: "../OUT/secret"}}, ErrLinkTarget},
		{"not canonical", []tarEntry{{name: "./a", data: []byte("x")}}, ErrFragment},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "OUT")
			os.Mkdir(out, 0o755)
			os.WriteFile(filepath.Join(out, "secret"), []byte("s"), 0o600)
			m, z := rawChunkManifest(t, mkTar(t, tt.entries...))
			a := newApplier(t, m, filepath.Join(dir, "target"))
			err := a.Apply(context.Background(), 0, z)
			if err == nil {
				err = a.Finish(context.Background())
			}
			if err == nil {
				t.Fatal("hostile fragment applied without error")
			}
			if tt.err != nil && !errors.Is(err, tt.err) {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			if ents, _ := os.ReadDir(out); len(ents) != 1 {
				t.Fatalf("something was written outside the target: %v", ents)
			}
			var ee *EntryError
			if !errors.As(err, &ee) {
				t.Fatalf("error %v does not name the entry", err)
			}
		})
	}
}
