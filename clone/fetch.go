package clone

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/labseed/labseed/chunker"
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

// resolveImage makes the agent that fetches the image into the mount
// point, and resolves the image this clone installs: its signed manifest,
// verified, before the disk is touched.
func (c *cloner) resolveImage(ctx context.Context) error {
	var lastLine time.Time
	pc := c.cfg.Config
	pc.Target, pc.Image, pc.MinVersion = c.cfg.Mountpoint, c.image, c.id.MinVersion
	if pc.Name == "" {
		pc.Name = c.id.Hostname
	}
	pc.MAC = c.reportMAC // the print server joins the agent to this machine's record
	pc.Progress = func(p peer.Progress) {
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
	im, err := a.Resolve(ctx)
	if err != nil {
		return fmt.Errorf("the image: %w", err)
	}
	c.agent, c.agentCfg, c.resolved = a, pc, im
	c.log.Info("image resolved", "image", im.String(), "id", im.Manifest.ID())
	return nil
}

// fetch is the fetch step: the agent fetches the image into the mounted
// root and returns once it is extracted, leaving a session seeding to the
// rest of the lab; seed waits for it.
func (c *cloner) fetch(ctx context.Context) error {
	if c.sync {
		pc := c.agentCfg
		pc.Sync, pc.Keep = true, c.id.Keep
		a, err := peer.New(pc)
		if err != nil {
			return err
		}
		c.agent = a
	}
	s, err := c.agent.Fetch(ctx, c.resolved)
	if err != nil {
		return err
	}
	if r, ok := s.Synced(); ok {
		c.synced = &r
		c.say("synced: %d of %d chunks found on the disk, %d fetched; %d entries unchanged, %d written, %d removed",
			r.Local, r.Chunks, r.Fetched, r.Entries.Unchanged, r.Entries.Written, r.Entries.Removed)
	}
	c.log.Info("image extracted", "target", c.cfg.Mountpoint)
	if c.cfg.afterFetch != nil {
		if err := c.cfg.afterFetch(c.cfg.Mountpoint); err != nil {
			s.Close()
			return err
		}
	}
	actx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	c.agentMu.Lock()
	c.agentDone, c.stopAgent = done, cancel
	c.agentMu.Unlock()
	go func() { done <- s.Seed(actx) }()
	return nil
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
