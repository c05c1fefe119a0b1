package follow

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/internal/atomicfile"
	"github.com/labseed/labseed/keys"
	"github.com/labseed/labseed/store"
	"github.com/labseed/labseed/swarm"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
)

// DefaultInterval is how often a follower asks its upstream for its
// images (and reports to it) when Config.Interval is zero.
const DefaultInterval = 5 * time.Second

// StateFile, in the store, is the follower's replication as of its last
// change (an api.UpstreamStatus in JSON): what "labseed images" shows.
const StateFile = "upstream.json"

// Config configures a Follower. Zero values mean the defaults.
type Config struct {
	// Store receives the upstream's images; required.
	Store *store.Store
	// Upstream is the print server followed, "host" or "host:port"
	// (default port api.DefaultPort); required.
	Upstream string
	// Key is the upstream's image key (its image.pub, labseed serve
	// --upstream-key). Nil: the key the store pinned, or, on the first
	// contact, the key the upstream says it has (Pin).
	Key ed25519.PublicKey
	// Rate caps the payload fetched from the upstream, in bytes per
	// second (a token bucket); 0: no cap.
	Rate int64
	// Interval is how often the upstream is asked for its images and
	// reported to; default DefaultInterval.
	Interval time.Duration
	// Name and HTTPAddr are what the follower reports to its upstream
	// about itself (its name, where its lab reaches its API).
	Name, HTTPAddr string
	// Stall is how long a payload transfer may make no progress before
	// it is cut and tried again; default 60 s.
	Stall time.Duration
	// Transport is the HTTP transport to the upstream; nil: a clone of
	// http.DefaultTransport.
	Transport http.RoundTripper
	// StageBytes bounds the chunks fetched while the upstream is still
	// publishing, before its signed manifest exists (StageDir); default
	// DefaultStageBytes; < 0: none are (the version is fetched once it is
	// published).
	StageBytes int64
	// Committed, if set, is called after a version is committed to the
	// store (the print server's Rescan, to seed it at once), from the
	// follower's goroutine.
	Committed func(name string, version int)
	// Logger receives the follower's logs; nil discards.
	Logger *slog.Logger
}

// errNotSeeded is returned by fetch when the upstream does not serve the
// payload yet.
var errNotSeeded = errors.New("follow: the upstream does not serve this version yet")

// siblingWait is how long a follower waits for a chunk of another
// follower's share (no chunk from it for this long) before it fetches the
// rest of that share from the upstream itself (longer under a low rate
// cap: Follower.siblingWait).
const siblingWait = 30 * time.Second

// maxServing bounds the chunk requests of other followers served at once
// (ServeChunk); more are answered 503 and asked again.
const maxServing = 4

// runBytes bounds one range request: consecutive missing chunks are
// fetched together up to this many bytes (each chunk synced as it comes).
const runBytes = 8 << 20

// Follower replicates every image of an upstream print server into a
// store. Create it with New; Pin, then Run. Status may be called from any
// goroutine.
type Follower struct {
	cfg    Config
	log    *slog.Logger
	client *api.Client
	seed   *http.Client // payload, no overall timeout (Stall cuts a stuck one)
	lim    *rate.Limiter

	serveLim *rate.Limiter // what ServeChunk sends, under the same cap
	serving  chan struct{} // ServeChunk requests under way
	saveMu   sync.Mutex    // one save at a time

	mu     sync.Mutex
	st     api.UpstreamStatus
	warned map[string]bool           // refusals logged, by name and version
	active map[string]*store.Receive // versions being received, by image name
	self   string                    // this follower's address, as the upstream gives it to the others
	sibs   []api.Sibling             // the other followers of the upstream, from its last answer
	listed map[string]time.Time      // when each chunk of a publish in progress was first listed, by SHA-256

	stage *stage                     // chunks of the upstream's publishes in progress; nil: none are fetched
	quiet int                        // rounds in a row the upstream listed no publish in progress (Run's goroutine)
	pubs  map[string]*api.Publishing // the publishes in progress, by ID, every chunk listed so far (Run's goroutine)
}

// New validates cfg and returns a Follower.
func New(cfg Config) (*Follower, error) {
	if cfg.Store == nil {
		return nil, errors.New("follow: no store")
	}
	if cfg.Upstream == "" {
		return nil, errors.New("follow: no upstream print server")
	}
	if cfg.Rate < 0 {
		return nil, errors.New("follow: a negative rate")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Stall <= 0 {
		cfg.Stall = 60 * time.Second
	}
	if cfg.Transport == nil {
		cfg.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Upstream = api.WithDefaultPort(cfg.Upstream)
	c := api.NewClient(cfg.Upstream)
	c.HTTP.Transport = cfg.Transport
	f := &Follower{
		cfg: cfg, log: log.With("component", "follow", "upstream", cfg.Upstream), client: c,
		seed: &http.Client{Transport: cfg.Transport}, lim: NewLimiter(cfg.Rate), warned: map[string]bool{},
		serveLim: NewLimiter(cfg.Rate), serving: make(chan struct{}, maxServing), active: map[string]*store.Receive{},
	}
	f.st = api.UpstreamStatus{Upstream: cfg.Upstream, Rate: cfg.Rate, Images: []api.ImageReplication{}}
	if cfg.StageBytes == 0 {
		cfg.StageBytes = DefaultStageBytes
	}
	if cfg.StageBytes > 0 {
		st, err := openStage(cfg.Store, cfg.StageBytes)
		if err != nil {
			return nil, err
		}
		f.stage = st
	}
	return f, nil
}

// NewLimiter returns the token bucket that caps a follower's fetching at
// bps bytes per second (nil for 0: no cap). Its burst, 64 KiB or a tenth
// of a second's worth if less, is the most that passes at once.
func NewLimiter(bps int64) *rate.Limiter {
	if bps <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(bps), int(max(min(bps/10, 64<<10), 512)))
}

// Pin makes the store trust the upstream's image key, and returns its
// fingerprint and whether it was pinned now. With Config.Key, that key is
// pinned (or checked against the one pinned before). Without, a store
// that pinned one keeps it; a new store asks the upstream for its key,
// waiting for it to answer (every Interval) until ctx ends, and pins it:
// the caller shows the fingerprint, to be compared with the upstream's
// "labseed keys export". A store that trusts another key is refused,
// with both fingerprints (store.ErrKeyMismatch).
func (f *Follower) Pin(ctx context.Context) (fingerprint string, pinned bool, err error) {
	key := f.cfg.Key
	if key == nil && f.cfg.Store.Follower() {
		key, err = f.cfg.Store.PublicKey()
		if err != nil {
			return "", false, err
		}
	}
	for key == nil {
		pem, err := f.client.ImageKey(ctx)
		if err == nil {
			if key, err = keys.ParsePublicKey("the image key of "+f.cfg.Upstream, pem); err != nil {
				return "", false, err
			}
			break
		}
		f.setError(err)
		f.log.Warn("waiting for the upstream print server, to pin its image key", "err", err)
		select {
		case <-ctx.Done():
			return "", false, ctx.Err()
		case <-time.After(f.cfg.Interval):
		}
	}
	pinned, err = f.cfg.Store.PinImageKey(key)
	if err != nil {
		return "", false, err
	}
	fp := keys.Fingerprint(key)
	f.mu.Lock()
	f.st.Key = fp
	f.mu.Unlock()
	return fp, pinned, nil
}

// Run replicates until ctx ends: every Interval it asks the upstream for
// its images, replicates each version it lacks (the manifest first, its
// signature checked with the pinned key, then only the chunks the store
// does not hold, each checked against the manifest, then the whole
// version verified before it becomes the current one), and reports to the
// upstream. Errors are kept in the status and tried again; Run returns
// nil when ctx ends. Call Pin first.
func (f *Follower) Run(ctx context.Context) error {
	if f.Status().Key == "" {
		return errors.New("follow: Run before Pin")
	}
	// Reports go on while a version is fetched: the upstream shows the
	// progress, and the answers say which followers share the chunks.
	f.report(ctx)
	reported := make(chan struct{})
	go func() {
		defer close(reported)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(f.cfg.Interval):
			}
			f.report(ctx)
		}
	}()
	defer func() { <-reported }()
	for {
		f.round(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(f.cfg.Interval):
		}
	}
}

// Status returns the follower's replication now.
func (f *Follower) Status() *api.UpstreamStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.st
	st.Images = slices.Clone(f.st.Images)
	st.Siblings = slices.Clone(f.st.Siblings)
	return &st
}

// round asks the upstream for its publishes in progress and stages their
// chunks (stageRound), then for its images, and replicates what is new.
// The publishes are asked for first: a publish that ended since is then
// among the images.
func (f *Follower) round(ctx context.Context) {
	var pubs []api.Publishing
	var err error
	if f.stage != nil {
		if pubs, err = f.publishing(ctx); err != nil {
			if ctx.Err() == nil {
				f.setError(err)
				f.log.Warn("upstream print server", "err", err)
			}
			return
		}
	}
	infos, err := f.client.Images(ctx)
	if err != nil {
		if ctx.Err() == nil {
			f.setError(err)
			f.log.Warn("upstream print server", "err", err)
		}
		return
	}
	f.mu.Lock()
	f.st.Contact, f.st.Error = time.Now().UTC(), ""
	f.mu.Unlock()
	slices.SortFunc(infos, func(a, b api.ImageInfo) int { return strings.Compare(a.Name, b.Name) })
	names := map[string]bool{}
	for _, info := range infos {
		names[info.Name] = true
		local := f.localVersion(info.Name)
		if local >= info.Version {
			f.update(info.Name, func(r *api.ImageReplication) {
				if r.State != api.ReplicationComplete || r.Version != info.Version {
					*r = api.ImageReplication{Name: info.Name, Version: info.Version, Local: local, State: api.ReplicationComplete,
						Chunks: info.Chunks, ChunksTotal: info.Chunks}
				}
				r.Local = local
			})
			continue
		}
		f.update(info.Name, func(r *api.ImageReplication) {
			if r.Version != info.Version {
				*r = api.ImageReplication{Name: info.Name, Version: info.Version, Local: local, State: api.ReplicationWaiting, ChunksTotal: info.Chunks}
			}
		})
	}
	f.mu.Lock()
	f.st.Images = slices.DeleteFunc(f.st.Images, func(r api.ImageReplication) bool { return !names[r.Name] })
	f.mu.Unlock()
	for _, info := range infos {
		if ctx.Err() != nil {
			break
		}
		if f.localVersion(info.Name) >= info.Version {
			continue
		}
		if err := f.replicate(ctx, info.Name); err != nil && ctx.Err() == nil {
			f.log.Warn("replication failed; trying again", "image", info.Name, "err", err)
		}
	}
	f.stageRound(ctx, pubs)
	f.save()
}

// localVersion is the store's current version of name, 0 for none.
func (f *Follower) localVersion(name string) int {
	im, err := f.cfg.Store.Image(name)
	if err != nil {
		return 0
	}
	return im.Manifest.Version
}

// replicate fetches the upstream's current version of name into the store.
func (f *Follower) replicate(ctx context.Context, name string) error {
	im, err := f.client.Image(ctx, name)
	if err != nil {
		f.fail(name, 0, err)
		return err
	}
	// Only what the version is called, for the status: nothing of it is
	// used before Receive checks the signature.
	var head struct {
		Version int `json:"version"`
	}
	json.Unmarshal(im.Manifest, &head)
	rcv, err := f.cfg.Store.Receive(im.Manifest, im.Signature, im.Torrent)
	if errors.Is(err, chunker.ErrBadSignature) {
		f.refuse(name, head.Version)
		return nil
	}
	if errors.Is(err, store.ErrExists) {
		return nil
	}
	if err != nil {
		f.fail(name, head.Version, err)
		return err
	}
	defer rcv.Close()
	m := rcv.Manifest()
	start := time.Now()
	reused, _, err := rcv.Reuse(ctx)
	f.mu.Lock()
	f.st.ChunksReused += int64(reused)
	f.mu.Unlock()
	var staged int
	if err == nil {
		staged, err = f.claim(rcv)
	}
	have, total := rcv.Count()
	f.update(name, func(r *api.ImageReplication) {
		if r.Version != m.Version {
			*r = api.ImageReplication{Name: name, Version: m.Version, Local: f.localVersion(name)}
		}
		r.State, r.Chunks, r.ChunksTotal, r.Error = api.ReplicationReplicating, have, total, ""
		r.ChunksReused += reused
	})
	f.save()
	if err != nil {
		f.fail(name, m.Version, err)
		return err
	}
	f.log.Info("replicating", "image", name, "version", m.Version, "chunks", total, "here", have, "reused", reused, "staged", staged)
	f.mu.Lock()
	f.active[name] = rcv
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		if f.active[name] == rcv {
			delete(f.active, name)
		}
		f.mu.Unlock()
	}()
	err = f.fetch(ctx, rcv)
	// A version published a moment ago is seeded at the upstream's next
	// scan of its store (at once when it notices the publish ended):
	// asked again every 250 ms for a few seconds, then next round.
	for tries := 0; errors.Is(err, errNotSeeded) && tries < 12 && ctx.Err() == nil; tries++ {
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
		err = f.fetch(ctx, rcv)
	}
	if errors.Is(err, errNotSeeded) {
		f.log.Debug("not seeded upstream yet", "image", name, "version", m.Version)
		f.update(name, func(r *api.ImageReplication) { r.State = api.ReplicationWaiting })
		return nil
	} else if err != nil {
		f.fail(name, m.Version, err)
		return err
	}
	if _, err := rcv.Commit(ctx, f.cfg.Upstream); err != nil {
		f.fail(name, m.Version, err)
		return err
	}
	if f.cfg.Committed != nil {
		f.cfg.Committed(name, m.Version)
	}
	var fetched, fromFollowers int64
	f.update(name, func(r *api.ImageReplication) {
		r.State, r.Local, r.Chunks, r.Error = api.ReplicationComplete, m.Version, total, ""
		fetched, fromFollowers = r.BytesFetched, r.BytesFromFollowers
	})
	f.save()
	f.log.Info("replicated", "image", name, "version", m.Version, "fetched_bytes", fetched, "from_followers_bytes", fromFollowers, "payload_bytes", m.PayloadBytes,
		"reused_chunks", reused, "staged_chunks", staged, "seconds", time.Since(start).Seconds())
	return nil
}

// fetch gets every missing chunk of rcv. Alone, it fetches them from the
// upstream's web seed. With other followers of the upstream (its last
// answer to a report), the followers share the work: chunk i is fetched
// from the upstream by the follower at position i mod k of their
// addresses, sorted (k followers), and by the others from that one
// (PathChunks) as soon as it holds it; a follower that answers with an
// error, or sends no chunk for siblingWait, is given up and its share
// fetched from the upstream. Every chunk is checked against the signed
// manifest before it is stored, whoever sent it.
func (f *Follower) fetch(ctx context.Context, rcv *store.Receive) error {
	m := rcv.Manifest()
	missing := rcv.Missing()
	f.mu.Lock()
	self, sibs := f.self, slices.Clone(f.sibs)
	f.mu.Unlock()
	if self == "" || len(sibs) == 0 || len(missing) == 0 {
		return f.fetchUpstream(ctx, rcv, missing)
	}
	members := []string{self}
	for _, s := range sibs {
		members = append(members, s.HTTPAddr)
	}
	slices.Sort(members)
	members = slices.Compact(members)
	k := len(members)
	var mine []int
	theirs := map[string][]int{}
	for _, i := range missing {
		if o := members[i%k]; o == self {
			mine = append(mine, i)
		} else {
			theirs[o] = append(theirs[o], i)
		}
	}
	f.log.Info("sharing the chunks with the other followers", "image", m.Name, "version", m.Version, "followers", members,
		"from_upstream", len(mine), "missing", len(missing))
	var (
		mu   sync.Mutex
		rest []int
	)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return f.fetchUpstream(gctx, rcv, mine) })
	for addr, list := range theirs {
		g.Go(func() error {
			left := f.pull(gctx, rcv, addr, list, k)
			mu.Lock()
			rest = append(rest, left...)
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	slices.Sort(rest)
	return f.fetchUpstream(ctx, rcv, rest)
}

// fetchUpstream gets the chunks list of rcv from the upstream's web seed,
// in runs of consecutive chunks of up to runBytes, each chunk synced.
func (f *Follower) fetchUpstream(ctx context.Context, rcv *store.Receive, list []int) error {
	m := rcv.Manifest()
	for len(list) > 0 {
		run := []int{list[0]}
		size := m.Chunks[list[0]].Size
		for len(run) < len(list) {
			next := list[len(run)]
			if next != run[len(run)-1]+1 || size+m.Chunks[next].Size > runBytes {
				break
			}
			run = append(run, next)
			size += m.Chunks[next].Size
		}
		list = list[len(run):]
		if err := f.fetchRun(ctx, rcv, run); err != nil {
			rcv.Sync()
			return err
		}
		if err := rcv.Sync(); err != nil {
			return err
		}
		have, _ := rcv.Count()
		f.update(m.Name, func(r *api.ImageReplication) { r.Chunks = have })
		f.save()
	}
	return nil
}

// pull gets the chunks list of rcv, in order, from the follower at addr,
// which fetches them from the upstream. It returns those it did not get:
// all from the first when addr answers with an error or sends a chunk
// that is not the manifest's, or sends none for siblingWait.
func (f *Follower) pull(ctx context.Context, rcv *store.Receive, addr string, list []int, k int) (left []int) {
	m := rcv.Manifest()
	wait := f.siblingWait(m, k)
	last := time.Now()
	for len(list) > 0 {
		if rcv.Have(list[0]) {
			list = list[1:]
			continue
		}
		got, err := f.pullChunk(ctx, rcv, addr, list[0])
		switch {
		case ctx.Err() != nil:
			return list
		case err != nil:
			f.log.Warn("another follower does not deliver: its share is fetched from the upstream", "follower", addr,
				"image", m.Name, "version", m.Version, "chunks", len(list), "err", err)
			return list
		case got:
			list, last = list[1:], time.Now()
			continue
		case time.Since(last) > wait:
			f.log.Warn("another follower sent no chunk for "+wait.String()+": its share is fetched from the upstream", "follower", addr,
				"image", m.Name, "version", m.Version, "chunks", len(list))
			return list
		}
		select {
		case <-ctx.Done():
			return list
		case <-time.After(250 * time.Millisecond):
		}
	}
	return nil
}

// siblingWait is how long to wait for the next chunk from another of k
// followers: siblingWait, or under a rate cap, twice the time the largest
// chunk of m takes at a k-th of the cap, if longer (each of the k fetches
// its share from the upstream at once, and the upstream's link, or the
// cap, is shared).
func (f *Follower) siblingWait(m *chunker.Manifest, k int) time.Duration {
	var biggest int64
	for _, c := range m.Chunks {
		biggest = max(biggest, c.Size)
	}
	return f.waitFor(biggest, k)
}

// pullChunk asks the follower at addr for chunk i of rcv: false, nil when
// it does not hold it yet (or is busy).
func (f *Follower) pullChunk(ctx context.Context, rcv *store.Receive, addr string, i int) (bool, error) {
	m := rcv.Manifest()
	c := m.Chunks[i]
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stalled atomic.Bool
	stall := time.AfterFunc(f.cfg.Stall, func() { stalled.Store(true); cancel() })
	defer stall.Stop()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+api.ChunkPath(m.Name, m.Version, i), nil)
	if err != nil {
		return false, err
	}
	resp, err := f.seed.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound, http.StatusServiceUnavailable:
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return false, nil
	default:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return false, fmt.Errorf("chunk %d of %s v%d: %s %s", i, m.Name, m.Version, resp.Status, strings.TrimSpace(string(msg)))
	}
	if resp.ContentLength >= 0 && resp.ContentLength != c.Size {
		return false, fmt.Errorf("chunk %d of %s v%d: %d bytes, the manifest says %d", i, m.Name, m.Version, resp.ContentLength, c.Size)
	}
	body := &progressReader{r: swarm.LimitReader(ctx, resp.Body, f.lim), onRead: func(n int) {
		stall.Reset(f.cfg.Stall)
		f.mu.Lock()
		f.st.BytesFromFollowers += int64(n)
		for i := range f.st.Images {
			if f.st.Images[i].Name == m.Name {
				f.st.Images[i].BytesFromFollowers += int64(n)
			}
		}
		f.mu.Unlock()
	}}
	b := make([]byte, c.Size)
	if _, err := io.ReadFull(body, b); err != nil {
		if stalled.Load() {
			return false, fmt.Errorf("chunk %d of %s v%d: no progress for %v: %w", i, m.Name, m.Version, f.cfg.Stall, err)
		}
		return false, fmt.Errorf("chunk %d of %s v%d: %w", i, m.Name, m.Version, err)
	}
	if err := rcv.Put(i, b); err != nil {
		return false, err
	}
	if err := rcv.Sync(); err != nil {
		return false, err
	}
	f.mu.Lock()
	f.st.ChunksFromFollowers++
	f.mu.Unlock()
	have, _ := rcv.Count()
	f.update(m.Name, func(r *api.ImageReplication) { r.Chunks = have })
	return true, nil
}

// ServeChunk serves api.PathChunks+NAME/VERSION/INDEX to the other
// followers of the upstream: the chunk's bytes if this follower holds it
// (a version it is receiving, the chunk in; or its current version), 404
// if not (yet), 503 when maxServing requests are under way. What it sends
// counts against the rate cap (Config.Rate); the receiver checks every
// chunk against its signed manifest. The path values are those of an
// http.ServeMux pattern {name}/{version}/{index}.
func (f *Follower) ServeChunk(w http.ResponseWriter, r *http.Request) {
	v, err1 := strconv.Atoi(r.PathValue("version"))
	i, err2 := strconv.Atoi(r.PathValue("index"))
	if err1 != nil || err2 != nil {
		http.Error(w, "follow: want "+api.PathChunks+"NAME/VERSION/INDEX with numbers", http.StatusBadRequest)
		return
	}
	select {
	case f.serving <- struct{}{}:
		defer func() { <-f.serving }()
	default:
		http.Error(w, "busy: too many chunk requests at once; ask again", http.StatusServiceUnavailable)
		return
	}
	b, err := f.heldChunk(r.PathValue("name"), v, i)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	f.send(w, r, b)
}

// heldChunk returns chunk i of version v of image name if this follower
// holds it.
func (f *Follower) heldChunk(name string, v, i int) ([]byte, error) {
	notHere := fmt.Errorf("follow: chunk %d of %s v%d is not here (yet)", i, name, v)
	f.mu.Lock()
	rcv := f.active[name]
	f.mu.Unlock()
	if rcv != nil && rcv.Manifest().Version == v {
		if b, err := rcv.ReadChunk(i); err == nil {
			return b, nil
		}
	}
	im, err := f.cfg.Store.Image(name)
	if err != nil || im.Manifest.Version != v || i < 0 || i >= len(im.Manifest.Chunks) {
		return nil, notHere
	}
	fh, err := os.Open(im.PayloadPath())
	if err != nil {
		return nil, notHere
	}
	defer fh.Close()
	return im.ReadChunk(fh, i)
}

// fetchRun gets the consecutive chunks run with one range request.
func (f *Follower) fetchRun(ctx context.Context, rcv *store.Receive, run []int) error {
	m := rcv.Manifest()
	first, last := m.Chunks[run[0]], m.Chunks[run[len(run)-1]]
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+f.cfg.Upstream+api.PathSeed+chunker.TorrentName(m.Name, m.Version), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", first.Offset, last.Offset+last.Size-1))
	resp, err := f.seed.Do(req)
	if err != nil {
		return fmt.Errorf("upstream %s: %w", f.cfg.Upstream, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		// The upstream lists a version it publishes before it seeds it
		// (its store is scanned every 2 s): ask again next round.
		return fmt.Errorf("%w: %s v%d", errNotSeeded, m.Name, m.Version)
	}
	if resp.StatusCode != http.StatusPartialContent {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("upstream %s: chunks %d-%d of %s v%d: %s %s", f.cfg.Upstream, run[0], run[len(run)-1], m.Name, m.Version, resp.Status, strings.TrimSpace(string(msg)))
	}
	var stalled atomic.Bool
	stall := time.AfterFunc(f.cfg.Stall, func() { stalled.Store(true); cancel() })
	defer stall.Stop()
	body := &progressReader{r: swarm.LimitReader(ctx, resp.Body, f.lim), onRead: func(n int) {
		stall.Reset(f.cfg.Stall)
		f.mu.Lock()
		f.st.BytesFetched += int64(n)
		for i := range f.st.Images {
			if f.st.Images[i].Name == m.Name {
				f.st.Images[i].BytesFetched += int64(n)
			}
		}
		f.mu.Unlock()
	}}
	for _, i := range run {
		b := make([]byte, m.Chunks[i].Size)
		if _, err := io.ReadFull(body, b); err != nil {
			if stalled.Load() {
				return fmt.Errorf("upstream %s: chunk %d of %s v%d: no progress for %v: %w", f.cfg.Upstream, i, m.Name, m.Version, f.cfg.Stall, err)
			}
			return fmt.Errorf("upstream %s: chunk %d of %s v%d: %w", f.cfg.Upstream, i, m.Name, m.Version, err)
		}
		if err := rcv.Put(i, b); err != nil {
			return err
		}
		f.mu.Lock()
		f.st.ChunksFetched++
		f.mu.Unlock()
		// Synced chunk by chunk: a follower killed in the middle of a
		// run fetches again only the chunk it was reading.
		if err := rcv.Sync(); err != nil {
			return err
		}
		have, _ := rcv.Count()
		f.update(m.Name, func(r *api.ImageReplication) { r.Chunks = have })
	}
	return nil
}

// progressReader calls onRead with the size of every read.
type progressReader struct {
	r      io.Reader
	onRead func(int)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.onRead(n)
	}
	return n, err
}

// update changes the record of image name (added if missing) under f.mu.
func (f *Follower) update(name string, change func(*api.ImageReplication)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := slices.IndexFunc(f.st.Images, func(r api.ImageReplication) bool { return r.Name == name })
	if i < 0 {
		f.st.Images = append(f.st.Images, api.ImageReplication{Name: name})
		slices.SortFunc(f.st.Images, func(a, b api.ImageReplication) int { return strings.Compare(a.Name, b.Name) })
		i = slices.IndexFunc(f.st.Images, func(r api.ImageReplication) bool { return r.Name == name })
	}
	change(&f.st.Images[i])
	f.st.Images[i].Updated = time.Now().UTC()
}

// refuse records that the upstream's version of name is not signed with
// the pinned key; it is logged once.
func (f *Follower) refuse(name string, version int) {
	msg := fmt.Sprintf("%s v%d is not signed with the image key this print server trusts (%s); it is not stored or served. If the site's signing key really changed, see docs/trust.md",
		name, version, f.Status().Key)
	f.update(name, func(r *api.ImageReplication) {
		r.State, r.Error, r.Version = api.ReplicationRefused, msg, version
	})
	f.save()
	k := name + "-v" + strconv.Itoa(version)
	f.mu.Lock()
	first := !f.warned[k]
	f.warned[k] = true
	f.mu.Unlock()
	if first {
		f.log.Error("image refused: not signed with the pinned key", "image", name, "version", version, "key", f.Status().Key)
	}
}

// fail records a failed attempt at name.
func (f *Follower) fail(name string, version int, err error) {
	f.update(name, func(r *api.ImageReplication) {
		r.State, r.Error = api.ReplicationFailed, err.Error()
		if version > 0 {
			r.Version = version
		}
	})
	f.save()
}

func (f *Follower) setError(err error) {
	f.mu.Lock()
	f.st.Error = err.Error()
	f.mu.Unlock()
}

// report sends the follower's status to the upstream.
func (f *Follower) report(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	sib, err := f.client.ReportFollower(ctx, api.FollowerReport{Name: f.cfg.Name, HTTPAddr: f.cfg.HTTPAddr, Status: *f.Status()})
	if err != nil {
		if ctx.Err() == nil {
			f.log.Debug("report to upstream", "err", err)
		}
		return
	}
	if len(sib.Followers) > maxSiblings {
		sib.Followers = sib.Followers[:maxSiblings]
	}
	addrs := make([]string, len(sib.Followers))
	for i, s := range sib.Followers {
		addrs[i] = s.HTTPAddr
	}
	f.mu.Lock()
	f.self, f.sibs, f.st.Siblings = sib.Self, sib.Followers, addrs
	f.mu.Unlock()
}

// maxSiblings bounds the other followers a follower shares chunks with.
const maxSiblings = 64

// save writes the status into the store's StateFile, for labseed images.
func (f *Follower) save() {
	f.saveMu.Lock()
	defer f.saveMu.Unlock()
	b, err := json.MarshalIndent(f.Status(), "", " ")
	if err != nil {
		return
	}
	if err := atomicfile.Write(filepath.Join(f.cfg.Store.Dir(), StateFile), append(b, '\n'), 0o644); err != nil {
		f.log.Warn("write replication state", "err", err)
	}
}

// ReadState reads a store's StateFile: the replication of the follower
// that runs on it, as of its last change; nil when the store follows no
// print server.
func ReadState(storeDir string) (*api.UpstreamStatus, error) {
	b, err := os.ReadFile(filepath.Join(storeDir, StateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st api.UpstreamStatus
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("follow: %s: %w", filepath.Join(storeDir, StateFile), err)
	}
	return &st, nil
}
