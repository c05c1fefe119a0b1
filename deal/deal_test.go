package deal

import (
	"testing"
	"time"
)

func all(n int) Bitmap {
	b := NewBitmap(n)
	for p := range n {
		b.Set(p)
	}
	return b
}

func TestDealSharesOutEachPieceOnce(t *testing.T) {
	d := New(40, Config{MaxRun: 4, Hold: time.Minute, MinOpen: 64})
	now := time.Unix(1000, 0)
	type deal struct{ first, n int }
	var got []deal
	dealt := make([]bool, 40)
	for {
		first, n, ok := d.Deal(all(40), now)
		if !ok {
			break
		}
		if n > 4 {
			t.Fatalf("a run of %d pieces, MaxRun is 4", n)
		}
		for p := first; p < first+n; p++ {
			if dealt[p] {
				t.Fatalf("piece %d dealt twice", p)
			}
			dealt[p] = true
		}
		got = append(got, deal{first, n})
	}
	for p, ok := range dealt {
		if !ok {
			t.Fatalf("piece %d never dealt (deals %v)", p, got)
		}
	}
	if got[0] != (deal{0, 4}) {
		t.Fatalf("first deal %v, want 0+4", got[0])
	}
	for i, g := range got {
		if last := d.Finish(g.first, g.n, g.n, now); last != (i == len(got)-1) {
			t.Fatalf("Finish of deal %d says last %v", i, last)
		}
	}
	if sent, first := d.Progress(); sent != 40 || !first.Equal(now) {
		t.Fatalf("Progress %d, %v; want 40 pieces, the first deal at %v", sent, first, now)
	}
	if first, n, ok := d.Deal(all(40), now.Add(time.Minute-time.Second)); ok {
		t.Fatalf("pieces %d+%d dealt again within the hold time", first, n)
	}
	if first, _, ok := d.Deal(all(40), now.Add(time.Minute)); !ok || first != 0 {
		t.Fatalf("after the hold time: %d %v, want 0", first, ok)
	}
}

// Runs get shorter when few pieces were never sent: the last ones reach
// the lab one at a time, not behind three others each.
func TestDealShorterRunsAtTheEnd(t *testing.T) {
	const pieces = 1000
	d := New(pieces, Config{MaxRun: 4, MinOpen: 16})
	now := time.Now()
	var open [][2]int
	for {
		first, n, ok := d.Deal(all(pieces), now)
		if !ok {
			break
		}
		sent, _ := d.Progress()
		switch left := pieces - sent; {
		case left >= 4*4*(len(open)+1) && n != 4 && first+n < pieces:
			t.Fatalf("%d pieces never sent, %d deals open: a run of %d, want 4", left, len(open), n)
		case left < 8 && n != 1:
			t.Fatalf("%d pieces never sent: a run of %d, want 1", left, n)
		}
		open = append(open, [2]int{first, n})
		if len(open) == 16 { // 16 deals at a time, as 8 workstations keep open
			d.Finish(open[0][0], open[0][1], open[0][1], now)
			open = open[1:]
		}
	}
}

func TestDealOnlyWantedPieces(t *testing.T) {
	d := New(20, Config{MaxRun: 8})
	want := NewBitmap(20)
	for _, p := range []int{3, 4, 5, 9, 17} {
		want.Set(p)
	}
	now := time.Now()
	var dealt []int
	for {
		first, n, ok := d.Deal(want, now)
		if !ok {
			break
		}
		for p := first; p < first+n; p++ {
			if !want.Has(p) {
				t.Fatalf("dealt piece %d, not wanted", p)
			}
			dealt = append(dealt, p)
		}
	}
	if len(dealt) != 5 {
		t.Fatalf("dealt %v, want the 5 wanted pieces", dealt)
	}
	if _, _, ok := d.Deal(NewBitmap(20), now); ok {
		t.Fatal("dealt to a workstation that wants nothing")
	}
}

func TestDealCutShort(t *testing.T) {
	d := New(64, Config{MaxRun: 4, Hold: time.Hour})
	now := time.Now()
	first, n, _ := d.Deal(all(64), now)
	// The transfer broke after one piece: the other three are free at once.
	d.Finish(first, n, 1, now)
	if f, k, ok := d.Deal(all(64), now); !ok || f != 1 || k != 4 {
		t.Fatalf("after a broken deal of 0+4 (1 sent): %d+%d %v, want 1+4", f, k, ok)
	}
}

func TestDealNeverSentFirst(t *testing.T) {
	d := New(8, Config{MaxRun: 2, Hold: time.Second})
	now := time.Now()
	first, n, _ := d.Deal(all(8), now)
	d.Finish(first, n, n, now)
	// Pieces 0 and 1 are past their hold, but 2.. were never sent.
	if f, _, ok := d.Deal(all(8), now.Add(time.Hour)); !ok || f != 2 {
		t.Fatalf("dealt %d first, want 2 (never sent) before 0 (sent)", f)
	}
}

func TestBitmap(t *testing.T) {
	b := NewBitmap(10)
	if len(b) != 2 || !b.Empty() {
		t.Fatalf("NewBitmap(10) = %x", []byte(b))
	}
	b.Set(0)
	b.Set(9)
	if b[0] != 0x80 || b[1] != 0x40 {
		t.Fatalf("pieces 0 and 9: %x, want 8040 (BitTorrent bit order)", []byte(b))
	}
	if !b.Has(9) || b.Has(8) || b.Has(-1) || b.Has(16) {
		t.Fatal("Has is wrong")
	}
	b.Clear(0)
	b.Clear(9)
	b.Clear(100)
	if !b.Empty() {
		t.Fatalf("after Clear: %x", []byte(b))
	}
}

// FuzzDeal feeds the Dealer wanted-piece bitmaps as they come off the
// network (any length, any bits): every piece dealt is wanted, in range and
// not dealt twice while its deal is open.
func FuzzDeal(f *testing.F) {
	f.Add(uint16(10), []byte{0xff, 0xc0}, []byte{0x0f, 0xff})
	f.Add(uint16(1), []byte{}, []byte{0x80})
	f.Add(uint16(1000), []byte{0x55, 0xaa, 0x01}, []byte{0xff})
	f.Fuzz(func(t *testing.T, pieces uint16, a, b []byte) {
		n := int(pieces%2048) + 1
		d := New(n, Config{})
		open := make([]bool, n)
		now := time.Unix(0, 0)
		for i, want := range []Bitmap{a, b, a, b} {
			first, k, ok := d.Deal(want, now)
			if !ok {
				continue
			}
			if k < 1 || k > DefaultMaxRun || first < 0 || first+k > n {
				t.Fatalf("deal %d: pieces %d+%d of %d", i, first, k, n)
			}
			for p := first; p < first+k; p++ {
				if !want.Has(p) || open[p] {
					t.Fatalf("deal %d: piece %d (wanted %v, already open %v)", i, p, want.Has(p), open[p])
				}
				open[p] = true
			}
			if i == 1 {
				d.Finish(first, k, k/2, now)
				for p := first; p < first+k; p++ {
					open[p] = false
				}
			}
		}
	})
}

// TestUnsend: pieces a workstation asks for again after their deal
// finished are dealt again at once; pieces dealt to another since are not
// touched.
func TestUnsend(t *testing.T) {
	// 64 pieces, 8 wanted: enough never sent for runs of MaxRun.
	d := New(64, Config{MaxRun: 4})
	all := NewBitmap(64)
	for p := range 8 {
		all.Set(p)
	}
	t0 := time.Now()
	first, n, _ := d.Deal(all, t0)
	d.Finish(first, n, n, t0)
	if f, _, _ := d.Deal(all, t0); f != 4 {
		t.Fatalf("second deal starts at %d, want 4", f)
	}
	d.Finish(4, 4, 4, t0.Add(time.Second))
	d.Unsend(first, n, t0)
	if f, k, ok := d.Deal(all, t0.Add(2*time.Second)); !ok || f != 0 || k != 4 {
		t.Fatalf("after Unsend: %d+%d %v, want 0+4", f, k, ok)
	}
	d.Unsend(4, 4, t0) // not the time pieces 4..7 were sent at
	if _, _, ok := d.Deal(all, t0.Add(3*time.Second)); ok {
		t.Fatal("Unsend with another time took back pieces")
	}
}

// TestDealSlowHolder: a slow workstation gets no piece never sent; what a
// workstation was dealt before it was found slow is dealt again at once to
// one that is not slow, and the slow one's late Finish does not free a
// piece still being sent to the other.
func TestDealSlowHolder(t *testing.T) {
	// 64 pieces, of which the workstations want the first 8: runs of 4
	// (there are many pieces never sent).
	d := New(64, Config{MaxRun: 4, Hold: time.Minute})
	want := NewBitmap(64)
	for p := range 8 {
		want.Set(p)
	}
	now := time.Unix(1000, 0)
	slow, fast := Holder{ID: 1}, Holder{ID: 2}
	if first, n, ok := d.DealTo(want, now, slow); !ok || first != 0 || n != 4 {
		t.Fatalf("first deal, before anyone is known slow: %d+%d %v", first, n, ok)
	}
	slow.Slow = true
	if first, n, ok := d.DealTo(want, now, slow); ok {
		t.Fatalf("a slow workstation was dealt pieces never sent: %d+%d", first, n)
	}
	// The fast one first gets the pieces never sent, then those the slow
	// one sits on.
	if first, n, ok := d.DealTo(want, now, fast); !ok || first != 4 || n != 4 {
		t.Fatalf("fast: %d+%d %v, want 4+4", first, n, ok)
	}
	if first, n, ok := d.DealTo(want, now, fast); !ok || first != 0 || n != 4 {
		t.Fatalf("fast, again: %d+%d %v, want the slow holder's 0+4", first, n, ok)
	}
	d.Finish(0, 4, 4, now) // the slow one's deal ends
	if first, n, ok := d.DealTo(want, now, Holder{ID: 3}); ok {
		t.Fatalf("pieces %d+%d dealt a third time while the fast one receives them", first, n)
	}
	d.Finish(0, 4, 4, now)
	d.Finish(4, 4, 4, now)
	// After the hold time, a slow one gets held pieces, one at a time.
	if first, n, ok := d.DealTo(want, now.Add(time.Minute), slow); !ok || n != 1 {
		t.Fatalf("slow, after the hold time: %d+%d %v, want one piece", first, n, ok)
	}
	// An anonymous Deal never counts as slow.
	d2 := New(64, Config{MaxRun: 4})
	if _, n, ok := d2.Deal(all(64), now); !ok || n != 4 {
		t.Fatalf("anonymous deal: %d %v", n, ok)
	}
}

// TestDealPaced has 96 deal streams (48 workstations keeping two each)
// share a print server's port that carries rate pieces a second, each open
// deal getting an equal share. Every deal open at once made a piece take
// 96 ÷ rate seconds to arrive (48 s at 4 Mbit/s and 256 KiB pieces), and
// nothing could pass from workstation to workstation meanwhile: the
// Dealer keeps only as many deals open as carry a piece across in about
// Pace, and lets more open as it measures a faster port.
func TestDealPaced(t *testing.T) {
	for _, rate := range []float64{2, 40} {
		const pieces, streams = 20000, 96
		d := New(pieces, Config{MaxRun: 4, Hold: time.Hour, Pace: 4 * time.Second})
		type open struct {
			first, n int
			left     float64 // pieces still to send
			started  float64
		}
		var deals []*open
		dealt := make([]bool, pieces)
		t0 := time.Unix(1000, 0)
		const dt = 0.05
		var sent, worst float64
		for tick := 0; tick < 60/dt; tick++ {
			now := float64(tick) * dt
			at := t0.Add(time.Duration(now * float64(time.Second)))
			for len(deals) < streams {
				first, n, ok := d.Deal(all(pieces), at)
				if !ok {
					break
				}
				for p := first; p < first+n; p++ {
					if dealt[p] {
						t.Fatalf("piece %d dealt twice", p)
					}
					dealt[p] = true
				}
				deals = append(deals, &open{first, n, float64(n), now})
			}
			share := rate * dt / float64(len(deals))
			kept := deals[:0]
			for _, o := range deals {
				done := float64(o.n) - o.left // whole pieces before this tick
				o.left -= share
				sent += share
				if int(float64(o.n)-o.left) > int(done) && now > 10 {
					// A piece completed: how long it took since it
					// could have started (its deal's start or the
					// previous piece's end).
					per := (now - o.started) / (float64(o.n) - o.left)
					worst = max(worst, per)
				}
				if o.left <= 0 {
					sent += o.left
					d.Finish(o.first, o.n, o.n, at)
					continue
				}
				kept = append(kept, o)
			}
			deals = kept
		}
		t.Logf("%.0f pieces/s: a piece took up to %.1f s", rate, worst)
		if worst > 1.5*4 {
			t.Errorf("%.0f pieces/s: a piece took up to %.1f s to cross the port, want about Pace (4 s)", rate, worst)
		}
		if sent < 0.95*rate*60 {
			t.Errorf("%.0f pieces/s: the port carried %.0f pieces in 60 s, want %.0f (busy)", rate, sent, rate*60)
		}
		if open, limit := d.Open(); float64(limit) < 0.8*4*rate || open > limit {
			t.Errorf("%.0f pieces/s: %d deals open, at most %d, want about %.0f (Pace × rate)", rate, open, limit, 4*rate)
		}
	}
}

// TestDealFairShare: while the port carries few deals, no workstation
// holds more than a quarter of them (at least one): one that stops
// reading cannot take every slot.
func TestDealFairShare(t *testing.T) {
	d := New(1000, Config{MaxRun: 4, MinOpen: 4})
	now := time.Unix(1000, 0)
	evil := Holder{ID: 7}
	if _, _, ok := d.DealTo(all(1000), now, evil); !ok {
		t.Fatal("first deal refused")
	}
	evil.Open = 1
	if first, n, ok := d.DealTo(all(1000), now, evil); ok {
		t.Fatalf("a second deal (%d+%d) to a workstation with one of the 4 the port carries", first, n)
	}
	for id := uint32(1); id <= 3; id++ {
		if _, _, ok := d.DealTo(all(1000), now, Holder{ID: id}); !ok {
			t.Fatalf("workstation %d refused while slots are free", id)
		}
	}
	if _, _, ok := d.DealTo(all(1000), now, Holder{ID: 4}); ok {
		t.Fatal("a fifth deal open with the port carrying 4")
	}
}

// TestDealGoneHolder: a workstation that got every piece and left the lab
// (done, rebooted) cannot pass them on; one that comes after it must be
// dealt them at once, not after the hold time.
func TestDealGoneHolder(t *testing.T) {
	d := New(64, Config{MaxRun: 8, Hold: time.Minute})
	want := NewBitmap(64)
	for p := range 8 {
		want.Set(p)
	}
	now := time.Unix(1000, 0)
	first, n, ok := d.DealTo(want, now, Holder{ID: 1})
	if !ok || first != 0 || n != 8 {
		t.Fatalf("first workstation: %d+%d %v", first, n, ok)
	}
	d.Finish(first, n, n, now)
	late := Holder{ID: 2}
	if first, n, ok := d.DealTo(want, now.Add(time.Second), late); ok {
		t.Fatalf("pieces %d+%d dealt again while their holder is in the lab", first, n)
	}
	d.Gone(1)
	if first, n, ok := d.DealTo(want, now.Add(2*time.Second), late); !ok || first != 0 || n != 8 {
		t.Fatalf("after their holder left: %d+%d %v, want all 8 pieces at once", first, n, ok)
	}
	d.Gone(0) // anonymous: nothing to do
}

// TestDealSetHold: a hold set later counts for the pieces already sent,
// and 0 takes Config.Hold back.
func TestDealSetHold(t *testing.T) {
	d := New(8, Config{MaxRun: 2, Hold: 20 * time.Second})
	now := time.Unix(1000, 0)
	first, n, _ := d.Deal(all(8), now)
	d.Finish(first, n, n, now)
	sent := NewBitmap(8) // a workstation that lacks the pieces sent
	for p := first; p < first+n; p++ {
		sent.Set(p)
	}
	d.SetHold(CrowdHold)
	if _, _, ok := d.Deal(sent, now.Add(30*time.Second)); ok {
		t.Fatalf("dealt again 30 s after it was sent, within a hold of %v", CrowdHold)
	}
	f, k, ok := d.Deal(sent, now.Add(CrowdHold))
	if !ok || f != first {
		t.Fatalf("not dealt again after the hold of %v: %d %v", CrowdHold, f, ok)
	}
	d.Finish(f, k, k, now.Add(CrowdHold))
	d.SetHold(0)
	if f, _, ok := d.Deal(sent, now.Add(CrowdHold+20*time.Second)); !ok || f != first {
		t.Fatalf("not dealt again after Config.Hold (20 s) with the hold set back to 0: %d %v", f, ok)
	}
}
