package seeder

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/anacrolix/torrent/metainfo"
	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/deal"
	"github.com/labseed/labseed/gossip"
	"github.com/labseed/labseed/swarm"
)

// dealTimeout bounds one deal's transfer: a workstation that stops reading
// gives its pieces back to the dealer (StallTimeout cuts it sooner).
const dealTimeout = 2 * time.Minute

// A deal written whole to the connection is not a deal received: a client
// that never reads leaves it in the kernel's buffers. So the print server
// remembers each address's finished deals until its next request says
// whether they arrived: a request that no longer wants their pieces
// confirms them; one that still wants them, confirmGrace or more after
// the deal (or as long as the deal took, if longer: on a slow or busy
// port, what the kernel still holds of it takes that long to arrive),
// gives them back to the dealer (they never arrived) and the address gets
// no deal for the dealer's hold time. An address with maxUnconfirmed
// deals in doubt gets nothing more until it says. (With confirmGrace
// alone, 48 workstations on 4 Mbit/s ports had 12 addresses barred in a
// run, each a workstation whose deals were merely slow, and their pieces
// dealt again.)
const (
	confirmGrace   = 5 * time.Second // a slow disk may store a deal late: not a lost one
	maxUnconfirmed = 8
	// maxDealClients bounds the addresses remembered (lab members only).
	maxDealClients = 4096
)

// dealHold is the dealers' hold: deal.CrowdHold in a lab where the
// workstations cannot all be connected to each other (swarm.Crowded, with
// their default MaxConns), else their default (0).
func (s *Server) dealHold() time.Duration {
	if swarm.Crowded(s.labWorkstations(), swarm.DefaultMaxConns) {
		return deal.CrowdHold
	}
	return 0
}

// holdDeals gives every dealer the hold for the lab's size as it is now
// (dealHold). It runs at each store scan, not at each deal: counting the
// lab lists the hosts table, the machines heard of and the gossip.
func (s *Server) holdDeals() {
	hold := s.dealHold()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, si := range s.seeded {
		si.dealer.SetHold(hold)
	}
}

func newDealer(m *chunker.Manifest) *deal.Dealer {
	return deal.New(int((m.PayloadBytes+m.PieceLength-1)/m.PieceLength), deal.Config{})
}

// dealClients is the deals of every address: under way, and finished but
// not confirmed.
type dealClients struct {
	mu      sync.Mutex
	clients map[netip.Addr]*dealClient
	nextID  uint32
}

type dealClient struct {
	id      uint32 // deal.Holder.ID
	active  int
	doubted []sentDeal
	last    time.Time
	barred  time.Time // no deals until then: its deals did not arrive
	session string    // the run its deal requests name (api.HeaderDealSession)
	renewed time.Time // when a new run was last taken as a restart
	left    bool      // not in the lab's gossip at its last change
}

// A member that does not pass pieces on (no BitTorrent address in its
// gossip) or sits on a slow port (slowport.go) is slow for the dealer
// (deal.Holder): it gets no new pieces, and what it was dealt is dealt
// again. (A rule by the deals' own drain rate, slow under half the
// median, was tried and taken out: at N = 48 on 4 Mbit/s ports, with the
// print server's port shared by 96 deal streams and the rates noisy, it
// made the print server deal 2.56 x the payload instead of 1.94 x and
// the last workstation finish 14 % later, and at N = 8 with one slow port
// it changed nothing measurable; docs/lab-bench.md.)

// holder is who a deal for ip is: its number for the dealer, and whether
// it is slow (Server.slowHolder).
func (dc *dealClients) holder(ip netip.Addr, slow bool) deal.Holder {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	h := deal.Holder{Slow: slow}
	if c := dc.clients[ip]; c != nil {
		h.ID, h.Open = c.id, c.active-1 // begin counted this one
	}
	return h
}

// sentDeal is a finished deal not confirmed yet.
type sentDeal struct {
	si       *seededImage
	first, n int
	at       time.Time     // its Finish time
	took     time.Duration // from the deal to its Finish
}

// begin settles ip's doubted deals of si against want (see above) and
// takes a slot for a new deal; it
// says why not when ip may not have one now (code 429: too many under
// way; 204: too many in doubt, or barred). lost is true when it gave deals
// back and barred ip.
//
// A request that names another run (session, api.HeaderDealSession) than
// ip's last is a workstation restarted (a power cut, a kill): the deals its
// previous run did not confirm are given back without a bar, and ip is a
// new holder for the dealers; restarted is the previous run's holder
// number (0 if none), whose pieces the caller tells every dealer are
// gone: the new run may have lost what the old one had confirmed. At most
// once per hold time, so that an address cannot escape the bar by naming
// a new run at every request.
func (dc *dealClients) begin(ip netip.Addr, si *seededImage, want deal.Bitmap, session string, limit int, now time.Time) (code int, lost bool, restarted uint32, err error) {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	if dc.clients == nil {
		dc.clients = map[netip.Addr]*dealClient{}
	}
	c := dc.clients[ip]
	if c == nil {
		if len(dc.clients) >= maxDealClients {
			for a, o := range dc.clients {
				if o.active == 0 && now.Sub(o.last) > deal.DefaultHold {
					delete(dc.clients, a)
				}
			}
			if len(dc.clients) >= maxDealClients {
				return http.StatusTooManyRequests, false, 0, errors.New("too many workstations dealing at once")
			}
		}
		dc.nextID++
		c = &dealClient{id: dc.nextID}
		dc.clients[ip] = c
	}
	c.last = now
	if session != c.session {
		if c.session != "" && now.Sub(c.renewed) >= deal.DefaultHold {
			dc.nextID++
			restarted, c.id = c.id, dc.nextID
			c.renewed, c.barred = now, time.Time{}
		}
		c.session = session
	}
	kept := c.doubted[:0]
	for _, d := range c.doubted {
		if now.Sub(d.at) > deal.DefaultHold {
			continue // the dealer holds them no longer anyway
		}
		if d.si != si {
			kept = append(kept, d)
			continue
		}
		wanted := false
		for p := d.first; p < d.first+d.n; p++ {
			wanted = wanted || want.Has(p)
		}
		switch {
		case !wanted: // arrived
		case restarted != 0 || now.Sub(d.at) >= max(confirmGrace, d.took):
			for p := d.first; p < d.first+d.n; p++ {
				if want.Has(p) {
					si.dealer.Unsend(p, 1, d.at)
				}
			}
			if restarted == 0 {
				c.barred, lost = now.Add(deal.DefaultHold), true
			}
		default: // asked for before the deal arrived, maybe
			kept = append(kept, d)
		}
	}
	c.doubted = kept
	if c.active >= limit {
		return http.StatusTooManyRequests, lost, restarted, fmt.Errorf("%d deals under way from %s already", c.active, ip)
	}
	if len(c.doubted) >= maxUnconfirmed || now.Before(c.barred) {
		return http.StatusNoContent, lost, restarted, nil
	}
	c.active++
	return 0, lost, restarted, nil
}

// dealtGone tells the dealers of every image which of the addresses they
// dealt to have left the lab's gossip (called on its changes), so that
// what those were dealt is dealt again at once (deal.Dealer.Gone).
func (s *Server) dealtGone() {
	s.mu.Lock()
	node := s.node
	s.mu.Unlock()
	if node == nil {
		return // a change before New has set the node
	}
	// Alive only: the stale entry of a workstation's killed run stays
	// suspect for up to 20 s at the address of its new run, and would
	// keep what the new run was dealt from being dealt again once it has
	// left. A suspect that was only busy costs a piece dealt twice.
	live := map[netip.Addr]bool{}
	for _, m := range node.Members() {
		if m.State != gossip.StateAlive {
			continue
		}
		for _, ip := range memberIPs(m) {
			live[ip] = true
		}
	}
	s.holdersGone(s.deals.gone(live))
}

// holdersGone tells every image's dealer that the holders ids left.
func (s *Server) holdersGone(ids []uint32) {
	if len(ids) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, si := range s.seeded {
		for _, id := range ids {
			si.dealer.Gone(id)
		}
	}
}

// gone returns the holder numbers of the addresses that are not live
// and were not found gone before.
func (dc *dealClients) gone(live map[netip.Addr]bool) []uint32 {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	var ids []uint32
	for ip, c := range dc.clients {
		switch {
		case live[ip]:
			c.left = false
		case !c.left:
			c.left = true
			ids = append(ids, c.id)
		}
	}
	return ids
}

// end gives ip's slot back; a deal that sent pieces is in doubt until ip's
// next request.
func (dc *dealClients) end(ip netip.Addr, d sentDeal) {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	c := dc.clients[ip]
	if c == nil {
		return
	}
	c.active--
	if d.n > 0 {
		c.doubted = append(c.doubted, d)
	}
}

// handleDeal sends a workstation the pieces the image's dealer picks for it
// among those it asks for (the request body, a deal.Bitmap): see package
// deal. 204 when there are none to send now. Only lab members (gossip) are
// dealt to, each address with at most HTTPLimits.DealsPerIP deals at once.
func (s *Server) handleDeal(w http.ResponseWriter, r *http.Request) {
	b, err := hex.DecodeString(r.PathValue("infohash"))
	if err != nil || len(b) != 20 {
		http.Error(w, "an infohash is 40 hex digits", http.StatusBadRequest)
		return
	}
	ip, err := sourceAddr(r)
	if err != nil {
		http.Error(w, "bad source address", http.StatusBadRequest)
		return
	}
	if !s.labMember(ip) {
		s.refusedLog(r, "deal refused", errors.New("not a lab member"))
		http.Error(w, "deals are for the lab's workstations: "+ip.String()+" is not in the lab's gossip", http.StatusForbidden)
		return
	}
	ih := metainfo.Hash(b)
	s.mu.Lock()
	si := s.seeded[ih]
	s.mu.Unlock()
	if si == nil {
		http.Error(w, "no such image being seeded: "+ih.HexString(), http.StatusNotFound)
		return
	}
	d := si.dealer
	want, err := io.ReadAll(io.LimitReader(r.Body, int64(d.Pieces()/8+2)))
	if err != nil {
		http.Error(w, "reading the wanted pieces: "+err.Error(), http.StatusBadRequest)
		return
	}
	if size := (d.Pieces() + 7) / 8; len(want) != size {
		got := strconv.Itoa(len(want))
		if len(want) > size {
			got = "more"
		}
		http.Error(w, fmt.Sprintf("wanted pieces: a bitmap of %d pieces is %d bytes, got %s", d.Pieces(), size, got), http.StatusBadRequest)
		return
	}
	m := si.img.Manifest
	// A sync's workstation holds some chunks: their bytes are left out.
	var local deal.Bitmap
	if h := r.Header.Get(api.HeaderDealLocal); h != "" {
		b, err := base64.RawStdEncoding.DecodeString(h)
		if err != nil || len(b) != (len(m.Chunks)+7)/8 {
			http.Error(w, fmt.Sprintf("%s: want the base64 of a bitmap of %d chunks", api.HeaderDealLocal, len(m.Chunks)), http.StatusBadRequest)
			return
		}
		local = b
	}
	start := time.Now()
	session := r.Header.Get(api.HeaderDealSession)
	if len(session) > 64 {
		http.Error(w, api.HeaderDealSession+": at most 64 characters", http.StatusBadRequest)
		return
	}
	code, lost, restarted, err := s.deals.begin(ip, si, want, session, s.limits.DealsPerIP, start)
	if restarted != 0 {
		s.holdersGone([]uint32{restarted})
	}
	if lost {
		s.refusedLog(r, "deals did not arrive", fmt.Errorf("%s asks again for pieces dealt to it: no deals for %s", ip, deal.DefaultHold))
	}
	switch {
	case code == http.StatusNoContent:
		w.WriteHeader(code)
		return
	case err != nil:
		http.Error(w, err.Error(), code)
		return
	}
	first, n, ok := d.DealTo(deal.Bitmap(want), start, s.deals.holder(ip, s.slowHolder(ip)))
	if !ok {
		s.deals.end(ip, sentDeal{})
		w.WriteHeader(http.StatusNoContent)
		return
	}
	sent := 0
	defer func() {
		at := time.Now()
		if d.Finish(first, n, sent, at) {
			_, start := d.Progress()
			// The print server's port carried the image into the lab:
			// the rest is the workstations' (docs/lab-bench.md).
			s.log.Info("every piece dealt", "image", si.img.Manifest.Name, "version", si.img.Manifest.Version,
				"seconds", at.Sub(start).Seconds(), "dealt_bytes", s.dealt.Load())
		}
		s.deals.end(ip, sentDeal{si: si, first: first, n: sent, at: at, took: at.Sub(start)})
	}()
	f, err := os.Open(si.img.PayloadPath())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer f.Close()
	off := int64(first) * m.PieceLength
	end := min(off+int64(n)*m.PieceLength, m.PayloadBytes)
	// Each piece's ranges to send: all of it, or what the local chunks
	// do not hold.
	ranges := make([][][2]int64, n)
	var length int64
	for i := range n {
		po := off + int64(i)*m.PieceLength
		pe := min(po+m.PieceLength, end)
		if local != nil {
			ranges[i] = m.Uncovered(local.Has, po, pe)
		} else {
			ranges[i] = [][2]int64{{po, pe}}
		}
		for _, r := range ranges[i] {
			length += r[1] - r[0]
		}
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(length, 10))
	w.Header().Set(api.HeaderFirstPiece, strconv.Itoa(first))
	w.Header().Set(api.HeaderPieces, strconv.Itoa(n))
	if local != nil {
		w.Header().Set(api.HeaderDealSkipped, "1")
	}
	lw := swarm.LimitWriter(r.Context(), s.startStream(w, time.Now().Add(dealTimeout)), s.upLimit)
	for i, p := 0, first; p < first+n; i, p = i+1, p+1 {
		for _, rg := range ranges[i] {
			k, err := io.Copy(lw, io.NewSectionReader(f, rg[0], rg[1]-rg[0]))
			s.dealt.Add(k)
			if err != nil {
				if !errors.Is(err, context.Canceled) {
					s.log.Debug("deal cut short", "piece", p, "remote", r.RemoteAddr, "err", err)
				}
				return
			}
		}
		sent++
	}
}
