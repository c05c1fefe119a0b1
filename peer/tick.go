package peer

import (
	"context"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/labseed/labseed/swarm"
)

// The lab's status gossip may cost this workstation statusBudgetShare of
// the rate its port has shown, received bytes over the time since the
// session started (gossip.Node.SetStatusBudget), once statusBudgetAfter
// has passed. Before that, and in a sync (its chunks mostly read from its
// own disk, its port nearly idle, its run short: its received bytes say
// nothing of the port), statuses go out once a second. On a 100 Mbit/s
// port (about 10 MB/s received) that is once a second in a lab of up to
// about 90 workstations (every 1.5 s at 100, 4.6 s at 300); in the lab
// bench's lab of 48 on 2 Mbit/s ports, about every 30 s instead of the
// 7-8 % of each port that statuses once a second took.
const (
	statusBudgetShare = 0.02
	statusBudgetAfter = 8 * time.Second
)

// statusBudget is the bytes per second the lab's status gossip may cost
// the workstation of s; 0 for no budget.
func statusBudget(s snapshot) float64 {
	el := s.at.Sub(s.started)
	if el < statusBudgetAfter || s.sync {
		return 0
	}
	return statusBudgetShare * float64(s.traffic.Received()) / el.Seconds()
}

// startTicking ticks once a second until the function it returns is
// called (which waits for the last tick to end).
func (s *Session) startTicking() func() error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.tick()
			}
		}
	}()
	return func() error {
		cancel()
		<-done
		return nil
	}
}

// tick refreshes, once a second and at every phase change, what the
// session shows and what it steers by: the web-seed fallback, the priority
// window, the torrent's peers, the trace, the gossiped status and the
// progress report.
func (s *Session) tick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	m := s.im.Manifest
	chunks, _ := s.ap.Progress()
	verified, remaining := s.chunks.verifiedBytes(), s.chunks.remaining()
	// Piece data arriving is progress too: in a large lab on slow ports a
	// piece takes many seconds to come from a peer sharing its upload
	// with ten others, and the first pieces are in few hands (at N = 48
	// on 4 Mbit/s ports, 7 to 12 workstations added the web seed within
	// 15 s of their start, each then taking the whole image from the
	// print server's port over HTTP).
	progress := verified + s.fed.Load()
	// So is the print server answering a deal, even with "nothing now":
	// it is reachable and pacing its port for the lab (package deal), and
	// the web seed would only take that port from the deals. At N = 90 on
	// 1 Mbit/s ports the port deals a piece every 2 s, most workstations
	// wait minutes for their first bytes, and every one of them added the
	// web seed after 15 s: the lab stood still at 4 % or less for 13
	// minutes (docs/lab-bench.md, "the web-seed stampede"). The
	// web seed stays for what it is for: pieces claimed by peers that do
	// not deliver (not asked of the print server, so no answers).
	progress += s.answered.Load()
	if s.t != nil {
		st := s.t.Stats()
		progress += st.BytesReadUsefulData.Int64()
	}
	stalled := s.stall.update(now, progress, s.t != nil)
	if s.t != nil && webSeedDue(&s.a.cfg, s.webSeed, stalled, remaining) {
		s.a.log.Warn("no progress over BitTorrent, using the print server's web seed", "stalled", stalled.Round(time.Second))
		s.t.AddWebSeeds([]string{swarm.WebSeedURL("http://" + s.im.lab.HTTPAddr)})
		s.webSeed = true
	}
	if s.meter == nil {
		s.meter = swarm.NewMeter(s.im.lab.TorrentAddr)
	}
	if s.t != nil {
		s.meter.Update(s.t)
		fed := s.fed.Load()
		s.meter.AddFromServer(fed - s.fedCounted)
		s.fedCounted = fed
		s.chunks.boost(s.t)
		s.addPeers(now)
		s.trace.trace(now, now.Sub(s.started), s.client.WriteStatus)
		if remaining == 0 && s.downloadedAt.IsZero() {
			s.downloadedAt = now
			s.a.log.Info("every piece verified", "seconds", now.Sub(s.started).Seconds(), "chunks_applied", chunks, "chunks", len(m.Chunks))
		}
	}
	snap := snapshot{
		at: now, started: s.started, phase: s.phase, image: s.im.String(), torrentAddr: s.torrentAddr, mac: s.a.cfg.MAC, err: s.err,
		chunks: chunks, chunksTotal: len(m.Chunks), verified: verified, payload: m.PayloadBytes,
		traffic: s.meter.Traffic(), prev: s.prev,
		sync: s.ap.Syncing(), local: len(s.local), fetched: int(s.fetched.Load()), removed: s.ap.Stats().Removed,
	}
	s.prev = snap.sample()
	s.node.SetStatus(statusOf(snap))
	s.node.SetStatusBudget(statusBudget(snap))
	if s.a.cfg.Progress != nil {
		snap.members = s.node.Members()
		s.a.cfg.Progress(progressOf(snap))
	}
}

// addPeers hands the torrent addresses of lab members to the client
// (discovery). Called with s.mu held.
func (s *Session) addPeers(now time.Time) {
	var add []torrent.PeerInfo
	for _, a := range s.peers.toAdd(s.node.Members(), now) {
		add = append(add, torrent.PeerInfo{Addr: tcpAddr(a), Source: torrent.PeerSourceDirect})
	}
	if len(add) > 0 {
		s.t.AddPeers(add)
	}
}
