package metrics

import (
	"slices"
	"strings"
	"time"

	"github.com/labseed/labseed/gossip"
)

// phases are the values of the phase label, in the order of a download.
// A phase the gossip package adds later is exported too, as its String().
var phases = []string{"joining", "downloading", "finishing", "seeding", "done", "failed"}

// memberStates are the values of the state label of the gossip metrics.
var memberStates = []string{"alive", "suspect", "dead", "left"}

// phaseBuckets suit phases that take from a second (joining on a loopback
// lab) to hours (a large image over a slow lab).
var phaseBuckets = []float64{1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400}

// newAgentWindow bounds the time an agent takes to join the lab, for
// startPhase.
const newAgentWindow = 5 * time.Second

// counters are a host's counters that restart from 0 with its agent.
type counters struct {
	fromServer, fromPeers, uploaded, hashFailures uint64
}

func (c counters) add(o counters) counters {
	return counters{c.fromServer + o.fromServer, c.fromPeers + o.fromPeers, c.uploaded + o.uploaded, c.hashFailures + o.hashFailures}
}

// below reports whether any counter of c is lower than in o.
func (c counters) below(o counters) bool {
	return c.fromServer < o.fromServer || c.fromPeers < o.fromPeers || c.uploaded < o.uploaded || c.hashFailures < o.hashFailures
}

func rawCounters(st gossip.Status) counters {
	return counters{st.FromServer, st.FromPeers, st.Uploaded, uint64(st.HashFailures)}
}

// hostState is what Metrics remembers of one workstation.
type hostState struct {
	state  string        // gossip member state last seen
	status gossip.Status // status last seen
	last   counters      // raw counters last seen, from the agent process started at status.StartedUnix
	offset counters      // sum of what previous agent processes had counted

	// goneSince is when the host was first seen left, dead or missing from
	// the snapshot; zero while it is alive or suspect.
	goneSince time.Time
	expired   bool // gone for longer than HostTTL: not exported

	phase      string    // status.Phase.String() last seen
	phaseSince time.Time // when phase began; zero if the start was not seen
}

// hostView is one host to export.
type hostView struct {
	name   string
	state  string
	status gossip.Status
	total  counters // offset + raw: the exported counters
}

// present reports whether a member state counts as in the lab.
func present(state string) bool { return state == "alive" || state == "suspect" }

// workstations returns the hosts that are workstations with a name (made
// valid UTF-8), the first of each name.
func workstations(hosts []Host) []Host {
	out := make([]Host, 0, len(hosts))
	seen := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		h.Name = strings.ToValidUTF8(h.Name, "\uFFFD")
		if h.Name == "" || h.Status.Role == gossip.RoleServer || seen[h.Name] {
			continue
		}
		seen[h.Name] = true
		out = append(out, h)
	}
	return out
}

// observeHosts updates the per-host state from a snapshot's hosts taken at
// now and returns the hosts to export, sorted by name. m.mu must be held.
func (m *Metrics) observeHosts(hosts []Host, now time.Time) []hostView {
	hosts = workstations(hosts)
	seen := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		name := h.Name
		seen[name] = true
		hs := m.hosts[name]
		if hs == nil {
			hs = &hostState{}
			m.hosts[name] = hs
			hs.startPhase(h.Status, now, m.lastSample)
		} else {
			m.update(hs, h.Status, now)
		}
		hs.state = h.State
		hs.status = h.Status
		hs.last = rawCounters(h.Status)
		if present(h.State) {
			hs.goneSince, hs.expired = time.Time{}, false
		} else if hs.goneSince.IsZero() {
			hs.goneSince = now
		}
	}
	m.lastSample = now
	views := make([]hostView, 0, len(m.hosts))
	for name, hs := range m.hosts {
		if !seen[name] && hs.goneSince.IsZero() {
			hs.goneSince = now
		}
		if !hs.goneSince.IsZero() && now.Sub(hs.goneSince) >= m.cfg.HostTTL {
			hs.expired = true
		}
		if hs.expired {
			if !seen[name] {
				delete(m.hosts, name) // forgotten by the gossip too
			}
			continue
		}
		views = append(views, hostView{name: name, state: hs.state, status: hs.status, total: hs.offset.add(hs.last)})
	}
	slices.SortFunc(views, func(a, b hostView) int { return strings.Compare(a.name, b.name) })
	return views
}

// update applies a new status of a known host: it detects an agent restart
// (another start time, or a counter that went down) and phase changes.
func (m *Metrics) update(hs *hostState, st gossip.Status, now time.Time) {
	raw := rawCounters(st)
	restarted := raw.below(hs.last) ||
		(st.StartedUnix != 0 && hs.status.StartedUnix != 0 && st.StartedUnix != hs.status.StartedUnix)
	if restarted {
		// The previous process's counts are kept; its phase was cut short
		// and is not observed.
		hs.offset = hs.offset.add(hs.last)
		hs.startPhase(st, now, m.lastSample)
		return
	}
	if p := st.Phase.String(); p != hs.phase {
		if !hs.phaseSince.IsZero() {
			m.phaseDur.WithLabelValues(hs.phase).Observe(now.Sub(hs.phaseSince).Seconds())
		}
		hs.phase, hs.phaseSince = p, now
	}
}

// startPhase begins tracking the phase of a host seen for the first time, or
// of a restarted agent, at now; prev is the previous sample (zero if none).
// The first phase, joining, begins at the agent's start time. The print
// server seldom sees it, as joining takes milliseconds: an agent that started
// less than newAgentWindow before prev, and was not seen at prev, joined the
// lab since and went through the phases before this one in between, so this
// phase began between prev (or the agent's start, if later) and now, and the
// middle is taken. Any other phase (that of an agent the print server only
// learns of late, after its own restart say) is tracked from its successor
// on.
func (hs *hostState) startPhase(st gossip.Status, now, prev time.Time) {
	hs.phase = st.Phase.String()
	hs.phaseSince = time.Time{}
	if st.StartedUnix <= 0 {
		return
	}
	started := time.Unix(st.StartedUnix, 0) // rounded down to the second
	switch {
	case hs.phase == phases[0]:
		hs.phaseSince = started
	case !prev.IsZero() && started.Add(newAgentWindow).After(prev):
		from := prev
		if started.After(from) {
			from = started
		}
		hs.phaseSince = from.Add(now.Sub(from) / 2)
	}
	if hs.phaseSince.After(now) {
		hs.phaseSince = now
	}
}

// serverState keeps the print server's counters monotonic: Source may sum
// them over torrents that come and go.
type serverState struct {
	last, offset [4]uint64 // uploaded, web seed, hash failures, dealt
}

// serverView is the print server to export.
type serverView struct {
	uploaded, webSeed, hashFailures, dealt uint64
	peers                                  int
}

func (s *serverState) observe(srv Server) serverView {
	raw := [4]uint64{nonNeg(srv.Uploaded), nonNeg(srv.WebSeedBytes), nonNeg(srv.HashFailures), nonNeg(srv.DealtBytes)}
	var tot [4]uint64
	for i := range raw {
		if raw[i] < s.last[i] {
			s.offset[i] += s.last[i]
		}
		s.last[i] = raw[i]
		tot[i] = s.offset[i] + raw[i]
	}
	return serverView{uploaded: tot[0], webSeed: tot[1], hashFailures: tot[2], dealt: tot[3], peers: srv.Peers}
}

func nonNeg(v int64) uint64 {
	if v < 0 {
		return 0
	}
	return uint64(v)
}
