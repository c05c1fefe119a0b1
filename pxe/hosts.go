package pxe

import (
	"fmt"
	"net"
	"sort"
	"sync"
)

// Hosts is the lab's hosts table as the network boot reads it. The Server
// keeps no copy of it: it asks on every request, as pixiecore asks its
// Booter, so that a change of the table (an import, a next-boot mark, a
// clone that finished) holds from the next request on and the next boot
// has one source of truth.
//
// The methods are called from the DHCP, TFTP and HTTP goroutines at once:
// they must be safe for concurrent use and return quickly (no network I/O).
type Hosts interface {
	// Host returns mac's entry; ok is false for a machine the table does
	// not hold. Called for every DHCP request, iPXE script and pxelinux
	// configuration.
	Host(mac net.HardwareAddr) (h Host, ok bool)
	// List returns every entry, in any order. ModeDHCP calls it for the
	// addresses its pool must not hand out, and Server.Leases for the
	// static leases.
	List() []Host
}

// HostTable is a Hosts kept in memory, for a Server without labseed's
// hosts table (tests, a network boot on its own). Safe for concurrent use.
type HostTable struct {
	mu    sync.Mutex
	byMAC map[string]Host
}

// NewHostTable returns a table holding hosts, checked as Set checks them.
func NewHostTable(hosts ...Host) (*HostTable, error) {
	t := &HostTable{}
	if err := t.Set(hosts); err != nil {
		return nil, err
	}
	return t, nil
}

// Set replaces the table's entries with hosts. An entry without a 6-byte
// MAC, a MAC listed twice or an address that is not IPv4 is an error
// wrapping ErrConfig, and the table does not change.
func (t *HostTable) Set(hosts []Host) error {
	byMAC := make(map[string]Host, len(hosts))
	for i, h := range hosts {
		if len(h.MAC) != 6 {
			return fmt.Errorf("%w: hosts entry %d (%q): MAC %q is not a 6-byte Ethernet address", ErrConfig, i, h.Hostname, h.MAC)
		}
		if _, dup := byMAC[h.MAC.String()]; dup {
			return fmt.Errorf("%w: hosts entry %d: MAC %s listed twice", ErrConfig, i, h.MAC)
		}
		if h.IP != nil && h.IP.To4() == nil {
			return fmt.Errorf("%w: host %s: IP %s is not IPv4", ErrConfig, h.MAC, h.IP)
		}
		byMAC[h.MAC.String()] = h
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byMAC = byMAC
	return nil
}

// SetNextBoot sets the next-boot mark (Host.Clone) of mac, adding an entry
// holding only the MAC when the table has none.
func (t *HostTable) SetNextBoot(mac net.HardwareAddr, clone bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	h, ok := t.byMAC[mac.String()]
	if !ok {
		h.MAC = append(net.HardwareAddr(nil), mac...)
	}
	h.Clone = clone
	t.byMAC[mac.String()] = h
}

// Host returns mac's entry.
func (t *HostTable) Host(mac net.HardwareAddr) (Host, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	h, ok := t.byMAC[mac.String()]
	return h, ok
}

// List returns every entry.
func (t *HostTable) List() []Host {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Host, 0, len(t.byMAC))
	for _, h := range t.byMAC {
		out = append(out, h)
	}
	return out
}

// host returns mac's entry in Config.Hosts; an address that is not IPv4
// is left out.
func (s *Server) host(mac net.HardwareAddr) (Host, bool) {
	if s.cfg.Hosts == nil || len(mac) != 6 {
		return Host{}, false
	}
	h, ok := s.cfg.Hosts.Host(mac)
	h.IP = h.IP.To4()
	return h, ok
}

// hostList returns the entries of Config.Hosts sorted by MAC, addresses
// that are not IPv4 left out.
func (s *Server) hostList() []Host {
	if s.cfg.Hosts == nil {
		return nil
	}
	out := s.cfg.Hosts.List()
	for i := range out {
		out[i].IP = out[i].IP.To4()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].MAC.String() < out[j].MAC.String() })
	return out
}

// NextBoot reports whether mac's next network boot is the clone entry (its
// Host.Clone mark in Config.Hosts).
func (s *Server) NextBoot(mac net.HardwareAddr) bool {
	h, _ := s.host(mac)
	return h.Clone
}
