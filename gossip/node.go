package gossip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// ErrClosed is returned by Join and Leave on a node that was closed.
var ErrClosed = errors.New("gossip: node closed")

// statusInterval is the least time between two propagations of a status whose
// phase did not change, and the time without a budget (SetStatusBudget).
// (Scaled with the lab's size, 3 s in a lab of 48, it saved none of the
// lab's CPU that could be measured: memberlist's gossip stayed at its
// ceiling, as it does until the updates are far rarer; the budget takes
// them there. docs/lab-bench.md, "Fewer status updates".)
const statusInterval = time.Second

// maxStatusInterval is the longest a status budget (SetStatusBudget)
// stretches the time between two propagations of a member's status: its
// progress as the others see it is at most this old.
const maxStatusInterval = 30 * time.Second

// aliveOverhead is about what memberlist adds to a status to gossip it: an
// alive message (msgpack with its field names, incarnation, address, port,
// protocol versions) besides the node's name and its encoded status, and
// its share of the packet's framing and encryption.
const aliveOverhead = 64

// publishWait is how long the background propagation waits in
// memberlist.UpdateNode for the broadcast to go out. UpdateNode queues the
// update at once and has no way not to wait, so wait as little as possible:
// gossip sends the update on its own.
const publishWait = time.Millisecond

// Node is this host's membership in the lab: a memberlist instance that
// gossips this host's Status and learns everyone else's. Its methods are safe
// for concurrent use.
type Node struct {
	cfg  Config
	log  *slog.Logger
	ml   *memberlist.Memberlist
	view atomic.Pointer[tableView]

	backoffMin, backoffMax, leaveWait time.Duration
	propagateDelay                    time.Duration // gossip rounds Leave waits for the last status to spread

	mu      sync.Mutex
	addr    string // own gossip ip:port
	status  Status
	members map[string]*entry
	dirty   bool // status changed since last propagation
	lim     limiter
	budget  float64 // bytes per second for the lab's status gossip (SetStatusBudget); 0: none
	closed  bool
	left    bool

	opMu      sync.Mutex    // serializes Leave and Close
	kick      chan struct{} // wakes the publisher
	stopPub   chan struct{} // stops the publisher
	pubDone   chan struct{} // closed when the publisher returned
	pubOnce   sync.Once
	changeCh  chan struct{} // wakes the OnChange goroutine; nil without OnChange
	stop      chan struct{} // stops the OnChange goroutine
	wg        sync.WaitGroup
	closeOnce sync.Once
	watchOnce sync.Once // watchSeeds started
	closeErr  error
}

// New validates cfg, fills in its defaults and starts this host's memberlist:
// it listens on the gossip port (TCP and UDP) at once, so other nodes can join
// it, but does not contact anyone (see Join).
func New(cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "gossip"),
		members: make(map[string]*entry),
		lim:     limiter{interval: statusInterval},
		kick:    make(chan struct{}, 1),
		stopPub: make(chan struct{}),
		pubDone: make(chan struct{}),
		stop:    make(chan struct{}),
	}
	n.backoffMin, n.backoffMax, n.leaveWait = cfg.timing()
	if cfg.OnChange != nil {
		n.changeCh = make(chan struct{}, 1)
	}
	mc := cfg.memberlistConfig(&logWriter{log: n.log})
	n.propagateDelay = 3 * mc.GossipInterval
	mc.Delegate = (*delegate)(n)
	mc.Events = (*events)(n)
	ml, err := memberlist.Create(mc)
	if err != nil {
		port := strconv.Itoa(cfg.BindPort)
		if cfg.BindPort == -1 {
			port = "any"
		}
		return nil, fmt.Errorf("gossip: start node %q on %s: %w", cfg.Name, net.JoinHostPort(cfg.BindAddr, port), err)
	}
	n.ml = ml
	view := newTableView(ml)
	if view == nil {
		n.log.Warn("memberlist's node table is not the one this labseed knows; members are shown without the suspect state")
	}
	n.view.Store(view)
	n.mu.Lock()
	if e := n.members[cfg.Name]; e != nil { // memberlist announced us during Create
		n.addr = e.addr
	} else {
		n.addr = ml.LocalNode().Address()
	}
	n.mu.Unlock()

	go n.publishLoop()
	if cfg.OnChange != nil {
		n.wg.Go(n.changeLoop)
	}
	if cfg.Insecure {
		n.log.Warn("gossip is not encrypted (Insecure): any host on the subnet can join this lab")
	}
	n.log.Info("gossip node started", "name", cfg.Name, "addr", n.addr, "seeds", cfg.Seeds, "local", cfg.Local)
	return n, nil
}

// Addr returns this node's own gossip address, ip:port, as the other members
// see it: the advertised IP (the bind address unless that is 0.0.0.0) and the
// port actually bound (the chosen one with BindPort -1). Give it to others as
// their Config.Seeds.
func (n *Node) Addr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.addr
}

// Join contacts Config.Seeds and merges this node into their lab. It retries
// with exponential backoff (Local: 50 ms to 1 s, else 0.5 s to 5 s, with
// jitter so that a lab of workstations booting together does not retry in
// step) until one seed answers or ctx ends. An attempt in progress is not
// interrupted: Join may return up to memberlist's TCP timeout (Local 1 s, else
// 10 s) after ctx ends. With no seeds (the seed node itself) it returns nil at
// once. Calling it again on a joined node is harmless.
//
// Once joined, the node keeps watching its seeds: while none of them is a
// live member (a print server that restarted knows nobody), it contacts
// them again every rejoin interval (Local 1 s, else 5 s), so that a lab
// finds its print server again without anyone restarting.
//
// If every attempt fails, the error names the seeds and the last failure; a
// seed that is up but uses another lab key fails exactly like one that is not
// reachable (memberlist cannot tell them apart), so the error says to check
// both. It wraps ctx.Err().
func (n *Node) Join(ctx context.Context) error {
	seeds := n.cfg.Seeds
	if len(seeds) == 0 {
		return nil
	}
	start := time.Now()
	backoff := n.backoffMin
	attempts := 0
	var last error
	for {
		if n.isClosed() {
			return ErrClosed
		}
		if ctx.Err() != nil {
			return n.joinError(ctx, attempts, time.Since(start), last)
		}
		attempts++
		k, err := n.ml.Join(seeds)
		if err == nil && k > 0 {
			n.log.Info("joined lab", "seeds", seeds, "attempts", attempts, "members", n.ml.NumMembers())
			n.watchOnce.Do(func() {
				n.mu.Lock()
				defer n.mu.Unlock()
				if !n.closed && !n.left {
					n.wg.Go(n.watchSeeds)
				}
			})
			return nil
		}
		if err == nil {
			err = errors.New("no seed answered")
		}
		last = err
		n.log.Debug("join attempt failed", "seeds", seeds, "attempt", attempts, "err", flatten(err))
		wait := backoff/2 + rand.N(backoff) // 0.5 to 1.5 × backoff
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return n.joinError(ctx, attempts, time.Since(start), last)
		case <-t.C:
		}
		backoff = min(2*backoff, n.backoffMax)
	}
}

// watchSeeds contacts the seeds again while none of them is a live member,
// until the node closes.
func (n *Node) watchSeeds() {
	every := 5 * time.Second
	if n.cfg.Local {
		every = time.Second
	}
	seeds := map[string]bool{}
	for _, s := range n.cfg.Seeds {
		seeds[s] = true
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		live := false
		for _, m := range n.Members() {
			live = live || (m.Name != n.cfg.Name && seeds[m.Addr] && (m.State == StateAlive || m.State == StateSuspect))
		}
		n.mu.Lock()
		gone := n.closed || n.left
		n.mu.Unlock()
		if live || gone {
			continue
		}
		if k, err := n.ml.Join(n.cfg.Seeds); err == nil && k > 0 {
			n.log.Info("the lab's seed is back: joined it again", "seeds", n.cfg.Seeds)
		}
	}
}

func (n *Node) joinError(ctx context.Context, attempts int, took time.Duration, last error) error {
	seeds := strings.Join(n.cfg.Seeds, ", ")
	if attempts == 0 {
		return fmt.Errorf("gossip: join lab via seed %s: %w", seeds, ctx.Err())
	}
	hint := "check that the print server runs and is reachable at that address, and that this host has the lab's key " +
		"(a wrong key makes every attempt fail like this)"
	if isKeyMismatch(flatten(last)) {
		hint = "the seed answered, but one side could not decrypt the other's gossip: " +
			"this host's lab key (or its Insecure setting) differs from the print server's"
	}
	return fmt.Errorf("gossip: join lab via seed %s: no seed let this node in (%d attempts in %s, last: %s): %w; %s",
		seeds, attempts, took.Round(time.Millisecond), flatten(last), ctx.Err(), hint)
}

// flatten turns memberlist's multi-line multierror text into one line.
func flatten(err error) string {
	if err == nil {
		return "none"
	}
	var parts []string
	for _, l := range strings.Split(err.Error(), "\n") {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "* "))
		if l != "" && !strings.HasSuffix(l, "occurred:") {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}

// SetStatus stores s as this node's status and has it gossiped. It is cheap
// and never blocks, so it can be called on every progress tick: propagation
// happens in the background, at most about once per second, except that a
// change of Phase is propagated at once; the last status set is always
// propagated eventually. A zero s.UpdatedUnix is set to now. See Status for
// what is truncated.
func (n *Node) SetStatus(s Status) {
	if s.UpdatedUnix == 0 {
		s.UpdatedUnix = time.Now().Unix()
	}
	n.mu.Lock()
	old := n.status
	n.status = s
	n.dirty = true
	n.mu.Unlock()
	for _, a := range [...]struct{ name, now, was string }{
		{"TorrentAddr", s.TorrentAddr, old.TorrentAddr},
		{"HTTPAddr", s.HTTPAddr, old.HTTPAddr},
	} {
		if a.now != a.was && a.now != "" && fitAddr(a.now) == "" {
			n.log.Warn("address too long to gossip, other members will not see it", "field", a.name, "addr", a.now, "max", maxAddrLen)
		}
	}
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// SetStatusBudget paces the propagation of this node's status so that the
// lab's statuses cost each member about bytesPerSecond of its port, as far
// as this node can tell. Every member passes on every member's status
// updates (memberlist's alive messages), each several times, so in a
// lab of N members where each propagates its status every interval
// every member sends about N · retransmits · (status + overhead) bytes per
// interval. The interval is that over bytesPerSecond, but never under the
// once a second SetStatus promises nor over 30 s; a change of phase still
// goes out at once. 0 (the default) means no budget: once a second.
//
// In a lab of 48 on 2 Mbit/s ports statuses once a second filled
// memberlist's gossip to its ceiling (three packets of 1400 bytes every
// 200 ms): 7-8 % of every port in each direction (docs/lab-bench.md, "Fewer
// status updates"). On a 100 Mbit/s port the same is under 0.2 %.
func (n *Node) SetStatusBudget(bytesPerSecond float64) {
	n.mu.Lock()
	n.budget = max(bytesPerSecond, 0)
	n.mu.Unlock()
}

// statusEveryLocked is the least time between two propagations of a
// status in the same phase, by the budget. Called with n.mu held.
func (n *Node) statusEveryLocked() time.Duration {
	if n.budget <= 0 {
		return statusInterval
	}
	members := 0
	for _, e := range n.members {
		if e.goneState == "" {
			members++
		}
	}
	update := len(n.status.Encode()) + len(n.cfg.Name) + aliveOverhead
	return statusEvery(members, update, n.budget)
}

// statusEvery is the interval at which each of members propagating
// statuses of update bytes costs each member budget bytes per second
// (memberlist sends each update on retransmitMult·ceil(log10(members+1))
// times), within [statusInterval, maxStatusInterval].
func statusEvery(members, update int, budget float64) time.Duration {
	retransmits := retransmitMult * int(math.Ceil(math.Log10(float64(members+1))))
	perInterval := float64(members * retransmits * update) // bytes each member sends
	d := time.Duration(perInterval / budget * float64(time.Second))
	return min(max(d, statusInterval), maxStatusInterval)
}

// Status returns the status last given to SetStatus.
func (n *Node) Status() Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.status
}

// Leave announces to the lab that this node leaves, so that the others report
// it as "left" with its last status instead of suspecting it, then shuts it
// down as Close does. Before the leave message it propagates the last status
// set and gives it three gossip rounds to spread (Local: 0.3 s, else 0.6 s);
// then it waits for the leave message to go out. All of it is bounded by ctx's
// deadline, or by 5 s (Local: 2 s) if ctx has none; a ctx canceled without a
// deadline only skips the gossip rounds. The node is closed even when Leave
// returns an error.
func (n *Node) Leave(ctx context.Context) error {
	n.opMu.Lock()
	if n.isClosed() {
		n.opMu.Unlock()
		return ErrClosed
	}
	timeout := n.leaveWait
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	end := time.Now().Add(timeout)
	// No status update may be queued after the leave: memberlist would
	// take it for this node coming back.
	n.stopPublisher()
	n.mu.Lock()
	n.dirty = false
	n.mu.Unlock()
	if n.ml.NumMembers() > 1 {
		// The leave message replaces a status update of this node still in
		// memberlist's queue, and a member that gets the leave first ignores
		// the update when it comes. So propagate the last status again and
		// wait until it went out (UpdateNode), then for a few gossip rounds
		// in which the members that got it pass it on.
		deadline := time.Now().Add(timeout / 2)
		if err := n.ml.UpdateNode(min(timeout/4, time.Second)); err != nil {
			n.log.Debug("last status before leaving not fully propagated", "err", err)
		}
		t := time.NewTimer(min(time.Until(deadline), n.propagateDelay))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	var leaveErr error
	if err := n.ml.Leave(max(time.Until(end), time.Millisecond)); err != nil {
		leaveErr = fmt.Errorf("gossip: leave lab (the others will find this node dead instead of left): %w", err)
	} else {
		n.log.Info("left lab")
	}
	n.mu.Lock()
	n.left = true
	n.mu.Unlock()
	n.opMu.Unlock()
	return errors.Join(leaveErr, n.Close())
}

// Close shuts the node down without telling the lab: the others first
// suspect it, then declare it dead. It is idempotent and returns after the
// node's goroutines (and a running OnChange call) have returned.
func (n *Node) Close() error {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	n.closeOnce.Do(func() {
		n.mu.Lock()
		n.closed = true
		n.mu.Unlock()
		if err := n.ml.Shutdown(); err != nil {
			n.closeErr = fmt.Errorf("gossip: shut down: %w", err)
		}
		n.stopPublisher()
		close(n.stop)
		n.wg.Wait()
		n.log.Debug("gossip node closed")
	})
	return n.closeErr
}

func (n *Node) isClosed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closed
}

// publishLoop propagates the status set by SetStatus, rate-limited by n.lim.
func (n *Node) publishLoop() {
	defer close(n.pubDone)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-n.stopPub:
			return
		case <-n.kick:
		case <-timer.C:
		}
		now := time.Now()
		n.mu.Lock()
		if !n.dirty {
			n.mu.Unlock()
			continue
		}
		n.lim.interval = n.statusEveryLocked()
		if wait := n.lim.wait(now, n.status.Phase); wait > 0 {
			n.mu.Unlock()
			timer.Reset(wait)
			continue
		}
		n.lim.mark(now, n.status.Phase)
		n.dirty = false
		n.mu.Unlock()
		// UpdateNode calls NodeMeta, which takes n.mu: not held here. Its
		// only error is the expected "timeout waiting for update broadcast".
		_ = n.ml.UpdateNode(publishWait)
	}
}

func (n *Node) stopPublisher() {
	n.pubOnce.Do(func() { close(n.stopPub) })
	<-n.pubDone
}

func (n *Node) changeLoop() {
	for {
		select {
		case <-n.stop:
			return
		case <-n.changeCh:
			n.cfg.OnChange()
		}
	}
}

// limiter decides when a status is propagated: a new phase at once, else at
// most once per interval (set before each look: a budget's interval
// follows the lab's size and the budget).
type limiter struct {
	interval time.Duration
	last     time.Time // last propagation
	phase    Phase     // phase last propagated
	started  bool      // anything propagated yet
}

// wait returns how long to wait before propagating a status in phase at now;
// 0 means now.
func (l *limiter) wait(now time.Time, phase Phase) time.Duration {
	if !l.started || phase != l.phase {
		return 0
	}
	return max(l.last.Add(l.interval).Sub(now), 0)
}

// mark records a propagation at now.
func (l *limiter) mark(now time.Time, phase Phase) {
	l.last, l.phase, l.started = now, phase, true
}

// delegate gives memberlist this node's metadata. memberlist calls NodeMeta
// from its own goroutines and from UpdateNode, concurrently with anything.
type delegate Node

var _ memberlist.Delegate = (*delegate)(nil)

// NodeMeta returns the encoded status (at most MaxStatusSize bytes).
func (d *delegate) NodeMeta(limit int) []byte {
	n := (*Node)(d)
	n.mu.Lock()
	s := n.status
	n.mu.Unlock()
	b := s.Encode()
	if len(b) > limit { // memberlist's limit is MaxStatusSize: cannot happen
		n.log.Error("status encoding over memberlist's limit, not gossiped", "bytes", len(b), "limit", limit)
		return nil
	}
	return b
}

// NotifyMsg ignores user messages: this package sends none.
func (d *delegate) NotifyMsg([]byte) {}

// GetBroadcasts has no user broadcasts to add.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState has no state to push beyond the members' metadata.
func (d *delegate) LocalState(join bool) []byte { return nil }

// MergeRemoteState has nothing to merge.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {}
