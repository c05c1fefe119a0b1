package seeder

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/gossip"
	"github.com/labseed/labseed/hosts"
	"github.com/labseed/labseed/internal/textsafe"
	"github.com/labseed/labseed/lifecycle"
)

func (s *Server) hostsRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+api.PathHosts, s.handleHosts)
	mux.HandleFunc("GET "+api.PathHostsCSV, s.adminOnly(s.tableAPI(s.handleExport)))
	mux.HandleFunc("PUT "+api.PathHostsCSV, s.adminOnly(s.tableAPI(s.handleImport)))
	mux.HandleFunc("POST "+api.PathNextBoot, s.adminOnly(s.tableAPI(s.handleNextBoot)))
	mux.HandleFunc("POST "+api.PathWhoAmI, s.tableAPI(s.handleWhoAmI))
	mux.HandleFunc("POST "+api.ReportPath("{mac}"), s.tableAPI(s.handleReport))
}

// tableAPI wraps h, which uses the hosts table, with a 404 when the server
// has no table.
func (s *Server) tableAPI(h http.HandlerFunc) http.HandlerFunc {
	if s.cfg.Hosts == nil {
		return func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "this print server has no hosts table", http.StatusNotFound)
		}
	}
	return h
}

// bootHosts is one record per machine (package lifecycle): the table's
// hosts, then the other machines heard of, by MAC. err is the hosts
// table's error (a hand edit that does not parse): the list then holds
// the last good table.
func (s *Server) bootHosts() (out []api.BootHost, err error) {
	seen := map[string]bool{}
	if s.cfg.Hosts != nil {
		_, err = s.cfg.Hosts.Identities()
		for _, id := range s.cfg.Hosts.List() {
			mac, perr := hosts.ParseMAC(id.MAC)
			if perr != nil {
				continue
			}
			seen[mac.String()] = true
			rec, _ := s.tracker.Get(mac)
			out = append(out, bootHost(id, rec))
		}
	}
	for _, rec := range s.tracker.List() {
		if !seen[rec.MAC] {
			out = append(out, bootHost(hosts.Identity{MAC: rec.MAC}, rec))
		}
	}
	return out, err
}

// labWorkstations is api.Lab.Workstations: the machines of the hosts
// table and the others heard of (bootHosts), or the workstations alive in
// the gossip, whichever is more.
func (s *Server) labWorkstations() int {
	bh, _ := s.bootHosts()
	return max(len(bh), gossip.LiveWorkstations(s.node.Members()))
}

func (s *Server) handleHosts(w http.ResponseWriter, r *http.Request) {
	bh, err := s.bootHosts()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if bh == nil {
		bh = []api.BootHost{}
	}
	writeJSON(w, r, bh)
}

func (s *Server) handleExport(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/csv")
	if err := s.cfg.Hosts.Export(w); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

func (s *Server) handleImport(w http.ResponseWriter, r *http.Request) {
	if err := s.cfg.Hosts.Import(r.Body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.log.Info("hosts table imported", "from", r.RemoteAddr)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleNextBoot(w http.ResponseWriter, r *http.Request) {
	var req api.NextBootRequest
	if err := decodeJSON(r, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	macs, err := parseMACs(req.MACs)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	hs, err := s.cfg.Hosts.Select(hosts.Selection{All: req.All, Group: req.Group, MACs: macs})
	if err != nil {
		selectError(w, err)
		return
	}
	macs = macs[:0]
	for _, h := range hs {
		macs = append(macs, h.MAC)
	}
	n, err := s.cfg.Hosts.Mark(macs, req.Boot, "")
	if err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, hosts.ErrUnknownHost) {
			code = http.StatusNotFound
		}
		http.Error(w, err.Error(), code)
		return
	}
	s.log.Info("next boot set", "boot", req.Boot, "hosts", n)
	writeJSON(w, r, api.NextBootResult{Marked: n})
}

func (s *Server) handleWhoAmI(w http.ResponseWriter, r *http.Request) {
	var req api.WhoAmIRequest
	if err := decodeJSON(r, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	macs, err := parseMACs(req.MACs)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if len(macs) > maxWhoAmIMACs {
		http.Error(w, fmt.Sprintf("who am I: %d MACs, at most %d", len(macs), maxWhoAmIMACs), http.StatusBadRequest)
		return
	}
	if len(req.Nonce) > 64 || !isHex(req.Nonce) {
		http.Error(w, "who am I: the nonce must be at most 64 hex digits", http.StatusBadRequest)
		return
	}
	if req.Image != "" && !chunker.ValidName(req.Image) {
		http.Error(w, "who am I: not an image name: "+textsafe.Clean(req.Image, 80), http.StatusBadRequest)
		return
	}
	if macs, err = s.requesterMACs(r, macs); err != nil {
		s.refuseRequester(w, r, err)
		return
	}
	id, err := s.cfg.Hosts.WhoAmI(macs)
	if errors.Is(err, hosts.ErrUnknownHost) {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if mac, err := hosts.ParseMAC(id.MAC); err == nil {
		s.tracker.Identified(mac)
	}
	aid := apiIdentity(id)
	aid.Image, aid.MinVersion = s.identityImage(req.Image, id.Image)
	aid.Time, aid.Nonce = time.Now().UTC(), req.Nonce
	sid, err := api.SignIdentity(s.signer, aid)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.log.Info("who am I", "mac", id.MAC, "hostname", id.Hostname, "ip", id.IP, "enrolled", id.Enrolled, "image", aid.Image, "min_version", aid.MinVersion)
	writeJSON(w, r, sid)
}

// identityImage is the image a "who am I" answer names, with the version
// the print server serves now (0 when it has none of that name): the one
// asked for, else the host's, else the print server's only image.
func (s *Server) identityImage(asked, hosts string) (string, int) {
	name := asked
	if name == "" {
		name = hosts
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if name == "" && len(s.images) == 1 {
		name = s.images[0].Name
	}
	for _, im := range s.images {
		if im.Name == name {
			return name, im.Version
		}
	}
	return name, 0
}

func isHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func (s *Server) handleReport(w http.ResponseWriter, r *http.Request) {
	mac, err := hosts.ParseMAC(r.PathValue("mac"))
	if err != nil {
		http.Error(w, textsafe.Clean(err.Error(), 256), http.StatusBadRequest)
		return
	}
	if _, err := s.requesterMACs(r, []net.HardwareAddr{mac}); err != nil {
		s.refuseRequester(w, r, err)
		return
	}
	var rep api.Report
	if err := decodeJSON(r, &rep); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// What a workstation says is shown on terminals and logged: one line
	// of printable text, bounded.
	rep.Step, rep.State, rep.Error = textsafe.Clean(rep.Step, 64), textsafe.Clean(rep.State, 16), textsafe.Clean(rep.Error, 4096)
	rep.Detail = textsafe.Clean(rep.Detail, 1024)
	if err := s.cfg.Hosts.Report(mac, hostsReport(rep)); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.tracker.Report(mac, lifecycle.Report{Step: rep.Step, State: rep.State, Error: rep.Error, Time: rep.Time, Detail: rep.Detail})
	known := false
	if ids, err := s.cfg.Hosts.Identities(); err == nil {
		known = slices.ContainsFunc(ids, func(id hosts.Identity) bool { return id.MAC == mac.String() })
	}
	// A machine not in the table is logged once a minute at most: made-up
	// MACs must not fill the log.
	if known || s.logLimit.Allow("report "+mac.String(), time.Now()) {
		lvl := s.log.Info
		if rep.State == api.StateFailed {
			lvl = s.log.Warn
		}
		lvl("clone", "mac", mac, "step", rep.Step, "state", rep.State, "err", textsafe.Clean(rep.Error, 512), "in_table", known)
	}
	w.WriteHeader(http.StatusNoContent)
}

// maxWhoAmIMACs bounds the MACs of one "who am I": a machine's interfaces.
const maxWhoAmIMACs = 32

// decodeJSON decodes a small JSON request body into v.
func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New("bad request body: " + err.Error())
	}
	return nil
}

func parseMACs(ss []string) ([]net.HardwareAddr, error) {
	var out []net.HardwareAddr
	for _, s := range ss {
		mac, err := hosts.ParseMAC(s)
		if err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(out, func(m net.HardwareAddr) bool { return slices.Equal(m, mac) }) {
			out = append(out, mac)
		}
	}
	return out, nil
}
