package deploy

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labseed/labseed/lifecycle"
)

// sim is a lab of machines under a task, on a fake clock: each machine
// answers a wake as the test says (boots after a delay, on its n-th wake
// only, or never), then clones for a while and ends done or failed.
type sim struct {
	t     *testing.T
	now   time.Time
	tr    *lifecycle.Tracker
	task  *Task
	ms    map[string]*simMachine
	woken map[string][]time.Time // the wakes sent, by MAC
	marks int                    // Start actions seen
	// maxPending is the most machines seen woken but not booted.
	maxPending int
}

type simMachine struct {
	bootAfter time.Duration // from the wake it answers
	answerOn  int           // the wake it answers (1: the first); 0: never
	cloneFor  time.Duration // from its boot to its end
	fail      bool          // its clone fails at step "fetch"

	bootAt, endAt time.Time // scheduled
	booted, ended bool
}

func macN(i int) string {
	return net.HardwareAddr{0x52, 0x54, 0, 0, 0, byte(i)}.String()
}

func newSim(t *testing.T, ms []*simMachine, opt Options) *sim {
	s := &sim{t: t, now: time.Date(2025, 3, 1, 22, 0, 0, 0, time.UTC), ms: map[string]*simMachine{}, woken: map[string][]time.Time{}}
	s.tr = lifecycle.New(lifecycle.Config{Now: func() time.Time { return s.now }, Known: func(net.HardwareAddr) bool { return true }})
	var machines []Machine
	for i, m := range ms {
		mac := macN(i + 1)
		s.ms[mac] = m
		machines = append(machines, Machine{MAC: mac, Hostname: fmt.Sprintf("ws%02d", i+1)})
	}
	task, err := New("t1", "lab1", machines, opt, s.now)
	if err != nil {
		t.Fatal(err)
	}
	s.task = task
	return s
}

func (s *sim) records(mac string) (lifecycle.Record, bool) {
	hw, _ := net.ParseMAC(mac)
	return s.tr.Get(hw)
}

// step runs the task once at the current time, and the machines.
func (s *sim) step() Actions {
	s.t.Helper()
	for mac, m := range s.ms {
		hw, _ := net.ParseMAC(mac)
		if !m.booted && !m.bootAt.IsZero() && !s.now.Before(m.bootAt) {
			m.booted = true
			s.tr.Boot(hw, lifecycle.Event{Kind: "proxy-offer"}, true)
			s.tr.Report(hw, lifecycle.Report{Step: "identify", State: "running"})
			m.endAt = s.now.Add(m.cloneFor)
		}
		if m.booted && !m.ended && !s.now.Before(m.endAt) {
			m.ended = true
			if m.fail {
				s.tr.Report(hw, lifecycle.Report{Step: "fetch", State: "failed", Error: "disk full"})
			} else {
				s.tr.Report(hw, lifecycle.Report{Step: "done", State: "done"})
			}
		}
	}
	acts := s.task.Step(s.now, s.records)
	if acts.Start {
		s.marks++
	}
	for _, mac := range acts.Wake {
		s.woken[mac] = append(s.woken[mac], s.now)
		m := s.ms[mac]
		if m.answerOn == len(s.woken[mac]) && !m.booted {
			m.bootAt = s.now.Add(m.bootAfter)
		}
	}
	if n := s.task.Counts()[Woken]; n > s.maxPending {
		s.maxPending = n
	}
	return acts
}

// run steps every second until the task is over or limit passes.
func (s *sim) run(limit time.Duration) {
	s.t.Helper()
	end := s.now.Add(limit)
	for !s.task.Over() && s.now.Before(end) {
		s.step()
		s.now = s.now.Add(time.Second)
	}
	if !s.task.Over() {
		s.t.Fatalf("the task is not over after %s: %+v", limit, s.task.Counts())
	}
}

func (s *sim) machine(i int) Machine {
	for _, m := range s.task.Machines {
		if m.MAC == macN(i) {
			return m
		}
	}
	s.t.Fatalf("no machine %d", i)
	return Machine{}
}

// TestWaves is a lab of 13: ten that boot 20-40 s after their first wake,
// one that answers only its second wake, one whose clone fails, one that
// never boots; waves of 4.
func TestWaves(t *testing.T) {
	var ms []*simMachine
	for i := range 10 {
		ms = append(ms, &simMachine{bootAfter: time.Duration(20+2*i) * time.Second, answerOn: 1, cloneFor: 5 * time.Minute})
	}
	ms = append(ms,
		&simMachine{bootAfter: 10 * time.Second, answerOn: 2, cloneFor: 5 * time.Minute}, // 11: the first packet lost
		&simMachine{bootAfter: 10 * time.Second, answerOn: 1, cloneFor: time.Minute, fail: true},
		&simMachine{}) // 13: nothing behind it
	s := newSim(t, ms, Options{Wave: 4})
	s.run(2 * time.Hour)

	if s.task.State != TaskFinished || s.marks != 1 {
		t.Fatalf("task %s, started %d times", s.task.State, s.marks)
	}
	if s.maxPending != 4 {
		t.Errorf("at most %d machines woken but not booted, want 4", s.maxPending)
	}
	for i := 1; i <= 10; i++ {
		if m := s.machine(i); m.State != Done || m.Woken != 1 || len(s.woken[m.MAC]) != 1 || m.Booted.IsZero() {
			t.Errorf("machine %d: %+v, %d wakes sent; want done after one wake", i, m, len(s.woken[m.MAC]))
		}
	}
	if m := s.machine(11); m.State != Done || m.Woken != 2 || m.LastWoken.Sub(m.FirstWoken) != DefaultWaveTimeout {
		t.Errorf("machine 11: %+v; want done after a second wake %s after the first", m, DefaultWaveTimeout)
	}
	if m := s.machine(12); m.State != Failed || m.Step != "fetch" || m.Error != "disk full" {
		t.Errorf("machine 12: %+v; want failed at fetch", m)
	}
	m := s.machine(13)
	if m.State != NeverBooted || m.Woken != DefaultWakeTries || len(s.woken[m.MAC]) != DefaultWakeTries {
		t.Errorf("machine 13: %+v, %d wakes sent; want never booted after %d", m, len(s.woken[m.MAC]), DefaultWakeTries)
	}
	if got := m.Ended.Sub(m.FirstWoken); got != DefaultWakeTries*DefaultWaveTimeout {
		t.Errorf("machine 13 given up %s after its first wake, want %s", got, DefaultWakeTries*DefaultWaveTimeout)
	}
	// The woken-but-not-booted intervals, from the task's own record.
	type iv struct{ from, to time.Time }
	var ivs []iv
	for _, m := range s.task.Machines {
		end := m.Booted
		if end.IsZero() {
			end = m.Ended
		}
		ivs = append(ivs, iv{m.FirstWoken, end})
	}
	for _, a := range ivs {
		n := 0
		for _, b := range ivs {
			if !a.from.Before(b.from) && a.from.Before(b.to) {
				n++
			}
		}
		if n > 4 {
			t.Errorf("%d machines woken but not booted at %s", n, a.from)
		}
	}
	c := s.task.Counts()
	if c[Done] != 11 || c[Failed] != 1 || c[NeverBooted] != 1 {
		t.Errorf("counts %v", c)
	}
}

// TestAt: a task does nothing before its time.
func TestAt(t *testing.T) {
	s := newSim(t, []*simMachine{{bootAfter: time.Second, answerOn: 1, cloneFor: time.Second}}, Options{})
	s.task.At = s.now.Add(time.Hour)
	for range 10 {
		if acts := s.step(); acts.Start || len(acts.Wake) > 0 || acts.Changed {
			t.Fatalf("before its time: %+v", acts)
		}
		s.now = s.now.Add(time.Minute)
	}
	if s.task.State != TaskScheduled {
		t.Fatalf("state %s", s.task.State)
	}
	s.now = s.task.At
	if acts := s.step(); !acts.Start || len(acts.Wake) != 1 || s.task.Started != s.task.At {
		t.Fatalf("at its time: %+v, %+v", acts, s.task)
	}
	s.run(time.Minute)
	if s.machine(1).State != Done {
		t.Fatalf("%+v", s.machine(1))
	}
}

// TestRestart saves the task in the middle, forgets every record (a print
// server that restarted) and goes on from the file: no machine woken
// twice, the dead one still woken three times in all.
func TestRestart(t *testing.T) {
	var ms []*simMachine
	for range 6 {
		ms = append(ms, &simMachine{bootAfter: 5 * time.Second, answerOn: 1, cloneFor: 2 * time.Minute})
	}
	ms = append(ms, &simMachine{})
	s := newSim(t, ms, Options{Wave: 2, WaveTimeout: 30 * time.Second})
	for range 40 {
		s.step()
		s.now = s.now.Add(time.Second)
	}
	before := s.task.Counts()
	dir := t.TempDir()
	if err := Save(dir, s.task); err != nil {
		t.Fatal(err)
	}
	// Down for 20 s: the machines go on, nobody hears them.
	s.now = s.now.Add(20 * time.Second)
	task, err := Load(dir, s.now)
	if err != nil || task == nil {
		t.Fatal(task, err)
	}
	if after := task.Counts(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("counts after Load %v, before %v", after, before)
	}
	s.task = task
	s.tr = lifecycle.New(lifecycle.Config{Now: func() time.Time { return s.now }})
	s.run(time.Hour)
	for i := 1; i <= 6; i++ {
		if m := s.machine(i); m.State != Done || len(s.woken[m.MAC]) != 1 {
			t.Errorf("machine %d: %+v after %d wakes", i, m, len(s.woken[m.MAC]))
		}
	}
	if m := s.machine(7); m.State != NeverBooted || len(s.woken[m.MAC]) != 3 {
		t.Errorf("the dead machine: %+v after %d wakes", m, len(s.woken[m.MAC]))
	}
	if _, err := Load(t.TempDir(), s.now); err != nil {
		t.Fatalf("no file: %v", err)
	}
}

// TestDoneStays: after a restart, a done machine that boots its new disk
// gets a new record (booted); it stays done.
func TestDoneStays(t *testing.T) {
	s := newSim(t, []*simMachine{{bootAfter: time.Second, answerOn: 1, cloneFor: time.Second}, {}}, Options{WaveTimeout: time.Hour})
	for range 10 {
		s.step()
		s.now = s.now.Add(time.Second)
	}
	if s.machine(1).State != Done {
		t.Fatalf("%+v", s.machine(1))
	}
	s.tr = lifecycle.New(lifecycle.Config{Now: func() time.Time { return s.now }})
	hw, _ := net.ParseMAC(macN(1))
	s.tr.Boot(hw, lifecycle.Event{Kind: "proxy-offer"}, false)
	s.step()
	if m := s.machine(1); m.State != Done {
		t.Fatalf("a done machine booting its disk: %+v", m)
	}
}

// TestStall: a machine booted and then silent is failed after the stall
// timeout; a failed machine that tries again is followed again.
func TestStall(t *testing.T) {
	s := newSim(t, []*simMachine{{bootAfter: time.Second, answerOn: 1, cloneFor: 24 * time.Hour}, {bootAfter: time.Second, answerOn: 1, cloneFor: 10 * time.Second, fail: true}},
		Options{StallTimeout: 10 * time.Minute})
	for range 60 {
		s.step()
		s.now = s.now.Add(time.Second)
	}
	if m := s.machine(2); m.State != Failed {
		t.Fatalf("machine 2: %+v", m)
	}
	// Machine 2's clone environment tries again.
	hw, _ := net.ParseMAC(macN(2))
	s.tr.Report(hw, lifecycle.Report{Step: "identify", State: "running"})
	s.step()
	if m := s.machine(2); m.State != Cloning || m.Error != "" {
		t.Fatalf("machine 2 trying again: %+v", m)
	}
	s.tr.Report(hw, lifecycle.Report{Step: "done", State: "done"})
	s.run(time.Hour)
	if m := s.machine(1); m.State != Failed || !strings.Contains(m.Error, "nothing heard of it for 10m0s") {
		t.Fatalf("machine 1: %+v", m)
	}
	if m := s.machine(2); m.State != Done {
		t.Fatalf("machine 2: %+v", m)
	}
}

// TestCancel: the machines not booted are cancelled and given back to be
// unmarked.
func TestCancel(t *testing.T) {
	s := newSim(t, []*simMachine{{bootAfter: time.Second, answerOn: 1, cloneFor: time.Hour}, {}, {}}, Options{Wave: 2})
	for range 5 {
		s.step()
		s.now = s.now.Add(time.Second)
	}
	unmark := s.task.Cancel(s.now)
	if !slices.Equal(unmark, []string{macN(2), macN(3)}) || s.task.State != TaskCancelled {
		t.Fatalf("unmark %v, state %s", unmark, s.task.State)
	}
	if acts := s.step(); len(acts.Wake) > 0 || acts.Changed {
		t.Fatalf("a cancelled task acts: %+v", acts)
	}
	if s.task.Cancel(s.now) != nil {
		t.Fatal("cancelled twice")
	}
	c := s.task.Counts()
	if c[Cancelled] != 2 || c[Cloning] != 1 {
		t.Fatalf("counts %v", c)
	}
}

func TestNew(t *testing.T) {
	now := time.Now()
	if _, err := New("x", "", []Machine{{MAC: macN(1)}}, Options{}, now); err == nil {
		t.Error("no image")
	}
	if _, err := New("x", "lab1", nil, Options{}, now); err == nil {
		t.Error("no machine")
	}
	if _, err := New("x", "lab1", []Machine{{MAC: macN(1)}}, Options{Wave: -1}, now); err == nil {
		t.Error("negative wave")
	}
	task, err := New("x", "lab1", []Machine{{MAC: macN(1)}, {MAC: macN(1)}}, Options{}, now)
	if err != nil || len(task.Machines) != 1 || task.Wave != DefaultWave || task.WaveTimeout != DefaultWaveTimeout ||
		task.WakeTries != DefaultWakeTries || task.StallTimeout != DefaultStallTimeout {
		t.Fatalf("%+v %v", task, err)
	}
}

// TestFollow: Follow takes in the records and nothing more: a machine's
// done report moves it to done, but no wake is sent, no woken machine is
// given up, and the task does not end even when every machine is
// finished with (the next Step ends it).
func TestFollow(t *testing.T) {
	s := newSim(t, []*simMachine{{bootAfter: time.Second, answerOn: 1, cloneFor: time.Hour}, {}}, Options{Wave: 1, WaveTimeout: time.Minute, WakeTries: 1})
	if s.task.Follow(s.now, s.records) {
		t.Fatal("Follow changed a task not started")
	}
	s.step() // started, machine 1 woken
	s.now = s.now.Add(2 * time.Second)
	s.step() // machine 1 booted and cloning
	if m := s.machine(1); m.State != Cloning {
		t.Fatalf("machine 1: %+v", m)
	}
	hw, _ := net.ParseMAC(macN(1))
	s.tr.Report(hw, lifecycle.Report{Step: "done", State: "done"})
	s.now = s.now.Add(2 * time.Hour) // a Step would wake machine 2 now
	before := s.task.Clone()
	if !s.task.Follow(s.now, s.records) {
		t.Fatal("Follow did not take in the done report")
	}
	if m := s.machine(1); m.State != Done {
		t.Fatalf("machine 1 after Follow: %+v", m)
	}
	if m := s.machine(2); m != before.Machines[1] || s.task.State != TaskRunning {
		t.Fatalf("Follow did more than follow: machine 2 %+v, task %s", m, s.task.State)
	}
	if s.task.Follow(s.now, s.records) {
		t.Fatal("Follow changed the task twice for one report")
	}
}
