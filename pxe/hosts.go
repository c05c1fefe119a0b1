package pxe

import (
	"fmt"
	"net"
	"sort"
)

// SetHosts replaces the hosts table (static leases, per-host images and
// next-boot marks) of a running server, as after an import or an edit of
// the lab's table. Each host's Clone sets its next-boot mark.
func (s *Server) SetHosts(hosts []Host) error {
	byMAC := make(map[string]Host, len(hosts))
	for _, h := range hosts {
		if len(h.MAC) != 6 {
			return fmt.Errorf("%w: host %q: MAC %q is not a 6-byte Ethernet address", ErrConfig, h.Hostname, h.MAC)
		}
		if _, dup := byMAC[h.MAC.String()]; dup {
			return fmt.Errorf("%w: MAC %s listed twice", ErrConfig, h.MAC)
		}
		byMAC[h.MAC.String()] = h
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hosts = byMAC
	s.nextBoot = make(map[string]bool, len(hosts))
	for mac, h := range byMAC {
		s.nextBoot[mac] = h.Clone
	}
	return nil
}

// hostList returns the hosts table sorted by MAC.
func (s *Server) hostList() []Host {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Host, 0, len(s.hosts))
	for _, h := range s.hosts {
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].MAC.String() < out[j].MAC.String() })
	return out
}

// EventMACs returns the MACs that have boot events, sorted: the hosts table
// and every other machine that asked to boot.
func (s *Server) EventMACs() []net.HardwareAddr { return s.events.macs() }
