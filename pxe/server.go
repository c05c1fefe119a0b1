package pxe

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"

	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/labseed/labseed/internal/neigh"
	"github.com/pin/tftp/v3"
	"golang.org/x/sync/errgroup"
)

// Server is the network-boot server of one lab: DHCP or proxyDHCP, TFTP,
// and the per-MAC boot menus. Create it with New (which opens the sockets),
// run it with Run. All methods are safe for concurrent use.
type Server struct {
	cfg    Config
	log    *slog.Logger
	events *eventLog
	stats  counters
	leases *leaseStore // ModeDHCP only

	dhcpConn, proxyConn net.PacketConn // nil when disabled
	tftpConn            *net.UDPConn   // nil when BootDir is ""
	tftp                *tftp.Server
	root                *rootDir
	bcast               *net.UDPAddr // where broadcast replies go; 255.255.255.255:68

	mu    sync.Mutex
	ipMAC map[string]string // client IP -> MAC, learned from DHCP

	closeOnce sync.Once
}

// New validates cfg, loads the lease file (ModeDHCP) and opens the DHCP,
// proxyDHCP and TFTP sockets. Binding ports 67, 69 and 4011 needs root or
// CAP_NET_BIND_SERVICE. Call Run to serve, or Close to release the sockets.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{
		cfg:    cfg,
		log:    log.With("component", "pxe"),
		events: newEventLog(cfg.EventsPerHost),
		bcast:  &net.UDPAddr{IP: net.IPv4bcast, Port: 68},
		ipMAC:  map[string]string{},
	}
	if cfg.Mode == ModeDHCP {
		if s.leases, err = loadLeases(cfg.DHCP.LeaseFile); err != nil {
			return nil, err
		}
	}
	if cfg.BootDir != "" {
		if s.root, err = openRootDir(cfg.BootDir); err != nil {
			return nil, err
		}
	}
	if err := s.listen(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) listen() error {
	if s.cfg.Mode != ModeOff {
		var c net.PacketConn
		var err error
		if s.cfg.NoBind {
			c, err = listenRawDHCPAddr(s.cfg.Interface, s.cfg.DHCPAddr, s.cfg.ServerIP)
		} else {
			c, err = listenDHCP(s.cfg.Interface, s.cfg.DHCPAddr)
		}
		if err != nil {
			return err
		}
		s.dhcpConn = c
		if s.cfg.ProxyAddr != "-" {
			if s.proxyConn, err = listenDHCP(s.cfg.Interface, s.cfg.ProxyAddr); err != nil {
				return err
			}
		}
	}
	if s.root != nil {
		a, err := net.ResolveUDPAddr("udp4", s.cfg.TFTPAddr)
		if err != nil {
			return fmt.Errorf("pxe: TFTP address %q: %w", s.cfg.TFTPAddr, err)
		}
		if s.tftpConn, err = net.ListenUDP("udp4", a); err != nil {
			return fmt.Errorf("pxe: listen TFTP on %s (port 69 needs root): %w", a, err)
		}
		s.tftp = tftp.NewServer(s.tftpRead, nil)
		s.tftp.SetBlockSize(s.cfg.TFTPBlockSize)
		s.tftp.SetHook(tftpHook{s})
	}
	return nil
}

func listenDHCP(iface, addr string) (net.PacketConn, error) {
	a, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return nil, fmt.Errorf("pxe: DHCP address %q: %w", addr, err)
	}
	c, err := server4.NewIPv4UDPConn(iface, a)
	if err != nil {
		hint := "ports 67 and 4011 need root"
		if strings.Contains(err.Error(), "address already in use") {
			// server4 flattens the errno into the message.
			hint = "another DHCP server on this host holds the port: stop it, or let labseed read DHCP without binding the port (NoBind)"
		}
		return nil, fmt.Errorf("pxe: listen DHCP on %s (interface %q; %s): %w", a, iface, hint, err)
	}
	return c, nil
}

// listenRawDHCPAddr opens the NoBind socket for the port of addr.
func listenRawDHCPAddr(iface, addr string, src net.IP) (net.PacketConn, error) {
	a, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return nil, fmt.Errorf("pxe: DHCP address %q: %w", addr, err)
	}
	return listenRawDHCP(iface, a.Port, src)
}

// Interface is the interface the DHCP sockets are bound to, "" for all.
func (s *Server) Interface() string { return s.cfg.Interface }

// DHCPAddr is the local address of the DHCP socket (port 67), nil in ModeOff.
func (s *Server) DHCPAddr() net.Addr { return addrOf(s.dhcpConn) }

// ProxyAddr is the local address of the PXE boot-server socket (port
// 4011), nil when disabled.
func (s *Server) ProxyAddr() net.Addr { return addrOf(s.proxyConn) }

// TFTPAddr is the local address of the TFTP socket, nil without BootDir.
func (s *Server) TFTPAddr() net.Addr {
	if s.tftpConn == nil {
		return nil
	}
	return s.tftpConn.LocalAddr()
}

func addrOf(c net.PacketConn) net.Addr {
	if c == nil {
		return nil
	}
	return c.LocalAddr()
}

// Run serves DHCP, proxyDHCP and TFTP until ctx is cancelled or a socket
// fails, then closes everything and returns after all goroutines exit.
// It returns nil after cancellation.
func (s *Server) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	s.log.Info("serving", "mode", s.cfg.Mode, "interface", s.cfg.Interface, "dhcp", s.DHCPAddr(), "no_bind", s.cfg.NoBind, "proxy", s.ProxyAddr(), "tftp", s.TFTPAddr(), "server_ip", s.cfg.ServerIP, "http", s.cfg.HTTPAddr)
	if s.dhcpConn != nil {
		g.Go(func() error { return s.serveDHCP(gctx, s.dhcpConn, false) })
	}
	if s.proxyConn != nil {
		g.Go(func() error { return s.serveDHCP(gctx, s.proxyConn, true) })
	}
	if s.tftp != nil {
		g.Go(func() error {
			if err := s.tftp.Serve(s.tftpConn); err != nil && gctx.Err() == nil {
				return fmt.Errorf("pxe: TFTP: %w", err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		s.Close()
		return nil
	})
	err := g.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Close closes the sockets and stops TFTP (waiting for transfers in
// flight to finish or time out). It is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		for _, c := range []net.PacketConn{s.dhcpConn, s.proxyConn} {
			if c != nil {
				c.Close()
			}
		}
		if s.tftpConn != nil {
			s.tftpConn.Close()
		}
		if s.tftp != nil {
			s.tftp.Shutdown()
		}
		if s.root != nil {
			s.root.Close()
		}
	})
	return nil
}

// Stats returns the packet and transfer counters.
func (s *Server) Stats() Stats { return s.stats.snapshot() }

// Events returns the boot events recorded for mac, oldest first (at most
// Config.EventsPerHost; none when it is -1).
func (s *Server) Events(mac net.HardwareAddr) []Event { return s.events.get(mac) }

func (s *Server) record(mac net.HardwareAddr, kind EventKind, detail string) {
	if len(mac) == 0 {
		return // not attributable to a host
	}
	e := Event{Time: s.cfg.Now(), Kind: kind, Detail: detail}
	s.events.add(mac, e)
	if s.cfg.OnEvent != nil {
		s.cfg.OnEvent(mac, e)
	}
	s.log.Debug("boot event", "mac", mac.String(), "kind", kind, "detail", detail)
}

// Menu returns the boot menu of mac, from the Config and mac's entry in
// Config.Hosts.
func (s *Server) Menu(mac net.HardwareAddr) BootMenu {
	h, _ := s.host(mac)
	clone := h.Clone
	m := BootMenu{
		MAC: mac.String(), Server: s.cfg.HTTPAddr,
		KernelPath: s.cfg.KernelPath, InitrdPath: s.cfg.InitrdPath,
		Image: s.cfg.Image, Args: s.cfg.KernelArgs,
		Clone: clone, Timeout: s.cfg.MenuTimeout,
	}
	if h.Image != "" {
		m.Image = h.Image
	}
	if h.Args != "" {
		m.Args = strings.TrimSpace(m.Args + " " + h.Args)
	}
	if clone {
		m.Timeout = s.cfg.CloneTimeout
	}
	return m
}

// IPXEScript returns the iPXE script of mac (see IPXEScript); uefi selects
// the UEFI way of booting the local disk.
func (s *Server) IPXEScript(mac net.HardwareAddr, uefi bool) string {
	return IPXEScript(s.Menu(mac), uefi)
}

// PXELinuxConfig returns the pxelinux configuration of mac, as served over
// TFTP as pxelinux.cfg/01-<mac>.
func (s *Server) PXELinuxConfig(mac net.HardwareAddr) string {
	return PXELinuxConfig(s.Menu(mac))
}

// ScriptURL is the URL of mac's iPXE script that iPXE clients are given as
// boot file: http://HTTPAddr/pxe/ipxe/{bios|uefi}/<mac with dashes>.
func (s *Server) ScriptURL(mac net.HardwareAddr, uefi bool) string {
	fw := "bios"
	if uefi {
		fw = "uefi"
	}
	return "http://" + s.cfg.HTTPAddr + "/pxe/ipxe/" + fw + "/" + strings.ReplaceAll(mac.String(), ":", "-")
}

// maxIPMACs bounds the client addresses learnt from DHCP: requests with
// made-up addresses (anyone can send them to port 4011) must not grow the
// server's memory. Past it, an address learnt earlier, any, is forgotten
// (its TFTP events are then put on a MAC through the neighbour table).
const maxIPMACs = 4096

func (s *Server) learnIP(ip net.IP, mac net.HardwareAddr) {
	if ip == nil || ip.IsUnspecified() || len(mac) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := ip.String()
	if _, ok := s.ipMAC[k]; !ok && len(s.ipMAC) >= maxIPMACs {
		for old := range s.ipMAC { // map order: an arbitrary one
			delete(s.ipMAC, old)
			break
		}
	}
	s.ipMAC[k] = mac.String()
}

// macForIP finds the MAC of a TFTP client: learned from DHCP, else the
// kernel's neighbour table.
func (s *Server) macForIP(ip net.IP) net.HardwareAddr {
	s.mu.Lock()
	m, ok := s.ipMAC[ip.String()]
	s.mu.Unlock()
	if ok {
		hw, _ := net.ParseMAC(m)
		return hw
	}
	return neigh.MAC(ip)
}
