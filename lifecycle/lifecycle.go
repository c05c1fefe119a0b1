// Package lifecycle keeps the print server's one record per machine: where
// each machine of the lab is in its re-imaging (booted → identified →
// downloading → configured → done, or failed at a step), with what it was
// heard of by: its network-boot events, its clone's reports, and the
// status its agent gossips. The lab status ("labseed status") and deploy
// tasks (waves, re-wakes) read these records; nothing else keeps that
// state.
//
// A Tracker is fed by the print server (package seeder): Boot for every
// network-boot event (package pxe), Identified when a machine asks who it
// is, Report for every clone report, Agent for every gossiped status that
// names its machine. It keeps a record for every machine of the hosts
// table and for at most Config.MaxUnknown others (made-up MACs on the
// network must not grow the server's memory), and bounds what each record
// holds.
//
// Usage:
//
//	tr := lifecycle.New(lifecycle.Config{Known: inTable})
//	tr.Boot(mac, lifecycle.Event{Time: now, Kind: "proxy-offer"}, true)
//	...
//	for {
//		changed := tr.Changed()
//		for _, r := range tr.Since(last) { ... } // a deploy's wave
//		<-changed
//	}
package lifecycle

import (
	"bytes"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/labseed/labseed/gossip"
)

// Stage is where a machine is in its re-imaging.
type Stage string

// The stages, in the order a machine goes through them.
const (
	// StageNone: nothing but its agent's gossip was heard of it yet.
	StageNone Stage = ""
	// StageBooted: it network-booted (a DHCP, TFTP or HTTP boot event)
	// and has not asked who it is yet.
	StageBooted Stage = "booted"
	// StageIdentified: its clone asked who it is and prepares the disk.
	StageIdentified Stage = "identified"
	// StageDownloading: its clone fetches the image (step "fetch").
	StageDownloading Stage = "downloading"
	// StageConfigured: the image is in; its clone configures the new
	// system, installs the bootloader and seeds the rest of the lab
	// (steps "mount" to "unmount").
	StageConfigured Stage = "configured"
	// StageDone: its clone reported done.
	StageDone Stage = "done"
	// StageFailed: a step of its clone failed (Record.Step, Record.Error).
	StageFailed Stage = "failed"
)

// Event is one network-boot event of a machine (pxe.Event).
type Event struct {
	Time   time.Time
	Kind   string // "proxy-offer", "dhcp-ack", "ipxe-script", "http-file", ...
	Detail string
}

// Report is one report of a machine's clone (api.Report).
type Report struct {
	Step  string // "disk", "fetch", "configure", ... "done"
	State string // "running", "done" or "failed"
	Error string
	Time  time.Time // the workstation's clock
	// Detail says more about a step that went well: a sync or a full
	// clone, and why; what the sync did.
	Detail string
}

// Agent is the machine's agent as the gossip sees it.
type Agent struct {
	Name, Addr string
	State      string // gossip.StateAlive, ...
	Status     gossip.Status
}

// Record is one machine's lifecycle.
type Record struct {
	// MAC identifies the machine, in net.HardwareAddr's form.
	MAC string
	// Stage is where it is; Step the clone step it last reported; Error,
	// in StageFailed, why Step failed.
	Stage Stage
	Step  string
	Error string
	// Started is when its current run began: the first boot event,
	// who-am-I or clone report after its previous run ended (a machine
	// counts as booted then). Heard is the last of those; Updated the
	// last change of anything in the record (agent status included).
	Started, Heard, Updated time.Time
	// Events are its last network-boot events, Reports its clone's last
	// reports, oldest first (at most Config.EventsPerHost and
	// Config.ReportsPerHost).
	Events  []Event
	Reports []Report
	// Agent is its agent as last gossiped; nil when none named it.
	Agent *Agent
}

// BootedSince reports whether the machine was heard of (a network-boot
// event, a who-am-I or a clone report) at or after t: a deploy counts a
// machine it woke at t as booted then.
func (r Record) BootedSince(t time.Time) bool {
	return !r.Heard.IsZero() && !r.Heard.Before(t)
}

// Defaults of Config.
const (
	DefaultMaxUnknown        = 256
	DefaultEventsPerHost     = 64
	DefaultReportsPerHost    = 32
	DefaultReportsPerUnknown = 8
)

// Config configures a Tracker. Zero values mean the defaults.
type Config struct {
	// Known reports whether mac is in the lab's hosts table: the records
	// of other machines are bounded by MaxUnknown. It is called when a
	// record is made, when its machine asks who it is, and when a record
	// must be dropped; default: no machine is known.
	Known func(mac net.HardwareAddr) bool
	// MaxUnknown is the most records kept for machines not in the hosts
	// table; past it the one updated least recently is dropped. Default
	// DefaultMaxUnknown.
	MaxUnknown int
	// EventsPerHost bounds each record's Events; ReportsPerHost the
	// Reports of a machine of the table, ReportsPerUnknown those of
	// another (a made-up MAC's reports, errors of 4 KiB each, must not
	// grow the print server's memory). Defaults DefaultEventsPerHost,
	// DefaultReportsPerHost and DefaultReportsPerUnknown.
	EventsPerHost, ReportsPerHost, ReportsPerUnknown int
	// Now is the clock of Started, Heard and Updated; default time.Now.
	Now func() time.Time
}

// Tracker keeps the records. Its methods are safe for concurrent use and
// do no I/O beyond Config.Known.
type Tracker struct {
	cfg Config

	mu      sync.Mutex
	recs    map[string]*entry // by MAC string
	unknown int               // entries not known to be in the table
	changed chan struct{}     // closed and replaced at every change
}

type entry struct {
	rec   Record
	known bool
}

// New returns an empty Tracker.
func New(cfg Config) *Tracker {
	if cfg.Known == nil {
		cfg.Known = func(net.HardwareAddr) bool { return false }
	}
	if cfg.MaxUnknown <= 0 {
		cfg.MaxUnknown = DefaultMaxUnknown
	}
	if cfg.EventsPerHost <= 0 {
		cfg.EventsPerHost = DefaultEventsPerHost
	}
	if cfg.ReportsPerHost <= 0 {
		cfg.ReportsPerHost = DefaultReportsPerHost
	}
	if cfg.ReportsPerUnknown <= 0 {
		cfg.ReportsPerUnknown = DefaultReportsPerUnknown
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Tracker{cfg: cfg, recs: map[string]*entry{}, changed: make(chan struct{})}
}

// update runs f on mac's record, made if needed (known says whether mac is
// in the hosts table), and announces the change.
func (t *Tracker) update(mac net.HardwareAddr, f func(r *Record, now time.Time, known bool)) {
	if len(mac) != 6 {
		return
	}
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.recs[mac.String()]
	if e == nil {
		e = &entry{rec: Record{MAC: mac.String()}, known: t.cfg.Known(mac)}
		if !e.known {
			t.dropUnknown()
			t.unknown++
		}
		t.recs[mac.String()] = e
	}
	f(&e.rec, now, e.known)
	e.rec.Updated = now
	close(t.changed)
	t.changed = make(chan struct{})
}

// dropUnknown makes room for one more record of a machine not in the
// table. Called with mu held.
func (t *Tracker) dropUnknown() {
	for t.unknown >= t.cfg.MaxUnknown {
		var oldest *entry
		for _, e := range t.recs {
			if !e.known && (oldest == nil || e.rec.Updated.Before(oldest.rec.Updated)) {
				oldest = e
			}
		}
		if oldest == nil {
			t.unknown = 0
			return
		}
		t.unknown--
		if mac, err := net.ParseMAC(oldest.rec.MAC); err == nil && t.cfg.Known(mac) {
			oldest.known = true // enrolled since: kept
			continue
		}
		delete(t.recs, oldest.rec.MAC)
	}
}

// newRun starts a new run of r at now: the previous one's stage, step and
// error are gone.
func newRun(r *Record, now time.Time) {
	r.Step, r.Error, r.Started = "", "", now
}

// over reports whether r's run has ended (or none began).
func over(r *Record) bool {
	return r.Stage == StageNone || r.Stage == StageDone || r.Stage == StageFailed
}

// Boot records a network-boot event of mac. clone says that mac's next
// boot is the clone entry: an event then starts a new run when the
// previous one is over (a machine that boots its disk after a clone stays
// done).
func (t *Tracker) Boot(mac net.HardwareAddr, e Event, clone bool) {
	t.update(mac, func(r *Record, now time.Time, known bool) {
		if r.Stage == StageNone || (clone && over(r)) {
			newRun(r, now)
			r.Stage = StageBooted
		}
		r.Heard = now
		if e.Time.IsZero() {
			e.Time = now
		}
		r.Events = appendBounded(r.Events, e, t.cfg.EventsPerHost)
	})
}

// Identified records that mac's clone asked who it is (and got its
// identity): a new run of the clone, unless mac just booted for it.
func (t *Tracker) Identified(mac net.HardwareAddr) {
	t.update(mac, func(r *Record, now time.Time, known bool) {
		if r.Stage != StageBooted {
			newRun(r, now)
		}
		r.Stage, r.Step, r.Error, r.Heard = StageIdentified, "", "", now
	})
	t.mu.Lock()
	if e := t.recs[mac.String()]; e != nil && !e.known && t.cfg.Known(mac) {
		e.known = true // enrolled by this very who-am-I
		t.unknown--
	}
	t.mu.Unlock()
}

// stepStage is the stage a running step of a clone puts its machine in.
var stepStage = map[string]Stage{
	"network": StageIdentified, "identify": StageIdentified, "disk": StageIdentified,
	"fetch": StageDownloading,
	"mount": StageConfigured, "configure": StageConfigured, "hooks": StageConfigured,
	"bootloader": StageConfigured, "seed": StageConfigured, "unmount": StageConfigured,
}

// Report records a report of mac's clone: a running step moves its stage
// on, a failed one makes it StageFailed with the step and error, a done
// one StageDone. A report after a run ended starts a new one.
func (t *Tracker) Report(mac net.HardwareAddr, rep Report) {
	t.update(mac, func(r *Record, now time.Time, known bool) {
		if over(r) {
			newRun(r, now)
		}
		r.Step, r.Heard = rep.Step, now
		switch rep.State {
		case "failed":
			r.Stage, r.Error = StageFailed, rep.Error
		case "done":
			r.Stage, r.Error = StageDone, ""
		default:
			if s, ok := stepStage[rep.Step]; ok {
				r.Stage = s
			} else if over(r) || r.Stage == StageBooted {
				r.Stage = StageIdentified
			}
		}
		limit := t.cfg.ReportsPerHost
		if !known {
			limit = t.cfg.ReportsPerUnknown
		}
		r.Reports = appendBounded(r.Reports, rep, limit)
	})
}

// Agent records the gossiped state of mac's agent. It does not change the
// stage (the clone's reports do).
func (t *Tracker) Agent(mac net.HardwareAddr, a Agent) {
	t.mu.Lock()
	e := t.recs[mac.String()]
	same := e != nil && e.rec.Agent != nil && *e.rec.Agent == a
	t.mu.Unlock()
	if same {
		return // the gossip repeats itself: no change
	}
	t.update(mac, func(r *Record, _ time.Time, _ bool) { r.Agent = &a })
}

// Get returns mac's record.
func (t *Tracker) Get(mac net.HardwareAddr) (Record, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.recs[mac.String()]
	if e == nil {
		return Record{}, false
	}
	return e.rec.clone(), true
}

// List returns every record, sorted by MAC.
func (t *Tracker) List() []Record { return t.Since(time.Time{}) }

// Since returns the records updated at or after since, sorted by MAC. A
// caller that passes the largest Updated it has seen gets that record
// again rather than miss a change made in the same instant.
func (t *Tracker) Since(since time.Time) []Record {
	t.mu.Lock()
	out := make([]Record, 0, len(t.recs))
	for _, e := range t.recs {
		if !e.rec.Updated.Before(since) {
			out = append(out, e.rec.clone())
		}
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b Record) int {
		ma, _ := net.ParseMAC(a.MAC)
		mb, _ := net.ParseMAC(b.MAC)
		return bytes.Compare(ma, mb)
	})
	return out
}

// Changed returns a channel that is closed at the next change of any
// record: take it, read with Since or Get, then wait on it.
func (t *Tracker) Changed() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.changed
}

func (r Record) clone() Record {
	r.Events, r.Reports = slices.Clone(r.Events), slices.Clone(r.Reports)
	if r.Agent != nil {
		a := *r.Agent
		r.Agent = &a
	}
	return r
}

func appendBounded[T any](s []T, v T, max int) []T {
	s = append(s, v)
	if len(s) > max {
		s = slices.Delete(s, 0, len(s)-max)
	}
	return s
}
