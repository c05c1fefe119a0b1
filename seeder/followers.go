package seeder

import (
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/internal/textsafe"
	"github.com/labseed/labseed/keys"
)

// Bounds of what followers' reports can make the print server hold: they
// come from anyone who can reach the API, and are shown, never obeyed.
const (
	maxFollowers      = 64        // followers kept; the least recently heard is forgotten
	maxFollowerImages = 64        // images per report
	followerTTL       = time.Hour // a follower not heard of for this long is dropped
	// siblingTTL: a follower not heard of for this long is not given to
	// the others as a source of chunks (they report every 5 s by default).
	siblingTTL = time.Minute
)

// handleImageKey serves the key the store's images are signed with
// (image.pub; on a follower, the upstream's it pinned): what a follower
// pins on first contact.
func (s *Server) handleImageKey(w http.ResponseWriter, r *http.Request) {
	pub, err := s.cfg.Store.PublicKey()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	b, err := keys.EncodePublicKey(pub)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Write(b)
}

// handleFollower takes a follower's report (api.FollowerReport).
func (s *Server) handleFollower(w http.ResponseWriter, r *http.Request) {
	var rep api.FollowerReport
	if err := decodeJSON(r, &rep); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ip, _, _ := net.SplitHostPort(r.RemoteAddr)
	f := cleanFollower(rep)
	f.Addr, f.Heard = ip, time.Now().UTC()
	// A follower that listens on every address reports none: it is
	// reached at the address its report came from.
	if host, port, err := net.SplitHostPort(f.HTTPAddr); err == nil {
		if a, err := netip.ParseAddr(host); host == "" || err == nil && a.IsUnspecified() {
			f.HTTPAddr = net.JoinHostPort(ip, port)
		}
	}
	key := f.Name + "@" + ip
	s.fmu.Lock()
	if s.followers == nil {
		s.followers = map[string]api.FollowerStatus{}
	}
	s.followers[key] = f
	now := time.Now()
	s.pruneFollowers(now)
	sib := api.Siblings{Self: f.HTTPAddr, Followers: []api.Sibling{}}
	for k, o := range s.followers {
		if k != key && o.HTTPAddr != "" && o.HTTPAddr != f.HTTPAddr && now.Sub(o.Heard) < siblingTTL {
			sib.Followers = append(sib.Followers, api.Sibling{Name: o.Name, HTTPAddr: o.HTTPAddr, Addr: o.Addr})
		}
	}
	s.fmu.Unlock()
	slices.SortFunc(sib.Followers, func(a, b api.Sibling) int { return strings.Compare(a.HTTPAddr, b.HTTPAddr) })
	writeJSON(w, r, sib)
}

// pruneFollowers drops followers not heard of for followerTTL and the
// least recently heard beyond maxFollowers; s.fmu is held.
func (s *Server) pruneFollowers(now time.Time) {
	for k, f := range s.followers {
		if now.Sub(f.Heard) > followerTTL {
			delete(s.followers, k)
		}
	}
	for len(s.followers) > maxFollowers {
		oldest := ""
		for k, f := range s.followers {
			if oldest == "" || f.Heard.Before(s.followers[oldest].Heard) {
				oldest = k
			}
		}
		delete(s.followers, oldest)
	}
}

// followerList is the followers heard of within followerTTL, by name.
func (s *Server) followerList() []api.FollowerStatus {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.pruneFollowers(time.Now())
	var out []api.FollowerStatus
	for _, f := range s.followers {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b api.FollowerStatus) int {
		return strings.Compare(a.Name+"@"+a.Addr, b.Name+"@"+b.Addr)
	})
	return out
}

// cleanFollower bounds and cleans every string of a report: it is shown
// on terminals (labseed status).
func cleanFollower(rep api.FollowerReport) api.FollowerStatus {
	st := CleanUpstream(rep.Status)
	return api.FollowerStatus{FollowerReport: api.FollowerReport{Name: clean(rep.Name), HTTPAddr: clean(rep.HTTPAddr), Status: st}}
}

// CleanUpstream returns st with every string cleaned of control characters
// and bounded, and at most 64 images: a replication status that came from
// the network, before it is shown.
func CleanUpstream(st api.UpstreamStatus) api.UpstreamStatus {
	st.Upstream, st.Key, st.Error = clean(st.Upstream), clean(st.Key), cleanErr(st.Error)
	if len(st.Siblings) > maxFollowers {
		st.Siblings = st.Siblings[:maxFollowers]
	}
	sibs := make([]string, len(st.Siblings))
	for i, a := range st.Siblings {
		sibs[i] = clean(a)
	}
	st.Siblings = sibs
	if len(st.Images) > maxFollowerImages {
		st.Images = st.Images[:maxFollowerImages]
	}
	imgs := make([]api.ImageReplication, len(st.Images))
	for i, im := range st.Images {
		im.Name, im.State, im.Error = clean(im.Name), clean(im.State), textsafe.Clean(im.Error, maxError)
		imgs[i] = im
	}
	st.Images = imgs
	return st
}

// maxChunkServing bounds the api.PathChunk answers of publishes in
// progress sent at once; more are answered 503 and asked again.
const maxChunkServing = 8

// handlePublishing lists the publishes in progress in the store and the
// chunks each has written so far (api.Publishing): followers fetch them
// (handleChunk) before the signed manifest exists.
func (s *Server) handlePublishing(w http.ResponseWriter, r *http.Request) {
	out := []api.Publishing{}
	pubs := s.cfg.Store.Publishing()
	known := map[string]int{}
	for i, k := range r.URL.Query()["known"] {
		if i >= 16 {
			break
		}
		id, n, ok := strings.Cut(k, ":")
		if v, err := strconv.Atoi(n); ok && err == nil && v >= 0 {
			known[id] = v
		}
	}
	// A publish listed before and gone now has ended: its version is
	// seeded at once, not at the next scan (its followers ask for it
	// within a second).
	now := map[string]bool{}
	for _, p := range pubs {
		now[p.Name] = true
	}
	s.fmu.Lock()
	for name := range s.publishing {
		if !now[name] {
			s.Rescan()
		}
	}
	s.publishing = now
	s.fmu.Unlock()
	for _, p := range pubs {
		from := known[p.ID]
		if from > len(p.Chunks) {
			from = 0
		}
		ap := api.Publishing{Name: p.Name, ID: p.ID, From: from, Chunks: []api.PublishChunk{}}
		for _, c := range p.Chunks[from:] {
			ap.Chunks = append(ap.Chunks, api.PublishChunk{SHA256: c.SHA256, Size: c.Size})
		}
		out = append(out, ap)
	}
	writeJSON(w, r, out)
}

// handleChunk serves the chunk api.PathChunk names by its SHA-256 from a
// publish in progress in the store (checked against the name before it
// is sent), else from Config.Staged, else 404.
func (s *Server) handleChunk(w http.ResponseWriter, r *http.Request) {
	sum := r.PathValue("sha256")
	if !api.ValidChunkSum(sum) {
		http.Error(w, "want "+api.PathChunk+"SHA256, 64 lower-case hex digits", http.StatusBadRequest)
		return
	}
	select {
	case s.chunkServing <- struct{}{}:
		defer func() { <-s.chunkServing }()
	default:
		http.Error(w, "busy: too many chunk requests at once; ask again", http.StatusServiceUnavailable)
		return
	}
	b, err := s.cfg.Store.PublishingChunk(sum)
	if err != nil {
		if s.cfg.Staged != nil {
			s.cfg.Staged.ServeHTTP(w, r)
			return
		}
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	cw := &countingWriter{ResponseWriter: s.startStream(w, time.Time{}), n: &s.webSeed}
	// In pieces: each write has StallTimeout to go through, and a chunk
	// of megabytes to a follower under a rate cap takes longer.
	for len(b) > 0 {
		n := min(len(b), 64<<10)
		if _, err := cw.Write(b[:n]); err != nil {
			return
		}
		b = b[n:]
	}
}
