package pxe

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// EventKind names what happened in a boot event.
type EventKind string

// The boot events recorded per MAC.
const (
	EventProxyOffer EventKind = "proxy-offer" // proxyDHCP offer/ack sent (port 67 or 4011)
	EventOffer      EventKind = "dhcp-offer"  // DHCPOFFER sent (ModeDHCP)
	EventAck        EventKind = "dhcp-ack"    // DHCPACK sent (ModeDHCP)
	EventNak        EventKind = "dhcp-nak"    // DHCPNAK sent (ModeDHCP)
	EventIgnored    EventKind = "ignored"     // a request from this MAC got no answer; Detail says why
	EventTFTPSent   EventKind = "tftp-sent"   // a file was sent completely over TFTP
	EventTFTPFailed EventKind = "tftp-failed" // a TFTP transfer was refused or failed
	EventScript     EventKind = "ipxe-script" // the iPXE script was fetched over HTTP
	EventHTTPFile   EventKind = "http-file"   // a boot file (kernel, initrd, ipxe.efi) was sent completely over HTTP
	EventHTTPFailed EventKind = "http-failed" // an HTTP boot file was missing or its transfer broke off
)

// Event is one boot event of one host.
type Event struct {
	Time time.Time `json:"time"`
	Kind EventKind `json:"kind"`
	// Detail is a short human-readable description (boot file, address,
	// reason), stable enough to show in "labseed status".
	Detail string `json:"detail"`
}

// Stats counts packets and transfers since New.
type Stats struct {
	// DHCPReceived counts every datagram read on the DHCP sockets.
	DHCPReceived uint64 `json:"dhcp_received"`
	// DHCPMalformed counts datagrams that did not decode as DHCPv4 (or
	// made the handler fail); they are dropped.
	DHCPMalformed uint64 `json:"dhcp_malformed"`
	// DHCPIgnored counts valid requests that got no answer (not PXE,
	// unknown arch, unknown MAC, another server chosen...).
	DHCPIgnored uint64 `json:"dhcp_ignored"`
	// DHCPReplied counts replies sent.
	DHCPReplied uint64 `json:"dhcp_replied"`
	// TFTPSent, TFTPRefused and TFTPFailed count TFTP read requests that
	// completed, were refused (missing file, path escape) or failed mid-way.
	TFTPSent    uint64 `json:"tftp_sent"`
	TFTPRefused uint64 `json:"tftp_refused"`
	TFTPFailed  uint64 `json:"tftp_failed"`
}

type counters struct {
	dhcpReceived, dhcpMalformed, dhcpIgnored, dhcpReplied atomic.Uint64
	tftpSent, tftpRefused, tftpFailed                     atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		DHCPReceived: c.dhcpReceived.Load(), DHCPMalformed: c.dhcpMalformed.Load(),
		DHCPIgnored: c.dhcpIgnored.Load(), DHCPReplied: c.dhcpReplied.Load(),
		TFTPSent: c.tftpSent.Load(), TFTPRefused: c.tftpRefused.Load(), TFTPFailed: c.tftpFailed.Load(),
	}
}

// maxEventHosts bounds how many MACs the event log keeps: DHCP packets from
// made-up MACs must not grow the server's memory without end. A lab has a
// few hundred machines; past the bound the MAC heard from least recently is
// forgotten.
const maxEventHosts = 4096

// eventLog keeps a fixed-size ring of events per MAC, for at most
// maxEventHosts MACs. Safe for concurrent use.
type eventLog struct {
	mu    sync.Mutex
	size  int
	seq   uint64
	rings map[string]*ring
}

type ring struct {
	ev   []Event
	next int
	full bool
	seq  uint64 // when it was last added to, for eviction
}

func newEventLog(size int) *eventLog {
	return &eventLog{size: size, rings: map[string]*ring{}}
}

func (l *eventLog) add(mac net.HardwareAddr, e Event) {
	if len(mac) == 0 || l.size <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	r := l.rings[mac.String()]
	if r == nil {
		if len(l.rings) >= maxEventHosts {
			l.evict()
		}
		r = &ring{ev: make([]Event, l.size)}
		l.rings[mac.String()] = r
	}
	r.seq = l.seq
	r.ev[r.next] = e
	r.next = (r.next + 1) % l.size
	if r.next == 0 {
		r.full = true
	}
}

// evict forgets the MAC heard from least recently. Called with mu held.
func (l *eventLog) evict() {
	var oldest string
	var min uint64
	for mac, r := range l.rings {
		if oldest == "" || r.seq < min {
			oldest, min = mac, r.seq
		}
	}
	delete(l.rings, oldest)
}

func (l *eventLog) get(mac net.HardwareAddr) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.rings[mac.String()]
	if r == nil {
		return nil
	}
	if !r.full {
		return append([]Event(nil), r.ev[:r.next]...)
	}
	return append(append([]Event(nil), r.ev[r.next:]...), r.ev[:r.next]...)
}
