package pxe

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Client system architectures (option 93, RFC 4578 and IANA registry).
const (
	ArchBIOS        uint16 = 0  // x86 BIOS PXE
	ArchEFIIA32     uint16 = 6  // 32-bit x86 UEFI: not supported
	ArchEFIx64      uint16 = 7  // x86-64 UEFI
	ArchEFIBC       uint16 = 9  // x86-64 UEFI as sent by iPXE's EFI build
	ArchEFIx64HTTP  uint16 = 16 // x86-64 UEFI HTTP boot
	maxDHCPDatagram        = 1500
)

// client is what a request says about its sender.
type client struct {
	mac     net.HardwareAddr
	vendor  string // "PXEClient", "HTTPClient" or "" (not a network-boot client)
	arch    uint16
	hasArch bool
	ipxe    bool
}

// classify reads the network-boot options of req.
func classify(req *dhcpv4.DHCPv4) client {
	c := client{mac: req.ClientHWAddr}
	vc := string(req.Options.Get(dhcpv4.OptionClassIdentifier))
	switch {
	case strings.HasPrefix(vc, "PXEClient"):
		c.vendor = "PXEClient"
	case strings.HasPrefix(vc, "HTTPClient"):
		c.vendor = "HTTPClient"
	}
	if a := req.Options.Get(dhcpv4.OptionClientSystemArchitectureType); len(a) >= 2 {
		c.arch, c.hasArch = binary.BigEndian.Uint16(a), true
	} else if i := strings.Index(vc, ":Arch:"); i >= 0 && len(vc) >= i+11 {
		if n, err := strconv.ParseUint(vc[i+6:i+11], 10, 16); err == nil {
			c.arch, c.hasArch = uint16(n), true
		}
	}
	c.ipxe = isIPXE(req.Options.Get(dhcpv4.OptionUserClassInformation))
	return c
}

// isIPXE recognises user class "iPXE", raw (as iPXE sends it) or in RFC
// 3004 form.
func isIPXE(uc []byte) bool {
	if string(uc) == "iPXE" {
		return true
	}
	for len(uc) > 0 {
		n := int(uc[0])
		if n == 0 || 1+n > len(uc) {
			return false
		}
		if string(uc[1:1+n]) == "iPXE" {
			return true
		}
		uc = uc[1+n:]
	}
	return false
}

// bootChoice is the boot information for one client.
type bootChoice struct {
	file   string // boot file name or URL
	tftp   bool   // file is on our TFTP server (siaddr, option 43)
	vendor string // option 60 to answer with
	uefi   bool
}

// chooseBoot picks the boot file by architecture; ok false means the
// architecture is not supported (reason says why).
func (s *Server) chooseBoot(c client) (b bootChoice, reason string) {
	arch := c.arch
	if !c.hasArch {
		arch = ArchBIOS // PXE 2.1 clients always send option 93; old ones are BIOS
	}
	switch arch {
	case ArchBIOS:
	case ArchEFIx64, ArchEFIBC, ArchEFIx64HTTP:
		b.uefi = true
	default:
		return b, fmt.Sprintf("client architecture %d is not supported (only 0 BIOS, 7/9 x86-64 UEFI, 16 UEFI HTTP)", arch)
	}
	b.vendor = "PXEClient"
	switch {
	case c.ipxe:
		b.file = s.ScriptURL(c.mac, b.uefi)
		if c.vendor == "HTTPClient" {
			b.vendor = "HTTPClient"
		}
	case arch == ArchEFIx64HTTP || c.vendor == "HTTPClient":
		b.file = "http://" + s.cfg.HTTPAddr + "/pxe/boot/" + s.cfg.UEFIBootFile
		b.vendor = "HTTPClient"
	case arch == ArchBIOS:
		b.file, b.tftp = s.cfg.BIOSBootFile, true
	default:
		b.file, b.tftp = s.cfg.UEFIBootFile, true
	}
	return b, ""
}

// bootModifiers are the options every boot reply carries.
func (s *Server) bootModifiers(req *dhcpv4.DHCPv4, b bootChoice) []dhcpv4.Modifier {
	mods := []dhcpv4.Modifier{
		dhcpv4.WithServerIP(s.cfg.ServerIP),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP)),
		dhcpv4.WithGeneric(dhcpv4.OptionClassIdentifier, []byte(b.vendor)),
		func(d *dhcpv4.DHCPv4) {
			d.BootFileName = b.file
			d.ServerHostName = s.cfg.ServerIP.String()
		},
	}
	if b.tftp {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptTFTPServerName(s.cfg.ServerIP.String())),
			dhcpv4.WithOption(dhcpv4.OptBootFileName(b.file)))
	}
	if b.vendor == "PXEClient" && b.tftp {
		// PXE_DISCOVERY_CONTROL = 8: skip boot server discovery, boot the file.
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionVendorSpecificInformation, []byte{6, 1, 8, 255}))
	}
	if uuid := req.Options.Get(dhcpv4.OptionClientMachineIdentifier); uuid != nil {
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, uuid))
	}
	return mods
}

// handleDHCP decides the reply to req, received on the proxyDHCP port
// (4011) if onProxyPort. It does no network I/O (ModeDHCP may write the
// lease file): a nil reply comes with the reason it is ignored.
func (s *Server) handleDHCP(req *dhcpv4.DHCPv4, onProxyPort bool) (*dhcpv4.DHCPv4, string) {
	resp, reason := s.answer(req, onProxyPort)
	if resp == nil {
		s.stats.dhcpIgnored.Add(1)
		c := classify(req)
		lvl := s.log.Debug
		if c.vendor != "" && !s.routineIgnore(req, onProxyPort) {
			// A boot client we do not answer: the sysadmin wants to know why.
			lvl = s.log.Info
			s.record(req.ClientHWAddr, EventIgnored, reason)
		}
		lvl("no answer to DHCP request", "mac", req.ClientHWAddr.String(), "type", req.MessageType(), "arch", c.arch, "vendor", c.vendor, "reason", reason)
	}
	return resp, reason
}

// routineIgnore reports whether ignoring req is part of every boot: in
// proxy mode each boot client sends a DHCPREQUEST to port 67 for the lab
// DHCP server's offer, which is no business of ours and not worth an event.
func (s *Server) routineIgnore(req *dhcpv4.DHCPv4, onProxyPort bool) bool {
	return s.cfg.Mode == ModeProxy && !onProxyPort && req.MessageType() == dhcpv4.MessageTypeRequest
}

func (s *Server) answer(req *dhcpv4.DHCPv4, onProxyPort bool) (*dhcpv4.DHCPv4, string) {
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		return nil, "not a BOOTREQUEST"
	}
	if len(req.ClientHWAddr) != 6 {
		return nil, fmt.Sprintf("hardware address length %d, want 6 (Ethernet)", len(req.ClientHWAddr))
	}
	if s.cfg.Mode == ModeDHCP && !onProxyPort {
		return s.handleFull(req)
	}
	return s.handleProxy(req, onProxyPort)
}

func (s *Server) handleProxy(req *dhcpv4.DHCPv4, onProxyPort bool) (*dhcpv4.DHCPv4, string) {
	c := classify(req)
	if c.vendor == "" {
		return nil, "not a PXE/HTTP boot client (no option 60 PXEClient/HTTPClient)"
	}
	var typ dhcpv4.MessageType
	switch mt := req.MessageType(); {
	case !onProxyPort && mt == dhcpv4.MessageTypeDiscover:
		typ = dhcpv4.MessageTypeOffer
	case onProxyPort && (mt == dhcpv4.MessageTypeRequest || mt == dhcpv4.MessageTypeInform):
		typ = dhcpv4.MessageTypeAck
	default:
		return nil, fmt.Sprintf("%s on port %d is not for a proxyDHCP server", mt, map[bool]int{false: 67, true: 4011}[onProxyPort])
	}
	b, reason := s.chooseBoot(c)
	if reason != "" {
		return nil, reason
	}
	mods := append([]dhcpv4.Modifier{dhcpv4.WithMessageType(typ)}, s.bootModifiers(req, b)...)
	resp, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		return nil, "build reply: " + err.Error()
	}
	resp.YourIPAddr = net.IPv4zero
	if onProxyPort {
		s.learnIP(req.ClientIPAddr, req.ClientHWAddr)
	}
	s.record(req.ClientHWAddr, EventProxyOffer, fmt.Sprintf("%s arch %d boot %s", typ, c.arch, b.file))
	return resp, ""
}

// replyAddr is where resp to req (from peer) goes, RFC 2131 4.1.
func (s *Server) replyAddr(req, resp *dhcpv4.DHCPv4, peer *net.UDPAddr, onProxyPort bool) *net.UDPAddr {
	switch {
	case onProxyPort:
		return peer
	case !req.GatewayIPAddr.IsUnspecified() && req.GatewayIPAddr != nil:
		return &net.UDPAddr{IP: req.GatewayIPAddr, Port: 67}
	case resp.MessageType() == dhcpv4.MessageTypeNak:
		return s.bcast
	case !req.ClientIPAddr.IsUnspecified() && req.ClientIPAddr != nil:
		return &net.UDPAddr{IP: req.ClientIPAddr, Port: peer.Port}
	}
	return s.bcast
}

// serveDHCP reads requests from conn until it is closed. Replies always
// leave from the port-67 socket.
func (s *Server) serveDHCP(ctx context.Context, conn net.PacketConn, onProxyPort bool) error {
	buf := make([]byte, 4096)
	for {
		n, peer, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("pxe: read DHCP on %s: %w", conn.LocalAddr(), err)
		}
		s.stats.dhcpReceived.Add(1)
		up, _ := peer.(*net.UDPAddr)
		s.handlePacket(buf[:n], up, onProxyPort)
	}
}

// handlePacket decodes and answers one datagram; it never panics.
func (s *Server) handlePacket(pkt []byte, peer *net.UDPAddr, onProxyPort bool) {
	defer func() {
		if r := recover(); r != nil {
			s.stats.dhcpMalformed.Add(1)
			s.log.Warn("dropped DHCP packet that crashed the handler", "peer", peer, "err", r)
		}
	}()
	req, resp, err := s.decide(pkt, onProxyPort)
	if err != nil {
		s.stats.dhcpMalformed.Add(1)
		s.log.Debug("dropped malformed DHCP packet", "peer", peer, "len", len(pkt), "err", err)
		return
	}
	if resp == nil {
		return
	}
	if peer == nil {
		peer = &net.UDPAddr{IP: net.IPv4zero, Port: 68}
	}
	dst := s.replyAddr(req, resp, peer, onProxyPort)
	out := s.dhcpConn
	if out == nil {
		return
	}
	if _, err := out.WriteTo(resp.ToBytes(), dst); err != nil {
		// The sysadmin sees it in the host's events, not only in the log:
		// the answer above was decided but never reached the machine.
		s.record(req.ClientHWAddr, EventIgnored, fmt.Sprintf("reply to %s not sent: %v", dst, err))
		s.log.Warn("send DHCP reply", "mac", req.ClientHWAddr.String(), "dst", dst, "err", err)
		return
	}
	s.stats.dhcpReplied.Add(1)
}

// decide decodes pkt and runs the handler: err for malformed packets, else
// the decoded request and a nil reply (counted and logged as ignored) or
// the reply.
func (s *Server) decide(pkt []byte, onProxyPort bool) (req, resp *dhcpv4.DHCPv4, err error) {
	if len(pkt) > maxDHCPDatagram*4 {
		return nil, nil, fmt.Errorf("datagram of %d bytes", len(pkt))
	}
	if req, err = dhcpv4.FromBytes(pkt); err != nil {
		return nil, nil, err
	}
	resp, _ = s.handleDHCP(req, onProxyPort)
	return req, resp, nil
}
