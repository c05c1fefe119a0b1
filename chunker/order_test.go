package chunker

import (
	"archive/tar"
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestPackageOrder(t *testing.T) {
	dir := func(n string) tarEntry { return tarEntry{name: n, typ: tar.TypeDir} }
	file := func(n, data string) tarEntry { return tarEntry{name: n, data: []byte(data)} }
	in := mkTar(t,
		dir("./"),
		dir("etc/"),
		file("etc/hosts", "127.0.0.1 localhost\n"),
		dir("usr/"), dir("usr/bin/"),
		file("usr/bin/bash", "b"),
		tarEntry{name: "usr/bin/rbash", typ: tar.TypeSymlink, link: "bash"},
		file("usr/bin/ssh", "s"),
		tarEntry{name: "usr/bin/sh", typ: tar.TypeLink, link: "usr/bin/bash"},
		dir("usr/share/"), dir("usr/share/doc/"), dir("usr/share/doc/bash/"),
		file("usr/share/doc/bash/copyright", "c"),
		dir("usr/share/doc/ssh/"),
		file("usr/share/doc/ssh/copyright", "c"),
		dir("var/"), dir("var/lib/"), dir("var/lib/dpkg/"),
		file("var/lib/dpkg/status", "Package: bash\n"),
		dir("var/lib/dpkg/info/"),
		file("var/lib/dpkg/info/bash.list", "/.\n/usr\n/usr/bin\n/usr/bin/bash\n/usr/bin/rbash\n/usr/share/doc/bash\n/usr/share/doc/bash/copyright\n"),
		file("var/lib/dpkg/info/bash.md5sums", "x  usr/bin/bash\n"),
		file("var/lib/dpkg/info/bash.postinst", "#!/bin/sh\n"),
		// A package with an architecture, and a path it shares with bash
		// (the first by name keeps it).
		file("var/lib/dpkg/info/openssh-client:amd64.list", "/usr/bin/ssh\n/usr/share/doc/ssh/copyright\n/usr/bin/bash\n"),
		file("var/lib/dpkg/info/openssh-client:amd64.md5sums", "y  usr/bin/ssh\n"),
		// Not a package's: its list is missing.
		file("var/lib/dpkg/info/gone.md5sums", "z\n"),
		file("var/log/dpkg.log", "log\n"),
	)
	sp, err := newSpool(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	s := newScanner(Config{ChunkMin: 1 << 20, ChunkAvg: 4 << 20, ChunkMax: 16 << 20})
	s.spool = sp
	tr := tar.NewReader(bytes.NewReader(in))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := s.entry(hdr, tr); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, i := range sp.packageOrder() {
		got = append(got, sp.ents[i].name)
	}
	want := []string{
		// directories
		".", "etc", "usr", "usr/bin", "usr/share", "usr/share/doc", "usr/share/doc/bash",
		"usr/share/doc/ssh", "var", "var/lib", "var/lib/dpkg", "var/lib/dpkg/info",
		// bash
		"usr/bin/bash", "usr/bin/rbash", "usr/share/doc/bash/copyright",
		"var/lib/dpkg/info/bash.list", "var/lib/dpkg/info/bash.md5sums", "var/lib/dpkg/info/bash.postinst",
		// openssh-client:amd64
		"usr/bin/ssh", "usr/share/doc/ssh/copyright",
		"var/lib/dpkg/info/openssh-client:amd64.list", "var/lib/dpkg/info/openssh-client:amd64.md5sums",
		// no package's
		"etc/hosts", "var/lib/dpkg/status", "var/lib/dpkg/info/gone.md5sums", "var/log/dpkg.log",
		// hard links
		"usr/bin/sh",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("order:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestPackageUpgradeChunks publishes a generated image whose files belong
// to Debian packages spread over the tree, then the same image with one
// package upgraded (every file it installed changed): in package order a
// few chunks change, in input order many.
func TestPackageUpgradeChunks(t *testing.T) {
	v1 := genImage(t, 9, 8<<20)
	// Package k owns every 8th regular file from the k-th on.
	var files []string
	rewriteTar(t, v1, func(h *tar.Header, _ []byte) {
		if h.Typeflag == tar.TypeReg {
			files = append(files, strings.TrimPrefix(h.Name, "./"))
		}
	}, nil)
	const pkgs = 8
	lists := func(tw *tar.Writer) error {
		for k := range pkgs {
			var b strings.Builder
			for i := k; i < len(files); i += pkgs {
				b.WriteString("/" + files[i] + "\n")
			}
			name := "var/lib/dpkg/info/pkg" + string(rune('a'+k)) + ".list"
			if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(b.Len()), Typeflag: tar.TypeReg}); err != nil {
				return err
			}
			if _, err := io.WriteString(tw, b.String()); err != nil {
				return err
			}
		}
		return nil
	}
	v1 = rewriteTar(t, v1, nil, lists)
	upgraded := map[string]bool{}
	for i := 3; i < len(files); i += pkgs {
		upgraded[files[i]] = true
	}
	v2 := rewriteTar(t, v1, func(h *tar.Header, data []byte) {
		if upgraded[strings.TrimPrefix(h.Name, "./")] && len(data) > 0 {
			data[len(data)/2] ^= 1
		}
	}, nil)
	changed := func(inputOrder bool) (int, int, float64) {
		cfg := smallChunks
		cfg.Level, cfg.InputOrder, cfg.SpoolDir = 1, inputOrder, t.TempDir()
		m1, _ := publish(t, v1, cfg)
		m2, _ := publish(t, v2, cfg)
		old := map[string]bool{}
		for _, c := range m1.Chunks {
			old[c.SHA256] = true
		}
		n, bytes := 0, int64(0)
		for _, c := range m2.Chunks {
			if !old[c.SHA256] {
				n++
				bytes += c.RawSize
			}
		}
		return n, len(m2.Chunks), float64(bytes) / float64(m2.TarBytes)
	}
	in, inAll, inShare := changed(true)
	pk, pkAll, pkShare := changed(false)
	t.Logf("one of %d packages upgraded (%d files): input order %d of %d chunks changed (%.3f of the tar), package order %d of %d (%.3f)",
		pkgs, len(upgraded), in, inAll, inShare, pk, pkAll, pkShare)
	// The package is an eighth of the files: its own chunks change, and
	// those on either side of it.
	if pkShare > 0.25 || pk*2 > in {
		t.Fatalf("package order: %d chunks changed (%.3f of the tar), input order %d", pk, pkShare, in)
	}
}
