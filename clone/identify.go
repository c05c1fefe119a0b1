package clone

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/labseed/labseed/api"
)

// Kernel command line parameters the clone reads.
const (
	ParamServer = "labseed.server" // the print server, HOST[:PORT]
	ParamImage  = "labseed.image"  // the image to install
	ParamFull   = "labseed.full"   // format the root file system even when it could be synced (Config.Full)
	paramBootIF = "BOOTIF"         // the MAC booted from (pxelinux IPAPPEND 2, iPXE): 01-52-54-00-12-34-56
)

// parseCmdline splits a kernel command line into its parameters, as the
// kernel does: words separated by spaces, double quotes grouping spaces
// into a word (and removed), "key=value" or a bare "key" (value ""). A key
// given twice keeps its last value.
func parseCmdline(s string) map[string]string {
	out := map[string]string{}
	var word strings.Builder
	inQuote, inWord := false, false
	flush := func() {
		if inWord {
			k, v, _ := strings.Cut(word.String(), "=")
			if k != "" {
				out[k] = v
			}
		}
		word.Reset()
		inWord = false
	}
	for _, r := range s {
		switch {
		case r == '"':
			inQuote = !inQuote
			inWord = true
		case !inQuote && (r == ' ' || r == '\t' || r == '\n'):
			flush()
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	flush()
	return out
}

// bootMAC parses BOOTIF's value: the hardware type (01, Ethernet) and the
// MAC with dashes.
func bootMAC(v string) (string, bool) {
	t, rest, ok := strings.Cut(v, "-")
	if !ok || t != "01" {
		return "", false
	}
	mac, err := api.ParseMAC(rest)
	if err != nil {
		return "", false
	}
	return mac.String(), true
}

// readCmdline reads the kernel command line's parameters; a missing file
// (not Linux, a container) gives none.
func (c *cloner) readCmdline() {
	c.params = map[string]string{}
	b, err := os.ReadFile(c.cfg.CmdlinePath)
	if err != nil {
		c.log.Debug("kernel command line", "err", err)
		return
	}
	c.params = parseCmdline(string(b))
}

// network finds the print server and makes sure it can be reached,
// bringing the network up with DHCP when no interface is configured.
func (c *cloner) network(ctx context.Context) error {
	c.readCmdline()
	if c.cfg.Server == "" {
		c.cfg.Server = c.params[ParamServer]
	}
	if c.cfg.Server == "" {
		return ErrNoServer
	}
	c.client = api.NewClient(c.cfg.Server)
	c.client.HTTP = c.cfg.HTTPClient
	c.cfg.Server = c.client.Addr // with the default port
	if c.image = c.cfg.Image; c.image == "" {
		c.image = c.params[ParamImage]
	}
	if routable(c.cfg.Server) {
		c.log.Info("network is up", "server", c.cfg.Server)
		return nil
	}
	c.say("no route to %s: asking for an address with DHCP", c.cfg.Server)
	if err := c.dhcp(ctx); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for !routable(c.cfg.Server) {
		if time.Now().After(deadline) {
			return fmt.Errorf("no route to the print server %s after DHCP: check the cable and the lab's DHCP server", c.cfg.Server)
		}
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// routable reports whether the system has a route to server's address (a
// UDP "connection" sends nothing, it only picks a route). A host name that
// does not resolve counts as unreachable.
func routable(server string) bool {
	conn, err := net.Dial("udp", server)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// dhcpClients are tried in order; the first one installed configures
// every interface that is down or has no IPv4 address.
var dhcpClients = []struct {
	bin  string
	args func(iface string) []string
}{
	{"dhclient", func(i string) []string { return []string{"-1", "-4", i} }},
	{"dhcpcd", func(i string) []string { return []string{"-1", "-4", "-w", i} }},
	{"udhcpc", func(i string) []string { return []string{"-n", "-q", "-t", "5", "-i", i} }},
	{"busybox", func(i string) []string { return []string{"udhcpc", "-n", "-q", "-t", "5", "-i", i} }},
}

// dhcp brings the interfaces without an IPv4 address up and runs a DHCP
// client on each; it succeeds if any got an address.
func (c *cloner) dhcp(ctx context.Context) error {
	ifaces, err := net.Interfaces()
	if err != nil {
		return fmt.Errorf("list network interfaces: %w", err)
	}
	var client string
	var args func(string) []string
	for _, d := range dhcpClients {
		if p, err := exec.LookPath(d.bin); err == nil {
			client, args = p, d.args
			break
		}
	}
	if client == "" {
		return errors.New("the network is down and there is no DHCP client (dhclient, dhcpcd, udhcpc): configure it before labseed clone (ip=dhcp on the kernel command line)")
	}
	var errs []error
	ok := false
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagLoopback != 0 || len(ifc.HardwareAddr) != 6 || hasIPv4(ifc) {
			continue
		}
		if out, err := exec.CommandContext(ctx, "ip", "link", "set", "dev", ifc.Name, "up").CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip link set dev %s up: %w%s", ifc.Name, err, lines(out)))
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, 45*time.Second)
		out, err := exec.CommandContext(dctx, client, args(ifc.Name)...).CombinedOutput()
		cancel()
		c.log.Info("DHCP", "iface", ifc.Name, "client", client, "err", err, "output", string(bytes.TrimSpace(out)))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s on %s: %w%s", client, ifc.Name, err, lines(out)))
			continue
		}
		ok = true
	}
	if !ok {
		return fmt.Errorf("DHCP got no address: %w", errors.Join(errs...))
	}
	return nil
}

func hasIPv4(ifc net.Interface) bool {
	addrs, _ := ifc.Addrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
			return true
		}
	}
	return false
}

// machineMACs returns the MACs of this machine's Ethernet interfaces: the
// one given by BOOTIF first, then the one that routes to server, then the
// others in the kernel's order.
func machineMACs(server, bootIF string) ([]string, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list network interfaces: %w", err)
	}
	var local net.IP
	if conn, err := net.Dial("udp", server); err == nil {
		local = conn.LocalAddr().(*net.UDPAddr).IP
		conn.Close()
	}
	var macs []string
	routeMAC := ""
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagLoopback != 0 || len(ifc.HardwareAddr) != 6 || bytes.Equal(ifc.HardwareAddr, make([]byte, 6)) {
			continue
		}
		mac := ifc.HardwareAddr.String()
		if slices.Contains(macs, mac) {
			continue
		}
		macs = append(macs, mac)
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && local != nil && n.IP.Equal(local) {
				routeMAC = mac
			}
		}
	}
	first := func(mac string) {
		if i := slices.Index(macs, mac); i > 0 {
			macs = append([]string{mac}, slices.Delete(macs, i, i+1)...)
		}
	}
	first(routeMAC)
	if bootIF != "" {
		if !slices.Contains(macs, bootIF) {
			macs = append(macs, bootIF)
		}
		first(bootIF)
	}
	if len(macs) == 0 {
		return nil, errors.New("this machine has no Ethernet interface")
	}
	return macs, nil
}

// interfaceFor returns the name of the local interface with mac, or "".
func interfaceFor(mac string) string {
	ifaces, _ := net.Interfaces()
	for _, ifc := range ifaces {
		if strings.EqualFold(ifc.HardwareAddr.String(), mac) {
			return ifc.Name
		}
	}
	return ""
}

// identifyTimeout is how long the print server may stay unreachable (or
// answer errors other than "unknown machine") before the clone gives up.
const identifyTimeout = 2 * time.Minute

// identify asks the print server who this machine is, and which image it
// gets (resolveImage).
func (c *cloner) identify(ctx context.Context) error {
	macs := slices.Clone(c.cfg.MACs)
	if len(macs) == 0 {
		boot, _ := bootMAC(c.params[paramBootIF])
		var err error
		if macs, err = machineMACs(c.cfg.Server, boot); err != nil {
			return err
		}
	}
	for i, m := range macs {
		mac, err := api.ParseMAC(m)
		if err != nil {
			return err
		}
		macs[i] = mac.String()
	}
	// Until the print server says which MAC it knows, the reports are
	// about the first (the steps before had none to report).
	c.reportMAC = macs[0]
	c.report(ctx, StepIdentify, api.StateRunning, "")
	var nb [16]byte
	rand.Read(nb[:])
	req := api.WhoAmIRequest{MACs: macs, Nonce: hex.EncodeToString(nb[:]), Image: c.image}
	var sid api.SignedIdentity
	deadline := time.Now().Add(identifyTimeout)
	for attempt := 0; ; attempt++ {
		var err error
		if sid, err = c.client.WhoAmI(ctx, req); err == nil {
			break
		}
		var ae *api.APIError
		if errors.As(err, &ae) && ae.Code/100 == 4 {
			return fmt.Errorf("who am I (%s): %w", strings.Join(macs, ", "), err)
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("who am I: %w", err)
		}
		if attempt%10 == 0 {
			c.log.Warn("print server not answering, retrying", "server", c.cfg.Server, "err", err)
		}
		if err := sleep(ctx, min(time.Duration(attempt+1)*500*time.Millisecond, 5*time.Second)); err != nil {
			return err
		}
	}
	// Nothing of the answer is used before its signature, its nonce and
	// its MAC are checked: it carries commands run as root.
	var err error
	if c.cfg.Insecure {
		c.id, err = api.DecodeIdentity(sid)
	} else {
		key := c.cfg.IdentityKey
		if key == nil {
			key = c.cfg.PublicKey
		}
		c.id, err = api.VerifyIdentity(key, sid)
	}
	if err != nil {
		return fmt.Errorf("who am I from %s: %w", c.cfg.Server, err)
	}
	if c.id.Nonce != req.Nonce {
		return fmt.Errorf("who am I from %s: the answer is not to this request (nonce %q, sent %q): an old answer replayed", c.cfg.Server, c.id.Nonce, req.Nonce)
	}
	if mac, err := api.ParseMAC(c.id.MAC); err != nil || !slices.Contains(macs, mac.String()) {
		return fmt.Errorf("who am I from %s: the answer is for %q, not one of this machine's MACs (%s)", c.cfg.Server, c.id.MAC, strings.Join(macs, ", "))
	}
	if req.Image != "" && c.id.Image != req.Image {
		return fmt.Errorf("who am I from %s: the answer is about image %q, not %q", c.cfg.Server, c.id.Image, req.Image)
	}
	if err := checkIdentity(&c.id); err != nil {
		return fmt.Errorf("the print server's answer for %s: %w", c.id.MAC, err)
	}
	c.reportMAC = c.id.MAC
	// Say it again for the MAC the table knows.
	if c.reportMAC != macs[0] {
		c.report(ctx, StepIdentify, api.StateRunning, "")
	}
	if c.image == "" {
		c.image = c.id.Image
	}
	c.log.Info("identified", "mac", c.id.MAC, "host", c.id.Hostname, "ip", c.id.IP, "enrolled", c.id.Enrolled,
		"image", c.image, "min_version", c.id.MinVersion, "server_time", c.id.Time)
	c.say("this machine is %s (%s/%d, MAC %s)", c.id.Hostname, c.id.IP, c.id.Prefix, c.id.MAC)
	return c.resolveImage(ctx)
}

// checkIdentity checks what the clone relies on and fills the defaults
// the print server may leave out.
func checkIdentity(id *api.Identity) error {
	mac, err := api.ParseMAC(id.MAC)
	if err != nil {
		return err
	}
	id.MAC = mac.String()
	if id.Hostname == "" {
		return errors.New("no host name")
	}
	if a, err := netip.ParseAddr(id.IP); err != nil || !a.Is4() {
		return fmt.Errorf("address %q is not an IPv4 address", id.IP)
	}
	if id.Prefix < 1 || id.Prefix > 32 {
		return fmt.Errorf("prefix length %d is not 1..32", id.Prefix)
	}
	if id.Filesystem == "" {
		id.Filesystem = "ext4"
	}
	if _, ok := mkfsCommands[id.Filesystem]; !ok {
		return fmt.Errorf("file system %q: labseed makes ext4, ext3 or xfs", id.Filesystem)
	}
	if id.Bootloader == "" {
		id.Bootloader = BootGrub
	}
	if id.SwapMiB < 0 || id.RootMiB < 0 {
		return fmt.Errorf("negative partition size (root_mib %d, swap_mib %d)", id.RootMiB, id.SwapMiB)
	}
	return nil
}

// sleep waits d or until ctx is done.
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
