package chunker

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Sparse files.
//
// GNU tar stores a sparse file (--sparse) as its data segments and a map of
// where they go, in one of four formats: the old GNU one (type 'S', the map
// in the header and extension blocks) and PAX formats 0.0, 0.1 (the map in
// GNU.sparse.* records) and 1.0 (the map at the start of the data). Go's
// archive/tar reads all four, but hands out the file with its holes filled
// with zeros: a 5 KB tar holding a 60 GB sparse file reads as 60 GB. So the
// input goes through a desparse reader first, which rewrites each sparse
// entry into a regular PAX entry carrying the record LABSEED.sparse.size
// (the file's size) whose data is the map in the 1.0 layout followed by the
// data segments: archive/tar reads it without expanding anything, and the
// scanner cuts only the data segments into parts (each part carrying its
// offset, as parts of split files always did), so publishing, the payload
// and extraction cost what the data costs. The Applier writes each part at
// its offset and truncates the file to its size: the holes stay holes.

// paxSparseSize is the record desparse puts on a rewritten sparse entry:
// the file's size. Input images may not carry LABSEED.* records.
const paxSparseSize = "LABSEED.sparse.size"

// Bounds on sparse maps, as archive/tar's: the map of one file as read
// from the input takes at most maxSparseMap bytes; the scanner reads the map
// desparse re-encoded with at most maxSparseMapOut.
const (
	maxSparseMap    = 1 << 20
	maxSparseMapOut = 16 << 20
	maxPAXHeader    = 1 << 20
	blockSize       = 512
)

// segment is one data segment of a sparse file.
type segment struct{ off, n int64 }

// desparse reads a tar stream and passes it on unchanged, except for sparse
// entries, rewritten as described above. Whatever it does not understand
// (a bad checksum, a truncated block, the end of the archive) it passes on
// as it is, from there on, for archive/tar to report.
type desparse struct {
	src  *bufio.Reader
	out  []byte // bytes to hand out before reading more of src
	data int64  // bytes of src to pass through before the next header
	raw  bool   // pass the rest of src through
	err  error

	pax     []byte      // a PAX header held back until its entry's header
	records []paxRecord // its records
	paxSize int64       // its "size" record, -1 if none
}

type paxRecord struct{ key, value string }

func newDesparse(r io.Reader) *desparse {
	return &desparse{src: bufio.NewReaderSize(r, 64<<10), paxSize: -1}
}

func (d *desparse) Read(p []byte) (int, error) {
	for {
		if len(d.out) > 0 {
			n := copy(p, d.out)
			d.out = d.out[n:]
			return n, nil
		}
		if d.data > 0 {
			if int64(len(p)) > d.data {
				p = p[:d.data]
			}
			n, err := d.src.Read(p)
			d.data -= int64(n)
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
		if d.raw {
			return d.src.Read(p)
		}
		if d.err != nil {
			return 0, d.err
		}
		d.next()
	}
}

// passRaw hands out b and then the rest of the stream unchanged.
func (d *desparse) passRaw(b ...[]byte) {
	d.out = bytes.Join(append([][]byte{d.pax}, b...), nil)
	d.pax = nil
	d.raw = true
}

// next reads the next header and sets what to hand out.
func (d *desparse) next() {
	blk := make([]byte, blockSize)
	n, err := io.ReadFull(d.src, blk)
	if err != nil {
		if n == 0 && err == io.EOF && d.pax == nil {
			d.err = io.EOF
			return
		}
		d.passRaw(blk[:n])
		return
	}
	if bytes.Equal(blk, make([]byte, blockSize)) || !tarChecksumOK(blk) {
		d.passRaw(blk) // the end of the archive, or not a header
		return
	}
	size, ok := parseNumeric(blk[124:136])
	if !ok || size < 0 {
		d.passRaw(blk)
		return
	}
	switch typ := blk[156]; typ {
	case 'x':
		if d.pax != nil || size > maxPAXHeader {
			d.passRaw(blk)
			return
		}
		body := make([]byte, size+padding(size))
		if _, err := io.ReadFull(d.src, body); err != nil {
			d.passRaw(blk, body)
			return
		}
		records, err := parsePAX(body[:size])
		if err != nil {
			d.passRaw(blk, body)
			return
		}
		sparse := false
		for _, r := range records {
			if strings.HasPrefix(r.key, "LABSEED.") {
				d.err = fmt.Errorf("chunker: the image carries labseed's own PAX record %q (repack it with GNU tar)", r.key)
				return
			}
			if r.key == "size" {
				if d.paxSize, err = strconv.ParseInt(r.value, 10, 64); err != nil || d.paxSize < 0 {
					d.passRaw(blk, body)
					return
				}
			}
			sparse = sparse || strings.HasPrefix(r.key, "GNU.sparse.")
		}
		if sparse {
			d.pax, d.records = append(blk, body...), records
			return
		}
		d.out = append(blk, body...) // the next header is read with d.paxSize
	case 'g', 'L', 'K':
		if d.pax != nil {
			d.passRaw(blk)
			return
		}
		d.out, d.data = blk, size+padding(size)
	case 'S':
		if d.pax != nil {
			d.passRaw(blk)
			return
		}
		d.oldGNUSparse(blk, size)
	default:
		if d.paxSize >= 0 {
			size = d.paxSize
		}
		d.paxSize = -1
		switch {
		case typ >= '1' && typ <= '6':
			size = 0 // header only, whatever the size says (as archive/tar)
		case d.pax != nil && (typ == '0' || typ == 0 || typ == '7'):
			d.paxSparse(blk, size)
			return
		case d.pax != nil:
			d.passRaw(blk)
			return
		}
		d.out, d.data = blk, size+padding(size)
	}
}

// oldGNUSparse rewrites an entry of type 'S': its map is in the header and
// in extension blocks after it; size is the data's.
func (d *desparse) oldGNUSparse(blk []byte, size int64) {
	if !bytes.Equal(blk[257:265], []byte("ustar  \x00")) {
		d.passRaw(blk) // STAR's 'S' is something else
		return
	}
	realSize, ok := parseNumeric(blk[483:495])
	if !ok {
		d.passRaw(blk)
		return
	}
	var segs []segment
	entries, ext := blk[386:482], blk[482]
	read := 0
	for {
		for i := 0; i+24 <= len(entries); i += 24 {
			if entries[i] == 0 {
				break
			}
			off, ok1 := parseNumeric(entries[i : i+12])
			n, ok2 := parseNumeric(entries[i+12 : i+24])
			if !ok1 || !ok2 {
				d.err = fmt.Errorf("chunker: entry %q: bad sparse map", cString(blk[:100]))
				return
			}
			segs = append(segs, segment{off, n})
		}
		if ext == 0 {
			break
		}
		if read += blockSize; read > maxSparseMap {
			d.err = fmt.Errorf("chunker: entry %q: sparse map longer than %d bytes", cString(blk[:100]), maxSparseMap)
			return
		}
		eb := make([]byte, blockSize)
		if _, err := io.ReadFull(d.src, eb); err != nil {
			d.err = fmt.Errorf("read image: the archive is truncated in a sparse map: %w", io.ErrUnexpectedEOF)
			return
		}
		entries, ext = eb[:504], eb[504]
	}
	h := bytes.Clone(blk)
	clear(h[345:500]) // GNU's atime, ctime, offset, long names, map, realsize
	d.rewrite(h, nil, segs, realSize, size, size)
}

// paxSparse rewrites an entry whose held PAX header has GNU.sparse records;
// size is its data's, map included for format 1.0.
func (d *desparse) paxSparse(blk []byte, size int64) {
	var major, minor, name, sizeRec, realRec, mapRec string
	var offsets, lengths []string
	var keep []paxRecord
	for _, r := range d.records {
		switch r.key {
		case "GNU.sparse.major":
			major = r.value
		case "GNU.sparse.minor":
			minor = r.value
		case "GNU.sparse.name":
			name = r.value
		case "GNU.sparse.size":
			sizeRec = r.value
		case "GNU.sparse.realsize":
			realRec = r.value
		case "GNU.sparse.map":
			mapRec = r.value
		case "GNU.sparse.offset":
			offsets = append(offsets, r.value)
		case "GNU.sparse.numbytes":
			lengths = append(lengths, r.value)
		case "size":
		default:
			if !strings.HasPrefix(r.key, "GNU.sparse.") {
				keep = append(keep, r)
			}
		}
	}
	if name != "" {
		keep = slicesDeletePath(keep)
		keep = append(keep, paxRecord{"path", name})
	}
	if sizeRec == "" {
		sizeRec = realRec
	}
	realSize, err := strconv.ParseInt(sizeRec, 10, 64)
	bad := func(what string) {
		d.err = fmt.Errorf("chunker: entry %q: %s", orName(name, cString(blk[:100])), what)
	}
	if err != nil || realSize < 0 {
		bad("sparse file without a valid size")
		return
	}
	var segs []segment
	dense := size
	switch {
	case major == "1" && minor == "0":
		var mapBytes int64
		segs, mapBytes, err = readSparseMap(d.src, maxSparseMap)
		if err != nil {
			bad(err.Error())
			return
		}
		if dense -= mapBytes; dense < 0 {
			bad("sparse map longer than the entry's data")
			return
		}
	case major == "0" || major == "" && (mapRec != "" || len(offsets) > 0):
		var nums []string
		if mapRec != "" {
			nums = strings.Split(mapRec, ",")
		} else if len(offsets) == len(lengths) {
			for i := range offsets {
				nums = append(nums, offsets[i], lengths[i])
			}
		}
		if segs, err = parseSegments(nums); err != nil {
			bad(err.Error())
			return
		}
	default:
		d.passRaw(blk) // an unknown version: archive/tar reports it (or expands it)
		return
	}
	d.rewrite(blk, keep, segs, realSize, dense, size)
}

// slicesDeletePath returns rs without its "path" records.
func slicesDeletePath(rs []paxRecord) []paxRecord {
	out := rs[:0]
	for _, r := range rs {
		if r.key != "path" {
			out = append(out, r)
		}
	}
	return out
}

// orName returns a, or b if a is empty.
func orName(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// rewrite hands out a sparse entry as a regular one: a PAX header with the
// records keep, LABSEED.sparse.size and the new size, the entry's header blk
// as a regular file, then the map and the dense data. dense is the length of
// the data segments still to read from src, srcSize the entry's data size
// in the input (whose padding follows the dense data).
func (d *desparse) rewrite(blk []byte, keep []paxRecord, segs []segment, realSize, dense, srcSize int64) {
	name := cString(blk[:100])
	if err := checkSegments(segs, realSize, dense); err != nil {
		d.err = fmt.Errorf("chunker: entry %q: %w", name, err)
		return
	}
	m := encodeSparseMap(segs)
	newSize := int64(len(m)) + dense
	keep = append(keep, paxRecord{paxSparseSize, strconv.FormatInt(realSize, 10)},
		paxRecord{"size", strconv.FormatInt(newSize, 10)})
	var body []byte
	for _, r := range keep {
		body = append(body, formatPAXRecord(r.key, r.value)...)
	}
	xh := make([]byte, blockSize)
	copy(xh, "././@PaxHeader")
	copy(xh[100:], "0000644\x00")
	copy(xh[108:], "0000000\x00")
	copy(xh[116:], "0000000\x00")
	copy(xh[124:], fmt.Sprintf("%011o\x00", len(body)))
	copy(xh[136:], "00000000000\x00")
	xh[156] = 'x'
	copy(xh[257:], "ustar\x0000")
	setChecksum(xh)
	h := bytes.Clone(blk)
	h[156] = '0'
	copy(h[124:136], "00000000000\x00") // the size is in the PAX record
	setChecksum(h)

	out := append(xh, body...)
	out = append(out, make([]byte, padding(int64(len(body))))...)
	out = append(out, h...)
	d.out = append(out, m...)
	d.pax, d.records, d.paxSize = nil, nil, -1
	// The map is a whole number of blocks, so the dense data's padding is
	// the same in the input and the output.
	d.data = dense + padding(srcSize)
	if padding(srcSize) != padding(dense) {
		d.err = fmt.Errorf("chunker: entry %q: sparse data does not fill its blocks", name)
		d.out, d.data = nil, 0
	}
}

// checkSegments checks a sparse map: segments in order, not overlapping,
// inside the file, adding up to the data that follows.
func checkSegments(segs []segment, realSize, dense int64) error {
	if realSize > maxFileSize {
		return fmt.Errorf("sparse file of %d bytes, more than labseed's %d", realSize, int64(maxFileSize))
	}
	var end, sum int64
	for _, s := range segs {
		if s.off < end || s.n < 0 || s.off > realSize || s.n > realSize-s.off {
			return errors.New("sparse map out of order or past the end of the file")
		}
		end, sum = s.off+s.n, sum+s.n
	}
	if sum != dense {
		return fmt.Errorf("sparse map covers %d bytes, the entry holds %d", sum, dense)
	}
	return nil
}

// parseSegments parses a map given as numbers: offset, length, offset...
func parseSegments(nums []string) ([]segment, error) {
	if len(nums) == 1 && nums[0] == "" {
		nums = nil
	}
	if len(nums)%2 != 0 {
		return nil, errors.New("sparse map with an odd count of numbers")
	}
	segs := make([]segment, 0, len(nums)/2)
	for i := 0; i < len(nums); i += 2 {
		off, err1 := strconv.ParseInt(nums[i], 10, 64)
		n, err2 := strconv.ParseInt(nums[i+1], 10, 64)
		if err1 != nil || err2 != nil || off < 0 || n < 0 {
			return nil, errors.New("sparse map with a bad number")
		}
		segs = append(segs, segment{off, n})
	}
	return segs, nil
}

// readSparseMap reads a map in the layout of GNU's PAX format 1.0: the
// number of segments, then each one's offset and length, every number
// followed by a newline, padded to whole blocks. It reads at most limit
// bytes and returns the map and the bytes it took.
func readSparseMap(r io.Reader, limit int64) ([]segment, int64, error) {
	var buf []byte
	var read int64
	blk := make([]byte, blockSize)
	// token returns the next number, reading blocks as needed.
	token := func() (int64, error) {
		for {
			if i := bytes.IndexByte(buf, '\n'); i >= 0 {
				v, err := strconv.ParseInt(string(buf[:i]), 10, 64)
				buf = buf[i+1:]
				if err != nil || v < 0 {
					return 0, errors.New("sparse map with a bad number")
				}
				return v, nil
			}
			if read += blockSize; read > limit {
				return 0, fmt.Errorf("sparse map longer than %d bytes", limit)
			}
			if _, err := io.ReadFull(r, blk); err != nil {
				return 0, fmt.Errorf("sparse map cut short: %w", io.ErrUnexpectedEOF)
			}
			buf = append(buf, blk...)
		}
	}
	count, err := token()
	if err != nil {
		return nil, 0, err
	}
	if count > limit/4 {
		return nil, 0, fmt.Errorf("sparse map of %d segments", count)
	}
	segs := make([]segment, 0, min(count, 1024))
	for range count {
		off, err := token()
		if err != nil {
			return nil, 0, err
		}
		n, err := token()
		if err != nil {
			return nil, 0, err
		}
		segs = append(segs, segment{off, n})
	}
	return segs, read, nil
}

// encodeSparseMap encodes segs for readSparseMap.
func encodeSparseMap(segs []segment) []byte {
	b := strconv.AppendInt(nil, int64(len(segs)), 10)
	b = append(b, '\n')
	for _, s := range segs {
		b = strconv.AppendInt(b, s.off, 10)
		b = append(b, '\n')
		b = strconv.AppendInt(b, s.n, 10)
		b = append(b, '\n')
	}
	return append(b, make([]byte, padding(int64(len(b))))...)
}

// padding returns how many bytes fill n up to a whole block.
func padding(n int64) int64 { return -n & (blockSize - 1) }

// parseNumeric parses a tar header number: octal, or base-256 when the
// first byte's top bit is set. Negative numbers are refused.
func parseNumeric(b []byte) (int64, bool) {
	if len(b) > 0 && b[0]&0x80 != 0 {
		if b[0]&0x40 != 0 {
			return 0, false
		}
		var x uint64
		for i, c := range b {
			if i == 0 {
				c &= 0x7f
			}
			if x>>55 != 0 {
				return 0, false
			}
			x = x<<8 | uint64(c)
		}
		return int64(x), true
	}
	s := strings.Trim(string(b), " \x00")
	if s == "" {
		return 0, true
	}
	v, err := strconv.ParseInt(s, 8, 64)
	return v, err == nil && v >= 0
}

// parsePAX parses the records of a PAX extended header, in order.
func parsePAX(b []byte) ([]paxRecord, error) {
	var rs []paxRecord
	for len(b) > 0 {
		sp := bytes.IndexByte(b, ' ')
		if sp <= 0 {
			return nil, errors.New("bad PAX record")
		}
		n, err := strconv.Atoi(string(b[:sp]))
		if err != nil || n <= sp+1 || n > len(b) || b[n-1] != '\n' {
			return nil, errors.New("bad PAX record")
		}
		kv := b[sp+1 : n-1]
		eq := bytes.IndexByte(kv, '=')
		if eq <= 0 {
			return nil, errors.New("bad PAX record")
		}
		rs = append(rs, paxRecord{string(kv[:eq]), string(kv[eq+1:])})
		b = b[n:]
	}
	return rs, nil
}

// formatPAXRecord formats one PAX record: its length (counting itself),
// a space, key=value and a newline.
func formatPAXRecord(k, v string) string {
	const fixed = len(" =\n")
	size := len(k) + len(v) + fixed
	size += len(strconv.Itoa(size))
	r := strconv.Itoa(size) + " " + k + "=" + v + "\n"
	if len(r) != size {
		size = len(r)
		r = strconv.Itoa(size) + " " + k + "=" + v + "\n"
	}
	return r
}

// setChecksum writes a header block's checksum.
func setChecksum(h []byte) {
	copy(h[148:156], "        ")
	var sum int64
	for _, c := range h {
		sum += int64(c)
	}
	copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
}

// cString returns b up to its first NUL.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
