package lifecycle

import (
	"net"
	"testing"
	"time"

	"github.com/labseed/labseed/gossip"
)

// clock is a fake Now that moves a second at every call.
type clock struct{ t time.Time }

func (c *clock) now() time.Time {
	c.t = c.t.Add(time.Second)
	return c.t
}

func mac(i int) net.HardwareAddr {
	return net.HardwareAddr{0x52, 0x54, 0, byte(i >> 16), byte(i >> 8), byte(i)}
}

// TestStages follows one machine through two re-imagings, a failed one
// and a good one, with the boots of its disk in between.
func TestStages(t *testing.T) {
	c := &clock{t: time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)}
	tr := New(Config{Now: c.now})
	m := mac(1)
	step := func(what string, want Stage, f func()) Record {
		t.Helper()
		f()
		r, ok := tr.Get(m)
		if !ok || r.Stage != want {
			t.Fatalf("after %s: stage %q (record %v), want %q", what, r.Stage, ok, want)
		}
		return r
	}
	running := func(s string) func() { return func() { tr.Report(m, Report{Step: s, State: "running"}) } }

	r := step("the first boot event", StageBooted, func() { tr.Boot(m, Event{Kind: "proxy-offer"}, true) })
	started := r.Started
	if started.IsZero() || !r.Heard.Equal(started) || len(r.Events) != 1 || r.Events[0].Time.IsZero() {
		t.Fatalf("booted: %+v", r)
	}
	r = step("more boot events", StageBooted, func() { tr.Boot(m, Event{Kind: "http-file", Detail: "initrd.img"}, true) })
	if !r.Started.Equal(started) || len(r.Events) != 2 {
		t.Fatalf("a second event started a new run: %+v", r)
	}
	r = step("who am I", StageIdentified, func() { tr.Identified(m) })
	if !r.Started.Equal(started) {
		t.Fatal("who am I after the boot started a new run")
	}
	step("disk", StageIdentified, running("disk"))
	r = step("disk failed", StageFailed, func() { tr.Report(m, Report{Step: "disk", State: "failed", Error: "no disk"}) })
	if r.Step != "disk" || r.Error != "no disk" {
		t.Fatalf("failed: %+v", r)
	}
	step("a boot of the disk", StageFailed, func() { tr.Boot(m, Event{Kind: "proxy-offer"}, false) })

	r = step("who am I again (the clone retries)", StageIdentified, func() { tr.Identified(m) })
	if r.Error != "" || r.Step != "" || !r.Started.After(started) {
		t.Fatalf("a retry did not start a new run: %+v", r)
	}
	started = r.Started
	step("fetch", StageDownloading, running("fetch"))
	step("configure", StageConfigured, running("configure"))
	step("seed", StageConfigured, running("seed"))
	r = step("done", StageDone, func() { tr.Report(m, Report{Step: "done", State: "done"}) })
	if !r.Started.Equal(started) || len(r.Reports) != 6 {
		t.Fatalf("done: %+v", r)
	}
	r = step("the new system boots its disk", StageDone, func() { tr.Boot(m, Event{Kind: "ipxe-script"}, false) })
	if r.Step != "done" {
		t.Fatalf("the boot of the disk changed the record: %+v", r)
	}
	r = step("marked clone again, it boots", StageBooted, func() { tr.Boot(m, Event{Kind: "proxy-offer"}, true) })
	if r.Step != "" || !r.Started.After(started) {
		t.Fatalf("a boot for a new clone did not start a new run: %+v", r)
	}

	// The agent's gossip is in the record, and does not change the stage.
	a := Agent{Name: "ws01", Addr: "10.1.0.101:7946", State: gossip.StateAlive, Status: gossip.Status{Phase: gossip.PhaseDownloading, Percent: 40}}
	r = step("agent", StageBooted, func() { tr.Agent(m, a) })
	if r.Agent == nil || r.Agent.Status.Percent != 40 {
		t.Fatalf("agent: %+v", r.Agent)
	}
	before := r.Updated
	tr.Agent(m, a)
	if r, _ := tr.Get(m); !r.Updated.Equal(before) {
		t.Error("the same gossip twice counted as a change")
	}
	// A record handed out is a copy.
	r.Events[0].Kind = "changed"
	r.Agent.Name = "changed"
	if r2, _ := tr.Get(m); r2.Events[0].Kind == "changed" || r2.Agent.Name == "changed" {
		t.Error("Get returned the record itself")
	}
}

func TestSinceAndChanged(t *testing.T) {
	c := &clock{t: time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)}
	tr := New(Config{Now: c.now})
	tr.Boot(mac(1), Event{Kind: "proxy-offer"}, true)
	woken := c.now() // a deploy wakes the machines now
	ch := tr.Changed()
	select {
	case <-ch:
		t.Fatal("Changed closed without a change")
	default:
	}
	tr.Boot(mac(2), Event{Kind: "proxy-offer"}, true)
	select {
	case <-ch:
	default:
		t.Fatal("Changed not closed by a change")
	}
	got := tr.Since(woken)
	if len(got) != 1 || got[0].MAC != mac(2).String() {
		t.Fatalf("Since(woken) = %+v, want the machine heard of after", got)
	}
	if again := tr.Since(got[0].Updated); len(again) != 1 {
		t.Errorf("Since(the last Updated seen) = %+v, want that record again", again)
	}
	r1, _ := tr.Get(mac(1))
	if r1.BootedSince(woken) || !got[0].BootedSince(woken) {
		t.Error("BootedSince")
	}
	// An agent's gossip is a change, not a boot.
	tr.Agent(mac(1), Agent{Name: "ws01"})
	if r1, _ = tr.Get(mac(1)); r1.BootedSince(woken) || len(tr.Since(woken)) != 2 {
		t.Errorf("after the agent's gossip: %+v", r1)
	}
	if l := tr.List(); len(l) != 2 || l[0].MAC != mac(1).String() {
		t.Errorf("List = %+v", l)
	}
}

// TestBounded: a flood of made-up MACs keeps every machine of the table
// and at most MaxUnknown others, the ones heard of last; each record
// keeps its last events.
func TestBounded(t *testing.T) {
	c := &clock{t: time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)}
	table := map[string]bool{mac(1).String(): true, mac(2).String(): true}
	tr := New(Config{Now: c.now, MaxUnknown: 100, EventsPerHost: 4,
		Known: func(m net.HardwareAddr) bool { return table[m.String()] }})
	tr.Boot(mac(1), Event{Kind: "proxy-offer"}, true)
	tr.Boot(mac(2), Event{Kind: "proxy-offer"}, true)
	const enrolled = 1000
	for i := 3; i < 5000; i++ {
		tr.Boot(mac(0x10000+i), Event{Kind: "ignored"}, false)
		if i == enrolled {
			table[mac(0x10000+i).String()] = true // it enrols when it asks who it is
			tr.Identified(mac(0x10000 + i))
		}
	}
	if n := len(tr.List()); n != 2+1+100 {
		t.Fatalf("%d records, want the 2 of the table, the enrolled one and 100 others", n)
	}
	for _, m := range []net.HardwareAddr{mac(1), mac(2), mac(0x10000 + enrolled), mac(0x10000 + 4999)} {
		if _, ok := tr.Get(m); !ok {
			t.Errorf("%s was dropped", m)
		}
	}
	if _, ok := tr.Get(mac(0x10000 + 3)); ok {
		t.Error("the unknown MAC heard of first was kept")
	}
	for i := 0; i < 10; i++ {
		tr.Boot(mac(1), Event{Kind: "http-file"}, true)
	}
	if r, _ := tr.Get(mac(1)); len(r.Events) != 4 {
		t.Errorf("%d events kept, want 4", len(r.Events))
	}
	for i := 0; i < 50; i++ {
		tr.Report(mac(1), Report{Step: "disk", State: "running"})
		tr.Report(mac(0x10000+4999), Report{Step: "disk", State: "failed", Error: "x"})
	}
	known, _ := tr.Get(mac(1))
	stranger, _ := tr.Get(mac(0x10000 + 4999))
	if len(known.Reports) != DefaultReportsPerHost || len(stranger.Reports) != DefaultReportsPerUnknown {
		t.Errorf("reports kept: %d of a machine of the table, %d of another; want %d and %d",
			len(known.Reports), len(stranger.Reports), DefaultReportsPerHost, DefaultReportsPerUnknown)
	}
}
