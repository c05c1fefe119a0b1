package peer

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/labseed/labseed/chunker"
	"golang.org/x/sync/errgroup"
)

// applyAll applies chunks as they become ready until all are applied,
// while the feeders fetch from the print server what it deals this
// workstation.
func (s *Session) applyAll(ctx context.Context) error {
	f, err := os.Open(s.payload)
	if err != nil {
		return fmt.Errorf("peer: staging: %w", err)
	}
	defer f.Close()
	total := len(s.im.Manifest.Chunks)
	g, gctx := errgroup.WithContext(ctx)
	doneCh := make(chan struct{})
	for range s.a.cfg.ApplyWorkers {
		g.Go(func() error {
			for {
				select {
				case <-gctx.Done():
					return nil
				case <-doneCh:
					return nil
				case c := <-s.chunks.ready:
					s.chunks.boost(s.t)
					if err := s.applyChunk(gctx, f, c); err != nil {
						return err
					}
					if n, _ := s.ap.Progress(); n == total {
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
		g.Go(func() error { return s.feed(fctx) })
	}
	g.Go(func() error {
		select {
		case err := <-s.writeErr:
			return fmt.Errorf("peer: write a piece received over BitTorrent to staging: %w", err)
		case <-fctx.Done():
			return nil
		}
	})
	// The feeders run until every chunk is applied, not until every piece
	// is verified: a chunk that fails its hash makes its pieces missing
	// again.
	g.Go(func() error {
		defer stopFeed()
		select {
		case <-gctx.Done():
		case <-doneCh:
		}
		return nil
	})
	if n, _ := s.ap.Progress(); n == total {
		close(doneCh)
	}
	err = g.Wait()
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	s.tick()
	return err
}

func (s *Session) applyChunk(ctx context.Context, f *os.File, c int) error {
	ch := s.im.Manifest.Chunks[c]
	if s.local[c] && s.diskOnly(c) {
		// The tree may hold it as the installed image had it: then its
		// bytes are not even read from staging.
		if ok, err := s.ap.ApplyFromDisk(ctx, c); ok || err != nil {
			return err
		}
	}
	b := s.chunkBufs.Get(int(ch.Size))
	defer s.chunkBufs.Put(b)
	if _, err := f.ReadAt(b, ch.Offset); err != nil {
		return fmt.Errorf("peer: read chunk %d from staging: %w", c, err)
	}
	var err error
	if s.local[c] && s.diskOnly(c) {
		// Checked against the signed manifest by this run as it was
		// copied into staging (localChunks), and written by nothing
		// since: its SHA-256 is not computed a second time.
		err = s.ap.ApplyVerified(ctx, c, b)
	} else {
		err = s.ap.Apply(ctx, c, b)
	}
	if err == nil && !s.local[c] {
		s.fetched.Add(1)
	}
	if errors.Is(err, chunker.ErrChunkHash) {
		// Verified pieces whose bytes changed since: the staging file was
		// damaged on disk. Verify them again; bad ones are fetched again.
		s.a.log.Warn("chunk damaged in staging, fetching again", "chunk", c)
		if s.local[c] {
			// Its bytes come whole from the lab now, not from staging.
			s.localMu.Lock()
			if s.localBad == nil {
				s.localBad = map[int]bool{}
			}
			s.localBad[c] = true
			s.localMu.Unlock()
		}
		s.chunks.requeue(c, s.t)
		return nil
	}
	return err
}

// onWriteError is the torrent's chunk write error handler: the first error
// writing a block received from a peer or a web seed (a full disk) stops
// the run, as one writing a dealt piece does. (anacrolix's default handler
// only stops downloading: the run would wait for ever.)
func (s *Session) onWriteError(err error) {
	select {
	case s.writeErr <- err:
	default:
	}
}
