package gossip

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// Member states, as in Member.State.
const (
	StateAlive   = "alive"   // answering probes
	StateSuspect = "suspect" // missed probes; declared dead unless it refutes in time
	StateDead    = "dead"    // failed without leaving (crashed, powered off, cut off)
	StateLeft    = "left"    // left gracefully (Node.Leave)
)

// Member is a lab member as this node knows it.
type Member struct {
	// Name is the member's unique name (Config.Name).
	Name string
	// Addr is the member's gossip address, ip:port.
	Addr string
	// State is StateAlive, StateSuspect, StateDead or StateLeft. Dead and
	// left members are kept for Config.ForgetAfter.
	State string
	// Status is the member's last gossiped status (for this node itself,
	// the status last given to SetStatus).
	Status Status
}

// LiveWorkstations counts the workstations (RolePeer) alive among members.
func LiveWorkstations(members []Member) int {
	n := 0
	for _, m := range members {
		if m.Status.Role == RolePeer && m.State == StateAlive {
			n++
		}
	}
	return n
}

// entry is what the node keeps about a member, fed by memberlist's events.
type entry struct {
	addr       string
	status     Status
	goneState  string    // "" while the member is in the lab, else StateDead or StateLeft
	goneAt     time.Time // when goneState was set
	warnedMeta bool      // an undecodable status from this member was logged
}

// Members returns every member this node knows, itself included, sorted by
// name: alive and suspect members, and dead and left ones for
// Config.ForgetAfter after they went, with their last status. It is safe to
// call at any time, also after Close (it then returns the last view).
func (n *Node) Members() []Member {
	states := n.view.Load().states() // memberlist's lock first, never inside n.mu
	n.mu.Lock()
	defer n.mu.Unlock()
	now := time.Now()
	out := make([]Member, 0, len(n.members))
	for name, e := range n.members {
		if e.goneState != "" && name != n.cfg.Name && now.Sub(e.goneAt) > n.cfg.ForgetAfter {
			delete(n.members, name)
			continue
		}
		m := Member{Name: name, Addr: e.addr, State: StateAlive, Status: e.status}
		if e.goneState != "" {
			m.State = e.goneState
		} else if states[name] == memberlist.StateSuspect {
			m.State = StateSuspect
		}
		if name == n.cfg.Name {
			m.Status = n.status
			if n.addr != "" {
				m.Addr = n.addr
			}
			switch {
			case n.left:
				m.State = StateLeft
			case n.closed:
				m.State = StateDead
			}
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// events receives memberlist's membership events. memberlist calls it with
// its node lock held, one call at a time; it must not block or call back into
// memberlist.
type events Node

var _ memberlist.EventDelegate = (*events)(nil)

// NotifyJoin records a member that joined or came back.
func (ev *events) NotifyJoin(node *memberlist.Node) {
	n := (*Node)(ev)
	n.record(node, "")
}

// NotifyUpdate records a member's new status.
func (ev *events) NotifyUpdate(node *memberlist.Node) {
	n := (*Node)(ev)
	n.record(node, "")
}

// NotifyLeave records a member that left or died. memberlist calls it for
// both and does not say which in node (see internals.go), so ask its table.
func (ev *events) NotifyLeave(node *memberlist.Node) {
	n := (*Node)(ev)
	gone := StateDead
	if st, ok := n.view.Load().stateLocked(node.Name); ok {
		if st == memberlist.StateLeft {
			gone = StateLeft
		}
	} else if old, ok := n.lastStatus(node.Name); ok && old.Phase == PhaseDone {
		gone = StateLeft // fallback without the table: a member done with its run left
	}
	n.record(node, gone)
}

// record stores what memberlist says about node; gone is "" for a member in
// the lab.
func (n *Node) record(node *memberlist.Node, gone string) {
	addr := net.JoinHostPort(node.Addr.String(), strconv.Itoa(int(node.Port)))
	st, err := DecodeStatus(node.Meta) // copies: node.Meta is memberlist's
	n.mu.Lock()
	e := n.members[node.Name]
	if e == nil {
		e = &entry{}
		n.members[node.Name] = e
		if node.Name != n.cfg.Name && gone == "" {
			n.log.Info("lab member joined", "peer", node.Name, "addr", addr)
		}
	}
	e.addr = addr
	switch {
	case err == nil:
		e.status, e.warnedMeta = st, false
	case len(node.Meta) == 0:
		// A member that never set a status (or memberlist's own placeholder).
	case !e.warnedMeta:
		e.warnedMeta = true
		n.log.Warn("undecodable status from lab member (another labseed version?); keeping its last one",
			"peer", node.Name, "addr", addr, "err", err)
	}
	if gone != "" {
		if e.goneState == "" {
			e.goneAt = time.Now()
		}
		e.goneState = gone
		if node.Name != n.cfg.Name {
			n.log.Info("lab member gone", "peer", node.Name, "addr", addr, "state", gone, "phase", e.status.Phase.String())
		}
	} else {
		if e.goneState != "" {
			n.log.Info("lab member back", "peer", node.Name, "addr", addr)
		}
		e.goneState = ""
	}
	n.mu.Unlock()
	n.changed()
}

func (n *Node) lastStatus(name string) (Status, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if e := n.members[name]; e != nil {
		return e.status, true
	}
	return Status{}, false
}

// changed wakes the OnChange goroutine, if any, without blocking.
func (n *Node) changed() {
	if n.changeCh == nil {
		return
	}
	select {
	case n.changeCh <- struct{}{}:
	default:
	}
}
