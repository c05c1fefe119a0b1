// Package deploy is a deploy task of the print server: a set of machines
// re-imaged with one image by one command ("labseed deploy"), woken in
// waves. It is the task's state and its rules, with no I/O but its file:
// the print server (package seeder) runs it, marks the machines, sends
// the magic packets it asks for, and feeds it the machines' lifecycle
// records (package lifecycle).
//
// The rules. At its start (Options.At, or at once) every machine is marked
// to be re-imaged (the caller does it when Step says Start). Then at most
// Options.Wave machines are woken but not yet booted at any moment: a
// machine counts as booted at its first network-boot event or clone report
// heard since the task started. A machine not heard of within
// Options.WaveTimeout of its last wake is woken again, up to
// Options.WakeTries wakes, then counted never booted and its place in the
// wave given to the next. A booted machine follows its record: cloning,
// then done or failed; one that is heard of no more for
// Options.StallTimeout is failed. The task is over when every machine is
// done, failed or never booted (or it was cancelled).
//
// The task is kept in a file of the store (Save, Load), written atomically
// after every change, so that a restarted print server goes on from where
// it was: the wakes already sent, the machines already booted.
//
// Usage:
//
//	t, err := deploy.New(id, "lab1", machines, deploy.Options{Wave: 10}, time.Now())
//	for !t.Over() {
//		acts := t.Step(time.Now(), records)
//		if acts.Start { mark(t.MACs()) }
//		wake(acts.Wake)
//		if acts.Changed { deploy.Save(dir, t) }
//		... wait for a record's change or a second
//	}
package deploy

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/labseed/labseed/lifecycle"
)

// State is where a machine is in a deploy.
type State string

// The states of a machine.
const (
	Waiting     State = "waiting"      // not woken yet: its wave has not come
	Woken       State = "woken"        // woken (Machine.Woken times), not heard of since
	Booted      State = "booted"       // it network-booted
	Cloning     State = "cloning"      // its clone runs (identified, downloading, configured)
	Done        State = "done"         // its clone reported done
	Failed      State = "failed"       // its clone failed (Machine.Step, Machine.Error), or went silent
	NeverBooted State = "never-booted" // woken Options.WakeTries times, never heard of
	Cancelled   State = "cancelled"    // the deploy was cancelled before it booted
)

// States lists the states in the order of a deploy.
var States = []State{Waiting, Woken, Booted, Cloning, Done, Failed, NeverBooted, Cancelled}

// final reports whether a machine in state s is finished with, for the
// task's end (a failed or never-booted machine heard of again while the
// task runs is followed again).
func (s State) final() bool {
	return s == Done || s == Failed || s == NeverBooted || s == Cancelled
}

// TaskState is where a deploy is.
type TaskState string

// The states of a task.
const (
	TaskScheduled TaskState = "scheduled" // waiting for Task.At
	TaskRunning   TaskState = "running"
	TaskFinished  TaskState = "finished"  // every machine done, failed or never booted
	TaskCancelled TaskState = "cancelled" // by "labseed deploy cancel"
	TaskFailed    TaskState = "failed"    // could not start (Task.Error)
)

// Defaults of Options.
const (
	DefaultWave         = 10
	DefaultWaveTimeout  = 90 * time.Second
	DefaultWakeTries    = 3
	DefaultStallTimeout = 30 * time.Minute
)

// Options are a task's settings; zero values mean the defaults.
type Options struct {
	// Wave is the most machines woken but not yet booted at any moment;
	// default DefaultWave.
	Wave int
	// WaveTimeout is how long a woken machine has to boot before it is
	// woken again; default DefaultWaveTimeout.
	WaveTimeout time.Duration
	// WakeTries is how many times a machine is woken before it counts as
	// never booted; default DefaultWakeTries.
	WakeTries int
	// StallTimeout is how long a booted machine may go unheard of (no
	// boot event, clone report or gossip of its agent) before it counts
	// as failed; default DefaultStallTimeout.
	StallTimeout time.Duration
	// At is when the task starts; zero: at once.
	At time.Time
}

// Machine is one machine of a task.
type Machine struct {
	MAC      string `json:"mac"` // net.HardwareAddr's form
	Hostname string `json:"hostname,omitempty"`
	IP       string `json:"ip,omitempty"`
	State    State  `json:"state"`
	// Woken counts the wakes sent to it; FirstWoken and LastWoken are the
	// first and the last.
	Woken      int       `json:"woken"`
	FirstWoken time.Time `json:"first_woken,omitzero"`
	LastWoken  time.Time `json:"last_woken,omitzero"`
	// Booted is when it was first seen booted; Ended when it became done,
	// failed, never booted or cancelled (the last time).
	Booted time.Time `json:"booted,omitzero"`
	Ended  time.Time `json:"ended,omitzero"`
	// Changed is its last change of state.
	Changed time.Time `json:"changed,omitzero"`
	// Step and Error say where and why its clone failed (Failed).
	Step  string `json:"step,omitempty"`
	Error string `json:"error,omitempty"`
}

// Task is a deploy. Its methods are not safe for concurrent use: the
// caller serialises them.
type Task struct {
	ID    string    `json:"id"`
	Image string    `json:"image"`
	State TaskState `json:"state"`
	// The options, defaults filled in.
	Wave         int           `json:"wave"`
	WaveTimeout  time.Duration `json:"wave_timeout"`
	WakeTries    int           `json:"wake_tries"`
	StallTimeout time.Duration `json:"stall_timeout"`
	// At is when it was to start (zero: at once), Created when it was
	// made, Started and Ended when it started and ended.
	At      time.Time `json:"at,omitzero"`
	Created time.Time `json:"created"`
	Started time.Time `json:"started,omitzero"`
	Ended   time.Time `json:"ended,omitzero"`
	// Error says why it failed (TaskFailed); WakeError why the last wake
	// could not be sent, "" when it was.
	Error     string `json:"error,omitempty"`
	WakeError string `json:"wake_error,omitempty"`
	// Machines are its machines, in the order they are woken.
	Machines []Machine `json:"machines"`

	// resumed is when Load read the task: a print server that restarted
	// has no records of the machines yet.
	resumed time.Time
}

// New returns a task of machines (MAC, and Hostname and IP for the
// reader; the rest is the task's) to be re-imaged with image.
func New(id, image string, machines []Machine, opt Options, now time.Time) (*Task, error) {
	if image == "" {
		return nil, errors.New("deploy: no image")
	}
	if len(machines) == 0 {
		return nil, errors.New("deploy: no machine")
	}
	switch {
	case opt.Wave < 0, opt.WakeTries < 0, opt.WaveTimeout < 0, opt.StallTimeout < 0:
		return nil, errors.New("deploy: negative wave, wave timeout, wake tries or stall timeout")
	}
	t := &Task{ID: id, Image: image, State: TaskScheduled, Wave: opt.Wave, WaveTimeout: opt.WaveTimeout,
		WakeTries: opt.WakeTries, StallTimeout: opt.StallTimeout, At: opt.At, Created: now}
	if t.Wave == 0 {
		t.Wave = DefaultWave
	}
	if t.WaveTimeout == 0 {
		t.WaveTimeout = DefaultWaveTimeout
	}
	if t.WakeTries == 0 {
		t.WakeTries = DefaultWakeTries
	}
	if t.StallTimeout == 0 {
		t.StallTimeout = DefaultStallTimeout
	}
	for _, m := range machines {
		if slices.ContainsFunc(t.Machines, func(o Machine) bool { return o.MAC == m.MAC }) {
			continue
		}
		t.Machines = append(t.Machines, Machine{MAC: m.MAC, Hostname: m.Hostname, IP: m.IP, State: Waiting, Changed: now})
	}
	return t, nil
}

// Over reports whether the task has ended.
func (t *Task) Over() bool {
	return t.State == TaskFinished || t.State == TaskCancelled || t.State == TaskFailed
}

// MACs returns the MACs of the task's machines.
func (t *Task) MACs() []string {
	out := make([]string, len(t.Machines))
	for i, m := range t.Machines {
		out[i] = m.MAC
	}
	return out
}

// Actions are what Step asks the caller to do.
type Actions struct {
	// Start: the task started; mark every machine (MACs) to be
	// re-imaged with the image, before the wakes are sent. If that
	// fails, call Fail.
	Start bool
	// Wake are the MACs to wake now.
	Wake []string
	// Changed: the task changed; save it.
	Changed bool
}

// Records returns the lifecycle record of a machine by MAC; ok is false
// when the print server has none (a print server that restarted has
// forgotten them).
type Records func(mac string) (r lifecycle.Record, ok bool)

// Step moves the task on to now: it starts it when its time has come,
// follows every machine's record, wakes the next machines of the wave and
// wakes again those not heard of in time, and ends the task when every
// machine is finished with. Call it whenever a record changes, and at
// least every second.
func (t *Task) Step(now time.Time, records Records) Actions {
	var acts Actions
	switch t.State {
	case TaskScheduled:
		if now.Before(t.At) {
			return acts
		}
		t.State, t.Started = TaskRunning, now
		acts.Start, acts.Changed = true, true
	case TaskRunning:
	default:
		return acts
	}
	// What the machines' records say.
	acts.Changed = t.Follow(now, records) || acts.Changed
	for i := range t.Machines {
		m := &t.Machines[i]
		r, ok := records(m.MAC)
		if (m.State == Booted || m.State == Cloning) && m.stalled(r, ok, now, t.resumed, t.StallTimeout) {
			m.set(Failed, now)
			m.Error = fmt.Sprintf("nothing heard of it for %s", t.StallTimeout)
			acts.Changed = true
		}
	}
	// Wakes again, or gives up on, the woken machines not heard of.
	pending := 0
	for i := range t.Machines {
		m := &t.Machines[i]
		if m.State != Woken || now.Before(m.LastWoken.Add(t.WaveTimeout)) {
			if m.State == Woken {
				pending++
			}
			continue
		}
		acts.Changed = true
		if m.Woken >= t.WakeTries {
			m.set(NeverBooted, now)
			continue
		}
		m.Woken++
		m.LastWoken = now
		acts.Wake = append(acts.Wake, m.MAC)
		pending++
	}
	// The next ones, while the wave has room.
	for i := range t.Machines {
		if pending >= t.Wave {
			break
		}
		m := &t.Machines[i]
		if m.State != Waiting {
			continue
		}
		m.set(Woken, now)
		m.Woken, m.FirstWoken, m.LastWoken = 1, now, now
		acts.Wake = append(acts.Wake, m.MAC)
		acts.Changed = true
		pending++
	}
	if !slices.ContainsFunc(t.Machines, func(m Machine) bool { return !m.State.final() }) {
		t.State, t.Ended = TaskFinished, now
		acts.Changed = true
	}
	return acts
}

// Follow moves the running task's machines on by their records, and
// nothing else: no wake, no timer, no end. It reports whether a machine
// changed. A print server that stops calls it after the last request it
// took in, so that a report that came in while it was stopping (a
// machine's done) is saved, not lost with its records.
func (t *Task) Follow(now time.Time, records Records) bool {
	if t.State != TaskRunning {
		return false
	}
	changed := false
	for i := range t.Machines {
		m := &t.Machines[i]
		if r, ok := records(m.MAC); ok && m.follow(r, t.Started, now) {
			changed = true
		}
	}
	return changed
}

// follow moves m on by its record r, heard of or not since the task
// started; it reports whether m changed.
func (m *Machine) follow(r lifecycle.Record, started, now time.Time) bool {
	if !r.BootedSince(started) || m.State == Done || m.State == Cancelled {
		// Nothing heard since the start (a record of a machine's earlier
		// re-imaging counts for nothing), or finished with: a machine
		// that boots its new disk after a clone is done for good.
		return false
	}
	var next State
	switch r.Stage {
	case lifecycle.StageBooted, lifecycle.StageNone:
		next = Booted
	case lifecycle.StageIdentified, lifecycle.StageDownloading, lifecycle.StageConfigured:
		next = Cloning
	case lifecycle.StageDone:
		next = Done
	case lifecycle.StageFailed:
		next = Failed
	default:
		return false
	}
	if m.State == next || (next == Booted && m.State == Cloning) {
		if next == Failed && (m.Step != r.Step || m.Error != r.Error) {
			m.Step, m.Error = r.Step, r.Error
			return true
		}
		return false
	}
	if m.Booted.IsZero() {
		m.Booted = now
	}
	if next == Booted && (m.State == Failed || m.State == Done) {
		// A failed clone's machine that network-boots again: its next
		// try (the clone environment retries, or someone reset it).
		m.Step, m.Error = "", ""
	}
	m.set(next, now)
	if next == Failed {
		m.Step, m.Error = r.Step, r.Error
	} else {
		m.Step, m.Error = "", ""
	}
	return true
}

// stalled reports whether m, booted or cloning, has not been heard of for
// limit: no change of its state, and of its record (r, when ok), since
// limit before now. resumed is when the task was loaded (a restarted print
// server has no records yet).
func (m *Machine) stalled(r lifecycle.Record, ok bool, now, resumed time.Time, limit time.Duration) bool {
	last := m.Changed
	if ok && r.Updated.After(last) {
		last = r.Updated
	}
	if resumed.After(last) {
		last = resumed
	}
	return now.Sub(last) > limit
}

// set puts m into state s at now.
func (m *Machine) set(s State, now time.Time) {
	m.State, m.Changed = s, now
	if s.final() {
		m.Ended = now
	} else {
		m.Ended = time.Time{}
	}
}

// Fail ends a task that could not start (Step's Start could not be done):
// its machines are cancelled.
func (t *Task) Fail(now time.Time, err error) {
	t.State, t.Ended, t.Error = TaskFailed, now, err.Error()
	for i := range t.Machines {
		if m := &t.Machines[i]; !m.State.final() {
			m.set(Cancelled, now)
		}
	}
}

// Cancel ends the task: the machines not booted yet (waiting, woken) are
// cancelled, and returned, to be marked back to boot their disk; those
// already booted go on with their clone, untracked.
func (t *Task) Cancel(now time.Time) (unmark []string) {
	if t.Over() {
		return nil
	}
	t.State, t.Ended = TaskCancelled, now
	for i := range t.Machines {
		m := &t.Machines[i]
		if m.State == Waiting || m.State == Woken {
			m.set(Cancelled, now)
			unmark = append(unmark, m.MAC)
		}
	}
	return unmark
}

// Counts returns how many machines are in each state.
func (t *Task) Counts() map[State]int {
	n := make(map[State]int, len(States))
	for _, s := range States {
		n[s] = 0
	}
	for _, m := range t.Machines {
		n[m.State]++
	}
	return n
}

// Clone returns a deep copy of t.
func (t *Task) Clone() *Task {
	c := *t
	c.Machines = slices.Clone(t.Machines)
	return &c
}
