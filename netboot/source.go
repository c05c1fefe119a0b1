package netboot

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/store"
	"golang.org/x/sync/errgroup"
)

// ErrNoKernel is returned for an image without a kernel and modules.
var ErrNoKernel = errors.New("netboot: the image has no kernel (boot/vmlinuz-VERSION with lib/modules/VERSION/modules.dep): install one in the image (Debian: linux-image-amd64) and publish it again, or give the print server's own with --kernel /boot/vmlinuz-VERSION --modules /lib/modules/VERSION")

// source is where the kernel and its modules come from.
type source interface {
	// version is the kernel's release (uname -r).
	version() string
	// describe says where the kernel comes from, for the summary.
	describe() string
	// kernel returns the kernel image.
	kernel(ctx context.Context) ([]byte, error)
	// modules returns files of the module directory, by path relative to
	// it; files it does not have are left out.
	modules(ctx context.Context, rels []string) (map[string][]byte, error)
}

// dirSource is a kernel file and a module directory on this machine.
type dirSource struct {
	kernelFile, modDir string
}

func (s *dirSource) version() string  { return filepath.Base(s.modDir) }
func (s *dirSource) describe() string { return s.kernelFile }

func (s *dirSource) kernel(context.Context) ([]byte, error) {
	b, err := os.ReadFile(s.kernelFile)
	if err != nil {
		return nil, fmt.Errorf("netboot: kernel: %w", err)
	}
	return b, nil
}

func (s *dirSource) modules(ctx context.Context, rels []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, r := range rels {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b, err := os.ReadFile(filepath.Join(s.modDir, filepath.FromSlash(r)))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("netboot: modules: %w", err)
		}
		out[r] = b
	}
	return out, nil
}

// imageSource reads the kernel and modules from a published image's
// chunks: one pass over every chunk's tar headers finds where the files
// are, then only the chunks holding the files wanted are read again.
type imageSource struct {
	img      *store.Image
	progress func(done, total int64) // chunks of the index pass
	ver      string
	modRoot  string                // the module directory in the image, e.g. usr/lib/modules/6.1.0-28-amd64
	files    map[string]*imageFile // image path → where its parts are
}

type imageFile struct {
	size   int64
	chunks []int
}

var (
	vmlinuzRE = regexp.MustCompile(`^boot/vmlinuz-(.+)$`)
	modDirRE  = regexp.MustCompile(`^((?:usr/)?lib/modules/([^/]+))/(.+)$`)
)

// openImageSource indexes the image and picks its newest kernel that has
// modules.
func openImageSource(ctx context.Context, img *store.Image, progress func(done, total int64)) (*imageSource, error) {
	s := &imageSource{img: img, progress: progress, files: map[string]*imageFile{}}
	var mu sync.Mutex
	err := s.walk(ctx, nil, func(i int, e chunker.Entry, _ io.Reader) error {
		h := e.Header
		if h.Typeflag != tar.TypeReg {
			return nil
		}
		if !vmlinuzRE.MatchString(h.Name) && !modDirRE.MatchString(h.Name) {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		f := s.files[h.Name]
		if f == nil {
			f = &imageFile{size: e.FileSize}
			s.files[h.Name] = f
		}
		if !slices.Contains(f.chunks, i) {
			f.chunks = append(f.chunks, i)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var versions []string
	for name := range s.files {
		m := vmlinuzRE.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		for _, dir := range []string{"lib/modules/", "usr/lib/modules/"} {
			if _, ok := s.files[dir+m[1]+"/modules.dep"]; ok {
				versions = append(versions, m[1])
				break
			}
		}
	}
	if len(versions) == 0 {
		return nil, fmt.Errorf("%w (image %s v%d)", ErrNoKernel, img.Manifest.Name, img.Manifest.Version)
	}
	slices.SortFunc(versions, compareVersions)
	s.ver = versions[len(versions)-1]
	s.modRoot = "lib/modules/" + s.ver
	if _, ok := s.files[s.modRoot+"/modules.dep"]; !ok {
		s.modRoot = "usr/lib/modules/" + s.ver
	}
	return s, nil
}

func (s *imageSource) version() string { return s.ver }
func (s *imageSource) describe() string {
	return fmt.Sprintf("image %s v%d", s.img.Manifest.Name, s.img.Manifest.Version)
}

func (s *imageSource) kernel(ctx context.Context) ([]byte, error) {
	name := "boot/vmlinuz-" + s.ver
	got, err := s.read(ctx, []string{name})
	if err != nil {
		return nil, err
	}
	return got[name], nil
}

func (s *imageSource) modules(ctx context.Context, rels []string) (map[string][]byte, error) {
	var names []string
	for _, r := range rels {
		if _, ok := s.files[s.modRoot+"/"+r]; ok {
			names = append(names, s.modRoot+"/"+r)
		}
	}
	got, err := s.read(ctx, names)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(got))
	for name, b := range got {
		out[strings.TrimPrefix(name, s.modRoot+"/")] = b
	}
	return out, nil
}

// read reads whole files of the image, walking only the chunks that hold
// their parts.
func (s *imageSource) read(ctx context.Context, names []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	filled := map[string]int64{}
	var chunks []int
	for _, n := range names {
		f := s.files[n]
		out[n] = make([]byte, f.size)
		for _, c := range f.chunks {
			if !slices.Contains(chunks, c) {
				chunks = append(chunks, c)
			}
		}
	}
	var mu sync.Mutex
	err := s.walk(ctx, chunks, func(_ int, e chunker.Entry, data io.Reader) error {
		buf, ok := out[e.Header.Name]
		if !ok || e.Header.Typeflag != tar.TypeReg || e.FileSize != int64(len(buf)) {
			return nil
		}
		if _, err := io.ReadFull(data, buf[e.Offset:e.Offset+e.Header.Size]); err != nil {
			return fmt.Errorf("%s: %w", e.Header.Name, err)
		}
		mu.Lock()
		filled[e.Header.Name] += e.Header.Size
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	for n, b := range out {
		if filled[n] != int64(len(b)) {
			return nil, fmt.Errorf("netboot: image %s: %s: read %d of %d bytes", s.img.Manifest.Name, n, filled[n], len(b))
		}
	}
	return out, nil
}

// walk calls fn for every entry of the chunks (all if nil), several
// chunks at once.
func (s *imageSource) walk(ctx context.Context, chunks []int, fn func(i int, e chunker.Entry, data io.Reader) error) error {
	m := s.img.Manifest
	if chunks == nil {
		for i := range m.Chunks {
			chunks = append(chunks, i)
		}
	}
	f, err := os.Open(s.img.PayloadPath())
	if err != nil {
		return fmt.Errorf("netboot: image %s: %w", m.Name, err)
	}
	defer f.Close()
	next := make(chan int)
	g, ctx := errgroup.WithContext(ctx)
	var mu sync.Mutex
	var done int64
	for range min(runtime.GOMAXPROCS(0), len(chunks)) {
		g.Go(func() error {
			r, err := chunker.NewChunkReader(m)
			if err != nil {
				return err
			}
			defer r.Close()
			for i := range next {
				data, err := s.img.ReadChunk(f, i)
				if err != nil {
					return err
				}
				if err := r.Walk(i, data, func(e chunker.Entry, d io.Reader) error { return fn(i, e, d) }); err != nil {
					return fmt.Errorf("netboot: image %s v%d: %w (labseed verify %s)", m.Name, m.Version, err, m.Name)
				}
				if s.progress != nil && len(chunks) == len(m.Chunks) {
					mu.Lock()
					done++
					s.progress(done, int64(len(chunks)))
					mu.Unlock()
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(next)
		for _, i := range chunks {
			select {
			case next <- i:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	return g.Wait()
}

// compareVersions orders kernel releases: numbers as numbers
// ("6.1.0-28" after "6.1.0-9").
func compareVersions(a, b string) int {
	split := func(s string) []string { return regexp.MustCompile(`\d+|\D+`).FindAllString(s, -1) }
	pa, pb := split(a), split(b)
	for i := 0; i < len(pa) && i < len(pb); i++ {
		na, ea := strconv.Atoi(pa[i])
		nb, eb := strconv.Atoi(pb[i])
		if ea == nil && eb == nil {
			if na != nb {
				return na - nb
			}
			continue
		}
		if c := strings.Compare(pa[i], pb[i]); c != 0 {
			return c
		}
	}
	return len(pa) - len(pb)
}

// kernelRelease reads the release string of an x86 bzImage (the
// setup header's kernel_version), "" if it has none.
func kernelRelease(b []byte) string {
	if len(b) < 0x210 || !bytes.Equal(b[0x202:0x206], []byte("HdrS")) {
		return ""
	}
	off := int(b[0x20e]) | int(b[0x20f])<<8
	if off == 0 || off+0x200 >= len(b) {
		return ""
	}
	s := b[off+0x200:]
	if i := bytes.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	rel, _, _ := strings.Cut(string(s), " ")
	return path.Clean(rel)
}
