package pxe

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// Interface is the lab network's interface of a print server: where its
// DHCP sockets are bound (Config.Interface) and its address on the lab.
type Interface struct {
	Name string
	IP   net.IP // IPv4
}

// LabInterface finds the lab network's interface by the rule of "labseed
// serve --pxe". The DHCP sockets must be bound to it: a broadcast reply
// from a socket bound to no interface is routed, and on a lab network
// without a default route every reply fails with "network is
// unreachable".
//
//   - name given (--interface): that interface; IP is ip when given, else
//     its first IPv4 address.
//   - else ip given (--listen, --advertise) and an interface holds it: that
//     interface.
//   - else the only interface that is up, not loopback, and has an IPv4
//     address; with several such candidates it refuses and names them
//     (give --listen with the lab address, or --interface).
func LabInterface(name string, ip net.IP) (Interface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return Interface{}, fmt.Errorf("pxe: list the network interfaces: %w", err)
	}
	var all []ifaceAddrs
	for _, ifc := range ifs {
		a := ifaceAddrs{name: ifc.Name, up: ifc.Flags&net.FlagUp != 0, loopback: ifc.Flags&net.FlagLoopback != 0}
		addrs, _ := ifc.Addrs()
		for _, ad := range addrs {
			if n, ok := ad.(*net.IPNet); ok && n.IP.To4() != nil {
				a.ips = append(a.ips, n.IP.To4())
			}
		}
		all = append(all, a)
	}
	return labInterface(all, name, ip)
}

// ifaceAddrs is what LabInterface needs to know of an interface.
type ifaceAddrs struct {
	name         string
	up, loopback bool
	ips          []net.IP // IPv4
}

// errInterface is wrapped by every error of labInterface.
var errInterface = errors.New("pxe: which interface is the lab's")

func labInterface(ifs []ifaceAddrs, name string, ip net.IP) (Interface, error) {
	ip = ip.To4()
	if ip != nil && ip.IsUnspecified() {
		ip = nil
	}
	if name != "" {
		for _, a := range ifs {
			if a.name != name {
				continue
			}
			if ip != nil {
				return Interface{Name: name, IP: ip}, nil
			}
			if len(a.ips) == 0 {
				return Interface{}, fmt.Errorf("%w: interface %s has no IPv4 address: give the print server's lab address with --listen", errInterface, name)
			}
			return Interface{Name: name, IP: a.ips[0]}, nil
		}
		return Interface{}, fmt.Errorf("%w: there is no interface %q on this machine", errInterface, name)
	}
	if ip != nil {
		for _, a := range ifs {
			for _, x := range a.ips {
				if x.Equal(ip) {
					return Interface{Name: a.name, IP: ip}, nil
				}
			}
		}
	}
	var cands []ifaceAddrs
	for _, a := range ifs {
		if a.up && !a.loopback && len(a.ips) > 0 {
			cands = append(cands, a)
		}
	}
	switch len(cands) {
	case 1:
		c := cands[0]
		if ip == nil {
			ip = c.ips[0]
		}
		return Interface{Name: c.name, IP: ip}, nil
	case 0:
		return Interface{}, fmt.Errorf("%w: no interface is up with an IPv4 address: bring the lab interface up, or name it with --interface", errInterface)
	}
	var names []string
	for _, c := range cands {
		names = append(names, fmt.Sprintf("%s (%s)", c.name, c.ips[0]))
	}
	return Interface{}, fmt.Errorf("%w: several interfaces could be the lab's, %s: give the lab interface's address with --listen, or its name with --interface", errInterface, strings.Join(names, ", "))
}
