package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
)

// updateTime is the mtime an update gives the files it changes: a fixed
// one, so that the same input gives the same update.
var updateTime = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// update writes to out (.tar.gz) the Debian root file system tar.gz in,
// with the Debian packages pkgs "upgraded" as a security update changes
// a lab's image: every regular file the package installed (its dpkg
// .list) changes (16 bytes every 64 KiB and at the end, so that its
// content compresses as before and every chunk holding a part of it
// changes), and so do its .md5sums and its Version in var/lib/dpkg/status.
// It prints what it changed.
func update(in, out string, pkgs []string) error {
	lists, err := packageFiles(in, pkgs)
	if err != nil {
		return err
	}
	changed := map[string]bool{}
	for _, files := range lists {
		for _, f := range files {
			changed[f] = true
		}
	}
	src, err := openTarGz(in)
	if err != nil {
		return err
	}
	defer src.Close()
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	bw := bufio.NewWriterSize(f, 1<<20)
	zw, _ := gzip.NewWriterLevel(bw, 6)
	tw := tar.NewWriter(zw)
	tr := tar.NewReader(src)
	var files, bytesChanged int64
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", in, err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return err
		}
		name := cleanTarName(h.Name)
		switch {
		case h.Typeflag == tar.TypeReg && changed[name]:
			patch(data, name)
			h.ModTime = updateTime
			files++
			bytesChanged += int64(len(data))
		case h.Typeflag == tar.TypeReg && isPackageMeta(name, pkgs):
			data = append(data, []byte("# labseed bench update\n")...)
			h.Size, h.ModTime = int64(len(data)), updateTime
			files++
		case h.Typeflag == tar.TypeReg && name == "var/lib/dpkg/status":
			data = bumpVersions(data, pkgs)
			h.Size, h.ModTime = int64(len(data)), updateTime
			files++
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	if err := errors.Join(tw.Close(), zw.Close(), bw.Flush(), f.Close()); err != nil {
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		return err
	}
	fmt.Printf("update of %s: %d files changed (%d bytes of package files)\n", strings.Join(pkgs, ","), files, bytesChanged)
	return nil
}

// patch changes data in place: 16 bytes every 64 KiB and the last 16.
func patch(data []byte, name string) {
	mark := []byte(fmt.Sprintf("%-16.16s", "upd:"+path.Base(name)))
	for off := 0; off < len(data); off += 64 << 10 {
		copy(data[off:], mark)
	}
	if n := len(data); n > 16 {
		copy(data[n-16:], mark)
	}
}

func cleanTarName(n string) string {
	return strings.TrimSuffix(strings.TrimPrefix(path.Clean("/"+n), "/"), "/")
}

// isPackageMeta reports whether name is one of pkgs' .md5sums.
func isPackageMeta(name string, pkgs []string) bool {
	dir, base := path.Split(name)
	if dir != "var/lib/dpkg/info/" || !strings.HasSuffix(base, ".md5sums") {
		return false
	}
	p, _, _ := strings.Cut(strings.TrimSuffix(base, ".md5sums"), ":")
	return slices.Contains(pkgs, p)
}

var versionRE = regexp.MustCompile(`(?m)^Version: (.*)$`)

// bumpVersions appends "+labseed1" to the Version of pkgs in dpkg's status.
func bumpVersions(status []byte, pkgs []string) []byte {
	stanzas := bytes.Split(status, []byte("\n\n"))
	for i, s := range stanzas {
		first, _, _ := bytes.Cut(s, []byte("\n"))
		p, ok := bytes.CutPrefix(first, []byte("Package: "))
		if !ok || !slices.Contains(pkgs, string(p)) {
			continue
		}
		stanzas[i] = versionRE.ReplaceAll(s, []byte("Version: $1+labseed1"))
	}
	return bytes.Join(stanzas, []byte("\n\n"))
}

// packageFiles reads the dpkg .list of each package of pkgs from the
// tar.gz in: the paths it installed, relative.
func packageFiles(in string, pkgs []string) (map[string][]string, error) {
	src, err := openTarGz(in)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	out := map[string][]string{}
	tr := tar.NewReader(src)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", in, err)
		}
		dir, base := path.Split(cleanTarName(h.Name))
		if dir != "var/lib/dpkg/info/" || !strings.HasSuffix(base, ".list") {
			continue
		}
		p, _, _ := strings.Cut(strings.TrimSuffix(base, ".list"), ":")
		if !slices.Contains(pkgs, p) {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimPrefix(l, "/"); l != "" && l != "." {
				out[p] = append(out[p], l)
			}
		}
	}
	for _, p := range pkgs {
		if len(out[p]) == 0 {
			return nil, fmt.Errorf("package %s is not in %s (no var/lib/dpkg/info/%s.list)", p, in, p)
		}
	}
	return out, nil
}

type tarGz struct {
	f  *os.File
	zr *gzip.Reader
}

func openTarGz(name string) (*tarGz, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &tarGz{f, zr}, nil
}

func (t *tarGz) Read(p []byte) (int, error) { return t.zr.Read(p) }
func (t *tarGz) Close() error               { return errors.Join(t.zr.Close(), t.f.Close()) }
