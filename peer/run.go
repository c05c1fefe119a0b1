package peer

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/deal"
	"github.com/labseed/labseed/gossip"
	"github.com/labseed/labseed/swarm"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
)

// download tracks which chunks have all their pieces verified.
type download struct {
	m          *chunker.Manifest
	pieceLen   int64
	mu         sync.Mutex
	complete   []bool // per piece
	missing    []int  // per chunk: pieces not yet verified
	queued     []bool // per chunk: handed to the appliers
	boosted    []bool // per chunk: its pieces have high priority (boost)
	ready      chan int
	verified   int64 // payload bytes in verified pieces
	numPieces  int
	payloadLen int64

	claimsMu   sync.Mutex
	deliveries map[*torrent.PeerConn]delivery // see wantFromServer
}

func newDownload(m *chunker.Manifest, numPieces int, bitmap swarm.Completion, ap *chunker.Applier) *download {
	d := &download{
		m: m, pieceLen: m.PieceLength, numPieces: numPieces, payloadLen: m.PayloadBytes,
		complete: make([]bool, numPieces),
		missing:  make([]int, len(m.Chunks)),
		queued:   make([]bool, len(m.Chunks)),
		ready:    make(chan int, len(m.Chunks)),
		boosted:  make([]bool, len(m.Chunks)),
	}
	for p := range numPieces {
		if c, known := bitmap.Get(p); known && c {
			d.complete[p] = true
			d.verified += d.pieceSize(p)
		}
	}
	for c := range m.Chunks {
		if ap.Applied(c) {
			d.queued[c] = true
			continue
		}
		first, last := d.pieces(c)
		for p := first; p <= last; p++ {
			if !d.complete[p] {
				d.missing[c]++
			}
		}
		if d.missing[c] == 0 {
			d.queued[c] = true
			d.ready <- c
		}
	}
	return d
}

func (d *download) pieceSize(p int) int64 {
	return min(d.pieceLen, d.payloadLen-int64(p)*d.pieceLen)
}

// pieces returns the first and last piece holding bytes of chunk c.
func (d *download) pieces(c int) (int, int) {
	ch := d.m.Chunks[c]
	return int(ch.Offset / d.pieceLen), int((ch.Offset + ch.Size - 1) / d.pieceLen)
}

// pieceDone is the storage's OnPiece callback.
func (d *download) pieceDone(p int, complete bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p < 0 || p >= d.numPieces {
		return
	}
	d.setLocked(p, complete)
}

// setLocked records piece p as verified or not. It is the only place that
// changes complete, verified and missing once the download is set up, and
// changes them only when the piece's state changes, so that they always
// agree: verified is the size of the pieces marked complete, and missing
// of a chunk not queued counts its pieces not complete. (A piece marked
// not complete and then verified again used to be counted twice, and the
// count reached the payload size while a piece was still missing: the
// feeders and the web-seed fallback stopped, and the run hung.)
func (d *download) setLocked(p int, complete bool) {
	if d.complete[p] == complete {
		return
	}
	d.complete[p] = complete
	if complete {
		d.verified += d.pieceSize(p)
	} else {
		d.verified -= d.pieceSize(p)
	}
	// Chunks overlapping piece p.
	start, end := int64(p)*d.pieceLen, int64(p)*d.pieceLen+d.pieceSize(p)
	for c := d.chunkAt(start); c < len(d.m.Chunks) && d.m.Chunks[c].Offset < end; c++ {
		if d.queued[c] {
			continue
		}
		if !complete {
			d.missing[c]++
			continue
		}
		d.missing[c]--
		if d.missing[c] == 0 {
			d.queued[c] = true
			d.ready <- c
		}
	}
}

// chunkAt returns the index of the chunk holding payload byte off.
func (d *download) chunkAt(off int64) int {
	lo, hi := 0, len(d.m.Chunks)-1
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if d.m.Chunks[mid].Offset <= off {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// claimTrust is how recently a workstation must have sent this one piece
// data for its claims to count in wantFromServer. A workstation that holds
// pieces this one lacks is asked for them at once and sends within a
// second or two even through a busy port; one that claims pieces and sends
// nothing (a liar, a hung process) would otherwise keep this workstation
// from asking the print server for them for as long as it stays connected.
const claimTrust = 10 * time.Second

// delivery is what wantFromServer remembers of a connection: the piece
// data it had sent (anacrolix's useful bytes read) and when that last grew.
type delivery struct {
	useful int64
	at     time.Time
}

// wantFromServer returns the pieces this workstation may take from the
// print server: those it lacks and that no other workstation it is
// connected to has. A workstation's claims count only while it delivers
// (claimTrust): one that never sent piece data is not believed. That costs
// little: a workstation with pieces this one lacks is asked for them and
// sends its first block within a second, and a piece just dealt to it is
// not dealt to anyone else for a while anyway (deal.DefaultHold); at worst
// a workstation joining a lab already under way takes its first deals
// (feeders × deal.DefaultMaxRun pieces) from the print server before its
// peers have sent anything. Connections from serverHost are not
// workstations'.
func (d *download) wantFromServer(t *torrent.Torrent, serverHost string, now time.Time) deal.Bitmap {
	want := deal.NewBitmap(d.numPieces)
	d.mu.Lock()
	for p, done := range d.complete {
		if !done {
			want.Set(p)
		}
	}
	d.mu.Unlock()
	conns := t.PeerConns()
	d.claimsMu.Lock()
	defer d.claimsMu.Unlock()
	if d.deliveries == nil {
		d.deliveries = map[*torrent.PeerConn]delivery{}
	}
	live := make(map[*torrent.PeerConn]bool, len(conns))
	for _, pc := range conns {
		live[pc] = true
		if host, _, err := net.SplitHostPort(pc.RemoteAddr.String()); err == nil && host == serverHost {
			continue
		}
		dv := d.deliveries[pc]
		st := pc.Stats()
		if useful := st.BytesReadUsefulData.Int64(); useful > dv.useful {
			dv = delivery{useful: useful, at: now}
			d.deliveries[pc] = dv
		}
		if dv.at.IsZero() || now.Sub(dv.at) > claimTrust {
			continue
		}
		it := pc.PeerPieces().Iterator()
		for it.HasNext() {
			want.Clear(int(it.Next()))
		}
	}
	for pc := range d.deliveries {
		if !live[pc] {
			delete(d.deliveries, pc)
		}
	}
	return want
}

// prioWindow is how many bytes of missing pieces have high priority at a
// time (boost): enough that every connection finds blocks in it that no
// other connection is fetching (10 connections × swarm.MaxRequests ×
// swarm.BlockSize is 10 MiB). With a window of 4 chunks (about 6 MiB) the connections of a
// workstation kept taking each other's requests (anacrolix's request
// stealing), and 10-16 % of what the workstations received was blocks
// another connection had already delivered (lab bench, N=8).
const prioWindow = 24 << 20

// boost gives high priority to the pieces of the first chunks, in payload
// order, that still miss pieces (up to prioWindow bytes of them), so that
// chunks complete one after another and extraction keeps pace with the
// download. Without it anacrolix asks for the rarest pieces first: the
// newest ones, which the print server deals in payload order. A
// workstation then kept taking new pieces while older chunks waited for
// their last piece (lab bench, N=8: one workstation had 50 of 209 chunks
// applied when the download was 76 % through, and finished 20 s after the
// others).
func (d *download) boost(t *torrent.Torrent) {
	raise, lower := d.plan()
	for _, p := range raise {
		t.Piece(p).SetPriority(torrent.PiecePriorityHigh)
	}
	for _, p := range lower {
		t.Piece(p).SetPriority(torrent.PiecePriorityNormal)
	}
}

// plan chooses the window (see boost) and returns the pieces whose
// priority changes: raise to high, lower back to normal.
func (d *download) plan() (raise, lower []int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var n int64 // missing bytes in the window
	for c := range d.m.Chunks {
		want := !d.queued[c] && n < prioWindow
		first, last := d.pieces(c)
		if want {
			for p := first; p <= last; p++ {
				if !d.complete[p] {
					n += d.pieceSize(p)
				}
			}
		}
		if want == d.boosted[c] {
			continue
		}
		d.boosted[c] = want
		for p := first; p <= last; p++ {
			if d.complete[p] {
				continue
			}
			if want {
				raise = append(raise, p)
			} else {
				lower = append(lower, p)
			}
		}
	}
	return raise, lower
}

// requeue makes chunk c wait for its pieces again (after its bytes failed
// the chunk hash: the pieces are re-verified and fetched again if bad).
func (d *download) requeue(c int, t *torrent.Torrent) {
	first, last := d.pieces(c)
	d.mu.Lock()
	d.queued[c] = false
	d.boosted[c] = false
	d.missing[c] = 0
	for p := first; p <= last; p++ {
		if !d.complete[p] {
			d.missing[c]++ // already waiting (a neighbour's requeue)
		}
	}
	for p := first; p <= last; p++ {
		d.setLocked(p, false)
	}
	d.mu.Unlock()
	for p := first; p <= last; p++ {
		t.Piece(p).VerifyData()
	}
}

func (d *download) verifiedBytes() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.verified
}

// run is one Agent.Run in progress.
type run struct {
	a           *Agent
	spec        *imageSpec
	ap          *chunker.Applier
	dl          *download
	client      *torrent.Client
	node        *gossip.Node
	name        string // in the lab (gossip)
	t           *torrent.Torrent
	payload     string
	torrentAddr string
	started     time.Time

	mu             sync.Mutex
	phase          gossip.Phase
	traffic        *swarm.Meter
	prevIn, prevUp int64
	prevAt         time.Time
	status         gossip.Status
	known          map[string]bool // torrent addresses handed to the client
	tracedAt       time.Time       // last traceTorrent
	knownAt        time.Time
	lastVerified   int64 // verified bytes at lastProgressAt
	lastProgressAt time.Time
	webSeed        bool          // the web seed was added
	serverTorrent  bool          // the client may connect to the print server (useServerTorrent)
	fed            atomic.Int64  // payload bytes dealt by the print server (feed)
	fedCounted     int64         // fed at the last tick
	downLimit      *rate.Limiter // the client's DownloadLimiter, shared by feed
	downloadedAt   time.Time
	writeErr       chan error // the first error writing a piece from a peer or web seed
}

// onWriteError is the torrent's chunk write error handler: the first error
// writing a block received from a peer or a web seed (a full disk) stops
// the run, as one writing a dealt piece does. (anacrolix's default handler
// only stops downloading: the run would wait for ever.)
func (r *run) onWriteError(err error) {
	select {
	case r.writeErr <- err:
	default:
	}
}

func (r *run) run(ctx context.Context) error {
	r.t.DownloadAll()
	r.setPhase(gossip.PhaseDownloading)
	if err := r.applyAll(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.fail(err)
		return err
	}
	r.setPhase(gossip.PhaseFinishing)
	if err := r.ap.Finish(ctx); err != nil {
		r.fail(err)
		return fmt.Errorf("peer: finish: %w", err)
	}
	r.setPhase(gossip.PhaseSeeding)
	r.a.log.Info("image applied, seeding", "image", r.spec.m.Name, "seconds", time.Since(r.started).Seconds())
	if err := r.linger(ctx); err != nil {
		return err
	}
	r.setPhase(gossip.PhaseDone)
	r.waitServerSeesDone(ctx, 3*time.Second)
	lctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	r.node.Leave(lctx)
	cancel()
	r.client.Close()
	if err := r.ap.Cleanup(); err != nil {
		return fmt.Errorf("peer: remove staging data: %w", err)
	}
	return nil
}

// applyAll applies chunks as they become ready until all are applied.
func (r *run) applyAll(ctx context.Context) error {
	f, err := os.Open(r.payload)
	if err != nil {
		return fmt.Errorf("peer: staging: %w", err)
	}
	defer f.Close()
	total := len(r.spec.m.Chunks)
	g, gctx := errgroup.WithContext(ctx)
	doneCh := make(chan struct{})
	for range r.a.cfg.ApplyWorkers {
		g.Go(func() error {
			for {
				select {
				case <-gctx.Done():
					return nil
				case <-doneCh:
					return nil
				case c := <-r.dl.ready:
					r.dl.boost(r.t)
					if err := r.applyChunk(gctx, f, c); err != nil {
						return err
					}
					if n, _ := r.ap.Progress(); n == total {
						select {
						case <-doneCh:
						default:
							close(doneCh)
						}
					}
				}
			}
		})
	}
	fctx, stopFeed := context.WithCancel(gctx)
	defer stopFeed()
	for range feeders {
		g.Go(func() error { return r.feed(fctx) })
	}
	g.Go(func() error {
		select {
		case err := <-r.writeErr:
			return fmt.Errorf("peer: write a piece received over BitTorrent to staging: %w", err)
		case <-fctx.Done():
			return nil
		}
	})
	g.Go(func() error {
		defer stopFeed()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			r.tick()
			select {
			case <-gctx.Done():
				return nil
			case <-doneCh:
				return nil
			case <-t.C:
			}
		}
	})
	if n, _ := r.ap.Progress(); n == total {
		close(doneCh)
	}
	err = g.Wait()
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	r.tick()
	return err
}

func (r *run) applyChunk(ctx context.Context, f *os.File, c int) error {
	ch := r.spec.m.Chunks[c]
	b := make([]byte, ch.Size)
	if _, err := f.ReadAt(b, ch.Offset); err != nil {
		return fmt.Errorf("peer: read chunk %d from staging: %w", c, err)
	}
	err := r.ap.Apply(ctx, c, b)
	if errors.Is(err, chunker.ErrChunkHash) {
		// Verified pieces whose bytes changed since: the staging file was
		// damaged on disk. Verify them again; bad ones are fetched again.
		r.a.log.Warn("chunk damaged in staging, fetching again", "chunk", c)
		r.dl.requeue(c, r.t)
		return nil
	}
	return err
}

// linger keeps seeding until every workstation is done or Linger passes.
func (r *run) linger(ctx context.Context) error {
	if r.a.cfg.Linger < 0 {
		return nil
	}
	deadline := time.Now().Add(r.a.cfg.Linger)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		r.tick()
		if r.labDone() {
			return nil
		}
		if time.Now().After(deadline) {
			r.a.log.Info("linger time over", "linger", r.a.cfg.Linger)
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
// status shows this workstation finished. Leaving the gossip races the last
// status update: a print server that gets the leave first keeps the old
// status (seen in a CI run: a finished workstation left "downloading 90 %"
// in the lab status and its metrics). The server's own answer settles it.
func (r *run) waitServerSeesDone(ctx context.Context, max time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, max)
	defer cancel()
	for {
		if ls, err := r.a.api.Status(ctx); err == nil {
			for _, h := range ls.Hosts {
				if h.Name == r.name && (h.Status.Phase == api.PhaseSeeding || h.Status.Phase == api.PhaseDone) {
					return
				}
			}
		}
		select {
		case <-ctx.Done():
			r.a.log.Debug("the print server does not show this workstation finished; leaving anyway")
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// labDone reports whether every live workstation has finished.
func (r *run) labDone() bool {
	for _, m := range r.node.Members() {
		if m.Status.Role != gossip.RolePeer || m.State != "alive" {
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

func (r *run) setPhase(p gossip.Phase) {
	r.mu.Lock()
	r.phase = p
	r.mu.Unlock()
	r.tick()
}

func (r *run) fail(err error) {
	r.mu.Lock()
	r.phase = gossip.PhaseFailed
	r.status.Err = err.Error()
	r.mu.Unlock()
	r.tick()
}

// tick refreshes the gossiped status, the torrent's peer list and the progress report.
func (r *run) tick() {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	m := r.spec.m
	chunks, _ := r.ap.Progress()
	verified := r.dl.verifiedBytes()
	if verified != r.lastVerified || r.lastProgressAt.IsZero() {
		r.lastVerified, r.lastProgressAt = verified, now
	}
	if r.t != nil && !r.webSeed && !r.a.cfg.NoWebSeed && verified < m.PayloadBytes && now.Sub(r.lastProgressAt) > r.a.cfg.WebSeedAfter {
		r.a.log.Warn("no progress over BitTorrent, using the print server's web seed", "stalled", now.Sub(r.lastProgressAt).Round(time.Second))
		r.t.AddWebSeeds([]string{swarm.WebSeedURL("http://" + r.spec.lab.HTTPAddr)})
		r.webSeed = true
	}
	if r.traffic == nil {
		r.traffic = swarm.NewMeter(r.spec.lab.TorrentAddr)
	}
	if r.t != nil {
		r.traffic.Update(r.t)
		fed := r.fed.Load()
		r.traffic.AddFromServer(fed - r.fedCounted)
		r.fedCounted = fed
		r.dl.boost(r.t)
		r.addPeers()
		r.traceTorrent(now)
		if verified == m.PayloadBytes && r.downloadedAt.IsZero() {
			r.downloadedAt = now
			r.a.log.Info("every piece verified", "seconds", now.Sub(r.started).Seconds(), "chunks_applied", chunks, "chunks", len(m.Chunks))
		}
	}
	tr := r.traffic.Traffic()
	var down, up float64
	if dt := now.Sub(r.prevAt).Seconds(); !r.prevAt.IsZero() && dt > 0 {
		down = float64(tr.Received()-r.prevIn) / dt
		up = float64(tr.Uploaded-r.prevUp) / dt
	}
	r.prevIn, r.prevUp, r.prevAt = tr.Received(), tr.Uploaded, now
	pct := 100 * (float64(verified)/float64(m.PayloadBytes) + float64(chunks)/float64(len(m.Chunks))) / 2
	var eta time.Duration
	if el := now.Sub(r.started).Seconds(); verified > 0 && verified < m.PayloadBytes {
		eta = time.Duration(float64(m.PayloadBytes-verified) / (float64(verified) / el) * float64(time.Second))
	}
	st := gossip.Status{
		Role: gossip.RolePeer, Phase: r.phase, Image: fmt.Sprintf("%s-v%d", m.Name, m.Version),
		TorrentAddr: r.torrentAddr, Percent: pct,
		Chunks: uint32(chunks), ChunksTotal: uint32(len(m.Chunks)),
		DownRate: uint64(down), UpRate: uint64(up),
		FromServer: uint64(tr.FromServer + tr.FromWebSeeds), FromPeers: uint64(tr.FromPeers), Uploaded: uint64(tr.Uploaded),
		Peers: uint16(tr.Peers), ETA: uint32(eta.Seconds()), HashFailures: uint32(tr.HashFailures),
		StartedUnix: r.started.Unix(), UpdatedUnix: now.Unix(), Err: r.status.Err,
	}
	r.status = st
	r.node.SetStatus(st)
	if r.a.cfg.Progress != nil {
		p := Progress{Phase: r.phase, Image: st.Image, Chunks: chunks, ChunksTotal: len(m.Chunks), Percent: pct,
			Downloaded: verified, Total: m.PayloadBytes, DownRate: down, UpRate: up, Peers: tr.Peers, ETA: eta,
			FromServer: tr.FromServer + tr.FromWebSeeds, FromPeers: tr.FromPeers, HashFailures: tr.HashFailures}
		for _, mem := range r.node.Members() {
			if mem.Status.Role == gossip.RolePeer {
				p.LabHosts++
				if mem.Status.Phase == gossip.PhaseSeeding || mem.Status.Phase == gossip.PhaseDone {
					p.LabDone++
				}
			}
		}
		r.a.cfg.Progress(p)
	}
}

// traceTorrent appends the torrent client's own status (every connection's
// request queue, choke and interest flags, bytes) every 5 s to
// DIR/ADDR.status, where DIR is $LABSEED_TORRENT_STATUS and ADDR the
// agent's torrent address: how swarm behaviour in the lab bench is
// diagnosed (docs/lab-bench.md). Called with r.mu held.
func (r *run) traceTorrent(now time.Time) {
	dir := os.Getenv("LABSEED_TORRENT_STATUS")
	if dir == "" || now.Sub(r.tracedAt) < 5*time.Second {
		return
	}
	r.tracedAt = now
	f, err := os.OpenFile(filepath.Join(dir, r.torrentAddr+".status"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "==== %.3f s\n", now.Sub(r.started).Seconds())
	r.client.WriteStatus(f)
}

// dials reports whether the workstation at torrent address self dials the
// one at other; exactly one of each pair does. If both dialled, every pair
// would hold two connections (anacrolix keeps both), and MaxConns would
// cover only half as many distinct partners. Which one dials is a hash of
// the pair, so that each workstation dials about half of the others
// whatever the addressing.
func dials(self, other string) bool {
	lo, hi := min(self, other), max(self, other)
	h := fnv.New32a()
	h.Write([]byte(lo + " " + hi))
	return (h.Sum32()&1 == 0) == (self == lo)
}

// addPeers hands the torrent addresses of live lab members to the client.
func (r *run) addPeers() {
	// Forget now and then, so that a peer the client dropped (killed and
	// restarted, say) is offered again.
	if r.known == nil || time.Since(r.knownAt) > 10*time.Second {
		r.known, r.knownAt = map[string]bool{}, time.Now()
	}
	var add []torrent.PeerInfo
	for _, m := range r.node.Members() {
		a := m.Status.TorrentAddr
		if a == "" || a == r.torrentAddr || m.State != "alive" || r.known[a] {
			continue
		}
		if m.Status.Role == gossip.RolePeer && !dials(r.torrentAddr, a) {
			continue // a dials us
		}
		if a == r.spec.lab.TorrentAddr && !r.serverTorrent {
			continue // feed fetches from the print server
		}
		r.known[a] = true
		add = append(add, torrent.PeerInfo{Addr: tcpAddr(a), Source: torrent.PeerSourceDirect})
	}
	if len(add) > 0 {
		r.t.AddPeers(add)
	}
}
