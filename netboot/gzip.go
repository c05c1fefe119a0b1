package netboot

import (
	"io"

	"github.com/klauspost/compress/gzip"
)

func newGzip(w io.Writer) (io.WriteCloser, error) {
	return gzip.NewWriterLevel(w, gzip.BestCompression)
}
