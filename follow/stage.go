package follow

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
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
	"github.com/labseed/labseed/store"
	"github.com/labseed/labseed/swarm"
	"golang.org/x/sync/errgroup"
)

// StageDir, in the store, holds the chunks a follower fetched while its
// upstream was still publishing (api.PathPublishing), one file per chunk
// named by its SHA-256: no reader of the store looks there, nothing there
// is served to the lab, and a chunk leaves it only into a version being
// received whose signed manifest names it (store.Receive.Put checks it).
const StageDir = "staging"

// DefaultStageBytes bounds the bytes a follower stages when
// Config.StageBytes is zero.
const DefaultStageBytes = 4 << 30

// errStageFull stops a staging pass: the rest is fetched once the
// signed manifest exists.
var errStageFull = errors.New("follow: the staging area is full")

// stage is the follower's StageDir: chunks by SHA-256, bounded in bytes.
type stage struct {
	dir string
	max int64

	mu    sync.Mutex
	files map[string]int64 // size by SHA-256
	bytes int64
}

// openStage opens (creates) the staging directory of st, keeping the
// chunks a follower that was stopped left there (each is checked again
// when a manifest claims it) up to max bytes.
func openStage(st *store.Store, max int64) (*stage, error) {
	s := &stage{dir: filepath.Join(st.Dir(), StageDir), max: max, files: map[string]int64{}}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, fmt.Errorf("follow: %w", err)
	}
	ents, _ := os.ReadDir(s.dir)
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil || !api.ValidChunkSum(e.Name()) || !fi.Mode().IsRegular() || s.bytes+fi.Size() > max {
			os.RemoveAll(filepath.Join(s.dir, e.Name()))
			continue
		}
		s.files[e.Name()] = fi.Size()
		s.bytes += fi.Size()
	}
	return s, nil
}

func (s *stage) has(sum string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.files[sum]
	return ok
}

// put stages b under its name sum after checking that it is the SHA-256
// of b; errStageFull when it would pass the bound.
func (s *stage) put(sum string, b []byte) error {
	if got := sha256.Sum256(b); hex.EncodeToString(got[:]) != sum {
		return fmt.Errorf("%w: the chunk named %s has SHA-256 %x", store.ErrBadChunk, sum, got)
	}
	s.mu.Lock()
	if _, ok := s.files[sum]; ok {
		s.mu.Unlock()
		return nil
	}
	if s.bytes+int64(len(b)) > s.max {
		s.mu.Unlock()
		return errStageFull
	}
	s.bytes += int64(len(b)) // reserved
	s.mu.Unlock()
	// Not synced (no fsync while a publish writes on the upstream, or the
	// lab is served from this disk): after a power cut a damaged file is
	// refused by the manifest's check, and the chunk fetched again.
	tmp := filepath.Join(s.dir, "."+sum+".tmp")
	err := os.WriteFile(tmp, b, 0o644)
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.dir, sum))
	}
	if err != nil {
		os.Remove(tmp)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.bytes -= int64(len(b))
		return fmt.Errorf("follow: stage a chunk: %w", err)
	}
	s.files[sum] = int64(len(b))
	return nil
}

// read returns the staged chunk sum, checked against its name.
func (s *stage) read(sum string) ([]byte, error) {
	if !s.has(sum) {
		return nil, os.ErrNotExist
	}
	b, err := os.ReadFile(filepath.Join(s.dir, sum))
	if err != nil {
		return nil, err
	}
	if got := sha256.Sum256(b); hex.EncodeToString(got[:]) != sum {
		s.remove(sum)
		return nil, fmt.Errorf("%w: staged chunk %s is damaged", store.ErrBadChunk, sum)
	}
	return b, nil
}

func (s *stage) remove(sum string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.files[sum]; ok {
		os.Remove(filepath.Join(s.dir, sum))
		delete(s.files, sum)
		s.bytes -= n
	}
}

// clear removes every staged chunk; it returns how many.
func (s *stage) clear() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.files)
	for sum := range s.files {
		os.Remove(filepath.Join(s.dir, sum))
	}
	clear(s.files)
	s.bytes = 0
	return n
}

// publishing asks the upstream for its publishes in progress, only for
// the chunks it did not list before, and returns them with every chunk
// listed so far.
func (f *Follower) publishing(ctx context.Context) ([]api.Publishing, error) {
	known := map[string]int{}
	for id, p := range f.pubs {
		known[id] = len(p.Chunks)
	}
	ans, err := f.client.Publishing(ctx, known)
	if err != nil {
		return nil, err
	}
	now := map[string]*api.Publishing{}
	var out []api.Publishing
	for _, a := range ans {
		if len(now) >= 16 {
			break
		}
		p := f.pubs[a.ID]
		switch {
		case a.From == 0:
			p = &api.Publishing{Name: a.Name, ID: a.ID, Chunks: a.Chunks}
		case p != nil && p.Name == a.Name && a.From == len(p.Chunks):
			p.Chunks = append(p.Chunks, a.Chunks...)
		default:
			continue // asked again in full next round
		}
		if len(p.Chunks) > 1<<16 {
			p.Chunks = p.Chunks[:1<<16]
		}
		now[a.ID] = p
		out = append(out, *p)
	}
	f.pubs = now
	return out, nil
}

// stageRound is the part of a round about the upstream's publishes in
// progress, asked for before its images (round): while there are, the
// chunks they have written that this store lacks are fetched into the
// staging area; once there have been none for two rounds in a row (the
// round between replicated whatever version the publish became, claiming
// its chunks), what is left staged is discarded.
func (f *Follower) stageRound(ctx context.Context, pubs []api.Publishing) {
	if f.stage == nil {
		return
	}
	if len(pubs) == 0 {
		f.quiet++
		if f.quiet >= 2 {
			if n := f.stage.clear(); n > 0 {
				f.log.Info("discarded staged chunks no signed manifest named", "chunks", n)
			}
			f.mu.Lock()
			clear(f.listed)
			f.mu.Unlock()
		}
		return
	}
	f.quiet = 0
	for _, p := range pubs {
		if ctx.Err() != nil {
			return
		}
		if err := f.stagePublish(ctx, p); err != nil && ctx.Err() == nil {
			if errors.Is(err, errStageFull) {
				f.log.Warn("the staging area is full: the rest of the publish in progress is fetched once it is signed", "image", p.Name, "bytes", f.stage.max)
			} else {
				f.log.Warn("staging the chunks of a publish in progress", "image", p.Name, "err", err)
			}
		}
	}
}

// stagePublish fetches the chunks of the publish in progress p that are
// neither in the store nor staged. With other followers of the upstream
// they share the work as in fetch: the chunk at position j of p goes by
// the follower at position j mod k, and the others take it from that one
// (api.PathChunk), or from the upstream once it has been listed for
// longer than siblingWait.
func (f *Follower) stagePublish(ctx context.Context, p api.Publishing) error {
	if len(p.Chunks) > 1<<16 {
		p.Chunks = p.Chunks[:1<<16]
	}
	have := f.cfg.Store.ChunkSums()
	f.mu.Lock()
	self, sibs := f.self, slices.Clone(f.sibs)
	if f.listed == nil {
		f.listed = map[string]time.Time{}
	}
	now := time.Now()
	var biggest int64
	for _, c := range p.Chunks {
		if _, ok := f.listed[c.SHA256]; !ok {
			f.listed[c.SHA256] = now
		}
		biggest = max(biggest, c.Size)
	}
	listed := maps.Clone(f.listed)
	f.mu.Unlock()
	members := []string{self}
	for _, s := range sibs {
		members = append(members, s.HTTPAddr)
	}
	slices.Sort(members)
	members = slices.Compact(members)
	if self == "" {
		members = []string{""}
	}
	k := len(members)
	wait := f.waitFor(biggest, k)
	var mine []api.PublishChunk
	theirs := map[string][]api.PublishChunk{}
	for j, c := range p.Chunks {
		if !api.ValidChunkSum(c.SHA256) || c.Size <= 0 || c.Size > chunker.MaxChunkRawSize || have[c.SHA256] || f.stage.has(c.SHA256) {
			continue
		}
		o := members[j%k]
		if o == self || now.Sub(listed[c.SHA256]) > wait {
			mine = append(mine, c)
		} else {
			theirs[o] = append(theirs[o], c)
		}
	}
	if len(mine) == 0 && len(theirs) == 0 {
		return nil
	}
	f.log.Debug("staging chunks of a publish in progress", "image", p.Name, "from_upstream", len(mine), "listed", len(p.Chunks))
	g, gctx := errgroup.WithContext(ctx)
	var mineDone atomic.Bool
	g.Go(func() error {
		defer mineDone.Store(true)
		for _, c := range mine {
			got, err := f.stageChunk(gctx, f.cfg.Upstream, c, false)
			if err != nil {
				return err
			}
			if !got { // gone: the publish ended, or a chunk not there
				return nil
			}
		}
		return nil
	})
	for addr, list := range theirs {
		g.Go(func() error {
			// Asked again every 250 ms while this follower fetches its
			// own share; what is still missing then waits for the next
			// round.
			for len(list) > 0 {
				var left []api.PublishChunk
				for _, c := range list {
					got, err := f.stageChunk(gctx, addr, c, true)
					if err != nil {
						if errors.Is(err, errStageFull) {
							return err
						}
						f.log.Debug("another follower does not deliver a staged chunk", "follower", addr, "err", err)
						return nil
					}
					if !got {
						left = append(left, c)
					}
				}
				progress := len(left) < len(list)
				list = left
				if len(list) == 0 || (mineDone.Load() && !progress) {
					return nil
				}
				select {
				case <-gctx.Done():
					return nil
				case <-time.After(250 * time.Millisecond):
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// waitFor is siblingWait for chunks of up to biggest bytes shared among k
// followers (see Follower.siblingWait).
func (f *Follower) waitFor(biggest int64, k int) time.Duration {
	if f.cfg.Rate <= 0 {
		return siblingWait
	}
	return max(siblingWait, time.Duration(2*float64(biggest)*float64(k)/float64(f.cfg.Rate)*float64(time.Second)))
}

// stageChunk fetches the chunk c by its SHA-256 from the print server at
// addr (the upstream, or another follower: fromFollower) into the
// staging area, under the rate cap; false, nil when addr does not have
// it (404) or is busy (503).
func (f *Follower) stageChunk(ctx context.Context, addr string, c api.PublishChunk, fromFollower bool) (bool, error) {
	if f.stage.has(c.SHA256) {
		return true, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stalled atomic.Bool
	stall := time.AfterFunc(f.cfg.Stall, func() { stalled.Store(true); cancel() })
	defer stall.Stop()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+api.ChunkHashPath(c.SHA256), nil)
	if err != nil {
		return false, err
	}
	resp, err := f.seed.Do(req)
	if err != nil {
		return false, fmt.Errorf("%s: %w", addr, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound, http.StatusServiceUnavailable:
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return false, nil
	default:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return false, fmt.Errorf("%s: chunk %s: %s %s", addr, c.SHA256, resp.Status, strings.TrimSpace(string(msg)))
	}
	if resp.ContentLength != c.Size {
		return false, fmt.Errorf("%s: chunk %s: %d bytes, listed as %d", addr, c.SHA256, resp.ContentLength, c.Size)
	}
	body := &progressReader{r: swarm.LimitReader(ctx, resp.Body, f.lim), onRead: func(n int) {
		stall.Reset(f.cfg.Stall)
		f.mu.Lock()
		f.st.BytesStaged += int64(n)
		if fromFollower {
			f.st.BytesFromFollowers += int64(n)
		} else {
			f.st.BytesFetched += int64(n)
		}
		f.mu.Unlock()
	}}
	b := make([]byte, c.Size)
	if _, err := io.ReadFull(body, b); err != nil {
		if stalled.Load() {
			return false, fmt.Errorf("%s: chunk %s: no progress for %v: %w", addr, c.SHA256, f.cfg.Stall, err)
		}
		return false, fmt.Errorf("%s: chunk %s: %w", addr, c.SHA256, err)
	}
	if err := f.stage.put(c.SHA256, b); err != nil {
		return false, err
	}
	f.mu.Lock()
	f.st.ChunksStaged++
	if fromFollower {
		f.st.ChunksFromFollowers++
	} else {
		f.st.ChunksFetched++
	}
	f.mu.Unlock()
	return true, nil
}

// claim puts the staged chunks that the signed manifest of rcv names
// into it (each checked against the manifest by Put), syncs, and removes
// them from the staging area; it returns how many.
func (f *Follower) claim(rcv *store.Receive) (int, error) {
	if f.stage == nil {
		return 0, nil
	}
	m := rcv.Manifest()
	var sums []string
	n := 0
	for _, i := range rcv.Missing() {
		sum := m.Chunks[i].SHA256
		b, err := f.stage.read(sum)
		if err != nil {
			continue
		}
		if err := rcv.Put(i, b); err != nil {
			f.stage.remove(sum)
			continue
		}
		sums = append(sums, sum)
		n++
	}
	if err := rcv.Sync(); err != nil {
		return n, err
	}
	for _, sum := range sums {
		f.stage.remove(sum)
	}
	f.mu.Lock()
	f.st.StagedClaimed += int64(n)
	f.mu.Unlock()
	return n, nil
}

// ServeStaged serves api.PathChunk+SHA256 from the staging area to the
// other followers of the upstream, and to no one else (403): the chunk's
// bytes, checked against the name, if staged here; 404 if not; 503 when
// too many requests are under way. What it sends counts against the rate
// cap. The path value is that of an http.ServeMux pattern {sha256}.
func (f *Follower) ServeStaged(w http.ResponseWriter, r *http.Request) {
	if !f.sibling(r.RemoteAddr) {
		http.Error(w, "follow: staged chunks are for the other followers of "+f.cfg.Upstream+" only", http.StatusForbidden)
		return
	}
	sum := r.PathValue("sha256")
	if f.stage == nil || !api.ValidChunkSum(sum) {
		http.NotFound(w, r)
		return
	}
	select {
	case f.serving <- struct{}{}:
		defer func() { <-f.serving }()
	default:
		http.Error(w, "busy: too many chunk requests at once; ask again", http.StatusServiceUnavailable)
		return
	}
	b, err := f.stage.read(sum)
	if err != nil {
		http.Error(w, "follow: chunk "+sum+" is not staged here (yet)", http.StatusNotFound)
		return
	}
	f.send(w, r, b)
}

// sibling reports whether remote (host:port) is an address of another
// follower of the upstream, as the upstream last answered: the one it
// serves its lab on, or the one its reports come from (a print server
// reaches the campus from another address than its lab's).
func (f *Follower) sibling(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.sibs {
		if h, _, err := net.SplitHostPort(s.HTTPAddr); err == nil && h == host || s.Addr != "" && s.Addr == host {
			return true
		}
	}
	return false
}

// send streams b to a follower under the rate cap.
func (f *Follower) send(w http.ResponseWriter, r *http.Request, b []byte) {
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{}) // an answer that streams past it would be cut
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	src := swarm.LimitReader(r.Context(), bytes.NewReader(b), f.serveLim)
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			rc.SetWriteDeadline(time.Now().Add(f.cfg.Stall))
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			f.mu.Lock()
			f.st.BytesToFollowers += int64(n)
			f.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}
