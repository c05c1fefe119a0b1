package seeder

import (
	"math"
	"slices"
	"sync"
	"time"

	"github.com/labseed/labseed/gossip"
)

// A workstation on a slow port (a bad cable, an old switch, a port
// negotiated down) passes what it is dealt on at its port's rate: the
// last pieces dealt to it keep the rest of the lab waiting until it has
// passed them on or their hold is over (issue 15: with one port of eight
// at 4 Mbit/s the others' median took 1.24-1.32 x as long as with clean
// ports). The print server cannot see a slow port in its own deals, which
// share its port with every other deal (a rule by deal drain rate changed
// nothing at N = 8 and misfired at N = 48, docs/lab-bench.md); but each
// workstation gossips, once a second (every few seconds in a large lab
// on slow ports, up to every 30 s: gossip.Node.SetStatusBudget), the
// bytes it has received from every source (gossip.Status.FromServer +
// FromPeers), and their rate shows the port: workstations on 20 Mbit/s
// ports receive 2.2-2.4 MB/s at their best, one on a 4 Mbit/s port at
// most 0.5. The rate is measured here over windows of at least
// rateWindow between the times the workstation gave its statuses
// (gossip.Status.UpdatedUnix): the gossiped DownRate covers
// one second, in whole pieces (256 KiB a second is 2.1 Mbit/s), and took
// the 4 Mbit/s port for one of 8.4 Mbit/s; over eight seconds a piece is
// an eighth of what the slow port carries.
//
// So a downloading workstation is slow (deal.Holder.Slow) while the best
// rate measured for it is under slowPortRatio of the median of the
// downloading workstations' best rates, with at least minRated of them
// measured (a window over) and it among them with at least minJudged
// bytes in its best window, and while such workstations are at most a
// quarter of those measured (maxSlowShare). A slow port is
// an outlier: a lab where every port is slow (48 workstations on 4 Mbit/s
// ports) has no slow one, the rule compares the ports, not a rate; and
// when many are far below the median, the lab is not bound by its ports
// but by what there is to pass on (48 workstations on 2 Mbit/s ports,
// their first minutes: most had received nothing, or one piece where
// others had three, and 33 of 48 were judged slow before this rule). A
// port at half the others' rate is not slow either. Syncing workstations
// (re-imaging, gossip.Status.Sync) fetch little and are left out both
// ways.
const (
	rateWindow    = 8 * time.Second
	slowPortRatio = 0.4
	minRated      = 3
	maxSlowShare  = 0.25
	// minJudged is the fewest bytes a workstation's best window must
	// hold for it to be judged: four of labseed's default 256 KiB pieces.
	// Fewer is too coarse to tell a port from a wait (48 workstations on
	// 2 Mbit/s ports: 8 judged slow with one piece in their best window
	// where the median had three).
	minJudged = 1 << 20
)

// portRates remembers each downloading lab member's best receive rate
// (by gossip name: a restarted workstation is a new name). Members that
// are gone or no longer downloading are forgotten at each look, so it
// holds at most the lab's members.
type portRates struct {
	mu      sync.Mutex
	members map[string]portRate
}

// portRate is one member's receive rate: the window under way (since at,
// the time of the member's status, from received bytes), the best rate
// of its finished windows in bytes/s, and whether the print server has
// said that it is on a slow port.
type portRate struct {
	at       time.Time
	received uint64
	best     float64
	windows  int // finished windows
	told     bool
}

// slowPort is a member on a slow port: its name, its best receive rate
// and the lab's median best, in bytes/s.
type slowPort struct {
	name         string
	best, median float64
}

// slow reports whether the member named name is on a slow port (see
// above), given the lab's members as the gossip shows them at now. tell is set,
// once per member, the first time it is found slow with two windows
// measured: worth a line in the log (a bad cable, a port negotiated down).
func (p *portRates) slow(members []gossip.Member, name string, now time.Time) (slow bool, tell *slowPort) {
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := make(map[string]portRate, len(p.members))
	var rates []float64
	for _, m := range members {
		st := m.Status
		if (m.State != gossip.StateAlive && m.State != gossip.StateSuspect) ||
			st.Role != gossip.RolePeer || st.Phase != gossip.PhaseDownloading || st.Sync {
			continue
		}
		received := st.FromServer + st.FromPeers
		// The window is timed by the member's own clock, when it made
		// the status it gossips, not by when the print server looks: in
		// a large lab on slow ports a status goes out every few seconds,
		// up to every 30 s (gossip.Node.SetStatusBudget), and a window
		// of 8 s on this clock that held one such step counted up to 30 s
		// of bytes (a lab of 90 on 2 Mbit/s ports: a median of 10.4 Mbit/s,
		// and six workstations whose statuses went out more often
		// judged slow).
		at := now
		if st.UpdatedUnix != 0 {
			at = time.Unix(st.UpdatedUnix, 0)
		}
		r, ok := p.members[m.Name]
		switch {
		case !ok || received < r.received || at.Before(r.at):
			r = portRate{at: at, received: received}
		case at.Sub(r.at) >= rateWindow:
			r.best = max(r.best, float64(received-r.received)/at.Sub(r.at).Seconds())
			r.at, r.received = at, received
			r.windows++
		}
		seen[m.Name] = r
		if r.windows > 0 {
			rates = append(rates, r.best)
		}
	}
	p.members = seen
	r, ok := seen[name]
	if !ok || len(rates) < minRated {
		return false, nil
	}
	slices.Sort(rates)
	// One not measured yet (a workstation that started later than the
	// others) is not judged, nor one that has received less than
	// minJudged in its best window: it waits for pieces (in a lab of 48
	// on 2 Mbit/s ports, for tens of seconds while the print server deals
	// to others), and a dead port is not helped by being dealt less.
	median := rates[len(rates)/2]
	if r.windows == 0 || r.best*rateWindow.Seconds() < minJudged || r.best >= slowPortRatio*median {
		return false, nil
	}
	under, _ := slices.BinarySearch(rates, slowPortRatio*median)
	if float64(under) > maxSlowShare*float64(len(rates)) {
		return false, nil
	}
	// Said once it has stayed slow for two windows: the log line names a
	// port to look at, not a moment's quirk.
	if !r.told && r.windows >= 2 {
		r.told = true
		seen[name] = r
		tell = &slowPort{name: name, best: r.best, median: median}
	}
	return true, tell
}

// mbit is bytesPerSec in Mbit/s, rounded to 0.1, for a log line.
func mbit(bytesPerSec float64) float64 { return math.Round(bytesPerSec*8/1e5) / 10 }
