// Package bufpool keeps a few large byte buffers for reuse.
//
// A sync.Pool is emptied by every garbage collection, and a workstation
// under a soft memory limit collects often: each chunk then got a new
// buffer of megabytes, which the runtime zeroes (10 % of a workstation's
// CPU profile in labseed demo was clearing such buffers). A Pool keeps its
// buffers across collections, at most Max of them.
package bufpool

import "sync"

// Pool is a bounded set of reusable byte buffers. The zero value keeps up
// to DefaultMax buffers. It is safe for concurrent use.
type Pool struct {
	// Max is the most buffers kept; default DefaultMax.
	Max int
	// MaxCap, if positive, is the largest capacity kept: a larger
	// buffer is left to the garbage collector.
	MaxCap int

	mu   sync.Mutex
	free [][]byte
}

// DefaultMax is the number of buffers a Pool keeps by default.
const DefaultMax = 4

// round is the granularity of new buffers: one a little larger than asked
// for serves the next, slightly larger, request too.
const round = 256 << 10

// Get returns a buffer of length n, reused if one large enough is free. Its
// contents are undefined.
func (p *Pool) Get(n int) []byte {
	p.mu.Lock()
	best := -1
	for i, b := range p.free {
		if cap(b) >= n && (best < 0 || cap(b) < cap(p.free[best])) {
			best = i
		}
	}
	if best >= 0 {
		b := p.free[best]
		p.free = append(p.free[:best], p.free[best+1:]...)
		p.mu.Unlock()
		return b[:n]
	}
	p.mu.Unlock()
	return make([]byte, n, (n+round-1)/round*round)
}

// Put gives b back for reuse. When the pool is full the smallest buffer
// (b or one kept) is dropped.
func (p *Pool) Put(b []byte) {
	if cap(b) == 0 || p.MaxCap > 0 && cap(b) > p.MaxCap {
		return
	}
	max := p.Max
	if max <= 0 {
		max = DefaultMax
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) < max {
		p.free = append(p.free, b[:0])
		return
	}
	small := 0
	for i, f := range p.free {
		if cap(f) < cap(p.free[small]) {
			small = i
		}
	}
	if cap(b) > cap(p.free[small]) {
		p.free[small] = b[:0]
	}
}

// Drop lets go of the buffers kept, for the garbage collector to take:
// when no more are needed for a while.
func (p *Pool) Drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.free)
	p.free = nil
}
