package metrics

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/labseed/labseed/gossip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultHostTTL is how long a host that left the lab stays exported when
// Config.HostTTL is zero.
const DefaultHostTTL = 10 * time.Minute

// tickInterval is how often Run samples the Source for phase changes.
const tickInterval = time.Second

// Snapshot is the lab as the print server sees it at one moment.
type Snapshot struct {
	// Hosts is every gossip member that is a workstation, including suspect,
	// dead and left ones the gossip still knows. Members whose status says
	// they are a print server (gossip.RoleServer) are ignored, and so are
	// members without a name; of two members with the same name the first
	// is used.
	Hosts []Host
	// Images is every published image, current version; of two entries with
	// the same name the highest version is exported.
	Images []Image
	// Server is the print server's own seeding.
	Server Server
	// Deploy is the print server's current deploy task, or its last one;
	// nil when there was none (its counts are then exported as 0).
	Deploy *Deploy
	// Replication is the print server's replication from the one it
	// follows (labseed serve --upstream); zero on one that follows none.
	Replication Replication
}

// Deploy is a deploy task: machines re-imaged by "labseed deploy".
type Deploy struct {
	// ID and Image name it.
	ID, Image string
	// State is "scheduled", "running", "finished", "cancelled" or
	// "failed"; Active is true while it is scheduled or running.
	State  string
	Active bool
	// Machines counts its machines by state ("waiting", "woken",
	// "booted", "cloning", "done", "failed", "never-booted",
	// "cancelled").
	Machines map[string]int
	// Started is when it started; zero before.
	Started time.Time
}

// Replication is what a follower fetched from its upstream, counted since
// its process started.
type Replication struct {
	// Following is true on a print server that follows another one: the
	// replication metrics are exported only then.
	Following bool
	// BytesFetched is the payload bytes fetched from the upstream.
	BytesFetched int64
	// ChunksFetched is the chunks fetched from the upstream, ChunksReused
	// the chunks of new versions found in the store instead (shared with
	// an earlier version), not fetched.
	ChunksFetched, ChunksReused int64
	// BytesFromFollowers and ChunksFromFollowers are the payload fetched
	// from the other followers of the upstream instead of from it;
	// BytesToFollowers the payload this one served them.
	BytesFromFollowers, ChunksFromFollowers, BytesToFollowers int64
	// Refused counts the images refused because their manifest is not
	// signed with the pinned key, now.
	Refused int
}

// Host is one workstation as the gossip knows it.
type Host struct {
	// Name is the gossip node name; it becomes the host label.
	Name string
	// State is the gossip member state: "alive", "suspect", "dead" or "left".
	State string
	// Status is the host's last gossiped status. Its byte and failure
	// counters restart from 0 when the host's agent restarts; the exported
	// counters do not (see Metrics).
	Status gossip.Status
}

// Image is one published image.
type Image struct {
	// Name is the image name; it becomes the image label.
	Name string
	// Version is the current version number.
	Version int
	// PayloadBytes is the size of the payload the workstations download
	// (compressed chunks); InputBytes the size of the tarball it was
	// published from.
	PayloadBytes, InputBytes int64
	// Chunks is the number of chunks in the payload.
	Chunks int
}

// Server is the print server's own seeding, counted since its process
// started.
type Server struct {
	// Uploaded is the payload bytes the server uploaded over BitTorrent.
	Uploaded int64
	// WebSeedBytes is the payload bytes the server served over HTTP (web
	// seed, range requests).
	WebSeedBytes int64
	// DealtBytes is the payload bytes the server dealt to workstations over
	// HTTP (package deal).
	DealtBytes int64
	// Peers is the number of BitTorrent peers connected to the server now.
	Peers int
	// HashFailures counts pieces the server received that failed their hash
	// check.
	HashFailures int64
}

// Config configures Metrics. Only Source is required.
type Config struct {
	// Source returns the lab now. It is called on every scrape and every
	// second by Run, from any goroutine but never concurrently with itself
	// (calls are serialised by Metrics): it must be cheap and safe to call
	// concurrently with the rest of the caller's program.
	Source func() Snapshot
	// HostTTL is how long a host that left (state "left" or "dead", or no
	// longer in Snapshot.Hosts) stays exported with its last status; default
	// DefaultHostTTL (10 min).
	HostTTL time.Duration
	// Version is labseed's version, exported in labseed_build_info; default
	// "unknown".
	Version string
	// Now returns the current time; default time.Now. A seam for tests.
	Now func() time.Time
}

// Metrics exports the lab to Prometheus: the print server's seeding, every
// workstation's gossiped status, the gossip's member states, the published
// images and build information, on a registry of its own (with the Go and
// process collectors). Per-host counters only grow: when a workstation's
// agent restarts and its counters start from 0 again, Metrics adds what the
// previous process had counted (it keeps an offset per host and counter), so
// Prometheus sees no counter reset.
//
// Create it with New, serve Handler on the print server's metrics path and
// run Run for the phase-duration histogram. Its methods are safe for
// concurrent use.
type Metrics struct {
	cfg      Config
	reg      *prometheus.Registry
	handler  http.Handler
	phaseDur *prometheus.HistogramVec

	mu         sync.Mutex // serialises Source calls and guards the fields below
	hosts      map[string]*hostState
	srv        serverState
	lastSample time.Time // when the Source was last sampled; zero before
}

// New validates cfg and returns Metrics with every collector registered.
func New(cfg Config) (*Metrics, error) {
	if cfg.Source == nil {
		return nil, errors.New("metrics: Config.Source is required")
	}
	if cfg.HostTTL < 0 {
		return nil, errors.New("metrics: Config.HostTTL must not be negative")
	}
	if cfg.HostTTL == 0 {
		cfg.HostTTL = DefaultHostTTL
	}
	if cfg.Version == "" {
		cfg.Version = "unknown"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := &Metrics{
		cfg:   cfg,
		reg:   prometheus.NewRegistry(),
		hosts: map[string]*hostState{},
		phaseDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "labseed_phase_duration_seconds",
			Help:    "Time workstations spent in a phase, observed when they leave it (phases whose start the print server did not see, and phases cut short by an agent restart, are not observed).",
			Buckets: phaseBuckets,
		}, []string{"phase"}),
	}
	for _, p := range phases[:4] {
		// Export the phases that end from the start, so that increase()
		// sees their first observation; done and failed appear if they
		// ever end.
		m.phaseDur.WithLabelValues(p)
	}
	err := errors.Join(
		m.reg.Register(newCollector(m)),
		m.reg.Register(m.phaseDur),
		m.reg.Register(collectors.NewGoCollector()),
		m.reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})),
	)
	if err != nil {
		return nil, fmt.Errorf("metrics: register collectors: %w", err)
	}
	m.handler = promhttp.InstrumentMetricHandler(m.reg, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg,
	}))
	return m, nil
}

// Handler returns the HTTP handler that serves the labseed registry in the
// Prometheus exposition formats; mount it at /metrics.
func (m *Metrics) Handler() http.Handler { return m.handler }

// Run samples the Source every second, so that the phase changes of every
// workstation are observed into labseed_phase_duration_seconds (and agent
// restarts are noticed) between scrapes. It returns nil when ctx ends.
func (m *Metrics) Run(ctx context.Context) error {
	t := time.NewTicker(tickInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			m.sample()
		}
	}
}

// sample calls the Source and updates the per-host state; it returns the
// snapshot and the hosts to export.
func (m *Metrics) sample() (Snapshot, []hostView, serverView) {
	m.mu.Lock()
	defer m.mu.Unlock()
	snap := m.cfg.Source()
	now := m.cfg.Now()
	hosts := m.observeHosts(snap.Hosts, now)
	srv := m.srv.observe(snap.Server)
	return snap, hosts, srv
}
