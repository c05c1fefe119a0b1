package peer

import (
	"time"

	"github.com/labseed/labseed/gossip"
	"github.com/labseed/labseed/swarm"
)

// Progress is what the workstation's screen shows.
type Progress struct {
	Phase               gossip.Phase
	Image               string
	Chunks, ChunksTotal int
	// Percent is the share of the payload verified and applied.
	Percent               float64
	Downloaded, Total     int64 // payload bytes verified / in all
	DownRate, UpRate      float64
	Peers                 int
	ETA                   time.Duration
	FromServer, FromPeers int64
	LabDone, LabHosts     int // workstations finished / known
	HashFailures          int64
	// Sync is true when the run syncs a tree (Config.Sync): ChunksLocal
	// chunks were found on the disk, ChunksFetched applied from the lab,
	// FilesRemoved paths removed that the image does not hold (counted
	// once every chunk is applied).
	Sync                       bool
	ChunksLocal, ChunksFetched int
	FilesRemoved               int64
}

// snapshot is a run at one moment: everything its status, its progress
// and its ETA are computed from (statusOf, progressOf), so that they can
// be tested without a lab.
type snapshot struct {
	at, started time.Time
	phase       gossip.Phase
	image       string // NAME-vVERSION
	torrentAddr string
	mac         string // Config.MAC
	err         string // why the run failed (phase failed)
	// chunks applied of chunksTotal; verified payload bytes of payload.
	chunks, chunksTotal int
	verified, payload   int64
	traffic             swarm.Traffic
	// prev is the traffic at the previous snapshot, which the rates are
	// measured from.
	prev sample
	// members is the lab as the gossip shows it (LabDone, LabHosts).
	members []gossip.Member
	// sync: the run syncs a tree; local chunks were found on the disk,
	// fetched applied from the lab, removed paths removed.
	sync           bool
	local, fetched int
	removed        int64
}

// sample is the traffic at one moment.
type sample struct {
	at                 time.Time
	received, uploaded int64
}

// sample returns the traffic of s, for the next snapshot's rates.
func (s snapshot) sample() sample {
	return sample{at: s.at, received: s.traffic.Received(), uploaded: s.traffic.Uploaded}
}

// rates returns the download and upload rates in bytes/s since s.prev (0
// for the first snapshot).
func (s snapshot) rates() (down, up float64) {
	dt := s.at.Sub(s.prev.at).Seconds()
	if s.prev.at.IsZero() || dt <= 0 {
		return 0, 0
	}
	return float64(s.traffic.Received()-s.prev.received) / dt, float64(s.traffic.Uploaded-s.prev.uploaded) / dt
}

// percent is the share of the work done: the mean of the payload verified
// and the chunks applied.
func (s snapshot) percent() float64 {
	return 100 * (float64(s.verified)/float64(s.payload) + float64(s.chunks)/float64(s.chunksTotal)) / 2
}

// eta is the time left to verify the payload at the mean rate since the
// run started; 0 (unknown) before the first piece and once all are in.
func (s snapshot) eta() time.Duration {
	el := s.at.Sub(s.started).Seconds()
	if s.verified <= 0 || s.verified >= s.payload {
		return 0
	}
	return time.Duration(float64(s.payload-s.verified) / (float64(s.verified) / el) * float64(time.Second))
}

// statusOf is the status s gossips to the lab.
func statusOf(s snapshot) gossip.Status {
	down, up := s.rates()
	tr := s.traffic
	return gossip.Status{
		Role: gossip.RolePeer, Phase: s.phase, Image: s.image,
		TorrentAddr: s.torrentAddr, Percent: s.percent(),
		Chunks: uint32(s.chunks), ChunksTotal: uint32(s.chunksTotal),
		DownRate: uint64(down), UpRate: uint64(up),
		FromServer: uint64(tr.FromServer + tr.FromWebSeeds), FromPeers: uint64(tr.FromPeers), Uploaded: uint64(tr.Uploaded),
		Peers: uint16(tr.Peers), ETA: uint32(s.eta().Seconds()), HashFailures: uint32(tr.HashFailures),
		StartedUnix: s.started.Unix(), UpdatedUnix: s.at.Unix(), Err: s.err, MAC: s.mac,
		Sync: s.sync, ChunksLocal: uint32(s.local), ChunksFetched: uint32(s.fetched), FilesRemoved: uint64(max(s.removed, 0)),
	}
}

// progressOf is the progress s shows on the workstation's screen.
func progressOf(s snapshot) Progress {
	down, up := s.rates()
	tr := s.traffic
	p := Progress{Phase: s.phase, Image: s.image, Chunks: s.chunks, ChunksTotal: s.chunksTotal, Percent: s.percent(),
		Downloaded: s.verified, Total: s.payload, DownRate: down, UpRate: up, Peers: tr.Peers, ETA: s.eta(),
		FromServer: tr.FromServer + tr.FromWebSeeds, FromPeers: tr.FromPeers, HashFailures: tr.HashFailures,
		Sync: s.sync, ChunksLocal: s.local, ChunksFetched: s.fetched, FilesRemoved: s.removed}
	for _, m := range s.members {
		if m.Status.Role == gossip.RolePeer {
			p.LabHosts++
			if m.Status.Phase == gossip.PhaseSeeding || m.Status.Phase == gossip.PhaseDone {
				p.LabDone++
			}
		}
	}
	return p
}

// labDone reports whether every live workstation among members has
// finished (or failed): a lingering agent may stop seeding then.
func labDone(members []gossip.Member) bool {
	for _, m := range members {
		if m.Status.Role != gossip.RolePeer || m.State != gossip.StateAlive {
			continue
		}
		switch m.Status.Phase {
		case gossip.PhaseSeeding, gossip.PhaseDone, gossip.PhaseFailed:
		default:
			return false
		}
	}
	return true
}
