package seeder

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/labseed/labseed/gossip"
)

// labStart is when the tests' lab starts: the time of its members' first
// statuses and of the print server's first look.
var labStart = time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)

// labMembers returns n downloading workstations ws1..wsn at 10.0.0.1..
// that have received nothing yet, their statuses made at labStart.
func labMembers(n int) []gossip.Member {
	ms := make([]gossip.Member, n)
	for i := range ms {
		ms[i] = gossip.Member{
			Name: fmt.Sprintf("ws%d", i+1), Addr: fmt.Sprintf("10.0.0.%d:7946", i+1), State: gossip.StateAlive,
			Status: gossip.Status{Role: gossip.RolePeer, Phase: gossip.PhaseDownloading, TorrentAddr: fmt.Sprintf("10.0.0.%d:6881", i+1),
				UpdatedUnix: labStart.Unix()},
		}
	}
	return ms
}

// receive adds what each member receives in d (whole seconds) at
// rates[i] bytes/s (the last rate for the rest), half from the print
// server, half from peers, counted in whole 256 KiB pieces as a
// workstation gossips them, and moves its status time on by d.
func receive(ms []gossip.Member, d time.Duration, rates ...float64) {
	for i := range ms {
		r := rates[min(i, len(rates)-1)]
		b := uint64(r*d.Seconds()) / (256 << 10) * (256 << 10)
		ms[i].Status.FromServer += b / 2
		ms[i].Status.FromPeers += b - b/2
		ms[i].Status.UpdatedUnix += int64(d / time.Second)
	}
}

// slowOnes returns the workstations of ms that p finds on a slow port at now.
func slowOnes(p *portRates, ms []gossip.Member, now time.Time) []int {
	var out []int
	for i := range ms {
		if slow, _ := p.slow(ms, ms[i].Name, now); slow {
			out = append(out, i+1)
		}
	}
	return out
}

// run has p look at ms once a second for d, each member receiving at
// rates, and returns the slow ones at the end.
func run(p *portRates, ms []gossip.Member, now *time.Time, d time.Duration, rates ...float64) []int {
	var out []int
	for t := time.Duration(0); t < d; t += time.Second {
		receive(ms, time.Second, rates...)
		*now = now.Add(time.Second)
		out = slowOnes(p, ms, *now)
	}
	return out
}

func TestSlowPort(t *testing.T) {
	const fast, port4 = 2_300_000, 480_000 // what 20 and 4 Mbit/s ports carry at best
	t0 := labStart
	t.Run("one slow port of eight", func(t *testing.T) {
		var p portRates
		now, ms := t0, labMembers(8)
		if got := run(&p, ms, &now, 5*time.Second, port4, fast); got != nil {
			t.Fatalf("slow after 5 s: %v, want none before a window is over", got)
		}
		if got := run(&p, ms, &now, 5*time.Second, port4, fast); fmt.Sprint(got) != "[1]" {
			t.Fatalf("slow after 10 s: %v, want [1]", got)
		}
		// Said once.
		if slow, tell := p.slow(ms, "ws1", now); !slow || tell != nil {
			t.Fatalf("again: slow %v, told %+v; want slow, told before", slow, tell)
		}
	})
	t.Run("told once, after two windows", func(t *testing.T) {
		var p portRates
		now, ms := t0, labMembers(8)
		if got := run(&p, ms, &now, 8*time.Second, port4, fast); got != nil {
			t.Fatalf("slow after 8 s: %v, want none before a window is over", got)
		}
		look := func(d time.Duration) (bool, *slowPort) {
			receive(ms, d, port4, fast)
			now = now.Add(d)
			return p.slow(ms, "ws1", now)
		}
		if slow, tell := look(2 * time.Second); !slow || tell != nil {
			t.Fatalf("after one window: slow %v, told %+v; want slow, not told yet", slow, tell)
		}
		slow, tell := look(8 * time.Second)
		if !slow || tell == nil || tell.name != "ws1" || tell.best > 1.2*port4 || tell.median < 0.85*fast {
			t.Fatalf("after two windows: slow %v, told %+v; want ws1 near %d of %d", slow, tell, port4, fast)
		}
		if slow, tell := look(8 * time.Second); !slow || tell != nil {
			t.Fatalf("again: slow %v, told %+v; want slow, told before", slow, tell)
		}
	})
	t.Run("nothing received is not slow", func(t *testing.T) {
		// Waiting to be dealt anything, among six that receive.
		var p portRates
		now, ms := t0, labMembers(8)
		if got := run(&p, ms, &now, 20*time.Second, 0, fast); got != nil {
			t.Fatalf("slow: %v, want none", got)
		}
	})
	t.Run("every port slow", func(t *testing.T) {
		var p portRates
		now := t0
		if got := run(&p, labMembers(48), &now, 20*time.Second, port4); got != nil {
			t.Fatalf("a lab of equal 4 Mbit/s ports: %v slow, want none", got)
		}
	})
	t.Run("a port at half the rate is not slow", func(t *testing.T) {
		var p portRates
		now := t0
		if got := run(&p, labMembers(8), &now, 20*time.Second, fast, fast, fast/2, fast); got != nil {
			t.Fatalf("slow: %v, want none", got)
		}
	})
	t.Run("the best rate counts", func(t *testing.T) {
		// ws1 received fast, then little (it holds most pieces, or
		// applies chunks): its port is not slow.
		var p portRates
		now, ms := t0, labMembers(8)
		run(&p, ms, &now, 10*time.Second, fast)
		if got := run(&p, ms, &now, 20*time.Second, 1000, fast); got != nil {
			t.Fatalf("slow: %v, want none", got)
		}
	})
	t.Run("a lab waiting for pieces", func(t *testing.T) {
		// 48 workstations on 2 Mbit/s ports in their first minutes: the
		// print server deals to a few at a time, most have received
		// nothing or one piece in a window where others had three.
		var p portRates
		now, ms := t0, labMembers(48)
		slowOnes(&p, ms, now)
		for i := range ms {
			// 0, 0, 1 and 3 pieces in 10 s.
			receive(ms[i:i+1], 10*time.Second, []float64{0, 0, 32 << 10, 96 << 10}[i%4])
		}
		now = now.Add(10 * time.Second)
		if got := slowOnes(&p, ms, now); got != nil {
			t.Fatalf("slow: %v, want none while the lab waits for pieces", got)
		}
		// One piece in a window where the others had three: too few
		// bytes to tell a port from a wait.
		var p1 portRates
		now, ms = t0, labMembers(8)
		slowOnes(&p1, ms, now)
		receive(ms, 10*time.Second, 32<<10, 96<<10)
		now = now.Add(10 * time.Second)
		if got := slowOnes(&p1, ms, now); got != nil {
			t.Fatalf("slow: %v, want none with one piece against three", got)
		}
		// Two slow ports in eight are still told apart.
		var p2 portRates
		now, ms = t0, labMembers(8)
		if got := run(&p2, ms, &now, 10*time.Second, port4, port4, fast); fmt.Sprint(got) != "[1 2]" {
			t.Fatalf("slow: %v, want [1 2]", got)
		}
	})
	t.Run("a late start is not slow", func(t *testing.T) {
		// ws8 starts 5 s after the others: its first window is not
		// over when theirs are.
		var p portRates
		now, ms := t0, labMembers(8)
		run(&p, ms[:7], &now, 5*time.Second, fast)
		if got := run(&p, ms, &now, 5*time.Second, fast); got != nil {
			t.Fatalf("slow: %v, want none", got)
		}
	})
	t.Run("too few measured", func(t *testing.T) {
		var p portRates
		now, ms := t0, labMembers(8)
		run(&p, ms[:2], &now, 10*time.Second, fast)
		if got := slowOnes(&p, ms, now); got != nil {
			t.Fatalf("slow: %v, want none with 2 rates measured", got)
		}
	})
	t.Run("only downloading workstations compare", func(t *testing.T) {
		var p portRates
		now, ms := t0, labMembers(8)
		for i := 1; i < 6; i++ {
			ms[i].Status.Phase = gossip.PhaseSeeding
		}
		ms[6].Status.Sync = true
		ms[7].State = gossip.StateDead
		if got := run(&p, ms, &now, 10*time.Second, port4, fast); got != nil {
			t.Fatalf("slow: %v, want none: ws1 is the only downloading workstation", got)
		}
		ms[6].Status.Sync = false
		ms[7].State = gossip.StateAlive
		for i := 1; i < 6; i++ {
			ms[i].Status.Phase = gossip.PhaseDownloading
		}
		if got := run(&p, ms, &now, 10*time.Second, port4, fast); fmt.Sprint(got) != "[1]" {
			t.Fatalf("slow: %v, want [1]", got)
		}
		// A syncing workstation fetches little: never slow.
		ms[0].Status.Sync = true
		if got := slowOnes(&p, ms, now); got != nil {
			t.Fatalf("slow: %v, want none", got)
		}
	})
	t.Run("statuses spaced by the status budget", func(t *testing.T) {
		// A lab of 90 on 4 Mbit/s ports (500 kB/s at best): most
		// statuses go out every 30 s (gossip.Node.SetStatusBudget),
		// those of 20 workstations every second (each spaces its own
		// by its mean receive rate since it started), and the print
		// server looks every second. Each workstation's port is the
		// same but ws1's, at a third.
		const rate = 500_000
		var p portRates
		now, ms := t0, labMembers(90)
		gossiped := slices.Clone(ms)
		for range 120 {
			now = now.Add(time.Second)
			for i := range ms {
				r := float64(rate)
				if i == 0 {
					r /= 3
				}
				// Whole pieces received since the start.
				ms[i].Status.FromPeers = uint64(r*now.Sub(t0).Seconds()) / (256 << 10) * (256 << 10)
				ms[i].Status.UpdatedUnix = now.Unix()
				if (i >= 1 && i <= 20) || (now.Unix()+int64(i))%30 == 0 {
					gossiped[i] = ms[i]
				}
			}
			if got := slowOnes(&p, gossiped, now); got != nil && fmt.Sprint(got) != "[1]" {
				t.Fatalf("slow at %v: %v, want at most ws1", now.Sub(t0), got)
			}
		}
		if got := slowOnes(&p, gossiped, now); fmt.Sprint(got) != "[1]" {
			t.Fatalf("slow: %v, want [1]", got)
		}
		for _, m := range gossiped[1:] {
			if best := p.members[m.Name].best; best < 0.85*rate || best > 1.15*rate {
				t.Fatalf("%s: best rate %.0f B/s, want its port's %d", m.Name, best, rate)
			}
		}
	})
	t.Run("forgets who left", func(t *testing.T) {
		var p portRates
		now, ms := t0, labMembers(90)
		run(&p, ms, &now, time.Second, fast)
		p.slow(ms[:8], "ws1", now)
		if len(p.members) != 8 {
			t.Fatalf("%d rates remembered, want the 8 members left", len(p.members))
		}
	})
}
