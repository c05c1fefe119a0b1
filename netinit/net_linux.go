package netinit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
)

// How long the network may take.
const (
	cardWait    = 15 * time.Second // for a network card to show up once its driver is loaded
	linkWait    = 30 * time.Second // for a cable to be seen (switch ports may take a while)
	dhcpTimeout = 40 * time.Second // for a DHCP lease, per interface
)

// network brings the machine's Ethernet interfaces up, waits for a link
// and gets an address, a route and DNS servers by DHCP, on the interface
// booted from first (BOOTIF=). An interface that already has an IPv4
// address (a second attempt) is kept as it is.
func network(ctx context.Context, o Options, say func(string, ...any)) error {
	if lo, err := netlink.LinkByName("lo"); err == nil {
		netlink.LinkSetUp(lo)
	}
	links, err := ethernet(ctx, o.BootMAC)
	if err != nil {
		return err
	}
	for _, l := range links {
		if err := netlink.LinkSetUp(l); err != nil {
			return fmt.Errorf("bring up %s: %w", l.Attrs().Name, err)
		}
	}
	up := waitLink(ctx, links, say)
	if len(up) == 0 {
		var names []string
		for _, l := range links {
			names = append(names, fmt.Sprintf("%s (%s)", l.Attrs().Name, l.Attrs().HardwareAddr))
		}
		return fmt.Errorf("no network link on %s after %s: check the cable and the switch port", strings.Join(names, ", "), linkWait)
	}
	var errs []error
	for _, l := range up {
		name := l.Attrs().Name
		if a := ipv4(l); a != "" {
			say("network: %s has %s", name, a)
			return nil
		}
		say("network: asking for an address by DHCP on %s (%s)", name, l.Attrs().HardwareAddr)
		lease, err := dhcp(ctx, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		if err := configure(l, lease); err != nil {
			return err
		}
		return nil
	}
	return fmt.Errorf("no address by DHCP (%w): check that the lab's DHCP server answers this machine (labseed serve --pxe proxy needs one; --pxe dhcp is one)", errors.Join(errs...))
}

// ethernet returns the Ethernet interfaces, the one with bootMAC first,
// waiting a little for the first to appear.
func ethernet(ctx context.Context, bootMAC string) ([]netlink.Link, error) {
	deadline := time.Now().Add(cardWait)
	for {
		all, err := netlink.LinkList()
		if err != nil {
			return nil, fmt.Errorf("list network interfaces: %w", err)
		}
		var out []netlink.Link
		for _, l := range all {
			a := l.Attrs()
			if l.Type() == "device" && len(a.HardwareAddr) == 6 && a.Flags&net.FlagLoopback == 0 {
				out = append(out, l)
			}
		}
		slices.SortStableFunc(out, func(a, b netlink.Link) int {
			return boolInt(a.Attrs().HardwareAddr.String() != bootMAC) - boolInt(b.Attrs().HardwareAddr.String() != bootMAC)
		})
		if len(out) > 0 {
			return out, nil
		}
		if time.Now().After(deadline) {
			return nil, errors.New("no network card: the kernel has a driver for none of this machine's cards (see 'dmesg' and 'cat /sys/bus/pci/devices/*/modalias' in the shell; labseed netboot build lists the drivers it carries)")
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// waitLink waits until some of links have a carrier and returns those.
func waitLink(ctx context.Context, links []netlink.Link, say func(string, ...any)) []netlink.Link {
	start := time.Now()
	told := false
	for {
		var up []netlink.Link
		for _, l := range links {
			if b, err := os.ReadFile("/sys/class/net/" + l.Attrs().Name + "/carrier"); err == nil && strings.TrimSpace(string(b)) == "1" {
				up = append(up, l)
			}
		}
		if len(up) > 0 || time.Since(start) > linkWait || ctx.Err() != nil {
			return up
		}
		if !told && time.Since(start) > 2*time.Second {
			say("network: waiting for a link (cable) on %s...", links[0].Attrs().Name)
			told = true
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

// ipv4 returns the interface's global IPv4 address, "" if none.
func ipv4(l netlink.Link) string {
	addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
	for _, a := range addrs {
		if a.IP.IsGlobalUnicast() {
			return a.IPNet.String()
		}
	}
	return ""
}

// dhcp gets a lease on the interface.
func dhcp(ctx context.Context, iface string) (*nclient4.Lease, error) {
	c, err := nclient4.New(iface, nclient4.WithTimeout(3*time.Second), nclient4.WithRetry(4))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	dctx, cancel := context.WithTimeout(ctx, dhcpTimeout)
	defer cancel()
	for {
		lease, err := c.Request(dctx)
		if err == nil {
			return lease, nil
		}
		if dctx.Err() != nil {
			return nil, fmt.Errorf("no answer within %s: %w", dhcpTimeout, err)
		}
		sleep(dctx, time.Second)
	}
}

// configure gives the interface the lease's address, default route and
// DNS servers.
func configure(l netlink.Link, lease *nclient4.Lease) error {
	ack := lease.ACK
	mask := ack.SubnetMask()
	if mask == nil {
		mask = ack.YourIPAddr.DefaultMask()
	}
	ipn := &net.IPNet{IP: ack.YourIPAddr, Mask: mask}
	if err := netlink.AddrReplace(l, &netlink.Addr{IPNet: ipn}); err != nil {
		return fmt.Errorf("address %s on %s: %w", ipn, l.Attrs().Name, err)
	}
	if gws := ack.Router(); len(gws) > 0 {
		r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: gws[0]}
		if err := netlink.RouteReplace(r); err != nil {
			return fmt.Errorf("default route via %s: %w", gws[0], err)
		}
	}
	var rc strings.Builder
	if d := ack.DomainName(); d != "" {
		fmt.Fprintf(&rc, "search %s\n", d)
	}
	for _, d := range ack.DNS() {
		fmt.Fprintf(&rc, "nameserver %s\n", d)
	}
	if rc.Len() > 0 {
		os.MkdirAll("/etc", 0o755)
		os.WriteFile("/etc/resolv.conf", []byte(rc.String()), 0o644)
	}
	return nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
