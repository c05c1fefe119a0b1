package peer

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/gossip"
	"github.com/labseed/labseed/internal/bufpool"
	"github.com/labseed/labseed/swarm"
	"golang.org/x/time/rate"
)

// syncBlockSize is the block a syncing workstation asks its peers for (a
// full clone asks for swarm.BlockSize). A sync fetches a few changed
// chunks from a lab that holds them all, so nearly its whole fetch is
// anacrolix's end game: a connection takes over ("steals") another's
// request and cancels it there, but the block is mostly in the sender's
// socket already and arrives twice. With 256 KiB blocks that was 7.4-10.5
// blocks per workstation, 0.15-0.22 of the changed bytes
// (docs/lab-bench.md, reimage); a steal wastes at most a block. The full
// clone's throughput needs large blocks (swarm.BlockSize); a sync's few
// megabytes from many peers at once do not.
const syncBlockSize = 32 << 10

// blocks is the block a workstation asks its peers for and the most of
// them it keeps requested from one peer: syncBlockSize in a sync (and
// swarm.MaxRequests of them, as measured); swarm.CrowdBlockSize in a lab
// where it cannot be connected to every other workstation
// (swarm.Crowded), where anacrolix closes connections to make room for
// new ones and a block takes long to cross a port shared by maxConns
// connections; else swarm.BlockSize. workstations counts this one.
func blocks(sync bool, workstations, maxConns int) (size, requests int) {
	switch {
	case sync:
		return syncBlockSize, swarm.MaxRequests
	case swarm.Crowded(workstations, maxConns):
		return swarm.CrowdBlockSize, swarm.CrowdMaxRequests
	}
	return swarm.BlockSize, swarm.MaxRequests
}

// Session is an image fetched into the target by Agent.Fetch, which the
// agent keeps seeding to the rest of the lab: the staging data, the
// torrent client, the gossip node, and the status they make, gossiped and
// given to Config.Progress once a second until the session ends. End it
// with Seed, or with Close.
type Session struct {
	a           *Agent
	im          *Image
	ap          *chunker.Applier
	chunks      *chunkTracker
	client      *torrent.Client
	node        *gossip.Node
	t           *torrent.Torrent
	name        string // in the lab (gossip)
	payload     string // the staged payload file
	torrentAddr string
	started     time.Time
	downLimit   *rate.Limiter // the client's DownloadLimiter, shared by feed
	fed         atomic.Int64  // payload bytes dealt by the print server, counted as they arrive (feed)
	fedPiece    atomic.Bool   // a whole dealt piece has arrived (feed)
	answered    atomic.Int64  // deal requests the print server answered, "nothing now" included (feed)
	claims      claims        // what the other workstations claim (feed)
	writeErr    chan error    // the first error writing a piece from a peer or web seed
	local       map[int]bool  // a sync's chunks found on the disk (localChunks); read-only once started
	localMu     sync.Mutex
	localBad    map[int]bool // local chunks whose staged bytes failed their hash since
	fetched     atomic.Int64 // chunks applied that were not local
	chunkBufs   bufpool.Pool // compressed chunks read from staging (apply)

	mu           sync.Mutex // guards what follows, which tick refreshes
	phase        gossip.Phase
	err          string // why the run failed
	meter        *swarm.Meter
	prev         sample // the traffic at the last tick
	fedCounted   int64  // fed at the last tick
	stall        stallWatch
	webSeed      bool // the web seed was added
	peers        discovery
	trace        tracer
	downloadedAt time.Time

	closers   []func() error // what start opened, in order
	closeOnce sync.Once
}

// Fetch joins the lab and fetches im (from Resolve) into Config.Target:
// it takes the pieces the print server deals it and the others from the
// workstations, and applies each chunk as soon as its pieces are verified.
// It returns once the target holds the verified image, with a Session that
// keeps seeding to the lab: call its Seed (or Close). On error, or when
// ctx ends (then ctx's error), nothing is left running and the staging
// data stays in Config.StateDir: a Fetch of the same image later resumes.
func (a *Agent) Fetch(ctx context.Context, im *Image) (*Session, error) {
	s, err := a.start(ctx, im)
	if err != nil {
		return nil, err
	}
	if err := s.download(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// start opens the staging data, starts the torrent client and the gossip
// node, joins the lab and adds the torrent. On error it leaves nothing
// open.
func (a *Agent) start(ctx context.Context, im *Image) (_ *Session, err error) {
	m := im.Manifest
	info, err := im.mi.UnmarshalInfo()
	if err != nil {
		return nil, fmt.Errorf("peer: torrent: %w", err)
	}
	s := &Session{a: a, im: im, writeErr: make(chan error, 1)}
	s.chunkBufs.Max = a.cfg.ApplyWorkers
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.ap, err = chunker.NewApplier(m, chunker.ApplyConfig{Target: a.cfg.Target, StateDir: a.cfg.StateDir, Logger: a.log,
		Sync: a.cfg.Sync, Keep: a.cfg.Keep}); err != nil {
		return nil, fmt.Errorf("peer: %w", err)
	}
	s.closers = append(s.closers, s.ap.Close)
	tdir := filepath.Join(a.cfg.StateDir, "torrent")
	if err := os.MkdirAll(tdir, 0o700); err != nil {
		return nil, fmt.Errorf("peer: staging: %w", err)
	}
	bitmap, err := swarm.OpenBitmap(filepath.Join(tdir, "pieces.bitmap"), info.NumPieces())
	if err != nil {
		return nil, fmt.Errorf("peer: staging: %w", err)
	}
	s.payload = filepath.Join(tdir, info.Name)
	s.local = map[int]bool{}
	if s.ap.Syncing() {
		if s.local, err = s.localChunks(bitmap, info.NumPieces()); err != nil {
			bitmap.Close()
			return nil, err
		}
	}
	s.chunks = newChunkTracker(m, info.NumPieces(), func(p int) bool {
		c, known := bitmap.Get(p)
		return known && c
	}, s.ap.Applied, func(c int) bool { return s.local[c] })
	if applied, _ := s.ap.Progress(); applied > 0 || s.chunks.verified > 0 {
		a.log.Info("resuming", "image", m.Name, "verified_bytes", s.chunks.verified, "payload_bytes", m.PayloadBytes,
			"chunks_applied", applied, "chunks", len(m.Chunks))
	}
	storage := swarm.NewStorage()
	s.closers = append(s.closers, storage.Close)
	ih := metainfo.NewHashFromHex(m.InfoHash)
	files := swarm.Files{Path: s.payload, Completion: bitmap, OnPiece: s.chunks.pieceDone}
	storage.Register(ih, files) // the storage closes the bitmap from now on

	adv := a.advertiseIP()
	s.name = a.cfg.Name
	if s.name == "" {
		h, _ := os.Hostname()
		// A name of this run's: a workstation restarted mid-clone (power
		// cut, reset) joins as a new member. With its old name, memberlist
		// would refuse it as a conflict with its own stale entry until that
		// entry is declared dead and reaped (20 s to over a minute), and
		// the print server would refuse its deals as a stranger's meanwhile.
		s.name = h + "-" + adv + "-" + a.api.Session[:4]
	}
	s.downLimit = swarm.NewLimiter(a.cfg.Rate)
	if s.client, err = swarm.NewClient(swarm.Config{
		ListenIP: a.cfg.ListenIP, Port: freeByDefault(a.cfg.TorrentPort), UploadRate: a.cfg.Rate, DownloadLimiter: s.downLimit,
		Storage: storage, Logger: a.log, MaxConns: a.cfg.MaxConns,
	}); err != nil {
		return nil, fmt.Errorf("peer: torrent client: %w", err)
	}
	s.closers = append(s.closers, func() error { s.client.Close(); return nil })
	if s.node, err = gossip.New(gossip.Config{
		Name: s.name, BindAddr: bindAddr(a.cfg.ListenIP), BindPort: freeByDefault(a.cfg.GossipPort), AdvertiseAddr: adv,
		Key: a.cfg.LabKey, Insecure: a.cfg.Insecure, Local: a.cfg.Local, Logger: a.log,
		Seeds: []string{im.lab.GossipAddr},
	}); err != nil {
		return nil, fmt.Errorf("peer: gossip: %w", err)
	}
	s.closers = append(s.closers, s.node.Close)
	s.torrentAddr = net.JoinHostPort(adv, strconv.Itoa(s.client.LocalPort()))
	s.peers = discovery{self: s.torrentAddr, server: im.lab.TorrentAddr}
	s.trace = tracer{dir: a.cfg.TraceDir, name: s.torrentAddr}
	s.started = time.Now()
	s.setPhase(gossip.PhaseJoining)
	jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = s.node.Join(jctx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// The print server may have gone (the others can still serve), but a
		// node that cannot join is usually one with the wrong lab key.
		return nil, fmt.Errorf("peer: join the lab: %w", err)
	}
	// Registered again with the block size, which wants the lab's size.
	lab := max(im.lab.Workstations, gossip.LiveWorkstations(s.node.Members()))
	files.BlockSize, files.MaxRequests = blocks(a.cfg.Sync, lab, a.cfg.MaxConns)
	storage.Register(ih, files)
	if s.t, err = swarm.AddTorrent(s.client, im.mi, files.BlockSize); err != nil {
		return nil, fmt.Errorf("peer: add torrent: %w", err)
	}
	a.log.Info("torrent added", "block_bytes", files.BlockSize, "lab_workstations", lab)
	s.t.SetOnWriteChunkError(s.onWriteError)
	// The lab members the join brought in are dialled now, not at the
	// first tick a second later.
	s.mu.Lock()
	s.addPeers(time.Now())
	s.mu.Unlock()
	s.closers = append(s.closers, s.startTicking())
	return s, nil
}

// download fetches and applies every chunk, then finishes the extraction.
func (s *Session) download(ctx context.Context) error {
	s.t.DownloadAll()
	s.setPhase(gossip.PhaseDownloading)
	if err := s.applyAll(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.fail(err)
		return err
	}
	s.logTraffic("fetched")
	s.setPhase(gossip.PhaseFinishing)
	if err := s.ap.Finish(ctx); err != nil {
		s.fail(err)
		return fmt.Errorf("peer: finish: %w", err)
	}
	s.setPhase(gossip.PhaseSeeding)
	if s.ap.Syncing() {
		st := s.ap.Stats()
		s.a.log.Info("tree synced", "chunks_local", len(s.local), "chunks_fetched", s.fetched.Load(), "chunks", len(s.im.Manifest.Chunks),
			"entries_unchanged", st.Unchanged, "entries_written", st.Written, "entries_removed", st.Removed,
			"chunks_rebuilt", st.Rebuilt)
	}
	s.a.log.Info("image applied, seeding", "image", s.im.Manifest.Name, "seconds", time.Since(s.started).Seconds())
	return nil
}

// Seed keeps seeding until every workstation of the lab is done or
// Config.Linger passes, then shows this workstation done, leaves the lab
// and removes the staging data: nil means the target holds the image and
// nothing else of the agent's. When ctx ends it returns ctx's error and
// the staging data stays. The session is closed when Seed returns.
func (s *Session) Seed(ctx context.Context) error {
	defer s.Close()
	if err := s.linger(ctx); err != nil {
		return err
	}
	s.logTraffic("seeded")
	s.setPhase(gossip.PhaseDone)
	s.waitServerSeesDone(ctx, 3*time.Second)
	lctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	s.node.Leave(lctx)
	cancel()
	s.client.Close()
	s.install()
	if err := s.ap.Cleanup(); err != nil {
		return fmt.Errorf("peer: remove staging data: %w", err)
	}
	return nil
}

// SyncResult is what a sync (Config.Sync) did.
type SyncResult struct {
	// Local is the chunks found on the disk, Fetched those applied from
	// the lab; Chunks is the image's.
	Local, Fetched, Chunks int
	// Entries counts the entries the target held as the image has them,
	// those written and those removed (chunker.SyncStats).
	Entries chunker.SyncStats
}

// Synced returns what the session's sync did so far (everything once Fetch
// returned); false when the session extracted into an empty target.
func (s *Session) Synced() (SyncResult, bool) {
	if !s.ap.Syncing() {
		return SyncResult{}, false
	}
	return SyncResult{Local: len(s.local), Fetched: int(s.fetched.Load()), Chunks: len(s.im.Manifest.Chunks), Entries: s.ap.Stats()}, true
}

// logTraffic logs, at Info, what the torrent client received and sent so
// far and what the print server dealt: where the bytes a workstation
// receives go (docs/lab-bench.md). bt_read is every byte read from
// BitTorrent connections (protocol included), bt_data the piece data in
// it, bt_useful the data still wanted when it came, bt_wasted the blocks
// not (another connection had brought them: anacrolix's request
// stealing); dealt is the piece data the print server dealt.
func (s *Session) logTraffic(when string) {
	st := s.t.Stats()
	s.a.log.Info("traffic", "when", when, "bt_read", st.BytesRead.Int64(), "bt_data", st.BytesReadData.Int64(),
		"bt_useful", st.BytesReadUsefulData.Int64(), "bt_blocks", st.ChunksRead.Int64(), "bt_wasted", st.ChunksReadWasted.Int64(),
		"bt_written", st.BytesWritten.Int64(), "bt_written_data", st.BytesWrittenData.Int64(),
		"web_seed", st.WebSeeds.BytesReadUsefulData.Int64(), "dealt", s.fed.Load())
}

// install records in the target the image it now holds, keeping the
// payload beside the record for the next sync (chunker.WriteInstalled).
// A record that cannot be written is logged: the next re-image is then a
// full one.
func (s *Session) install() {
	err := chunker.WriteInstalled(s.a.cfg.Target, s.im.Manifest, s.payload, s.ap.SkeletonDir(), time.Now())
	if err != nil {
		s.a.log.Warn("cannot keep the payload for the next sync; recording the image without it", "err", err)
		err = chunker.WriteInstalled(s.a.cfg.Target, s.im.Manifest, "", "", time.Now())
	}
	if err != nil {
		s.a.log.Warn("cannot record the image installed: the next re-image will be a full one", "err", err)
		return
	}
	s.a.log.Info("image recorded as installed", "image", s.im.String(), "dir", chunker.InstalledDir(s.a.cfg.Target))
}

// Close stops seeding at once, without leaving the lab (the others see
// this workstation gone): the torrent client, the gossip node, the status.
// The target keeps the image and the staging data stays. Close may be
// called more than once, and after Seed.
func (s *Session) Close() {
	s.closeOnce.Do(func() {
		for i := len(s.closers) - 1; i >= 0; i-- {
			s.closers[i]()
		}
	})
}

// linger keeps seeding until every workstation is done or Linger passes.
func (s *Session) linger(ctx context.Context) error {
	if s.a.cfg.Linger < 0 {
		return nil
	}
	deadline := time.Now().Add(s.a.cfg.Linger)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if labDone(s.node.Members()) {
			return nil
		}
		if time.Now().After(deadline) {
			s.a.log.Info("linger time over", "linger", s.a.cfg.Linger)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// waitServerSeesDone waits, at most max, until the print server's lab
// status shows this workstation done. Leaving the gossip races the last
// status update: a print server that gets the leave first keeps the old
// status (seen in a CI run: a finished workstation left "downloading 90 %"
// in the lab status and its metrics). The server's own answer settles it.
// Seeding is not enough: that status holds the bytes uploaded before the
// workstation went on serving the others, and the lab's metrics would miss
// the rest (seen in a CI run once no piece was received twice: the lab's
// uploads fell short of what its workstations received from each other).
func (s *Session) waitServerSeesDone(ctx context.Context, max time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, max)
	defer cancel()
	for {
		if ls, err := s.a.api.Status(ctx); err == nil {
			for _, h := range ls.Hosts {
				if h.Name == s.name && h.Status.Phase == api.PhaseDone {
					return
				}
			}
		}
		select {
		case <-ctx.Done():
			s.a.log.Debug("the print server does not show this workstation finished; leaving anyway")
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (s *Session) setPhase(p gossip.Phase) {
	s.mu.Lock()
	s.phase = p
	s.mu.Unlock()
	s.tick()
}

func (s *Session) fail(err error) {
	s.mu.Lock()
	s.phase = gossip.PhaseFailed
	s.err = err.Error()
	s.mu.Unlock()
	s.tick()
}
