package seeder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/anacrolix/torrent/metainfo"
	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/deal"
	"github.com/labseed/labseed/swarm"
)

// dealTimeout bounds one deal's transfer: a workstation that stops reading
// gives its pieces back to the dealer.
const dealTimeout = 2 * time.Minute

func newDealer(m *chunker.Manifest) *deal.Dealer {
	return deal.New(int((m.PayloadBytes+m.PieceLength-1)/m.PieceLength), deal.Config{})
}

// handleDeal sends a workstation the pieces the image's dealer picks for it
// among those it asks for (the request body, a deal.Bitmap): see package
// deal. 204 when there are none to send now.
func (s *Server) handleDeal(w http.ResponseWriter, r *http.Request) {
	ih := metainfo.NewHashFromHex(r.PathValue("infohash"))
	s.mu.Lock()
	si := s.seeded[ih]
	s.mu.Unlock()
	if si == nil {
		http.Error(w, "no such image being seeded: "+r.PathValue("infohash"), http.StatusNotFound)
		return
	}
	d := si.dealer
	want, err := io.ReadAll(io.LimitReader(r.Body, int64(d.Pieces()/8+2)))
	if err != nil {
		http.Error(w, "reading the wanted pieces: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(want) != (d.Pieces()+7)/8 {
		http.Error(w, fmt.Sprintf("wanted pieces: a bitmap of %d pieces is %d bytes, got %d", d.Pieces(), (d.Pieces()+7)/8, len(want)), http.StatusBadRequest)
		return
	}
	first, n, ok := d.Deal(deal.Bitmap(want), time.Now())
	if !ok {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	sent := 0
	defer func() { d.Finish(first, n, sent, time.Now()) }()
	f, err := os.Open(si.img.PayloadPath())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer f.Close()
	m := si.img.Manifest
	off := int64(first) * m.PieceLength
	end := min(off+int64(n)*m.PieceLength, m.PayloadBytes)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(end-off, 10))
	w.Header().Set(api.HeaderFirstPiece, strconv.Itoa(first))
	w.Header().Set(api.HeaderPieces, strconv.Itoa(n))
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Now().Add(dealTimeout))
	lw := swarm.LimitWriter(r.Context(), w, s.upLimit)
	for p := first; p < first+n; p++ {
		po := int64(p) * m.PieceLength
		k, err := io.Copy(lw, io.NewSectionReader(f, po, min(m.PieceLength, end-po)))
		s.dealt.Add(k)
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				s.log.Debug("deal cut short", "piece", p, "remote", r.RemoteAddr, "err", err)
			}
			return
		}
		sent++
	}
}
