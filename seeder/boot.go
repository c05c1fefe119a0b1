package seeder

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/labseed/labseed/hosts"
	"github.com/labseed/labseed/lifecycle"
	"github.com/labseed/labseed/pxe"
)

// newBoot builds the network boot of Config.PXE (nil without it): the
// server's advertised address adv is its ServerIP, the HTTP listener at
// that address its HTTPAddr, the lab interface iface (pxe.LabInterface)
// its Interface, the hosts table its Hosts; in ModeDHCP the network it
// hands out is lab.conf's. Its sockets are opened here, after the
// server's own listeners; it serves from Run.
func (s *Server) newBoot(adv, iface string) (*pxe.Server, error) {
	if s.cfg.PXE == nil {
		return nil, nil
	}
	pc := *s.cfg.PXE
	switch {
	case pc.ServerIP != nil || pc.HTTPAddr != "":
		return nil, errors.New("seeder: PXE.ServerIP and PXE.HTTPAddr are the print server's own addresses: leave them empty (set ListenIP or AdvertiseIP)")
	case pc.Hosts != nil:
		return nil, errors.New("seeder: PXE.Hosts is the print server's hosts table: leave it empty (set Hosts)")
	}
	pc.Interface = iface
	pc.ServerIP = net.ParseIP(adv).To4()
	if pc.ServerIP == nil {
		return nil, fmt.Errorf("seeder: the network boot needs the server's IPv4 address on the lab network, not %q: set ListenIP or AdvertiseIP", adv)
	}
	pc.HTTPAddr = net.JoinHostPort(adv, strconv.Itoa(s.httpLn.Addr().(*net.TCPAddr).Port))
	if pc.Logger == nil {
		pc.Logger = s.cfg.Logger
	}
	// The boot events go to the machines' lifecycle records, not to a ring
	// of pxe's own as well.
	if pc.EventsPerHost == 0 {
		pc.EventsPerHost = -1
	}
	onEvent := pc.OnEvent
	pc.OnEvent = func(mac net.HardwareAddr, e pxe.Event) {
		clone := false
		if s.cfg.Hosts != nil {
			id, ok := s.cfg.Hosts.Lookup(mac)
			clone = ok && id.NextBoot == hosts.BootClone
		}
		s.tracker.Boot(mac, lifecycle.Event{Time: e.Time, Kind: clean(string(e.Kind)), Detail: cleanErr(e.Detail)}, clone)
		if onEvent != nil {
			onEvent(mac, e)
		}
	}
	if s.cfg.Hosts != nil {
		pc.Hosts = bootTable{s.cfg.Hosts}
		if pc.Mode == pxe.ModeDHCP {
			d, err := dhcpNetwork(s.cfg.Hosts, s.cfg.Store.Dir(), pc.DHCP)
			if err != nil {
				return nil, err
			}
			pc.DHCP = d
		}
	}
	return pxe.New(pc)
}

// dhcpNetwork is the network ModeDHCP hands out, from lab.conf: netmask,
// gateway, DNS, domain and dhcp_pool (machines not in the hosts table;
// none: only the table's machines get an address). The pool's leases are
// kept in dir/leases.json; d's lease time is kept.
func dhcpNetwork(db *hosts.DB, dir string, d pxe.DHCPConfig) (pxe.DHCPConfig, error) {
	n, err := db.Network()
	if err != nil {
		return d, err
	}
	ip := func(a netip.Addr) net.IP {
		if !a.IsValid() {
			return nil
		}
		return net.IP(a.AsSlice())
	}
	d.Netmask, d.Gateway, d.Domain = net.CIDRMask(n.Prefix, 32), ip(n.Gateway), n.Domain
	d.PoolStart, d.PoolEnd = ip(n.PoolFirst), ip(n.PoolLast)
	d.LeaseFile = filepath.Join(dir, "leases.json")
	d.DNS = nil
	for _, a := range n.DNS {
		d.DNS = append(d.DNS, ip(a))
	}
	return d, nil
}

// bootTable is the hosts table as the network boot asks it (pxe.Hosts):
// the next-boot marks are kept in hosts.DB only.
type bootTable struct{ db *hosts.DB }

// Host returns mac's entry.
func (b bootTable) Host(mac net.HardwareAddr) (pxe.Host, bool) {
	id, ok := b.db.Lookup(mac)
	if !ok {
		return pxe.Host{}, false
	}
	return pxeHost(id)
}

// List returns every entry.
func (b bootTable) List() []pxe.Host {
	ids := b.db.List()
	out := make([]pxe.Host, 0, len(ids))
	for _, id := range ids {
		if h, ok := pxeHost(id); ok {
			out = append(out, h)
		}
	}
	return out
}

// pxeHost is a host's identity as the network boot needs it; ok is false
// for an identity without a valid MAC.
func pxeHost(id hosts.Identity) (pxe.Host, bool) {
	mac, err := hosts.ParseMAC(id.MAC)
	if err != nil {
		return pxe.Host{}, false
	}
	h := pxe.Host{MAC: mac, IP: net.ParseIP(id.IP), Hostname: id.Hostname, Gateway: net.ParseIP(id.Gateway),
		Image: id.Image, Clone: id.NextBoot == hosts.BootClone, Args: id.BootArgs}
	if id.OnFailure != "" {
		h.Args = strings.TrimSpace(h.Args + " labseed.on_failure=" + id.OnFailure)
	}
	for _, d := range id.DNS {
		if ip := net.ParseIP(strings.TrimSpace(d)); ip != nil {
			h.DNS = append(h.DNS, ip)
		}
	}
	return h, true
}
