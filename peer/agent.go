package peer

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/swarm"
)

// Agent is a workstation agent. Create it with New; run it with Run, or
// phase by phase: Resolve the image, Fetch it, Seed it (Session.Seed).
type Agent struct {
	cfg Config
	log *slog.Logger
	api *api.Client
}

// New validates cfg.
func New(cfg Config) (*Agent, error) {
	if cfg.Server == "" {
		return nil, errors.New("peer: no print server address")
	}
	cfg.Server = api.WithDefaultPort(cfg.Server)
	if cfg.Target == "" {
		return nil, errors.New("peer: no target directory")
	}
	if fi, err := os.Stat(cfg.Target); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("peer: target %s is not a directory", cfg.Target)
	}
	if !cfg.Insecure && (len(cfg.PublicKey) != ed25519.PublicKeySize || len(cfg.LabKey) != 32) {
		return nil, ErrNoKeys
	}
	if cfg.MAC != "" {
		mac, err := api.ParseMAC(cfg.MAC)
		if err != nil {
			return nil, fmt.Errorf("peer: MAC: %w", err)
		}
		cfg.MAC = mac.String()
	}
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(cfg.Target, chunker.StateDirName)
	}
	if cfg.Linger == 0 {
		cfg.Linger = DefaultLinger
	}
	if cfg.WebSeedAfter <= 0 {
		cfg.WebSeedAfter = 15 * time.Second
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = swarm.DefaultMaxConns
	}
	if cfg.ApplyWorkers <= 0 {
		cfg.ApplyWorkers = 2
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Agent{cfg: cfg, log: log.With("component", "peer"), api: api.NewClient(cfg.Server)}
	// One value per run: the print server tells a restarted workstation
	// (whose previous run's deals were lost) from one that does not read
	// its deals (api.HeaderDealSession), and the default gossip name ends
	// with its first 4 digits (Agent.start).
	var run [8]byte
	rand.Read(run[:]) // crypto/rand.Read never fails
	a.api.Session = hex.EncodeToString(run[:])
	if cfg.HTTPClient != nil {
		a.api.HTTP = cfg.HTTPClient
	} else if ip := net.ParseIP(cfg.ListenIP); ip != nil && !ip.IsUnspecified() {
		// The print server limits and confirms deals per address: talk to
		// it from the agent's own (several agents may share a machine).
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 30 * time.Second}).DialContext
		a.api.HTTP = &http.Client{Timeout: 30 * time.Second, Transport: tr}
	}
	return a, nil
}

// Run resolves the image, fetches it and seeds it until the lab is done:
// Resolve, Fetch and Session.Seed in one. It returns nil only when the
// target holds the verified image. Cancelled, it returns the context's
// error and keeps the staging data for a resume.
func (a *Agent) Run(ctx context.Context) error {
	im, err := a.Resolve(ctx)
	if err != nil {
		return err
	}
	s, err := a.Fetch(ctx, im)
	if err != nil {
		return err
	}
	return s.Seed(ctx)
}

// advertiseIP is the address other nodes reach this one at: the listen
// address if one was given, otherwise the local address of a connection to
// the print server.
func (a *Agent) advertiseIP() string {
	if ip := a.cfg.ListenIP; ip != "" && ip != "0.0.0.0" && ip != "::" {
		return ip
	}
	c, err := net.DialTimeout("tcp", a.cfg.Server, 5*time.Second)
	if err != nil {
		return "127.0.0.1"
	}
	defer c.Close()
	return c.LocalAddr().(*net.TCPAddr).IP.String()
}

func bindAddr(ip string) string {
	if ip == "" {
		return "0.0.0.0"
	}
	return ip
}

// freeByDefault is a port of Config as swarm and gossip take it: the
// agent's default (0) is a free port, which they call -1.
func freeByDefault(port int) int {
	if port == 0 {
		return -1
	}
	return port
}
