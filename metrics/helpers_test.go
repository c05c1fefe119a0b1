package metrics

import (
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// fakeLab is a Source whose snapshot the test sets.
type fakeLab struct {
	mu   sync.Mutex
	snap Snapshot
}

func (f *fakeLab) Source() Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.snap
	s.Hosts = append([]Host(nil), f.snap.Hosts...)
	s.Images = append([]Image(nil), f.snap.Images...)
	return s
}

func (f *fakeLab) set(s Snapshot) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.snap = s
}

// fakeClock is a Config.Now the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newTest returns Metrics on a fake lab and a fake clock.
func newTest(t *testing.T, ttl time.Duration) (*Metrics, *fakeLab, *fakeClock) {
	t.Helper()
	lab, clock := &fakeLab{}, newFakeClock()
	m, err := New(Config{Source: lab.Source, HostTTL: ttl, Version: "v0.0.0-test", Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return m, lab, clock
}

// sample is one gathered sample: its labels and value (the sample count
// and sum for a histogram).
type sample struct {
	labels     map[string]string
	value      float64
	count      uint64
	sum        float64
	metricType dto.MetricType
}

// gather scrapes g and returns the samples of every family by name.
func gather(t *testing.T, g prometheus.Gatherer) map[string][]sample {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string][]sample{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			s := sample{labels: map[string]string{}, metricType: mf.GetType()}
			for _, lp := range m.GetLabel() {
				s.labels[lp.GetName()] = lp.GetValue()
			}
			switch {
			case m.Gauge != nil:
				s.value = m.GetGauge().GetValue()
			case m.Counter != nil:
				s.value = m.GetCounter().GetValue()
			case m.Histogram != nil:
				s.count, s.sum = m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
			}
			out[mf.GetName()] = append(out[mf.GetName()], s)
		}
	}
	return out
}

// find returns the sample of name whose labels include want.
func find(samples map[string][]sample, name string, want map[string]string) (sample, bool) {
next:
	for _, s := range samples[name] {
		for k, v := range want {
			if s.labels[k] != v {
				continue next
			}
		}
		return s, true
	}
	return sample{}, false
}

// value returns the value of the sample of name with labels want, failing
// the test if there is none.
func value(t *testing.T, samples map[string][]sample, name string, want map[string]string) float64 {
	t.Helper()
	s, ok := find(samples, name, want)
	if !ok {
		t.Fatalf("no sample %s%v", name, want)
	}
	return s.value
}
