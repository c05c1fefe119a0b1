package chunker

// cdc finds content-defined chunk boundaries with a gear rolling hash, as in
// FastCDC (Xia et al., USENIX ATC 2016): no cut before min bytes, a stricter
// mask before the average size and a looser one after it, a forced cut at max.
// The boundaries depend only on the bytes, so an insertion moves the cuts
// around it and leaves the others in place.
type cdc struct {
	min, avg, max int64
	maskS, maskL  uint64
	h             uint64
	n             int64 // bytes since the last cut
	// extra is what the chunk holds beyond the n bytes the hash counted
	// (what its headers take beyond 512 bytes, its files' padding): it
	// brings the forced cut forward, and nothing else.
	extra int64
}

var gear = func() (t [256]uint64) {
	x := uint64(0x6c61627365656421) // splitmix64, fixed seed: the table is part of the format
	for i := range t {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		t[i] = z ^ z>>31
	}
	return t
}()

func newCDC(min, avg, max int64) *cdc {
	bits := 0
	for int64(1)<<bits < avg {
		bits++
	}
	return &cdc{
		min: min, avg: avg, max: max,
		maskS: ^uint64(0) << (64 - (bits + 2)),
		maskL: ^uint64(0) << (64 - (bits - 2)),
	}
}

// scan consumes p up to the first cut point. It returns how many bytes it
// consumed and whether a cut follows them.
func (c *cdc) scan(p []byte) (int, bool) {
	i := 0
	if skip := c.min - c.n; skip > 0 {
		if int64(len(p)) < skip {
			c.n += int64(len(p))
			return len(p), false
		}
		i = int(skip)
		c.n += skip
	}
	h := c.h
	for ; i < len(p); i++ {
		h = h<<1 + gear[p[i]]
		c.n++
		mask := c.maskL
		if c.n < c.avg {
			mask = c.maskS
		}
		if h&mask == 0 || c.n+c.extra >= c.max {
			c.h, c.n, c.extra = 0, 0, 0
			return i + 1, true
		}
	}
	c.h = h
	return len(p), false
}

// reset starts a new chunk.
func (c *cdc) reset() { c.h, c.n, c.extra = 0, 0, 0 }
