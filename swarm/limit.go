package swarm

import (
	"context"
	"io"

	"golang.org/x/time/rate"
)

// LimitReader returns a reader that takes every byte read from r out of
// l's budget (nil l: no limit), waiting under ctx: the download side of a
// simulated port, shared with a client's DownloadLimiter.
func LimitReader(ctx context.Context, r io.Reader, l *rate.Limiter) io.Reader {
	if l == nil || l.Limit() == rate.Inf {
		return r
	}
	return &limitedReader{ctx: ctx, r: r, l: l}
}

type limitedReader struct {
	ctx context.Context
	r   io.Reader
	l   *rate.Limiter
}

func (lr *limitedReader) Read(p []byte) (int, error) {
	if len(p) > lr.l.Burst() {
		p = p[:lr.l.Burst()]
	}
	n, err := lr.r.Read(p)
	if n > 0 {
		if werr := lr.l.WaitN(lr.ctx, n); werr != nil && err == nil {
			err = werr
		}
	}
	return n, err
}

// LimitWriter returns a writer that waits for l's budget (nil l: no limit)
// before each write to w, under ctx: the upload side of a simulated port,
// shared with a client's UploadLimiter.
func LimitWriter(ctx context.Context, w io.Writer, l *rate.Limiter) io.Writer {
	if l == nil || l.Limit() == rate.Inf {
		return w
	}
	return &limitedWriter{ctx: ctx, w: w, l: l}
}

type limitedWriter struct {
	ctx context.Context
	w   io.Writer
	l   *rate.Limiter
}

func (lw *limitedWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		k := min(len(p), lw.l.Burst())
		if err := lw.l.WaitN(lw.ctx, k); err != nil {
			return written, err
		}
		n, err := lw.w.Write(p[:k])
		written += n
		if err != nil {
			return written, err
		}
		p = p[k:]
	}
	return written, nil
}
