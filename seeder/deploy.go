package seeder

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/deploy"
	"github.com/labseed/labseed/hosts"
	"github.com/labseed/labseed/lifecycle"
	"github.com/labseed/labseed/pxe"
	"github.com/labseed/labseed/store"
)

// The print server runs one deploy task at a time (package deploy): it
// keeps it in the store's deploy.json, marks its machines, wakes them in
// waves from the lab interface, follows them in their lifecycle records,
// and goes on with it after a restart.

// maxWakeMACs bounds the machines of one wake or deploy request.
const maxWakeMACs = 4096

func (s *Server) deployRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST "+api.PathWake, s.adminOnly(s.handleWake))
	mux.HandleFunc("GET "+api.PathDeploy, s.tableAPI(s.handleGetDeploy))
	mux.HandleFunc("POST "+api.PathDeploy, s.adminOnly(s.tableAPI(s.handleStartDeploy)))
	mux.HandleFunc("POST "+api.PathDeployCancel, s.adminOnly(s.tableAPI(s.handleCancelDeploy)))
}

// loadDeploy reads the store's deploy task, if any: a task that was
// running goes on.
func (s *Server) loadDeploy() {
	if s.cfg.Hosts == nil {
		return
	}
	t, err := deploy.Load(s.cfg.Store.Dir(), time.Now())
	if err != nil {
		s.log.Error("deploy: the last deploy task cannot be read; a new deploy replaces it", "err", err)
		return
	}
	if t != nil && !t.Over() {
		c := t.Counts()
		s.log.Info("deploy: going on", "deploy", t.ID, "image", t.Image, "state", t.State,
			"machines", len(t.Machines), "done", c[deploy.Done], "woken", c[deploy.Woken], "waiting", c[deploy.Waiting])
	}
	s.deploy = t
}

// wakeMACs sends the magic packets of macs from the lab interface: its
// Config.Wake, or pxe.Wake on the interface of the network boot (or
// Config.WakeInterface, or the one holding the server's address).
func (s *Server) wakeMACs(ctx context.Context, macs []net.HardwareAddr) (pxe.WakeResult, error) {
	if s.cfg.Wake != nil {
		return s.cfg.Wake(ctx, macs)
	}
	name := s.cfg.WakeInterface
	if name == "" && s.boot != nil {
		name = s.boot.Interface()
	}
	host, _, _ := net.SplitHostPort(s.lab.HTTPAddr)
	ifc, err := pxe.LabInterface(name, net.ParseIP(host))
	if err != nil {
		return pxe.WakeResult{}, fmt.Errorf("wake: %w (labseed serve --interface names it)", err)
	}
	return pxe.Wake(ctx, pxe.WakeConfig{Interface: ifc.Name, IP: ifc.IP, Logger: s.log}, macs)
}

func (s *Server) handleWake(w http.ResponseWriter, r *http.Request) {
	var req api.WakeRequest
	if err := decodeJSON(r, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var macs []net.HardwareAddr
	if req.All || req.Group != "" {
		if s.cfg.Hosts == nil {
			http.Error(w, "this print server has no hosts table: give MACs", http.StatusNotFound)
			return
		}
		if len(req.MACs) > 0 || (req.All && req.Group != "") {
			http.Error(w, "wake: give MACs, a group or all (one of them)", http.StatusBadRequest)
			return
		}
		hs, err := s.cfg.Hosts.Select(hosts.Selection{All: req.All, Group: req.Group})
		if err != nil {
			selectError(w, err)
			return
		}
		for _, h := range hs {
			macs = append(macs, h.MAC)
		}
	} else {
		var err error
		if macs, err = parseMACs(req.MACs); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	if len(macs) == 0 || len(macs) > maxWakeMACs {
		http.Error(w, fmt.Sprintf("wake: give 1 to %d MACs, a group or all", maxWakeMACs), http.StatusBadRequest)
		return
	}
	res, err := s.wakeMACs(r.Context(), macs)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.log.Info("wake", "machines", len(macs), "interface", res.Interface, "broadcast", res.Broadcast, "raw", res.Raw, "raw_err", res.RawError)
	writeJSON(w, r, apiWakeResult(res, len(macs)))
}

// selectError answers a hosts.Select error: 404 for an unknown MAC or
// group, 400 otherwise.
func selectError(w http.ResponseWriter, err error) {
	code := http.StatusBadRequest
	if errors.Is(err, hosts.ErrUnknownHost) || errors.Is(err, hosts.ErrNoGroup) {
		code = http.StatusNotFound
	}
	http.Error(w, err.Error(), code)
}

func apiWakeResult(res pxe.WakeResult, n int) api.WakeResult {
	out := api.WakeResult{Woken: n, Interface: res.Interface, Raw: res.Raw, RawError: res.RawError, Packets: res.Sent}
	if res.Broadcast != nil {
		out.Broadcast = net.JoinHostPort(res.Broadcast.String(), fmt.Sprint(res.Port))
	}
	return out
}

func (s *Server) handleGetDeploy(w http.ResponseWriter, r *http.Request) {
	s.deployMu.Lock()
	t := s.deploy
	var d api.Deploy
	if t != nil {
		d = apiDeploy(t, true)
	}
	s.deployMu.Unlock()
	if t == nil {
		http.Error(w, "no deploy yet: start one with 'labseed deploy --image NAME --all'", http.StatusNotFound)
		return
	}
	writeJSON(w, r, d)
}

func (s *Server) handleStartDeploy(w http.ResponseWriter, r *http.Request) {
	var req api.DeployRequest
	if err := decodeJSON(r, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if req.Image == "" {
		http.Error(w, "deploy: which image? (give --image NAME; 'labseed images' lists them)", http.StatusBadRequest)
		return
	}
	if _, err := s.cfg.Store.Image(req.Image); err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, store.ErrNoImage) {
			code = http.StatusNotFound
		}
		http.Error(w, fmt.Sprintf("deploy: image %q: %v ('labseed images' lists them)", clean(req.Image), err), code)
		return
	}
	macs, err := parseMACs(req.MACs)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	hs, err := s.cfg.Hosts.Select(hosts.Selection{All: req.All, Group: req.Group, MACs: macs})
	if err != nil {
		selectError(w, err)
		return
	}
	if len(hs) > maxWakeMACs {
		http.Error(w, fmt.Sprintf("deploy: %d machines, at most %d at once", len(hs), maxWakeMACs), http.StatusBadRequest)
		return
	}
	if req.Wave < 0 || req.WakeTries < 0 || req.WaveTimeout < 0 || req.Wave > maxWakeMACs || req.WakeTries > 100 || req.WaveTimeout > 86400 {
		http.Error(w, "deploy: wave (0..4096), wave timeout (0..86400 s) and wake tries (0..100) out of range", http.StatusBadRequest)
		return
	}
	now := time.Now()
	at := req.At
	if !at.After(now) {
		at = time.Time{}
	}
	var machines []deploy.Machine
	for _, h := range hs {
		machines = append(machines, deploy.Machine{MAC: h.MAC.String(), Hostname: h.Hostname, IP: h.IP.String()})
	}
	opt := deploy.Options{Wave: req.Wave, WaveTimeout: time.Duration(req.WaveTimeout * float64(time.Second)), WakeTries: req.WakeTries, At: at}
	t, err := deploy.New(now.UTC().Format("20060102-150405"), req.Image, machines, opt, now)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.deployMu.Lock()
	defer s.deployMu.Unlock()
	if cur := s.deploy; cur != nil && !cur.Over() {
		if sameDeploy(cur, t) {
			d := apiDeploy(cur, true)
			d.Attached = true
			writeJSON(w, r, d)
			return
		}
		c := cur.Counts()
		http.Error(w, fmt.Sprintf("a deploy of %s to %d machines is %s (%d done): follow it with 'labseed deploy status', or stop it with 'labseed deploy cancel'",
			cur.Image, len(cur.Machines), cur.State, c[deploy.Done]), http.StatusConflict)
		return
	}
	if err := deploy.Save(s.cfg.Store.Dir(), t); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.deploy = t
	s.log.Info("deploy: new", "deploy", t.ID, "image", t.Image, "machines", len(t.Machines), "wave", t.Wave,
		"wave_timeout", t.WaveTimeout, "wake_tries", t.WakeTries, "at", t.At, "from", remoteIP(r))
	s.deployMu.Unlock()
	// Its first step now, so that the answer says how it started (the
	// machines marked, the first wave woken); the deploy loop goes on.
	s.deployStep(context.WithoutCancel(r.Context()))
	s.deployMu.Lock()
	writeJSON(w, r, apiDeploy(s.deploy, true))
}

// sameDeploy reports whether b asks for what a does (the command run again
// after a closed laptop): the image, the machines and the settings.
func sameDeploy(a, b *deploy.Task) bool {
	am, bm := a.MACs(), b.MACs()
	slices.Sort(am)
	slices.Sort(bm)
	return a.Image == b.Image && slices.Equal(am, bm) && a.Wave == b.Wave && a.WaveTimeout == b.WaveTimeout && a.WakeTries == b.WakeTries
}

func (s *Server) handleCancelDeploy(w http.ResponseWriter, r *http.Request) {
	s.deployMu.Lock()
	defer s.deployMu.Unlock()
	t := s.deploy
	if t == nil || t.Over() {
		http.Error(w, "no deploy is running", http.StatusConflict)
		return
	}
	unmark := t.Cancel(time.Now())
	if len(unmark) > 0 {
		if _, err := s.cfg.Hosts.Mark(mustParse(unmark), hosts.BootLocal, ""); err != nil {
			s.log.Error("deploy cancelled: the machines not booted yet are still marked for a clone", "err", err)
		}
	}
	if err := deploy.Save(s.cfg.Store.Dir(), t); err != nil {
		s.log.Error("deploy: save", "err", err)
	}
	s.log.Info("deploy: cancelled", "deploy", t.ID, "unmarked", len(unmark), "from", remoteIP(r))
	writeJSON(w, r, apiDeploy(t, true))
}

// mustParse parses MACs that a deploy task holds (written by
// net.HardwareAddr.String): bad ones are skipped.
func mustParse(ss []string) []net.HardwareAddr {
	var out []net.HardwareAddr
	for _, m := range ss {
		if hw, err := net.ParseMAC(m); err == nil {
			out = append(out, hw)
		}
	}
	return out
}

// pokeDeploy makes the deploy loop step now.
func (s *Server) pokeDeploy() {
	select {
	case s.deployPoke <- struct{}{}:
	default:
	}
}

// deployLoop runs the deploy task: a step at every change of a machine's
// record (at most ten a second), and every half second for its timers.
func (s *Server) deployLoop(ctx context.Context) error {
	if s.cfg.Hosts == nil {
		return nil
	}
	for {
		changed := s.tracker.Changed()
		s.deployStep(ctx)
		select {
		case <-ctx.Done():
			return s.deployLast()
		case <-time.After(100 * time.Millisecond):
		}
		select {
		case <-ctx.Done():
			return s.deployLast()
		case <-changed:
		case <-s.deployPoke:
		case <-time.After(400 * time.Millisecond):
		}
	}
}

// deployLast, at shutdown, waits for the HTTP server's last requests and
// saves what their reports changed in the deploy task: the records are
// forgotten with the process, and a machine that reported done while the
// print server stopped would stay "cloning" in the task that goes on
// after the restart.
func (s *Server) deployLast() error {
	<-s.httpDone
	s.deployMu.Lock()
	defer s.deployMu.Unlock()
	t := s.deploy
	if t == nil || t.Over() {
		return nil
	}
	before := t.Clone()
	if t.Follow(time.Now(), s.deployRecord) {
		s.logDeployChanges(before, t)
		if err := deploy.Save(s.cfg.Store.Dir(), t); err != nil {
			s.log.Error("deploy: save", "err", err)
		}
	}
	return nil
}

// deployStep moves the deploy task on: marks its machines when it starts,
// sends the wakes it asks for, logs what changed and saves it.
func (s *Server) deployStep(ctx context.Context) {
	s.deployMu.Lock()
	t := s.deploy
	if t == nil || t.Over() {
		s.deployMu.Unlock()
		return
	}
	before := t.Clone()
	now := time.Now()
	acts := t.Step(now, s.deployRecord)
	if acts.Start {
		s.log.Info("deploy: started", "deploy", t.ID, "image", t.Image, "machines", len(t.Machines))
		if _, err := s.cfg.Hosts.Mark(mustParse(t.MACs()), hosts.BootClone, t.Image); err != nil {
			t.Fail(now, fmt.Errorf("marking the machines for a clone: %w", err))
			acts.Wake = nil
			s.log.Error("deploy: failed", "deploy", t.ID, "err", err)
		}
	}
	s.logDeployChanges(before, t)
	if acts.Changed {
		if err := deploy.Save(s.cfg.Store.Dir(), t); err != nil {
			s.log.Error("deploy: save", "err", err)
		}
	}
	id := t.ID
	s.deployMu.Unlock()
	if len(acts.Wake) == 0 {
		return
	}
	res, err := s.wakeMACs(ctx, mustParse(acts.Wake))
	msg := ""
	if err != nil {
		msg = err.Error()
		s.log.Error("deploy: wake", "machines", len(acts.Wake), "err", err)
	} else {
		s.log.Info("deploy: woken", "machines", len(acts.Wake), "macs", strings.Join(acts.Wake[:min(len(acts.Wake), 16)], " "),
			"interface", res.Interface, "broadcast", res.Broadcast, "raw", res.Raw)
	}
	s.deployMu.Lock()
	if s.deploy != nil && s.deploy.ID == id && s.deploy.WakeError != msg {
		s.deploy.WakeError = msg
		if err := deploy.Save(s.cfg.Store.Dir(), s.deploy); err != nil {
			s.log.Error("deploy: save", "err", err)
		}
	}
	s.deployMu.Unlock()
}

// deployRecord is a machine's lifecycle record, for the deploy task.
func (s *Server) deployRecord(mac string) (lifecycle.Record, bool) {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return lifecycle.Record{}, false
	}
	return s.tracker.Get(hw)
}

// logDeployChanges logs the machines of t that changed state since
// before, and the task's end.
func (s *Server) logDeployChanges(before, t *deploy.Task) {
	for i, m := range t.Machines {
		if i >= len(before.Machines) || before.Machines[i].State == m.State || m.State == deploy.Woken {
			continue
		}
		lvl := s.log.Info
		if m.State == deploy.Failed || m.State == deploy.NeverBooted {
			lvl = s.log.Warn
		}
		lvl("deploy: machine "+string(m.State), "deploy", t.ID, "mac", m.MAC, "host", m.Hostname, "woken", m.Woken, "step", m.Step, "err", m.Error)
	}
	if t.Over() && !before.Over() {
		c := t.Counts()
		s.log.Info("deploy: "+string(t.State), "deploy", t.ID, "image", t.Image, "done", c[deploy.Done],
			"failed", c[deploy.Failed], "never_booted", c[deploy.NeverBooted], "err", t.Error)
	}
}

// deploySummary is the current or last deploy without its machines, for
// the lab status; nil when none.
func (s *Server) deploySummary() *api.Deploy {
	s.deployMu.Lock()
	defer s.deployMu.Unlock()
	if s.deploy == nil {
		return nil
	}
	d := apiDeploy(s.deploy, false)
	return &d
}

// apiDeploy is t on the wire, with its machines when machines is set.
func apiDeploy(t *deploy.Task, machines bool) api.Deploy {
	c := t.Counts()
	d := api.Deploy{ID: t.ID, Image: t.Image, State: string(t.State), Wave: t.Wave, WaveTimeout: t.WaveTimeout.Seconds(),
		WakeTries: t.WakeTries, At: t.At, Created: t.Created, Started: t.Started, Ended: t.Ended,
		Error: cleanErr(t.Error), WakeError: cleanErr(t.WakeError),
		Counts: api.DeployCounts{Waiting: c[deploy.Waiting], Woken: c[deploy.Woken], Booted: c[deploy.Booted], Cloning: c[deploy.Cloning],
			Done: c[deploy.Done], Failed: c[deploy.Failed], NeverBooted: c[deploy.NeverBooted], Cancelled: c[deploy.Cancelled]}}
	if machines {
		d.Machines = make([]api.DeployMachine, 0, len(t.Machines))
		for _, m := range t.Machines {
			d.Machines = append(d.Machines, api.DeployMachine{MAC: m.MAC, Hostname: m.Hostname, IP: m.IP, State: string(m.State),
				Woken: m.Woken, FirstWoken: m.FirstWoken, LastWoken: m.LastWoken, Booted: m.Booted, Ended: m.Ended,
				Step: clean(m.Step), Error: cleanErr(m.Error)})
		}
	}
	return d
}
