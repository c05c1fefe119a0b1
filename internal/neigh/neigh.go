// Package neigh tells where a connection's source address is, as the
// kernel sees it: this machine itself (loopback, or one of its own
// addresses), an on-link neighbour (with the MAC address the kernel
// resolved for it to answer), or a host behind a router.
//
// The print server uses it to answer "who am I" and clone reports for a
// MAC only to the machine with that MAC, and the network boot to put a
// name on a TFTP client. On a switched LAN the kernel resolves the
// neighbour's MAC (ARP, IPv6 neighbour discovery) before it can answer a
// TCP connection, so the entry is there while the request is read.
package neigh

import (
	"net"
	"net/netip"
)

// Kind is where an address is.
type Kind int

// The kinds of address.
const (
	Local  Kind = iota // this machine: loopback or one of its addresses
	OnLink             // a neighbour on a directly connected network
	Routed             // behind a router (or unknown: not Linux)
)

// String returns "local", "on-link" or "routed".
func (k Kind) String() string {
	switch k {
	case Local:
		return "local"
	case OnLink:
		return "on-link"
	}
	return "routed"
}

// Peer is where an address is.
type Peer struct {
	Kind Kind
	// MAC is an OnLink neighbour's MAC as in the kernel's neighbour
	// table; nil when it has none (not resolved, or failed).
	MAC net.HardwareAddr
}

// Lookup says where ip is. Off Linux every address but loopback and this
// machine's own is Routed.
func Lookup(ip netip.Addr) (Peer, error) {
	ip = ip.Unmap()
	if ip.IsLoopback() || own(ip) {
		return Peer{Kind: Local}, nil
	}
	return lookup(ip)
}

// MAC returns the MAC of ip if it is an on-link neighbour the kernel has
// resolved, nil otherwise.
func MAC(ip net.IP) net.HardwareAddr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return nil
	}
	p, err := Lookup(a)
	if err != nil || p.Kind != OnLink {
		return nil
	}
	return p.MAC
}

// own reports whether ip is one of this machine's addresses.
func own(ip netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if b, ok := netip.AddrFromSlice(n.IP); ok && b.Unmap() == ip {
				return true
			}
		}
	}
	return false
}
