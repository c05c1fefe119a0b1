package chunker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	"golang.org/x/sync/errgroup"
	"lukechampine.com/blake3"
)

// Config controls Publish. Zero values mean the defaults.
type Config struct {
	// Name of the image; required (see ValidName).
	Name string
	// Version of the image; default 1.
	Version int
	// Level is the compression level, 1 to MaxLevel (19); default 4.
	// Levels 1 (fastest) to 4 are compressed in-process by klauspost/compress:
	// SpeedFastest, SpeedDefault, SpeedBetterCompression and
	// SpeedBestCompression, which are close to the zstd program's levels 1, 3,
	// 7 and 11. Levels 5 to 19 are the zstd program's own levels: each chunk
	// is compressed by running zstd (ZstdProgram, found in $PATH), Workers
	// processes at a time. On a Debian image level 19 publishes 10 % smaller
	// than 4 for 7.4 times the CPU time (docs/BENCHMARKS.md); decoding it
	// costs workstations about 0.3 CPU-seconds more per GB.
	Level int
	// ChunkMin, ChunkAvg and ChunkMax bound the uncompressed chunk size in
	// bytes; defaults 1 MiB, 4 MiB and 16 MiB.
	ChunkMin, ChunkAvg, ChunkMax int64
	// PieceLength is the torrent's piece length in bytes, a power of two;
	// default 256 KiB.
	PieceLength int64
	// Workers is the number of chunks compressed in parallel; default GOMAXPROCS.
	Workers int
	// Progress, if set, is called from Publish's goroutines with the number of
	// input bytes read so far.
	Progress func(inputBytes int64)
	// Now returns the creation time; default time.Now.
	Now func() time.Time
	// InputOrder chunks the entries in the order of the input, as labseed
	// did before it grouped them by package (see Publish). It needs no
	// spool file.
	InputOrder bool
	// SpoolDir is where Publish keeps the uncompressed entries while it
	// reads the input, unless InputOrder (a file as large as the image's
	// tar, removed before Publish returns); default os.TempDir().
	SpoolDir string
	// Written, if set, is called with each chunk (its offset, size and
	// SHA-256 as the manifest will have them) right after its bytes were
	// written to the payload writer, in payload order, from one of
	// Publish's goroutines. An error stops Publish. The store lists the
	// chunks of a publish in progress so (followers fetch them before the
	// manifest exists).
	Written func(Chunk) error
	// Reuse, if set, is asked for each chunk before it is compressed, with
	// the BLAKE3 sum and size of its uncompressed bytes: it returns the
	// compressed bytes of a chunk published before with that sum and size
	// at the same Level (Chunk.RawBLAKE3), or nil. Publish takes them
	// instead of compressing the chunk again only if they decode to the
	// chunk's bytes exactly, so a wrong or damaged answer costs time, not
	// correctness. A new version of an image shares most of its chunks
	// with the one before: they are not compressed again. It is called
	// from several goroutines at once.
	Reuse func(rawBLAKE3 [32]byte, rawSize int64) []byte
}

// Defaults for Config.
const (
	DefaultLevel       = 4
	DefaultChunkMin    = 1 << 20
	DefaultChunkAvg    = 4 << 20
	DefaultChunkMax    = 16 << 20
	DefaultPieceLength = 256 << 10
)

func (c *Config) setDefaults() error {
	if !ValidName(c.Name) {
		return fmt.Errorf("chunker: invalid image name %q: use 1-64 letters, digits, '.', '_' or '-'", c.Name)
	}
	if c.Version == 0 {
		c.Version = 1
	}
	if err := checkRange(c.Level); err != nil {
		return err
	}
	if c.Level == 0 {
		c.Level = DefaultLevel
	}
	if c.ChunkMin == 0 {
		c.ChunkMin = DefaultChunkMin
	}
	if c.ChunkAvg == 0 {
		c.ChunkAvg = DefaultChunkAvg
	}
	if c.ChunkMax == 0 {
		c.ChunkMax = DefaultChunkMax
	}
	if !(0 < c.ChunkMin && c.ChunkMin < c.ChunkAvg && c.ChunkAvg < c.ChunkMax && c.ChunkMax <= MaxChunkRawSize/2) {
		return fmt.Errorf("chunker: chunk sizes min %d < avg %d < max %d <= %d do not hold", c.ChunkMin, c.ChunkAvg, c.ChunkMax, MaxChunkRawSize/2)
	}
	if c.PieceLength == 0 {
		c.PieceLength = DefaultPieceLength
	}
	if c.PieceLength < 16<<10 || c.PieceLength&(c.PieceLength-1) != 0 {
		return fmt.Errorf("chunker: piece length %d is not a power of two >= 16 KiB", c.PieceLength)
	}
	if c.Workers <= 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// TorrentName is the name in an image's torrent info dictionary, which is also
// the payload file's name in torrent storage.
func TorrentName(name string, version int) string {
	return fmt.Sprintf("%s-v%d.chunks", name, version)
}

// Publish reads an image tarball from in (tar, tar.gz or tar.zst), writes the
// payload (the compressed chunks, one after another) to payload, and returns
// the unsigned manifest and the torrent metainfo over the payload.
//
// Unless cfg.InputOrder, the entries are chunked in an order of their own
// (see order.go): directories first, then the files of each Debian package
// of the image together (as its var/lib/dpkg/info/*.list says), then the
// files of no package, hard links last; so an upgraded package changes a
// few chunks rather than the many its files are spread over in the input.
// The input is spooled uncompressed to a file in cfg.SpoolDir meanwhile.
//
// Entries that could not be extracted safely or exactly are rejected with an
// *EntryError naming the entry: paths with "..", absolute paths, entries
// written through a symbolic link, hard links to paths not in the image,
// duplicate paths, unsupported entry types.
func Publish(ctx context.Context, in io.Reader, payload io.Writer, cfg Config) (*Manifest, *metainfo.MetaInfo, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, nil, err
	}
	comp, err := newCompressor(cfg)
	if err != nil {
		return nil, nil, err
	}
	defer comp.close()
	cr := &countingReader{r: in, progress: cfg.Progress}
	src, err := openInput(cr)
	if err != nil {
		return nil, nil, err
	}
	defer src.Close()

	m := &Manifest{
		Format:      FormatVersion,
		Name:        cfg.Name,
		Version:     cfg.Version,
		Created:     cfg.Now().UTC().Truncate(time.Second),
		Level:       cfg.Level,
		PieceLength: cfg.PieceLength,
	}
	type result struct {
		raw, z int64
		data   []byte
		rawSum [32]byte
	}
	type job struct {
		index int
		raw   []byte
		out   chan result
	}
	g, ctx := errgroup.WithContext(ctx)
	jobs := make(chan job, cfg.Workers)
	order := make(chan chan result, 2*cfg.Workers+2)

	s := newScanner(cfg)
	if !cfg.InputOrder {
		sp, err := newSpool(cfg.SpoolDir)
		if err != nil {
			return nil, nil, err
		}
		defer sp.close()
		s.spool, s.input = sp, cr
		if cfg.Progress != nil {
			// Reading the input is the first tenth of the work, chunking
			// the spool the rest.
			s.progress = cfg.Progress
			cr.progress = func(n int64) { cfg.Progress(n / 10) }
		}
	}
	g.Go(func() error {
		defer close(jobs)
		defer close(order)
		index := 0
		s.emit = func(raw []byte) error {
			out := make(chan result, 1)
			select {
			case order <- out:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case jobs <- job{index: index, raw: raw, out: out}:
			case <-ctx.Done():
				return ctx.Err()
			}
			index++
			return nil
		}
		return s.scan(ctx, src)
	})
	var reuse *reuser
	if cfg.Reuse != nil {
		if reuse, err = newReuser(cfg.Reuse); err != nil {
			return nil, nil, err
		}
		defer reuse.close()
	}
	for range cfg.Workers {
		g.Go(func() error {
			var buf []byte // the reused chunk decoded
			for j := range jobs {
				rawSum := blake3.Sum256(j.raw)
				var z []byte
				if reuse != nil {
					z, buf = reuse.get(rawSum, j.raw, buf)
				}
				if z == nil {
					var err error
					if z, err = comp.compress(ctx, j.index, j.raw); err != nil {
						return err
					}
				}
				j.out <- result{raw: int64(len(j.raw)), z: int64(len(z)), data: z, rawSum: rawSum}
			}
			return nil
		})
	}
	ph := newPieceHasher(cfg.PieceLength)
	g.Go(func() error {
		for out := range order {
			var r result
			select {
			case r = <-out:
			case <-ctx.Done():
				return ctx.Err()
			}
			sum := sha256.Sum256(r.data)
			m.Chunks = append(m.Chunks, Chunk{
				Offset:    m.PayloadBytes,
				Size:      r.z,
				RawSize:   r.raw,
				SHA256:    hex.EncodeToString(sum[:]),
				RawBLAKE3: hex.EncodeToString(r.rawSum[:]),
			})
			if _, err := payload.Write(r.data); err != nil {
				return fmt.Errorf("write payload: %w", err)
			}
			if cfg.Written != nil {
				if err := cfg.Written(m.Chunks[len(m.Chunks)-1]); err != nil {
					return err
				}
			}
			ph.Write(r.data)
			m.PayloadBytes += r.z
			m.TarBytes += r.raw
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	if s.entries == 0 {
		return nil, nil, errors.New("chunker: the image has no entries")
	}
	m.Entries = s.entries
	m.FileBytes = s.fileBytes
	m.InputBytes = cr.n.Load()

	info := metainfo.Info{
		Name:        TorrentName(cfg.Name, cfg.Version),
		PieceLength: cfg.PieceLength,
		Pieces:      ph.Sum(),
		Length:      m.PayloadBytes,
	}
	infoBytes, err := bencode.Marshal(info)
	if err != nil {
		return nil, nil, err
	}
	mi := &metainfo.MetaInfo{InfoBytes: infoBytes, CreatedBy: "labseed", CreationDate: m.Created.Unix()}
	m.InfoHash = mi.HashInfoBytes().HexString()
	if err := m.Validate(); err != nil {
		return nil, nil, err
	}
	return m, mi, nil
}

// scanner turns the entries of a tar stream into tar fragments cut at
// content-defined boundaries.
type scanner struct {
	cdc       *cdc
	emit      func(raw []byte) error
	spool     *spool                 // the entries read, to be chunked in packageOrder; nil: chunk as read
	progress  func(inputBytes int64) // called as the spool is chunked (Config.Progress)
	input     *countingReader        // the input, read whole before the spool is chunked
	parts     []part                 // the current chunk's entries and file parts
	seen      map[string]byte        // type of every path so far
	entries   int
	fileBytes int64
	block     []byte
	frag      []byte
}

func newScanner(cfg Config) *scanner {
	s := &scanner{
		cdc:   newCDC(cfg.ChunkMin, cfg.ChunkAvg, cfg.ChunkMax),
		seen:  map[string]byte{},
		block: make([]byte, 1<<20),
		frag:  make([]byte, 0, cfg.ChunkMax),
	}
	return s
}

// part is an entry, or a part of a file, waiting in the current chunk.
type part struct {
	key  string
	hdr  *tar.Header
	data []byte
}

// sortKey groups similar content inside a chunk, which compresses better:
// files by extension, files without one by directory.
func sortKey(name string) string {
	dir, base := path.Split(name)
	if i := strings.LastIndexByte(base, '.'); i > 0 {
		return base[i:] + "\x00" + name
	}
	return "/" + dir + "\x00" + name
}

// cut ends the current chunk, if it holds anything, and hands it on. The
// order of entries inside a chunk does not matter to the Applier.
func (s *scanner) cut() error {
	s.cdc.reset()
	if len(s.parts) == 0 {
		return nil
	}
	slices.SortStableFunc(s.parts, func(a, b part) int { return strings.Compare(a.key, b.key) })
	var size int64
	for _, p := range s.parts {
		size += 1536 + int64(len(p.data))
	}
	buf := bytes.NewBuffer(make([]byte, 0, size))
	tw := tar.NewWriter(buf)
	for _, p := range s.parts {
		if err := tw.WriteHeader(p.hdr); err != nil {
			return fmt.Errorf("write fragment header: %w", err)
		}
		if _, err := tw.Write(p.data); err != nil {
			return fmt.Errorf("write fragment: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	clear(s.parts)
	s.parts = s.parts[:0]
	return s.emit(buf.Bytes())
}

func (s *scanner) scan(ctx context.Context, r io.Reader) error {
	tr := tar.NewReader(newDesparse(r))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			if s.spool != nil {
				if err := s.chunkSpool(ctx); err != nil {
					return err
				}
			}
			return s.cut()
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("read image: the archive is truncated (after %d entries): %w", s.entries, err)
			}
			return fmt.Errorf("read image (after %d entries): %w", s.entries, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		if err := s.entry(hdr, tr); err != nil {
			var ee *EntryError
			if errors.As(err, &ee) {
				return err
			}
			return &EntryError{Name: hdr.Name, Err: err}
		}
	}
}

// check validates an entry against the ones before it and records it.
func (s *scanner) check(name string, hdr *tar.Header) error {
	if _, dup := s.seen[name]; dup {
		return ErrDuplicate
	}
	for p := path.Dir(name); p != "." && p != "/"; p = path.Dir(p) {
		switch t, ok := s.seen[p]; {
		case !ok, t == tar.TypeDir:
		case t == tar.TypeSymlink:
			return fmt.Errorf("%w %q", ErrThroughLink, p)
		default:
			return fmt.Errorf("chunker: parent %q is not a directory", p)
		}
	}
	if hdr.Typeflag == tar.TypeLink {
		t, err := cleanName(hdr.Linkname)
		if err != nil {
			return fmt.Errorf("%w (%q: %v)", ErrLinkTarget, hdr.Linkname, err)
		}
		if typ, ok := s.seen[t]; !ok || typ == tar.TypeDir || t == "." {
			return fmt.Errorf("%w (%q)", ErrLinkTarget, hdr.Linkname)
		}
		hdr.Linkname = t
	}
	s.seen[name] = hdr.Typeflag
	return nil
}

func (s *scanner) entry(hdr *tar.Header, data io.Reader) error {
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeGNUSparse || hasSparseRecords(hdr) {
		// A sparse entry desparse did not understand: archive/tar would
		// expand it, zeros for holes, taking as long as the holes are big.
		return fmt.Errorf("%w: a sparse file in a form labseed does not read (repack the image with GNU tar --sparse)", ErrEntryType)
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA:
		hdr.Typeflag = tar.TypeReg
	case tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		hdr.Size = 0
	default:
		return fmt.Errorf("%w %q", ErrEntryType, hdr.Typeflag)
	}
	if name == "." && hdr.Typeflag != tar.TypeDir {
		return fmt.Errorf("%w: the root must be a directory", ErrEntryType)
	}
	if err := s.check(name, hdr); err != nil {
		return err
	}
	s.entries++
	if s.spool != nil {
		return s.spool.add(name, hdr, data)
	}
	return s.chunk(name, hdr, data)
}

// chunk adds a checked entry to the chunks, cutting them where the content
// says.
func (s *scanner) chunk(name string, hdr *tar.Header, data io.Reader) error {
	// The entry's header takes part in the boundary decision: a cut inside it
	// puts the entry at the start of the next chunk.
	s.cdc.n += 512
	key := append([]byte(name), 0, hdr.Typeflag)
	key = append(key, hdr.Linkname...)
	own := 512 + int64(len(key)) // what the hash counts of this entry
	cutBefore := false
	for len(key) > 0 {
		k, c := s.cdc.scan(key)
		key = key[k:]
		cutBefore = cutBefore || c
	}
	// The boundaries count a header as 512 bytes, but with its PAX
	// records it takes up to 1.5 KiB in the chunk, and a file's data is
	// padded to 512 bytes: tens of thousands of directories made chunks
	// of 48 MB, three times ChunkMax, and thousands of small files 18 MB.
	// What the headers and the padding take is counted against ChunkMax
	// too (cdc.extra), and a chunk ends before a header that would take
	// it past ChunkMax: the entry starts the next one.
	fh := fragmentHeader(name, hdr, 0, hdr.Size)
	more := headerLen(fh) - 512
	if hdr.Typeflag == tar.TypeReg {
		more += -hdr.Size & 511
	}
	switch {
	case len(s.parts) == 0:
	case cutBefore:
		n := s.cdc.n
		if err := s.cut(); err != nil {
			return err
		}
		s.cdc.n = n
	case s.cdc.n+s.cdc.extra+more >= s.cdc.max:
		if err := s.cut(); err != nil {
			return err
		}
		s.cdc.n = own
	}
	s.cdc.extra += more
	if hdr.Typeflag != tar.TypeReg {
		return s.write(fh, nil)
	}
	if v, ok := hdr.PAXRecords[paxSparseSize]; ok {
		segs, err := sparseEntry(hdr, v, data)
		if err != nil {
			return err
		}
		s.fileBytes += hdr.Size
		return s.sparseFile(name, hdr, segs, data)
	}
	s.fileBytes += hdr.Size
	return s.file(name, hdr, data)
}

// headerLen returns the bytes h takes in a tar fragment (its PAX records
// included).
func headerLen(h *tar.Header) int64 {
	c := countWriter{w: io.Discard}
	tar.NewWriter(&c).WriteHeader(h) // the data is not written: only the header's length is wanted
	return c.n
}

// hasSparseRecords reports whether hdr has GNU sparse PAX records.
func hasSparseRecords(hdr *tar.Header) bool {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// file cuts a regular file's data into parts at the chunk boundaries.
func (s *scanner) file(name string, hdr *tar.Header, data io.Reader) error {
	var off int64
	s.frag = s.frag[:0]
	if err := s.copyData(name, hdr, &off, data, hdr.Size); err != nil {
		return err
	}
	if len(s.frag) > 0 || hdr.Size == 0 {
		return s.write(fragmentHeader(name, hdr, off, int64(len(s.frag))), s.frag)
	}
	return nil
}

// copyData feeds n bytes of data into the current part of the file (see feed).
func (s *scanner) copyData(name string, hdr *tar.Header, start *int64, data io.Reader, n int64) error {
	for n > 0 {
		b := s.block[:min(n, int64(len(s.block)))]
		if _, err := io.ReadFull(data, b); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return fmt.Errorf("the archive is truncated in this entry's data: %w", io.ErrUnexpectedEOF)
			}
			return fmt.Errorf("read data: %w", err)
		}
		n -= int64(len(b))
		if err := s.feed(name, hdr, start, b); err != nil {
			return err
		}
	}
	return nil
}

// feed adds b to the current part of the file (in s.frag), which starts at
// *start in the file. A content-defined boundary inside b ends the part and
// the chunk; the next part starts there.
func (s *scanner) feed(name string, hdr *tar.Header, start *int64, b []byte) error {
	for len(b) > 0 {
		k, c := s.cdc.scan(b)
		s.frag = append(s.frag, b[:k]...)
		b = b[k:]
		if c {
			if err := s.write(fragmentHeader(name, hdr, *start, int64(len(s.frag))), s.frag); err != nil {
				return err
			}
			*start += int64(len(s.frag))
			s.frag = s.frag[:0]
			if err := s.cut(); err != nil {
				return err
			}
		}
	}
	return nil
}

// sparseMergeGap: data segments of a sparse file closer than this are
// carried as one part, the gap as zeros (which the Applier leaves as holes
// again, in whole 4 KiB blocks): a part's header costs more than a few
// KiB of zeros once compressed.
const sparseMergeGap = 32 << 10

// sparseEntry reads the map at the start of a sparse entry's data (as
// desparse wrote it), sets hdr.Size to the file's size and returns the
// map; the data segments follow in data.
func sparseEntry(hdr *tar.Header, size string, data io.Reader) ([]segment, error) {
	realSize, err := strconv.ParseInt(size, 10, 64)
	if err != nil || realSize < 0 {
		return nil, fmt.Errorf("chunker: bad %s %q", paxSparseSize, size)
	}
	segs, mapBytes, err := readSparseMap(data, maxSparseMapOut)
	if err != nil {
		return nil, err
	}
	if err := checkSegments(segs, realSize, hdr.Size-mapBytes); err != nil {
		return nil, err
	}
	hdr.Size = realSize
	return segs, nil
}

// sparseFile cuts the data segments of a sparse file into parts, each
// carrying its offset; the holes between them are carried by nothing.
func (s *scanner) sparseFile(name string, hdr *tar.Header, segs []segment, data io.Reader) error {
	var start int64
	end := int64(-1) // where the last segment fed ended
	s.frag = s.frag[:0]
	for _, sg := range segs {
		if sg.n == 0 {
			continue
		}
		if end >= 0 && sg.off-end < sparseMergeGap {
			if err := s.feed(name, hdr, &start, make([]byte, sg.off-end)); err != nil {
				return err
			}
		} else {
			if len(s.frag) > 0 {
				if err := s.write(fragmentHeader(name, hdr, start, int64(len(s.frag))), s.frag); err != nil {
					return err
				}
				s.frag = s.frag[:0]
			}
			start = sg.off
		}
		if err := s.copyData(name, hdr, &start, data, sg.n); err != nil {
			return err
		}
		end = sg.off + sg.n
	}
	if len(s.frag) > 0 || end < 0 {
		return s.write(fragmentHeader(name, hdr, start, int64(len(s.frag))), s.frag)
	}
	return nil
}

func (s *scanner) write(h *tar.Header, data []byte) error {
	s.parts = append(s.parts, part{key: sortKey(h.Name), hdr: h, data: bytes.Clone(data)})
	return nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r        io.Reader
	n        atomic.Int64
	progress func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	total := c.n.Add(int64(n))
	if c.progress != nil && n > 0 {
		c.progress(total)
	}
	return n, err
}

// pieceHasher computes BitTorrent v1 piece hashes of what is written to it.
type pieceHasher struct {
	length int64
	n      int64
	h      hash.Hash
	pieces []byte
}

func newPieceHasher(length int64) *pieceHasher {
	return &pieceHasher{length: length, h: sha1.New()}
}

func (p *pieceHasher) Write(b []byte) {
	for len(b) > 0 {
		k := min(p.length-p.n, int64(len(b)))
		p.h.Write(b[:k])
		p.n += k
		b = b[k:]
		if p.n == p.length {
			p.pieces = p.h.Sum(p.pieces)
			p.h.Reset()
			p.n = 0
		}
	}
}

// Sum returns the concatenated piece hashes, including the last short piece.
func (p *pieceHasher) Sum() []byte {
	if p.n > 0 {
		p.pieces = p.h.Sum(p.pieces)
		p.n = 0
	}
	return p.pieces
}
