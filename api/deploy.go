package api

import (
	"context"
	"time"
)

// Paths of Wake-on-LAN and deploy tasks. PathWake, POST PathDeploy and
// PathDeployCancel need the admin key (AdminAuth); GET PathDeploy does
// not. The print server answers 404 to them when it has no hosts table.
const (
	PathWake         = "/api/v1/wake"          // POST WakeRequest: WakeResult
	PathDeploy       = "/api/v1/deploy"        // GET: Deploy, the current or last one (404: none yet); POST DeployRequest: Deploy (409: another one runs)
	PathDeployCancel = "/api/v1/deploy/cancel" // POST: Deploy, cancelled (409: none runs)
)

// WakeRequest asks the print server to wake machines: every host of the
// table (All), those of a group (Group), or MACs (any machine of the lab
// network, in the table or not); one of the three.
type WakeRequest struct {
	MACs  []string `json:"macs,omitempty"`
	All   bool     `json:"all,omitempty"`
	Group string   `json:"group,omitempty"`
}

// WakeResult says what the print server sent.
type WakeResult struct {
	// Woken is the number of machines the magic packets were sent to.
	Woken int `json:"woken"`
	// Interface is the lab interface they left from; Broadcast the
	// directed broadcast address:port the UDP datagrams went to.
	Interface string `json:"interface"`
	Broadcast string `json:"broadcast"`
	// Raw is true when the raw 0x0842 Ethernet frames were sent too;
	// RawError says why not otherwise.
	Raw      bool   `json:"raw"`
	RawError string `json:"raw_error,omitempty"`
	// Packets is the number of packets sent, both kinds, repeats
	// included.
	Packets int `json:"packets"`
}

// DeployRequest starts a deploy: the machines (All, Group or MACs, one of
// them; MACs of the table) re-imaged with Image, woken in waves.
type DeployRequest struct {
	Image string   `json:"image"`
	MACs  []string `json:"macs,omitempty"`
	All   bool     `json:"all,omitempty"`
	Group string   `json:"group,omitempty"`
	// Wave is the most machines woken but not yet booted at once; 0: 10.
	Wave int `json:"wave,omitempty"`
	// WaveTimeout is how long, in seconds, a woken machine has to boot
	// before it is woken again; 0: 90.
	WaveTimeout float64 `json:"wave_timeout_seconds,omitempty"`
	// WakeTries is how many times a machine is woken before it counts as
	// never booted; 0: 3.
	WakeTries int `json:"wake_tries,omitempty"`
	// At is when the deploy starts; zero: at once.
	At time.Time `json:"at,omitzero"`
}

// States of a Deploy.
const (
	DeployScheduled = "scheduled" // waiting for its start (At)
	DeployRunning   = "running"
	DeployFinished  = "finished"  // every machine done, failed or never booted
	DeployCancelled = "cancelled" // by "labseed deploy cancel"
	DeployFailed    = "failed"    // it could not start (Error)
)

// States of a DeployMachine, in the order of a deploy.
const (
	MachineWaiting     = "waiting"      // its wave has not come
	MachineWoken       = "woken"        // woken (Woken times), not heard of since
	MachineBooted      = "booted"       // it network-booted
	MachineCloning     = "cloning"      // its clone runs
	MachineDone        = "done"         // its clone reported done
	MachineFailed      = "failed"       // its clone failed (Step, Error), or went silent
	MachineNeverBooted = "never-booted" // woken WakeTries times, never heard of
	MachineCancelled   = "cancelled"    // the deploy was cancelled before it booted
)

// Deploy is a deploy task as the print server keeps it.
type Deploy struct {
	ID    string `json:"id"`
	Image string `json:"image"`
	// State is one of the Deploy constants.
	State string `json:"state"`
	// Wave, WaveTimeout (seconds) and WakeTries are its settings.
	Wave        int     `json:"wave"`
	WaveTimeout float64 `json:"wave_timeout_seconds"`
	WakeTries   int     `json:"wake_tries"`
	// At is when it was to start (left out: at once); Created, Started
	// and Ended when it was made, started and ended.
	At      time.Time `json:"at,omitzero"`
	Created time.Time `json:"created"`
	Started time.Time `json:"started,omitzero"`
	Ended   time.Time `json:"ended,omitzero"`
	// Error says why it failed (DeployFailed); WakeError why the last
	// magic packets could not be sent. Left out when none.
	Error     string `json:"error,omitempty"`
	WakeError string `json:"wake_error,omitempty"`
	// Counts are its machines by state.
	Counts DeployCounts `json:"counts"`
	// Machines are its machines, in the order they are woken; left out
	// in LabStatus.
	Machines []DeployMachine `json:"machines,omitempty"`
	// Attached is set in the answer to a DeployRequest when the same
	// deploy (image, machines and settings) was already running: the
	// request follows it instead of starting another.
	Attached bool `json:"attached,omitempty"`
}

// DeployCounts are the machines of a deploy by state.
type DeployCounts struct {
	Waiting     int `json:"waiting"`
	Woken       int `json:"woken"`
	Booted      int `json:"booted"`
	Cloning     int `json:"cloning"`
	Done        int `json:"done"`
	Failed      int `json:"failed"`
	NeverBooted int `json:"never_booted"`
	Cancelled   int `json:"cancelled"`
}

// DeployMachine is one machine of a deploy.
type DeployMachine struct {
	MAC      string `json:"mac"`
	Hostname string `json:"hostname,omitempty"`
	IP       string `json:"ip,omitempty"`
	// State is one of the Machine constants.
	State string `json:"state"`
	// Woken is how many times it was woken; FirstWoken and LastWoken the
	// first and the last time.
	Woken      int       `json:"woken"`
	FirstWoken time.Time `json:"first_woken,omitzero"`
	LastWoken  time.Time `json:"last_woken,omitzero"`
	// Booted is when it was first seen booted (its first network-boot
	// event or clone report since the deploy started); Ended when it
	// became done, failed, never booted or cancelled.
	Booted time.Time `json:"booted,omitzero"`
	Ended  time.Time `json:"ended,omitzero"`
	// Step and Error say where and why its clone failed.
	Step  string `json:"step,omitempty"`
	Error string `json:"error,omitempty"`
}

// Over reports whether the deploy has ended.
func (d *Deploy) Over() bool {
	return d.State == DeployFinished || d.State == DeployCancelled || d.State == DeployFailed
}

// Wake wakes machines; it returns what was sent.
func (c *Client) Wake(ctx context.Context, req WakeRequest) (WakeResult, error) {
	var res WakeResult
	return res, c.do(ctx, "POST", PathWake, req, &res)
}

// StartDeploy starts a deploy, or follows the same one if it runs
// already (Deploy.Attached).
func (c *Client) StartDeploy(ctx context.Context, req DeployRequest) (*Deploy, error) {
	var d Deploy
	return &d, c.do(ctx, "POST", PathDeploy, req, &d)
}

// Deploy returns the current deploy, or the last one.
func (c *Client) Deploy(ctx context.Context) (*Deploy, error) {
	var d Deploy
	return &d, c.do(ctx, "GET", PathDeploy, nil, &d)
}

// CancelDeploy cancels the running deploy.
func (c *Client) CancelDeploy(ctx context.Context) (*Deploy, error) {
	var d Deploy
	return &d, c.do(ctx, "POST", PathDeployCancel, nil, &d)
}
