package chunker

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// ErrNotTar is returned for input that is neither a tar archive nor a
// gzip- or zstd-compressed one.
var ErrNotTar = errors.New("chunker: input is not a tar, tar.gz or tar.zst archive")

// openInput sniffs r and returns a reader of the tar stream inside it:
// r itself, or r decompressed (gzip, including multi-member gzip as pigz
// writes it, or zstd). Decompression runs ahead in its own goroutine so that
// chunking and compression overlap it; Close stops it.
func openInput(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	head, err := br.Peek(512)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read input: %w", err)
	}
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return newReadahead(zr, func() { zr.Close() }), nil
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return newReadahead(zr, zr.Close), nil
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return nil, fmt.Errorf("%w: it is xz-compressed; run: xz -dc IMAGE | labseed publish -", ErrNotTar)
	case bytes.HasPrefix(head, []byte("BZh")):
		return nil, fmt.Errorf("%w: it is bzip2-compressed; run: bzip2 -dc IMAGE | labseed publish -", ErrNotTar)
	case len(head) == 512 && tarChecksumOK(head):
		return io.NopCloser(br), nil
	}
	return nil, ErrNotTar
}

// tarChecksumOK reports whether b is a tar header block with a valid checksum.
func tarChecksumOK(b []byte) bool {
	field := bytes.TrimRight(bytes.TrimLeft(b[148:156], " \x00"), " \x00")
	if len(field) == 0 {
		return false
	}
	var want int64
	for _, c := range field {
		if c < '0' || c > '7' {
			return false
		}
		want = want*8 + int64(c-'0')
	}
	// Unsigned bytes, or signed as some old tars summed them (archive/tar
	// accepts both).
	var sum, signed int64
	for i, c := range b {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += int64(c)
		signed += int64(int8(c))
	}
	return sum == want || signed == want
}

// readahead reads its source in a goroutine, a few blocks ahead of the reader.
type readahead struct {
	blocks chan []byte
	free   chan []byte
	stop   chan struct{}
	blk    []byte // the block being read, as it came from free
	cur    []byte // the unread rest of blk
	err    error
	errc   chan error
}

const readaheadBlock = 1 << 20

func newReadahead(src io.Reader, closeSrc func()) *readahead {
	ra := &readahead{
		blocks: make(chan []byte, 8),
		free:   make(chan []byte, 10),
		stop:   make(chan struct{}),
		errc:   make(chan error, 1),
	}
	for range 10 {
		ra.free <- make([]byte, readaheadBlock)
	}
	go func() {
		defer closeSrc()
		defer close(ra.blocks)
		for {
			var b []byte
			select {
			case b = <-ra.free:
			case <-ra.stop:
				return
			}
			n, err := fill(src, b[:cap(b)])
			if n > 0 {
				select {
				case ra.blocks <- b[:n]:
				case <-ra.stop:
					return
				}
			}
			if err != nil {
				ra.errc <- err
				return
			}
		}
	}()
	return ra
}

func (ra *readahead) Read(p []byte) (int, error) {
	for len(ra.cur) == 0 {
		if ra.err != nil {
			return 0, ra.err
		}
		if ra.blk != nil {
			ra.free <- ra.blk
			ra.blk = nil
		}
		b, ok := <-ra.blocks
		if !ok {
			ra.err = <-ra.errc
			continue
		}
		ra.blk, ra.cur = b, b
	}
	n := copy(p, ra.cur)
	ra.cur = ra.cur[n:]
	return n, nil
}

func (ra *readahead) Close() error {
	select {
	case <-ra.stop:
	default:
		close(ra.stop)
	}
	return nil
}

// fill reads into b until it is full or src fails; unlike io.ReadFull it
// passes src's own error through, so a truncated gzip stream stays an
// io.ErrUnexpectedEOF and a clean end stays io.EOF.
func fill(src io.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k, err := src.Read(b[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
