package pxe

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/labseed/labseed/api"
)

// Mode selects the DHCP role of a Server.
type Mode string

// The DHCP roles.
const (
	// ModeProxy answers only PXE/iPXE/HTTPClient requests with boot
	// information and leaves addresses to the lab's DHCP server.
	ModeProxy Mode = "proxy"
	// ModeDHCP is a full DHCP server: static leases from Config.Hosts and
	// an optional pool, plus the same boot information.
	ModeDHCP Mode = "dhcp"
	// ModeOff runs no DHCP at all (TFTP still runs if Config.BootDir is set).
	ModeOff Mode = "off"
)

// ParseMode parses "proxy", "dhcp" or "off" (as given to labseed serve --pxe).
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeProxy, ModeDHCP, ModeOff:
		return m, nil
	}
	return "", fmt.Errorf("pxe: unknown mode %q (want proxy, dhcp or off)", s)
}

// Host is one entry of the lab's hosts table.
type Host struct {
	// MAC identifies the host; required.
	MAC net.HardwareAddr
	// IP is the host's static address (ModeDHCP); nil means the host gets
	// an address from the pool, if any.
	IP net.IP
	// Hostname is sent as option 12 (ModeDHCP); optional.
	Hostname string
	// Gateway and DNS override DHCPConfig.Gateway and DHCPConfig.DNS for
	// this host (ModeDHCP); nil means the network default.
	Gateway net.IP
	DNS     []net.IP
	// Image overrides Config.Image on this host's clone entry.
	Image string
	// Clone is the host's next-boot mark: its menu's default is the
	// clone entry, with Config.CloneTimeout.
	Clone bool
	// Args are appended to Config.KernelArgs on this host's clone entry
	// (lab.conf's boot_args and on_failure, as the hosts table merges them).
	Args string
}

// DHCPConfig is the network a ModeDHCP server hands out addresses in.
type DHCPConfig struct {
	// Netmask of the lab subnet; default 255.255.255.0.
	Netmask net.IPMask
	// Gateway (option 3) and DNS (option 6); optional.
	Gateway net.IP
	DNS     []net.IP
	// Domain (option 15); optional.
	Domain string
	// PoolStart and PoolEnd bound the dynamic pool (inclusive); both nil
	// means static leases only: unknown MACs get no answer.
	PoolStart, PoolEnd net.IP
	// LeaseTime of every lease; default 12 h.
	LeaseTime time.Duration
	// LeaseFile persists the pool leases as JSON (written atomically);
	// "" keeps them in memory only.
	LeaseFile string
}

// DefaultKernelArgs are the console arguments of the clone entry: kernel
// messages on the first serial port and the screen, the screen last so that
// it is /dev/console (the clone environment writes its progress to both).
const DefaultKernelArgs = "console=ttyS0,115200n8 console=tty0"

// Config configures a Server. Zero values mean the documented defaults;
// DefaultConfig returns them for a real lab. Addresses are "host:port" as
// net.Listen takes them: port 0 picks a free one (tests).
type Config struct {
	// Mode is the DHCP role; default ModeProxy.
	Mode Mode
	// Interface is the lab NIC the DHCP sockets are bound to
	// (SO_BINDTODEVICE); default "" = all interfaces. Set it whenever the
	// server has one: broadcast replies then leave on the lab's link,
	// where without it they are routed (and fail with "network is
	// unreachable" on a lab network without a default route).
	// LabInterface finds it as labseed serve does.
	Interface string
	// ServerIP is this server's IPv4 address on the lab network: the
	// next-server, the DHCP server identifier and the TFTP server; required.
	ServerIP net.IP
	// HTTPAddr is "host:port" of labseed's HTTP server (scripts, kernel,
	// initrd, labseed.server=); default ServerIP:api.DefaultPort.
	HTTPAddr string
	// DHCPAddr is the address the DHCP server listens on; default ":67".
	// Replies are always sent from this socket (iPXE drops others).
	DHCPAddr string
	// NoBind reads the DHCP requests to DHCPAddr's port with a raw socket
	// instead of binding the port, and sends the replies from that port
	// through the raw socket (as pixiecore's --dhcp-no-bind). Set it when
	// the print server also runs its own DHCP server (dnsmasq, ISC dhcpd,
	// Kea): that server keeps port 67 and every unicast renewal to it,
	// labseed sees a copy of each request. ModeProxy only; Linux only;
	// needs CAP_NET_RAW. Default false: bind the port.
	NoBind bool
	// ProxyAddr is the PXE boot-server address (proxyDHCP requests after
	// the lease); default ":4011"; "-" disables it.
	ProxyAddr string
	// TFTPAddr is the TFTP listen address; default ":69".
	TFTPAddr string
	// BootDir is served read-only over TFTP and under /pxe/boot/ over HTTP;
	// "" disables TFTP.
	BootDir string
	// BIOSBootFile is the first stage for BIOS PXE (arch 0), relative to
	// BootDir; default "undionly.kpxe".
	BIOSBootFile string
	// UEFIBootFile is the first stage for x86-64 UEFI (arch 7 and 9, and
	// arch 16 over HTTP); default "ipxe.efi".
	UEFIBootFile string
	// TFTPBlockSize is the largest TFTP blksize negotiated; default 1468
	// (also limited by the interface MTU).
	TFTPBlockSize int
	// KernelPath and InitrdPath are the HTTP paths of the labseed netboot
	// kernel and initrd on HTTPAddr; default "/pxe/boot/vmlinuz" and
	// "/pxe/boot/initrd.img".
	KernelPath, InitrdPath string
	// Image is the image name put on the clone entry's kernel command line
	// (labseed.image=); optional, Host.Image overrides it.
	Image string
	// KernelArgs are appended to the clone entry's kernel command line;
	// DefaultConfig sets DefaultKernelArgs.
	KernelArgs string
	// MenuTimeout is how long the menu waits before booting the local disk;
	// default 5 s.
	MenuTimeout time.Duration
	// CloneTimeout is how long the menu of a host marked for cloning waits
	// before booting the clone entry; default 1 s.
	CloneTimeout time.Duration
	// Hosts is the lab's hosts table: per-host images, arguments and
	// next-boot marks; static leases in ModeDHCP. nil: no table (every
	// machine gets the default menu; ModeDHCP has only its pool).
	Hosts Hosts
	// DHCP configures ModeDHCP; ignored otherwise.
	DHCP DHCPConfig
	// EventsPerHost is the size of each MAC's event ring (Events); default
	// 64; -1 keeps no events, for a caller that keeps them itself
	// (OnEvent).
	EventsPerHost int
	// OnEvent, if set, is called with every boot event as it is recorded,
	// from the goroutine that served the request (DHCP, TFTP or HTTP), so
	// concurrently: it must be safe for concurrent use and return quickly.
	// The print server keeps its one record per machine with it.
	OnEvent func(mac net.HardwareAddr, e Event)
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives the logs; nil discards.
	Logger *slog.Logger
}

// DefaultConfig returns the configuration for a real lab, without
// ServerIP, BootDir or Hosts.
func DefaultConfig() Config {
	return Config{
		Mode:          ModeProxy,
		DHCPAddr:      ":67",
		ProxyAddr:     ":4011",
		TFTPAddr:      ":69",
		BIOSBootFile:  "undionly.kpxe",
		UEFIBootFile:  "ipxe.efi",
		TFTPBlockSize: 1468,
		KernelPath:    "/pxe/boot/vmlinuz",
		InitrdPath:    "/pxe/boot/initrd.img",
		KernelArgs:    DefaultKernelArgs,
		MenuTimeout:   5 * time.Second,
		CloneTimeout:  time.Second,
		EventsPerHost: 64,
		DHCP:          DHCPConfig{Netmask: net.CIDRMask(24, 32), LeaseTime: 12 * time.Hour},
	}
}

// ErrConfig is wrapped by every error New returns for an invalid Config.
var ErrConfig = errors.New("pxe: invalid config")

// withDefaults fills zero fields and validates.
func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	if c.Mode == "" {
		c.Mode = d.Mode
	}
	if _, err := ParseMode(string(c.Mode)); err != nil {
		return c, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if c.NoBind && c.Mode != ModeProxy {
		return c, fmt.Errorf("%w: NoBind is for ModeProxy next to another DHCP server on this host, not for mode %q", ErrConfig, c.Mode)
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.DHCPAddr, d.DHCPAddr)
	def(&c.ProxyAddr, d.ProxyAddr)
	def(&c.TFTPAddr, d.TFTPAddr)
	def(&c.BIOSBootFile, d.BIOSBootFile)
	def(&c.UEFIBootFile, d.UEFIBootFile)
	def(&c.KernelPath, d.KernelPath)
	def(&c.InitrdPath, d.InitrdPath)
	if c.TFTPBlockSize == 0 {
		c.TFTPBlockSize = d.TFTPBlockSize
	}
	if c.TFTPBlockSize < 512 || c.TFTPBlockSize > 65464 {
		return c, fmt.Errorf("%w: TFTPBlockSize %d outside 512..65464", ErrConfig, c.TFTPBlockSize)
	}
	if c.MenuTimeout <= 0 {
		c.MenuTimeout = d.MenuTimeout
	}
	if c.CloneTimeout <= 0 {
		c.CloneTimeout = d.CloneTimeout
	}
	switch {
	case c.EventsPerHost == 0:
		c.EventsPerHost = d.EventsPerHost
	case c.EventsPerHost < -1:
		return c, fmt.Errorf("%w: EventsPerHost %d (0 for %d, -1 for none)", ErrConfig, c.EventsPerHost, d.EventsPerHost)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.ServerIP.To4() == nil {
		return c, fmt.Errorf("%w: ServerIP %q is not an IPv4 address (set it to this server's address on the lab network)", ErrConfig, c.ServerIP)
	}
	c.ServerIP = c.ServerIP.To4()
	if c.HTTPAddr == "" {
		c.HTTPAddr = net.JoinHostPort(c.ServerIP.String(), strconv.Itoa(api.DefaultPort))
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		return c, fmt.Errorf("%w: HTTPAddr %q: %v", ErrConfig, c.HTTPAddr, err)
	}
	if c.DHCP.Netmask == nil {
		c.DHCP.Netmask = d.DHCP.Netmask
	}
	if c.DHCP.LeaseTime <= 0 {
		c.DHCP.LeaseTime = d.DHCP.LeaseTime
	}
	if (c.DHCP.PoolStart == nil) != (c.DHCP.PoolEnd == nil) {
		return c, fmt.Errorf("%w: set both DHCP.PoolStart and DHCP.PoolEnd, or neither", ErrConfig)
	}
	if c.DHCP.PoolStart != nil {
		s, e := c.DHCP.PoolStart.To4(), c.DHCP.PoolEnd.To4()
		if s == nil || e == nil || ip2u(s) > ip2u(e) {
			return c, fmt.Errorf("%w: DHCP pool %s-%s is not an IPv4 range", ErrConfig, c.DHCP.PoolStart, c.DHCP.PoolEnd)
		}
		c.DHCP.PoolStart, c.DHCP.PoolEnd = s, e
	}
	return c, nil
}

func ip2u(ip net.IP) uint32 {
	ip = ip.To4()
	return uint32(ip[0])<<24 | uint32(ip[1])<<16 | uint32(ip[2])<<8 | uint32(ip[3])
}

func u2ip(u uint32) net.IP {
	return net.IPv4(byte(u>>24), byte(u>>16), byte(u>>8), byte(u)).To4()
}
