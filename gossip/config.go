package gossip

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/hashicorp/memberlist"
)

// KeySize is the size of the lab key in bytes (AES-256-GCM, memberlist's
// encryption).
const KeySize = 32

// DefaultPort is the gossip port (TCP and UDP) when Config.BindPort is 0.
const DefaultPort = 7946

// Timers of the lab (non-Local) preset. memberlist's DefaultLANConfig assumes
// idle LAN links: a probe is answered within 500 ms and a member is suspected
// for 4·log10(N) probe intervals. In a lab being imaged every workstation's
// 100 Mb/s port is saturated in both directions by BitTorrent for the whole
// run, the host is busy decompressing and writing, and UDP probes queue behind
// full switch and qdisc buffers (a 1000-packet pfifo queue alone is 120 ms at
// 100 Mb/s) or are tail-dropped. With the LAN timers busy peers get suspected
// and declared dead, and the others then stop offering them as torrent peers.
// So:
//
//   - labProbeTimeout 1.5 s (3× LAN): an order of magnitude above the queueing
//     delay of a saturated 100 Mb/s port, with room for a CPU-starved host.
//   - labProbeInterval 3 s (LAN 1 s): memberlist waits for indirect probes and
//     the TCP fallback only until the probe interval ends, so it must be well
//     above the probe timeout (memberlist's WAN preset keeps the same ratio).
//   - labSuspicionMult 8 (LAN 4): a suspected member has 8·log10(N)·3 s to
//     refute before it is declared dead, about 47 s in a 90-host lab, while
//     its own port is full of torrent traffic.
//
// The price is slower detection of a workstation that really died: about a
// minute in a 90-host lab instead of about 10 s. For imaging that is harmless
// (the torrent client drops dead connections by itself); a member that leaves
// with Node.Leave is reported "left" at once.
const (
	labProbeTimeout  = 1500 * time.Millisecond
	labProbeInterval = 3 * time.Second
	labSuspicionMult = 8
)

// retransmitMult sets how many times each node sends a broadcast (a join, a
// status update) on: retransmitMult·ceil(log10(N+1)) times. memberlist's
// defaults (LAN 4, Local 2) leave a member unaware of another until the next
// push/pull (15 to 90 s) too often: with 2, in a lab of 4 the origin reaches
// only 2 of the other 3 directly; with 4, when 90 nodes joined at once (a lab
// booting, measured on loopback) a node was still missing a member after 40 s
// in one run of three, while with 6 all 90 knew all within 1 to 6 s in 23 runs
// of 24. Push/pull heals what gossip misses. The cost is a few more small UDP
// packets per gossip round.
const retransmitMult = 6

// Config configures a Node. The zero value of every field except Key means
// its default; Key is required unless Insecure is set.
type Config struct {
	// Name is the member's name, unique in the lab. Default: the host name,
	// "-" and 4 random hex digits, so that a restarted workstation joins as a
	// new member instead of conflicting with its own dead entry.
	Name string
	// BindAddr is the address to listen on for gossip (TCP and UDP).
	// Default "0.0.0.0".
	BindAddr string
	// BindPort is the gossip port. Default 7946 (DefaultPort); -1 picks a free
	// port (tests and the demo: many nodes on one machine).
	BindPort int
	// AdvertiseAddr is the IP address the other members use to reach this
	// one. Default: memberlist's choice, BindAddr if it is a specific address,
	// else the first private IPv4 address of the host (New fails if there is
	// none; set it then).
	AdvertiseAddr string
	// Key is the lab key, KeySize (32) bytes: gossip is encrypted and
	// authenticated with AES-256-GCM, and members with another key (or none)
	// cannot join or talk to the lab. Required unless Insecure.
	Key []byte
	// Insecure disables encryption; Key must then be empty. Explicit opt-in
	// only: anyone on the subnet can then join the lab and announce peers.
	Insecure bool
	// Seeds are the host:port gossip addresses Join contacts (the print
	// server). Empty for the seed node itself.
	Seeds []string
	// Local selects memberlist.DefaultLocalConfig timers (100 ms gossip, 200 ms
	// probe timeout, 1 s probe interval, suspicion 3·log10(N) probe intervals,
	// 15 s push/pull) for nodes on one machine: tests and the demo. Default: the
	// lab preset, memberlist.DefaultLANConfig with the probe timeout, probe
	// interval and suspicion multiplier raised so that workstations whose
	// ports are saturated by transfers are not declared dead (see the constants
	// in config.go for the numbers and why). Both presets retransmit
	// broadcasts more than memberlist does by default (retransmitMult).
	Local bool
	// ForgetAfter is how long a member that left or died stays in
	// Node.Members, with its last status. Default 1 hour.
	ForgetAfter time.Duration
	// Logger receives the node's logs, memberlist's own at Debug level.
	// Default: discard.
	Logger *slog.Logger
	// OnChange, if set, is called when a member joins, leaves, dies or
	// updates its status (not when it becomes suspect: poll Members for
	// that). Calls come one at a time from a goroutine of the Node and are
	// coalesced: one call may stand for several changes. It may call
	// Node.Members but must return promptly; Close waits for a running call.
	OnChange func()
}

// withDefaults returns cfg validated and with its defaults filled in.
func (cfg Config) withDefaults() (Config, error) {
	switch {
	case cfg.Insecure && len(cfg.Key) > 0:
		return cfg, errors.New("gossip: both Key and Insecure set: choose one")
	case !cfg.Insecure && len(cfg.Key) == 0:
		return cfg, errors.New("gossip: no lab key: set Key to the lab's 32-byte key (or Insecure to gossip in clear)")
	case !cfg.Insecure && len(cfg.Key) != KeySize:
		return cfg, fmt.Errorf("gossip: lab key is %d bytes, want %d", len(cfg.Key), KeySize)
	case cfg.BindPort < -1 || cfg.BindPort > 65535:
		return cfg, fmt.Errorf("gossip: BindPort %d out of range (0 for %d, -1 for any free port)", cfg.BindPort, DefaultPort)
	case cfg.ForgetAfter < 0:
		return cfg, fmt.Errorf("gossip: negative ForgetAfter %v", cfg.ForgetAfter)
	}
	if cfg.BindAddr != "" && net.ParseIP(cfg.BindAddr) == nil {
		return cfg, fmt.Errorf("gossip: BindAddr %q is not an IP address", cfg.BindAddr)
	}
	if cfg.AdvertiseAddr != "" && net.ParseIP(cfg.AdvertiseAddr) == nil {
		return cfg, fmt.Errorf("gossip: AdvertiseAddr %q is not an IP address", cfg.AdvertiseAddr)
	}
	for _, s := range cfg.Seeds {
		if s == "" {
			return cfg, errors.New("gossip: empty seed address")
		}
	}
	if cfg.Name == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "labseed"
		}
		var r [2]byte
		_, _ = rand.Read(r[:]) // crypto/rand.Read never fails
		cfg.Name = host + "-" + hex.EncodeToString(r[:])
	}
	if cfg.BindAddr == "" {
		cfg.BindAddr = "0.0.0.0"
	}
	if cfg.BindPort == 0 {
		cfg.BindPort = DefaultPort
	}
	if cfg.ForgetAfter == 0 {
		cfg.ForgetAfter = time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Key = append([]byte(nil), cfg.Key...)
	cfg.Seeds = append([]string(nil), cfg.Seeds...)
	return cfg, nil
}

// memberlistConfig builds memberlist's configuration from a defaulted Config.
func (cfg Config) memberlistConfig(logw *logWriter) *memberlist.Config {
	var mc *memberlist.Config
	if cfg.Local {
		mc = memberlist.DefaultLocalConfig()
	} else {
		mc = memberlist.DefaultLANConfig()
		mc.ProbeTimeout = labProbeTimeout
		mc.ProbeInterval = labProbeInterval
		mc.SuspicionMult = labSuspicionMult
	}
	mc.RetransmitMult = retransmitMult
	// No LZW compression of the gossip: its packets are small, a LAN
	// carries them anyway, and compressing every one of them was 3 % of a
	// lab-bench workstation's CPU (memberlist allocates a compressor per
	// packet). Compressed packets from other nodes are still read.
	mc.EnableCompression = false
	mc.Name = cfg.Name
	mc.BindAddr = cfg.BindAddr
	if cfg.BindPort == -1 {
		mc.BindPort = 0 // memberlist picks a free port and advertises it
	} else {
		mc.BindPort = cfg.BindPort
		mc.AdvertisePort = cfg.BindPort
	}
	mc.AdvertiseAddr = cfg.AdvertiseAddr
	if !cfg.Insecure {
		mc.SecretKey = cfg.Key
		mc.GossipVerifyIncoming = true
		mc.GossipVerifyOutgoing = true
	}
	mc.Logger = log.New(logw, "", 0)
	return mc
}

// timing returns the Join backoff and the default wait for Leave's broadcast.
func (cfg Config) timing() (backoffMin, backoffMax, leaveWait time.Duration) {
	if cfg.Local {
		return 50 * time.Millisecond, time.Second, 2 * time.Second
	}
	return 500 * time.Millisecond, 5 * time.Second, 5 * time.Second
}
