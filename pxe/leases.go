package pxe

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/labseed/labseed/internal/atomicfile"
)

// Lease is one address handed out by a ModeDHCP server.
type Lease struct {
	MAC      string    `json:"mac"`
	IP       string    `json:"ip"`
	Hostname string    `json:"hostname,omitempty"`
	Expiry   time.Time `json:"expiry"`
	// Static is true for addresses from the hosts table.
	Static bool `json:"static,omitempty"`
}

// offerHold is how long an offered pool address stays reserved for the
// client before its DHCPREQUEST.
const offerHold = time.Minute

// leaseStore holds the pool leases; static leases live in Config.Hosts.
type leaseStore struct {
	mu     sync.Mutex
	path   string
	leases map[string]Lease // by MAC
}

func loadLeases(path string) (*leaseStore, error) {
	ls := &leaseStore{path: path, leases: map[string]Lease{}}
	if path == "" {
		return ls, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return ls, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pxe: read lease file: %w", err)
	}
	var list []Lease
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("pxe: lease file %s is corrupt (move it away to start with no leases): %w", path, err)
	}
	for _, l := range list {
		ls.leases[l.MAC] = l
	}
	return ls, nil
}

// save writes the leases atomically (temp file, fsync, rename). Called
// with mu held.
func (ls *leaseStore) save() error {
	if ls.path == "" {
		return nil
	}
	list := make([]Lease, 0, len(ls.leases))
	for _, l := range ls.leases {
		list = append(list, l)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].MAC < list[j].MAC })
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(ls.path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("pxe: save leases to %s: %w", ls.path, err)
	}
	return nil
}

// Leases returns the current leases (ModeDHCP): the static hosts with an
// IP, then the pool leases that have not expired, sorted by MAC.
func (s *Server) Leases() []Lease {
	var out []Lease
	for _, h := range s.hostList() {
		if h.IP != nil {
			out = append(out, Lease{MAC: h.MAC.String(), IP: h.IP.String(), Hostname: h.Hostname, Static: true})
		}
	}
	if s.leases != nil {
		now := s.cfg.Now()
		s.leases.mu.Lock()
		for _, l := range s.leases.leases {
			if l.Expiry.After(now) {
				out = append(out, l)
			}
		}
		s.leases.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].MAC < out[j].MAC })
	return out
}

// reserved returns the addresses the pool must not hand out: the server's,
// the gateway's and the static addresses of the hosts table.
func (s *Server) reserved() map[string]bool {
	out := map[string]bool{s.cfg.ServerIP.String(): true}
	if s.cfg.DHCP.Gateway != nil {
		out[s.cfg.DHCP.Gateway.String()] = true
	}
	for _, h := range s.hostList() {
		if h.IP != nil {
			out[h.IP.String()] = true
		}
	}
	return out
}

// address returns the address for mac: static, its current pool lease, or
// a free pool address (reserved for offerHold when offer is true).
func (s *Server) address(mac net.HardwareAddr, offer bool) (net.IP, bool) {
	if h, ok := s.host(mac); ok && h.IP != nil {
		return h.IP, true
	}
	if s.cfg.DHCP.PoolStart == nil {
		return nil, false
	}
	now := s.cfg.Now()
	ls := s.leases
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if l, ok := ls.leases[mac.String()]; ok {
		return net.ParseIP(l.IP).To4(), true
	}
	if !offer {
		return nil, false
	}
	used := s.reserved()
	for m, l := range ls.leases {
		if l.Expiry.After(now) {
			used[l.IP] = true
		} else if m != mac.String() {
			delete(ls.leases, m)
		}
	}
	for u := ip2u(s.cfg.DHCP.PoolStart); u <= ip2u(s.cfg.DHCP.PoolEnd) && u != 0; u++ {
		ip := u2ip(u)
		if used[ip.String()] {
			continue
		}
		ls.leases[mac.String()] = Lease{MAC: mac.String(), IP: ip.String(), Expiry: now.Add(offerHold)}
		return ip, true
	}
	return nil, false
}

// commit turns mac's lease into a full lease and persists it.
func (s *Server) commit(mac net.HardwareAddr, ip net.IP) error {
	h, ok := s.host(mac)
	if ok && h.IP != nil {
		return nil // static: nothing to persist
	}
	ls := s.leases
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.leases[mac.String()] = Lease{MAC: mac.String(), IP: ip.String(), Hostname: h.Hostname, Expiry: s.cfg.Now().Add(s.cfg.DHCP.LeaseTime)}
	return ls.save()
}

func (s *Server) release(mac net.HardwareAddr) {
	ls := s.leases
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if _, ok := ls.leases[mac.String()]; ok {
		delete(ls.leases, mac.String())
		if err := ls.save(); err != nil {
			s.log.Warn("release lease", "mac", mac.String(), "err", err)
		}
	}
}

// handleFull answers as the lab's DHCP server (ModeDHCP, port 67).
func (s *Server) handleFull(req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, string) {
	mac := req.ClientHWAddr
	mt := req.MessageType()
	var typ dhcpv4.MessageType
	var ip net.IP
	switch mt {
	case dhcpv4.MessageTypeDiscover:
		a, ok := s.address(mac, true)
		if !ok {
			return nil, "MAC not in the hosts table and no free pool address"
		}
		typ, ip = dhcpv4.MessageTypeOffer, a
	case dhcpv4.MessageTypeRequest:
		if sid := req.ServerIdentifier(); sid != nil && !sid.Equal(s.cfg.ServerIP) {
			s.releaseOffer(mac)
			return nil, "client chose DHCP server " + sid.String()
		}
		want := req.RequestedIPAddress()
		if want == nil || want.IsUnspecified() {
			want = req.ClientIPAddr
		}
		a, ok := s.address(mac, false)
		if !ok {
			return nil, "DHCPREQUEST from a MAC we have no lease for"
		}
		if !a.Equal(want) {
			typ = dhcpv4.MessageTypeNak
			break
		}
		if err := s.commit(mac, a); err != nil {
			s.log.Warn("persist lease", "mac", mac.String(), "ip", a, "err", err)
		}
		typ, ip = dhcpv4.MessageTypeAck, a
		s.learnIP(a, mac)
	case dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline:
		s.release(mac)
		return nil, mt.String() + " handled"
	default:
		return nil, mt.String() + " not handled"
	}
	if typ == dhcpv4.MessageTypeNak {
		resp, err := dhcpv4.NewReplyFromRequest(req, dhcpv4.WithMessageType(typ),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP)))
		if err != nil {
			return nil, "build reply: " + err.Error()
		}
		s.record(mac, EventNak, "requested "+req.RequestedIPAddress().String())
		return resp, ""
	}
	h, _ := s.host(mac)
	d := s.cfg.DHCP
	gw, dns := d.Gateway, d.DNS
	if h.Gateway != nil {
		gw = h.Gateway
	}
	if h.DNS != nil {
		dns = h.DNS
	}
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithYourIP(ip),
		dhcpv4.WithServerIP(s.cfg.ServerIP),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP)),
		dhcpv4.WithNetmask(d.Netmask),
		dhcpv4.WithLeaseTime(uint32(d.LeaseTime.Seconds())),
	}
	if gw != nil {
		mods = append(mods, dhcpv4.WithRouter(gw))
	}
	if len(dns) > 0 {
		mods = append(mods, dhcpv4.WithDNS(dns...))
	}
	if h.Hostname != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(h.Hostname)))
	}
	if d.Domain != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDomainName(d.Domain)))
	}
	detail := fmt.Sprintf("%s %s", typ, ip)
	if c := classify(req); c.vendor != "" {
		if b, reason := s.chooseBoot(c); reason == "" {
			mods = append(mods, s.bootModifiers(req, b)...)
			detail += " boot " + b.file
		} else {
			s.log.Info("no boot file for client", "mac", mac.String(), "arch", c.arch, "reason", reason)
			detail += " (no boot file: " + reason + ")"
		}
	}
	resp, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		return nil, "build reply: " + err.Error()
	}
	kind := EventOffer
	if typ == dhcpv4.MessageTypeAck {
		kind = EventAck
	}
	s.record(mac, kind, detail)
	return resp, ""
}

// releaseOffer frees a pool address offered to mac but not yet acked.
func (s *Server) releaseOffer(mac net.HardwareAddr) {
	ls := s.leases
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if l, ok := ls.leases[mac.String()]; ok && l.Expiry.Sub(s.cfg.Now()) <= offerHold {
		delete(ls.leases, mac.String())
	}
}
