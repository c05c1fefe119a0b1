package seeder

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"

	"github.com/labseed/labseed/internal/neigh"
)

// A workstation holds no secret (its keys are in the netboot image), so
// the print server answers "who am I" and takes clone reports for a MAC
// only from the machine with that MAC:
//
//   - from this machine itself (loopback, its own addresses): any MAC;
//   - from an on-link neighbour: only the MAC the kernel resolved for the
//     neighbour's address (it had to, to answer the TCP connection);
//   - from a routed address: only a MAC whose address in the hosts table
//     is the request's source address.
//
// So a LAN host can learn its own identity and report its own clone, and
// nobody else's.

// errNotYours is a request about a MAC that is not the requester's.
var errNotYours = errors.New("this request is about a MAC that is not the requester's")

// errUnresolved is an on-link requester whose MAC the kernel has not
// resolved (yet): the request may be tried again.
var errUnresolved = errors.New("the print server cannot tell the requester's MAC address")

// requesterMACs returns those of macs that the request's sender may ask
// about (see above), in their order; an error (errNotYours or
// errUnresolved, wrapped) when none.
func (s *Server) requesterMACs(r *http.Request, macs []net.HardwareAddr) ([]net.HardwareAddr, error) {
	ip, err := sourceAddr(r)
	if err != nil {
		return nil, fmt.Errorf("%w: source address %q", errUnresolved, r.RemoteAddr)
	}
	return s.macsFrom(ip, macs)
}

// macsFrom returns those of macs that a sender at ip may speak for (the
// rule above); an error (errNotYours or errUnresolved, wrapped) when none.
func (s *Server) macsFrom(ip netip.Addr, macs []net.HardwareAddr) ([]net.HardwareAddr, error) {
	look := s.cfg.Neighbours
	if look == nil {
		look = neigh.Lookup
	}
	p, err := look(ip)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUnresolved, err)
	}
	switch p.Kind {
	case neigh.Local:
		return macs, nil
	case neigh.OnLink:
		if p.MAC == nil {
			return nil, fmt.Errorf("%w: %s has no entry in its neighbour table", errUnresolved, ip)
		}
		if slices.ContainsFunc(macs, func(m net.HardwareAddr) bool { return slices.Equal(m, p.MAC) }) {
			return []net.HardwareAddr{p.MAC}, nil
		}
		return nil, fmt.Errorf("%w: it comes from %s, whose MAC is %s", errNotYours, ip, p.MAC)
	}
	// Routed: the table's address of the MAC must be the sender's.
	var out []net.HardwareAddr
	if s.cfg.Hosts == nil {
		return nil, fmt.Errorf("%w: it comes from %s, through a router, and there is no hosts table", errNotYours, ip)
	}
	if ids, err := s.cfg.Hosts.Identities(); err == nil {
		for _, m := range macs {
			for _, id := range ids {
				if id.MAC == m.String() && id.IP == ip.String() {
					out = append(out, m)
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: it comes from %s, through a router, and the hosts table gives none of its MACs that address", errNotYours, ip)
	}
	return out, nil
}

// refuseRequester answers a request refused by requesterMACs: 403, or 503
// (try again) when the MAC was not resolved.
func (s *Server) refuseRequester(w http.ResponseWriter, r *http.Request, err error) {
	s.refusedLog(r, "workstation request refused", err)
	code := http.StatusForbidden
	if errors.Is(err, errUnresolved) {
		code = http.StatusServiceUnavailable
	}
	http.Error(w, err.Error(), code)
}
