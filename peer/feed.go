package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/deal"
	"github.com/labseed/labseed/swarm"
)

// feeders is how many deals a workstation keeps open with the print server
// at once. Two: the workstation's port is shared by the print server's
// streams and those of up to MaxConns workstations, and the print server's
// port stays busy only if its streams get at least 1/N of every
// workstation's port. (The lab bench runs that compared one and two
// streams were too noisy to show a difference; docs/lab-bench.md.)
const feeders = 2

// feedRetry is how long a feeder waits after the print server had nothing
// to deal, or could not be reached.
const feedRetry = time.Second

// feed fetches from the print server the pieces it deals this workstation
// (package deal): pieces no workstation connected to this one has. The
// others come from the workstations over BitTorrent; the client is never
// connected to the print server, so that the print server's port carries
// each piece into the lab once. If the print server cannot deal (an older
// labseed), feed connects the client to it and returns.
func (s *Session) feed(ctx context.Context) error {
	buf := make([]byte, s.im.Manifest.PieceLength)
	failing := false
	// Until every chunk is applied (ctx ends then), not until every piece
	// is verified: a chunk that fails its hash makes its pieces missing
	// again.
	for ctx.Err() == nil {
		var err error
		if s.chunks.remaining() > 0 {
			err = s.feedOnce(ctx, buf)
		} else {
			err = errNothingDealt
		}
		var ae *api.APIError
		switch {
		case err == nil:
			failing = false
			continue
		case errors.Is(err, errNothingDealt):
		case errors.Is(err, errStaging):
			return fmt.Errorf("peer: %w", err) // a full or broken disk: stop the run
		case errors.As(err, &ae) && ae.Code == http.StatusNotFound:
			s.useServerTorrent(err)
			return nil
		case ctx.Err() != nil:
			return nil
		default:
			if !failing {
				s.a.log.Warn("fetching pieces from the print server", "err", err)
			}
			failing = true
		}
		select {
		case <-ctx.Done():
		case <-time.After(feedRetry):
		}
	}
	return nil
}

var (
	errNothingDealt = errors.New("nothing dealt")
	errStaging      = errors.New("staging")
)

// feedOnce asks for one deal and stores its pieces.
func (s *Session) feedOnce(ctx context.Context, buf []byte) error {
	want := s.claims.wantFromServer(s.chunks.missingPieces(), s.t, s.serverHost(), time.Now())
	if want.Empty() {
		return errNothingDealt
	}
	local := s.dealLocal()
	first, n, skipped, body, err := s.a.api.DealSkipping(ctx, s.im.Manifest.InfoHash, want, local)
	if err != nil {
		return err
	}
	s.answered.Add(1)
	if n == 0 {
		return errNothingDealt
	}
	defer body.Close()
	if !skipped {
		local = nil // a print server that sends whole pieces
	}
	rd := fedReader{swarm.LimitReader(ctx, body, s.downLimit), &s.fed}
	for p := first; p < first+n; p++ {
		if err := s.storeDealt(ctx, rd, buf, p, local); err != nil {
			return err
		}
	}
	return nil
}

// dealLocal returns the chunks to tell the print server this workstation
// holds (a sync's local chunks that still check out), nil if none.
func (s *Session) dealLocal() deal.Bitmap {
	s.localMu.Lock()
	defer s.localMu.Unlock()
	if len(s.local) == 0 {
		return nil
	}
	b := deal.NewBitmap(len(s.im.Manifest.Chunks))
	for c := range s.local {
		if !s.localBad[c] {
			b.Set(c)
		}
	}
	return b
}

// storeDealt reads piece p from rd, writes it to the payload and has the
// client verify it (which announces it to the other workstations). With
// local (the chunks the print server was told this workstation holds, and
// left out), the piece's bytes in those chunks come from the staging
// payload, where the sync copied them, the rest from rd.
func (s *Session) storeDealt(ctx context.Context, rd io.Reader, buf []byte, p int, local deal.Bitmap) error {
	if p >= s.chunks.numPieces {
		return fmt.Errorf("print server dealt piece %d of %d", p, s.chunks.numPieces)
	}
	b := buf[:s.chunks.pieceSize(p)]
	pc := s.t.Piece(p)
	po := int64(p) * s.chunks.pieceLen
	ranges := [][2]int64{{po, po + int64(len(b))}}
	if local != nil {
		ranges = s.im.Manifest.Uncovered(local.Has, po, po+int64(len(b)))
		if n, err := pc.Storage().ReadAt(b, 0); err != nil && n < len(b) {
			return fmt.Errorf("piece %d: %w: %w", p, errStaging, err)
		}
	}
	for _, r := range ranges {
		part := b[r[0]-po : r[1]-po]
		if _, err := io.ReadFull(rd, part); err != nil {
			return fmt.Errorf("piece %d from the print server: %w", p, err)
		}
	}
	if !s.fedPiece.Swap(true) {
		// Where a run's first seconds go (docs/lab-bench.md).
		s.a.log.Info("first piece from the print server", "seconds", time.Since(s.started).Seconds())
	}
	if _, err := pc.Storage().WriteAt(b, 0); err != nil {
		return fmt.Errorf("piece %d: %w: %w", p, errStaging, err)
	}
	// A piece that fails the check stays missing and is asked for again.
	return pc.VerifyDataContext(ctx)
}

// fedReader counts a deal's bytes into n as they arrive, not piece by
// piece: the stall watch (and so the web-seed fallback) must see a deal
// arriving however slowly. On a print server's port shared by a lab of 90
// at 1 Mbit/s, a dealt piece of 256 KiB takes minutes to come whole
// (docs/lab-bench.md, "the web-seed stampede").
type fedReader struct {
	r io.Reader
	n *atomic.Int64
}

func (f fedReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	f.n.Add(int64(n))
	return n, err
}

// serverHost is the print server's torrent host (its connections are not
// other workstations').
func (s *Session) serverHost() string {
	host, _, _ := net.SplitHostPort(s.im.lab.TorrentAddr)
	return host
}

// useServerTorrent connects the client to the print server's torrent,
// because dealing failed with err.
func (s *Session) useServerTorrent(err error) {
	s.mu.Lock()
	done := s.peers.useServer
	s.peers.useServer = true
	s.mu.Unlock()
	if done {
		return
	}
	s.a.log.Warn("the print server does not deal pieces; fetching from it over BitTorrent", "err", err)
	s.t.AddPeers([]torrent.PeerInfo{{Addr: tcpAddr(s.im.lab.TorrentAddr), Trusted: true}})
}
