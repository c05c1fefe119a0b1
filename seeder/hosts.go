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
	"github.com/labseed/labseed/hosts"
	"github.com/labseed/labseed/internal/textsafe"
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

// bootHosts lists the table's hosts, then the other machines that asked
// to boot, with their clone reports and boot events.
func (s *Server) bootHosts() ([]api.BootHost, error) {
	var out []api.BootHost
	seen := map[string]bool{}
	if s.cfg.Hosts != nil {
		ids, err := s.cfg.Hosts.Identities()
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			mac, _ := hosts.ParseMAC(id.MAC)
			seen[id.MAC] = true
			out = append(out, api.BootHost{MAC: id.MAC, Hostname: id.Hostname, IP: id.IP, NextBoot: id.NextBoot,
				Clone: apiReports(s.cfg.Hosts.Reports(mac)), Events: s.events(mac)})
		}
	}
	if s.boot != nil {
		for _, mac := range s.boot.EventMACs() {
			if !seen[mac.String()] {
				out = append(out, api.BootHost{MAC: mac.String(), Events: s.events(mac)})
			}
		}
	}
	return out, nil
}

func (s *Server) events(mac net.HardwareAddr) []api.BootEvent {
	if s.boot == nil {
		return nil
	}
	return apiEvents(s.boot.Events(mac))
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
	writeJSON(w, bh)
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
	if len(req.MACs) == 0 && !req.All {
		http.Error(w, "next boot: give MACs or all", http.StatusBadRequest)
		return
	}
	macs, err := parseMACs(req.MACs)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	n, err := s.cfg.Hosts.SetNextBoot(macs, req.Boot)
	if err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, hosts.ErrUnknownHost) {
			code = http.StatusNotFound
		}
		http.Error(w, err.Error(), code)
		return
	}
	s.log.Info("next boot set", "boot", req.Boot, "hosts", n)
	writeJSON(w, api.NextBootResult{Marked: n})
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
	s.log.Info("who am I", "mac", id.MAC, "hostname", id.Hostname, "ip", id.IP, "enrolled", id.Enrolled)
	writeJSON(w, apiIdentity(id))
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
	if err := s.cfg.Hosts.Report(mac, hostsReport(rep)); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
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
