package swarm

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// TestLimitReaderWriter: the wrappers move at most the limiter's burst at a
// time and pay for it from the limiter's budget. The limiter here refills
// at 1 byte/s, so after the first burst the next wait would outlast the
// context: the writer stops after exactly one burst, the reader after the
// second read (it pays after reading).
func TestLimitReaderWriter(t *testing.T) {
	const burst = 64 << 10
	data := bytes.Repeat([]byte("x"), 300<<10)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	var out bytes.Buffer
	n, err := LimitWriter(ctx, &out, rate.NewLimiter(1, burst)).Write(data)
	if err == nil || n != burst || out.Len() != burst {
		t.Errorf("LimitWriter: wrote %d (%d arrived), err %v; want one burst (%d) and an error", n, out.Len(), err, burst)
	}

	lr := LimitReader(ctx, bytes.NewReader(data), rate.NewLimiter(1, burst))
	buf := make([]byte, len(data))
	var got []int
	for {
		n, err := lr.Read(buf)
		got = append(got, n)
		if err != nil {
			break
		}
	}
	if len(got) != 2 || got[0] != burst || got[1] != burst {
		t.Errorf("LimitReader: reads of %v bytes; want two of one burst (%d), the second with an error", got, burst)
	}

	// Unlimited: the reader and writer themselves.
	r := bytes.NewReader(data)
	if LimitReader(ctx, r, NewLimiter(0)) != io.Reader(r) || LimitReader(ctx, r, nil) != io.Reader(r) {
		t.Error("LimitReader wraps a reader although there is no limit")
	}
	if LimitWriter(ctx, &out, NewLimiter(0)) != io.Writer(&out) {
		t.Error("LimitWriter wraps a writer although there is no limit")
	}
}
