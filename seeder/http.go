package seeder

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/gossip"
	"github.com/labseed/labseed/internal/textsafe"
	"github.com/labseed/labseed/store"
)

// Handler returns the server's HTTP API. Every API answer is bounded in time (apiLimits), the streams in stall
// time (streamLimits); see HTTPLimits.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	apiMux := http.NewServeMux()
	apiMux.HandleFunc("GET "+api.PathImages, s.handleImages)
	apiMux.HandleFunc("GET "+api.PathImages+"/{name}", s.handleImage)
	apiMux.HandleFunc("GET "+api.PathStatus, s.handleStatus)
	apiMux.HandleFunc("GET "+api.PathImageKey, s.handleImageKey)
	apiMux.HandleFunc("POST "+api.PathFollowers, s.handleFollower)
	apiMux.Handle("GET "+api.PathMetrics, s.metrics.Handler())
	s.hostsRoutes(apiMux)
	s.deployRoutes(apiMux)
	mux.Handle("/api/", s.apiLimits(apiMux))
	mux.Handle(api.PathMetrics, s.apiLimits(apiMux))
	mux.Handle("GET "+api.PathSeed+"{file}", s.streamLimits(http.HandlerFunc(s.handleSeed)))
	mux.Handle("POST "+api.PathDeal+"{infohash}", s.streamLimits(http.HandlerFunc(s.handleDeal)))
	apiMux.HandleFunc("GET "+api.PathPublishing, s.handlePublishing)
	mux.Handle("GET "+api.PathChunk+"{sha256}", s.streamLimits(http.HandlerFunc(s.handleChunk)))
	if s.cfg.Chunks != nil {
		mux.Handle("GET "+api.PathChunks+"{name}/{version}/{index}", s.streamLimits(s.cfg.Chunks))
	}
	if s.boot != nil {
		mux.Handle("/pxe/", s.boot.HTTPHandler())
	}
	return mux
}

// writeJSON answers r with v in JSON, gzipped when r accepts it and the
// answer is longer than gzipMin: an image's answer carries its manifest
// and torrent in base64 (37 KB of them make 49 KB for the clone tests'
// Debian image, 370 KB for a 4 GB image), once per workstation and run;
// the status, polled by dashboards, one record per host.
func writeJSON(w http.ResponseWriter, r *http.Request, v any) {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Add("Vary", "Accept-Encoding")
	if len(b) < gzipMin || !acceptsGzip(r) {
		w.Write(b)
		return
	}
	h.Set("Content-Encoding", "gzip")
	zw := gzip.NewWriter(w)
	zw.Write(b)
	zw.Close()
}

// gzipMin is the shortest JSON answer writeJSON gzips: under a packet or
// two, gzip saves nothing that matters.
const gzipMin = 2048

// acceptsGzip reports whether r's Accept-Encoding names gzip (Go's HTTP
// client sends "gzip" and undoes it itself).
func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, params, _ := strings.Cut(part, ";")
		if !strings.EqualFold(strings.TrimSpace(enc), "gzip") {
			continue
		}
		q, isQ := strings.CutPrefix(strings.TrimSpace(params), "q=")
		f, err := strconv.ParseFloat(q, 64)
		return !isQ || err != nil || f > 0 // "q=0" (or 0.0): not wanted
	}
	return false
}

func (s *Server) handleImages(w http.ResponseWriter, r *http.Request) {
	imgs, err := s.cfg.Store.Images()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, r, imageInfos(imgs))
}

func imageInfos(imgs []*store.Image) []api.ImageInfo {
	out := []api.ImageInfo{}
	for _, im := range imgs {
		m := im.Manifest
		out = append(out, api.ImageInfo{Name: m.Name, Version: m.Version, InfoHash: m.InfoHash,
			PayloadBytes: m.PayloadBytes, InputBytes: m.InputBytes, Chunks: len(m.Chunks), Created: m.Created})
	}
	return out
}

func (s *Server) handleImage(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	im, err := s.cfg.Store.Image(name)
	if errors.Is(err, store.ErrNoImage) {
		// Said to a workstation: the images it may ask for, not the
		// store's path.
		var names []string
		imgs, _ := s.cfg.Store.Images()
		for _, i := range imgs {
			names = append(names, i.Manifest.Name)
		}
		msg := fmt.Sprintf("no image %q on this print server", textsafe.Clean(name, 64))
		if len(names) > 0 {
			msg += "; it has " + strings.Join(names, ", ")
		}
		http.Error(w, msg, http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	tb, err := os.ReadFile(im.TorrentPath())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	lab := s.lab
	lab.Workstations = s.labWorkstations()
	writeJSON(w, r, api.Image{Manifest: im.ManifestBytes, Signature: im.Signature, Torrent: tb, Lab: lab})
}

// handleSeed serves a payload by its torrent name, with ranges: the
// BitTorrent web seed (BEP 19) of every image version being seeded.
func (s *Server) handleSeed(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	s.mu.Lock()
	var seeded *seededImage
	for _, si := range s.seeded {
		m := si.img.Manifest
		if chunker.TorrentName(m.Name, m.Version) == name {
			seeded = si
		}
	}
	s.mu.Unlock()
	if seeded == nil {
		http.NotFound(w, r)
		return
	}
	// For the lab's workstations the web seed takes only what the deals
	// leave of the port: while they fill it (package deal paces them to
	// it), a web seed's 64 MiB ranges would take it from them. A lab of 90
	// whose workstations all fell back to the web seed stood still
	// (docs/lab-bench.md, "the web-seed stampede"); anacrolix asks again
	// within 10 s after a 503. Followers (package follow) are no lab
	// members: they replicate over the campus link, not the lab's port.
	ip, _ := sourceAddr(r) // none: no lab member
	if open, limit := seeded.dealer.Open(); open >= limit && s.labMember(ip) {
		w.Header().Set("Retry-After", "10")
		http.Error(w, "the print server's port is busy with the lab's deals: ask again in a few seconds", http.StatusServiceUnavailable)
		return
	}
	f, err := os.Open(seeded.img.PayloadPath())
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	http.ServeContent(&countingWriter{ResponseWriter: s.startStream(w, time.Time{}), n: &s.webSeed}, r, name, st.ModTime(), f)
}

// countingWriter counts the bytes of a response body.
type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w *countingWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n.Add(int64(n))
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, r, s.Status())
}

// Status returns the lab as the server sees it now.
func (s *Server) Status() api.LabStatus {
	ls := api.LabStatus{Server: s.lab.HTTPAddr, Time: time.Now().UTC(), Hosts: []api.HostStatus{}}
	// The images as of the last scan: a status is asked for every second
	// or so, and reading and verifying every manifest each time is waste.
	s.mu.Lock()
	ls.Images = s.images
	s.mu.Unlock()
	for _, m := range s.node.Members() {
		st := m.Status
		if st.Role == gossip.RoleServer {
			if m.Name == s.cfg.Name {
				ls.Summary.ServerUp = st.Uploaded
			}
			continue
		}
		ls.Hosts = append(ls.Hosts, hostStatus(m))
		sum := &ls.Summary
		sum.Hosts++
		switch st.Phase {
		case gossip.PhaseSeeding, gossip.PhaseDone:
			sum.Done++
		case gossip.PhaseFailed:
			sum.Failed++
		}
		if m.State == gossip.StateAlive {
			sum.DownRate += st.DownRate
		}
		sum.FromServer += st.FromServer
		sum.FromPeers += st.FromPeers
	}
	if t := ls.Summary.FromServer + ls.Summary.FromPeers; t > 0 {
		ls.Summary.PeerShare = float64(ls.Summary.FromPeers) / float64(t)
	}
	slices.SortFunc(ls.Hosts, func(a, b api.HostStatus) int { return strings.Compare(a.Name, b.Name) })
	if bh, err := s.bootHosts(); err != nil {
		ls.BootError = cleanErr(err.Error())
	} else {
		ls.Boot = bh
	}
	ls.Deploy = s.deploySummary()
	if s.cfg.Upstream != nil {
		ls.Upstream = s.cfg.Upstream()
	}
	ls.Followers = s.followerList()
	return ls
}
