package bufpool

import (
	"runtime"
	"testing"
)

func TestReuseAcrossGC(t *testing.T) {
	var p Pool
	b := p.Get(3 << 20)
	if len(b) != 3<<20 {
		t.Fatalf("len %d", len(b))
	}
	b[0] = 7
	p.Put(b)
	runtime.GC()
	runtime.GC()
	c := p.Get(1 << 20)
	if &c[:1][0] != &b[:1][0] {
		t.Fatal("buffer not reused after a garbage collection")
	}
	if len(c) != 1<<20 {
		t.Fatalf("len %d", len(c))
	}
}

func TestBounded(t *testing.T) {
	p := Pool{Max: 2}
	for _, n := range []int{1 << 20, 2 << 20, 3 << 20} {
		p.Put(make([]byte, n))
	}
	if len(p.free) != 2 {
		t.Fatalf("%d buffers kept, want 2", len(p.free))
	}
	for _, b := range p.free {
		if cap(b) == 1<<20 {
			t.Fatal("the smallest buffer was kept")
		}
	}
	// The smallest that fits is taken.
	if b := p.Get(1 << 20); cap(b) != 2<<20 {
		t.Fatalf("got a buffer of %d, want the 2 MiB one", cap(b))
	}
	if b := p.Get(4 << 20); cap(b) < 4<<20 {
		t.Fatalf("cap %d", cap(b))
	}
}

func TestMaxCapAndDrop(t *testing.T) {
	p := Pool{Max: 2, MaxCap: 2 << 20}
	p.Put(make([]byte, 3<<20))
	if len(p.free) != 0 {
		t.Fatalf("a buffer above MaxCap was kept")
	}
	p.Put(make([]byte, 2<<20))
	if len(p.free) != 1 {
		t.Fatalf("%d buffers kept, want 1", len(p.free))
	}
	p.Drop()
	if len(p.free) != 0 {
		t.Fatalf("%d buffers kept after Drop", len(p.free))
	}
}
