// Package deal shares the pieces of an image out among the workstations
// that fetch them from the print server, so that the print server sends
// each piece into the lab once (super-seeding, decided by the server).
//
// The print server's port is the lab's bottleneck while pieces exist
// nowhere else: every byte it sends twice delays the whole lab. A
// workstation asks the print server for a run of pieces, naming those it
// may take (the ones it lacks and none of the workstations it is connected
// to has). The Dealer hands it the first run of those that is neither being
// sent to someone else nor was sent within the hold time; everything else
// the workstations get from each other. A piece is dealt again after the
// hold time only if a workstation still cannot find it at a peer, at once
// when its holder left the lab (Gone), and a new imaging round of the
// same image, hours later, deals every piece afresh. In a lab of more
// workstations than each keeps connections to, the caller holds pieces
// for CrowdHold (SetHold).
// A slow workstation (a bad port, a slow disk) or one that does not pass
// pieces on must not hold the lab back: the pieces it would sit on reach
// the others only at its rate. So the caller says, at each deal, whether
// the workstation asking is slow (DealTo): a slow one is dealt only pieces
// whose hold time is over (it gets the rest from the others, as fast as
// its port allows), and whatever a slow holder was dealt is dealt again,
// at once, to the first workstation that is not slow and cannot find it
// at a peer.
//
// The print server's port is shared by every deal under way: with 96 open
// (48 workstations keeping two each) on a 4 Mbit/s port, a piece took a
// minute to arrive, nothing reached the other workstations meanwhile, and
// the workstations fell back to the web seed. So the Dealer keeps only as
// many deals open as let a piece cross the port in about Config.Pace at
// the rate it measures the pieces leave at (at least Config.MinOpen); a
// workstation asking beyond that is told to ask again shortly.
package deal

import (
	"cmp"
	"math"
	"sync"
	"time"
)

// Defaults of Config.
const (
	DefaultMaxRun  = 4
	DefaultHold    = 20 * time.Second
	DefaultPace    = 4 * time.Second
	DefaultMinOpen = 4
)

// CrowdHold is the hold for a lab of more workstations than each keeps
// connections to (SetHold). There a workstation that cannot find a piece
// at its peers is usually only not connected to those that have it (it
// meets others as its connections change), and on slow ports a piece
// takes long to spread. With DefaultHold, a lab of 48 on 2 Mbit/s ports
// was dealt 1.15-1.37 times the payload in 14 runs (each piece sent again
// is time of the print server's port that the whole lab waits for); with
// 60 s, 1.02-1.03 times in three runs, its print server sent 0.96-0.99 of
// the image and the last workstation finished at 1.20-1.21 T_lim
// (docs/lab-bench.md, "A crowded lab").
const CrowdHold = time.Minute

// rateWindow is the span over which the Dealer measures the rate its
// pieces leave at.
const rateWindow = 5 * time.Second

// Config tunes a Dealer.
type Config struct {
	// MaxRun is the most pieces dealt at once. Default DefaultMaxRun.
	MaxRun int
	// Hold is how long after a piece was sent it is not dealt again: time
	// for its receiver to announce it and for the others to fetch it.
	// Default DefaultHold.
	Hold time.Duration
	// Pace is about how long a piece should take to reach its
	// workstation: the Dealer keeps at most Pace × (the most pieces per
	// second it has measured leaving) deals open. Default DefaultPace.
	Pace time.Duration
	// MinOpen is the most deals open at once before any rate is measured,
	// and the least ever allowed. Default DefaultMinOpen.
	MinOpen int
}

// Dealer decides which pieces of one torrent the print server sends to
// whom. Its methods are safe for concurrent use.
type Dealer struct {
	cfg     Config
	mu      sync.Mutex
	sending []uint8     // per piece: the deals holding it that are open
	sentAt  []time.Time // per piece: when it was last sent whole
	sent    int         // pieces sent whole at least once
	open    int         // deals made and not finished
	first   time.Time   // when the first deal was made
	holder  []uint32    // per piece: who it was last dealt to (Holder.ID)
	slow    map[uint32]bool
	began   []time.Time // per piece: when its last deal was made
	area    []float64   // per piece: openArea when its last deal was made
	// openArea is the integral of open over time (deal-seconds) up to
	// areaAt: a deal's mean company is its growth over the deal's life.
	openArea float64
	areaAt   time.Time
	done     []finished    // the Finishes of the last rateWindow
	hold     time.Duration // SetHold's; 0: cfg.Hold
}

// finished is a Finish that sent pieces: the rate the port carried
// pieces at, as that deal saw it.
type finished struct {
	at   time.Time
	rate float64 // pieces a second
}

// Holder is the workstation a deal is for. ID is a number the caller
// gives each workstation (0: anonymous); Slow says the workstation
// drains its deals much slower than the others, or does not pass pieces
// on; Open is how many deals it has under way already.
type Holder struct {
	ID   uint32
	Slow bool
	Open int
}

// maxSlow bounds the slow holders remembered.
const maxSlow = 4096

// New returns a Dealer for a torrent of n pieces.
func New(n int, cfg Config) *Dealer {
	if cfg.MaxRun <= 0 {
		cfg.MaxRun = DefaultMaxRun
	}
	if cfg.Hold <= 0 {
		cfg.Hold = DefaultHold
	}
	if cfg.Pace <= 0 {
		cfg.Pace = DefaultPace
	}
	if cfg.MinOpen <= 0 {
		cfg.MinOpen = DefaultMinOpen
	}
	return &Dealer{cfg: cfg, sending: make([]uint8, n), sentAt: make([]time.Time, n), holder: make([]uint32, n), began: make([]time.Time, n), area: make([]float64, n), slow: map[uint32]bool{}}
}

// Pieces returns the number of pieces of the torrent.
func (d *Dealer) Pieces() int { return len(d.sending) }

// Deal picks the pieces first..first+n-1 for a workstation that may take
// the pieces set in want, and marks them as being sent until Finish. ok is
// false when there is nothing to deal now (or as many deals are open as
// the print server's port carries at the Pace): the workstation should get
// its pieces from the others and ask again later.
func (d *Dealer) Deal(want Bitmap, now time.Time) (first, n int, ok bool) {
	return d.DealTo(want, now, Holder{})
}

// DealTo is Deal for workstation to. To one that is not slow it deals,
// in this order, pieces never sent, pieces a slow holder was dealt, and
// pieces sent longer than the hold time ago; to a slow one only the last,
// one at a time.
func (d *Dealer) DealTo(want Bitmap, now time.Time, to Holder) (first, n int, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.first.IsZero() {
		d.first = now
	}
	// No workstation takes more than a quarter of the deals the port
	// carries (at least one): one that stops reading must not hold them
	// all (its streams are cut only after the stall timeout).
	if limit := d.maxOpen(); d.open >= limit || to.Open >= max(1, limit/4) {
		return 0, 0, false
	}
	d.integrate(now)
	// Near the end, shorter runs: a run is sent at the pace of one
	// workstation's share of the print server's port, and until its last
	// piece is in, the other workstations cannot have it. Runs of MaxRun
	// while there are four times as many pieces never sent as the open
	// deals can hold, then shorter, down to single pieces (lab bench: the
	// last workstations were done seconds after the print server had sent
	// its last new piece).
	maxRun := min(d.cfg.MaxRun, max(1, (len(d.sending)-d.sent)/(4*(d.open+1))))
	if to.ID != 0 {
		if to.Slow {
			if len(d.slow) >= maxSlow {
				clear(d.slow)
			}
			d.slow[to.ID] = true
		} else {
			delete(d.slow, to.ID)
		}
	}
	const (
		fresh = iota // never sent
		weak         // dealt to a slow holder
		held         // sent longer than Hold ago
	)
	hold := cmp.Or(d.hold, d.cfg.Hold)
	passes := []int{fresh, weak, held}
	if to.Slow {
		passes, maxRun = []int{held}, 1
	}
	for _, pass := range passes {
		free := func(p int) bool {
			if !want.Has(p) {
				return false
			}
			switch pass {
			case fresh:
				return d.sending[p] == 0 && d.sentAt[p].IsZero()
			case weak:
				h := d.holder[p]
				return h != 0 && h != to.ID && d.slow[h] && (d.sending[p] > 0 || !d.sentAt[p].IsZero())
			default:
				return d.sending[p] == 0 && !d.sentAt[p].IsZero() && now.Sub(d.sentAt[p]) >= hold
			}
		}
		for p := range d.sending {
			if !free(p) {
				continue
			}
			for n = 1; n < maxRun && p+n < len(d.sending) && free(p+n); n++ {
			}
			for i := p; i < p+n; i++ {
				d.sending[i]++
				d.holder[i] = to.ID
				d.began[i] = now
				d.area[i] = d.openArea
			}
			d.open++
			return p, n, true
		}
	}
	return 0, 0, false
}

// Finish closes the deal of pieces first..first+n-1; sent is how many of
// them, from first on, reached the workstation whole (all n when the
// transfer succeeded). The others may be dealt again at once. last is true
// for the Finish that sent the last piece never sent before: from then
// on every piece is in the lab.
func (d *Dealer) Finish(first, n, sent int, now time.Time) (last bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	before := d.sent
	d.integrate(now)
	d.open = max(0, d.open-1)
	for i := first; i < first+n && i < len(d.sending); i++ {
		if i < 0 {
			continue
		}
		if d.sending[i] > 0 {
			d.sending[i]--
		}
		if i-first < sent {
			if d.sentAt[i].IsZero() {
				d.sent++
			}
			d.sentAt[i] = now
		}
	}
	if first >= 0 && first < len(d.began) && sent > 0 && now.After(d.began[first]) {
		// The port's rate as this deal saw it: its own, times the
		// deals that shared the port with it (on average over its
		// life).
		dur := now.Sub(d.began[first]).Seconds()
		rate := float64(sent) / dur * max(1, (d.openArea-d.area[first])/dur)
		d.done = append(d.done, finished{now, rate})
		i := 0
		for i < len(d.done) && (now.Sub(d.done[i].at) >= rateWindow || len(d.done)-i > maxFinished) {
			i++
		}
		d.done = append(d.done[:0], d.done[i:]...)
	}
	return before < len(d.sending) && d.sent == len(d.sending)
}

// integrate brings openArea up to now.
func (d *Dealer) integrate(now time.Time) {
	if now.After(d.areaAt) {
		if !d.areaAt.IsZero() {
			d.openArea += float64(d.open) * now.Sub(d.areaAt).Seconds()
		}
		d.areaAt = now
	}
}

// maxFinished bounds the Finishes remembered for the rate.
const maxFinished = 4096

// maxOpen is the most deals to keep open: as many as the print server's
// port carries a piece each of in Config.Pace, at the rate the deals of
// the last rateWindow measured (at least Config.MinOpen). A deal
// measures the port's rate as its own times the deals open with it; so if
// the deals are slowed by the workstations' ports rather than the print
// server's, the Dealer keeps fewer open.
func (d *Dealer) maxOpen() int {
	if len(d.done) == 0 {
		return d.cfg.MinOpen
	}
	var sum float64
	for _, f := range d.done {
		sum += f.rate
	}
	return max(d.cfg.MinOpen, int(math.Ceil(sum/float64(len(d.done))*d.cfg.Pace.Seconds())))
}

// SetHold sets how long after a piece was sent it is not dealt again,
// from now on (Config.Hold while it was never set, or set to 0).
func (d *Dealer) SetHold(hold time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.hold = max(hold, 0)
}

// Open returns how many deals are open and the most the Dealer keeps open
// now (see Config.Pace).
func (d *Dealer) Open() (open, limit int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.open, d.maxOpen()
}

// Progress returns how many pieces were sent whole at least once, and
// when the first deal was made (zero before it).
func (d *Dealer) Progress() (sent int, first time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sent, d.first
}

// Gone says workstation id left the lab (it finished and rebooted, or
// died): no one can fetch from it what it was dealt, so those pieces are
// dealt again at once, as a slow holder's are, to the first workstation
// that cannot find them at a peer. (Before, they waited out the hold
// time: a workstation started after the others had left, or one
// restarted after a power cut, got no deal for up to 20 s and fell back
// to the web seed.) A holder that deals again is no longer gone.
func (d *Dealer) Gone(id uint32) {
	if id == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.slow) >= maxSlow {
		clear(d.slow)
	}
	d.slow[id] = true
}

// Unsend takes back pieces first..first+n-1 that a Finish at time at
// counted as sent: their receiver asks for them again, so they never
// reached it. Those not dealt since (sent at another time, or being sent)
// may be dealt again at once.
func (d *Dealer) Unsend(first, n int, at time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := max(first, 0); i < first+n && i < len(d.sending); i++ {
		if d.sending[i] == 0 && !at.IsZero() && d.sentAt[i].Equal(at) {
			d.sentAt[i] = time.Time{}
			d.sent--
		}
	}
}

// Bitmap is a set of piece indexes in BitTorrent's bitfield order: piece
// p is bit 7-p%8 of byte p/8.
type Bitmap []byte

// NewBitmap returns an empty Bitmap for n pieces.
func NewBitmap(n int) Bitmap { return make(Bitmap, (n+7)/8) }

// Set adds piece p.
func (b Bitmap) Set(p int) { b[p/8] |= 0x80 >> (p % 8) }

// Clear removes piece p; pieces beyond the bitmap are ignored.
func (b Bitmap) Clear(p int) {
	if p >= 0 && p/8 < len(b) {
		b[p/8] &^= 0x80 >> (p % 8)
	}
}

// Has reports whether piece p is in the set; pieces beyond the bitmap are
// not.
func (b Bitmap) Has(p int) bool { return p >= 0 && p/8 < len(b) && b[p/8]&(0x80>>(p%8)) != 0 }

// Empty reports whether no piece is set.
func (b Bitmap) Empty() bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}
