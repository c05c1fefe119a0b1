package clone

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/gossip"
	"github.com/labseed/labseed/peer"
)

const (
	// stagingDir is the agent's staging directory in the target: its
	// record of the image being extracted there (chunker.StateImage)
	// tells an interrupted download of this image.
	stagingDir = chunker.StateDirName
	// configuringMarker is created in the new root when its configuration
	// starts and removed when the clone is done: a tree that has it was
	// changed after the download and is not resumed.
	configuringMarker = ".labseed-configuring"
)

// manifestID returns the ID of a signed manifest as served.
func manifestID(b []byte) (string, error) {
	m, err := chunker.DecodeManifest(b)
	if err != nil {
		return "", err
	}
	return m.ID(), nil
}

// fetch is the fetch step: it starts the agent on the mounted root and
// returns once the image is extracted, leaving the agent seeding to the
// rest of the lab; seed waits for it.
func (c *cloner) fetch(ctx context.Context) error {
	extracted := make(chan struct{})
	var once sync.Once
	var lastLine time.Time
	pc := c.cfg.Config
	pc.Target, pc.Image = c.cfg.Mountpoint, c.image
	if pc.Name == "" {
		pc.Name = c.id.Hostname
	}
	pc.Progress = func(p peer.Progress) {
		if p.Phase == gossip.PhaseSeeding || p.Phase == gossip.PhaseDone {
			once.Do(func() {
				c.agentMu.Lock()
				c.imageVersion = p.Image
				c.agentMu.Unlock()
				close(extracted)
			})
		}
		if c.cfg.Progress != nil {
			c.cfg.Progress(p)
		} else if time.Since(lastLine) >= 10*time.Second {
			lastLine = time.Now()
			c.say("fetch: %s %s %.1f%%, %d peers", p.Image, p.Phase, p.Percent, p.Peers)
		}
	}
	a, err := peer.New(pc)
	if err != nil {
		return err
	}
	actx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	c.agentMu.Lock()
	c.agentDone, c.stopAgent = done, cancel
	c.agentMu.Unlock()
	go func() { done <- a.Run(actx) }()
	select {
	case <-extracted:
		c.log.Info("image extracted", "target", c.cfg.Mountpoint)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case err := <-done:
		c.agentMu.Lock()
		c.agentDone, c.agentErr = nil, err
		c.agentMu.Unlock()
		cancel()
		if err == nil { // done before a progress report said so
			err = errors.New("the agent returned without extracting the image")
		}
		return err
	}
}

// seed is the seed step: it waits for the agent, which keeps seeding to
// the rest of the lab until every workstation is done or Config.Linger
// passes, then removes its staging data.
func (c *cloner) seed(ctx context.Context) error {
	if c.agentRunning() && c.cfg.Linger >= 0 {
		linger := c.cfg.Linger
		if linger == 0 {
			linger = peer.DefaultLinger
		}
		c.say("seeding to the rest of the lab until it is done, up to %s", linger)
	}
	c.waitAgent()
	if c.agentErr != nil {
		return fmt.Errorf("the agent: %w", c.agentErr)
	}
	if err := os.Remove(filepath.Join(c.cfg.Mountpoint, configuringMarker)); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

func (c *cloner) agentRunning() bool {
	c.agentMu.Lock()
	defer c.agentMu.Unlock()
	return c.agentDone != nil
}

// waitAgent waits for the agent to return, if one runs, and keeps its error.
func (c *cloner) waitAgent() {
	c.agentMu.Lock()
	done := c.agentDone
	c.agentMu.Unlock()
	if done == nil {
		return
	}
	err := <-done
	c.agentMu.Lock()
	c.agentDone, c.agentErr = nil, err
	c.stopAgent()
	c.agentMu.Unlock()
}

// stopAgentNow cancels the agent, if one runs; its staging data stays for
// a resume.
func (c *cloner) stopAgentNow() {
	c.agentMu.Lock()
	defer c.agentMu.Unlock()
	if c.stopAgent != nil {
		c.stopAgent()
	}
}
