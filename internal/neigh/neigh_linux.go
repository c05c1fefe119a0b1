package neigh

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func lookup(ip netip.Addr) (Peer, error) {
	routes, err := netlink.RouteGet(net.IP(ip.AsSlice()))
	if err != nil {
		return Peer{}, fmt.Errorf("neigh: route to %s: %w", ip, err)
	}
	if len(routes) == 0 {
		return Peer{}, fmt.Errorf("neigh: no route to %s", ip)
	}
	r := routes[0]
	if r.Type == unix.RTN_LOCAL {
		return Peer{Kind: Local}, nil
	}
	if r.Gw != nil || r.Via != nil {
		return Peer{Kind: Routed}, nil
	}
	fam := netlink.FAMILY_V4
	if ip.Is6() {
		fam = netlink.FAMILY_V6
	}
	ns, err := netlink.NeighList(r.LinkIndex, fam)
	if err != nil {
		return Peer{}, fmt.Errorf("neigh: neighbours of %s: %w", ip, err)
	}
	p := Peer{Kind: OnLink}
	for _, n := range ns {
		if n.IP.Equal(net.IP(ip.AsSlice())) && n.State&(netlink.NUD_INCOMPLETE|netlink.NUD_FAILED) == 0 &&
			len(n.HardwareAddr) == 6 && !bytes.Equal(n.HardwareAddr, make([]byte, 6)) {
			p.MAC = n.HardwareAddr
			break
		}
	}
	return p, nil
}
