package peer

import (
	"crypto/ed25519"
	"errors"
	"log/slog"
	"net/http"
	"time"
)

// Config configures an Agent. Zero values mean the defaults.
type Config struct {
	// Server is the print server's HTTP address, host or host:port (port
	// api.DefaultPort by default); required.
	Server string
	// Target is the directory the image is extracted into; required. It must
	// be empty, or hold this image's interrupted extraction.
	Target string
	// StateDir holds the staging data (the downloaded payload, the piece
	// bitmap, the applier's state); default Target/.labseed. It is removed
	// when the agent is done, but for the record of the image installed
	// and its payload, which stay in Target/.labseed/installed
	// (chunker.WriteInstalled) for the next sync.
	StateDir string
	// Image is the image's name; default the print server's only image.
	Image string
	// Sync makes the tree in Target exactly the image instead of
	// extracting into an empty one (chunker.ApplyConfig.Sync): what the
	// tree holds already is kept where it is the image's, the rest
	// written, what the image does not hold removed. The chunks that the
	// payload kept by the last run in Target (chunker.InstalledDir) holds,
	// checked against the manifest, are not fetched: they are applied at
	// once and seeded to the lab. An interrupted sync resumes as a sync.
	Sync bool
	// Keep lists paths relative to Target that a sync leaves alone when
	// they exist (chunker.ApplyConfig.Keep).
	Keep []string
	// MinVersion is the oldest version of the image the agent takes: a
	// signed manifest of an older one (replayed) is refused. 0: any.
	MinVersion int
	// PublicKey checks the manifest's signature; LabKey joins the lab's
	// encrypted gossip. Both required unless Insecure.
	PublicKey ed25519.PublicKey
	LabKey    []byte
	Insecure  bool
	// Linger is how long a finished agent keeps seeding, waiting for the
	// other workstations to finish; default DefaultLinger; negative: not at all.
	Linger time.Duration
	// ListenIP is the address the agent's services bind to; default all.
	ListenIP string
	// TorrentPort and GossipPort are the agent's BitTorrent and gossip
	// ports; default (0) a free port each, as -1 asks everywhere in
	// labseed: the agent gossips its addresses, and many agents can run on
	// one machine (tests, the demo). Set them for a firewall.
	TorrentPort, GossipPort int
	// Rate limits BitTorrent traffic in each direction, in bytes/s, to
	// simulate a switch port (the demo); 0 is unlimited.
	Rate int64
	// NoWebSeed stops the agent from falling back on the print server's
	// HTTP web seed when the download makes no progress for WebSeedAfter
	// (no piece data arrives and the print server answers no deal request:
	// a print server that answers "nothing now" is pacing its port for the
	// lab).
	// (The web seed is not used from the start: anacrolix fetches 64 MiB
	// ranges from it, the same ones for every workstation, which would spend
	// the print server's port on duplicates the swarm would carry anyway.)
	NoWebSeed bool
	// WebSeedAfter is how long the download may stall before the web seed
	// is added; default 15 s.
	WebSeedAfter time.Duration
	// Local selects fast gossip timers for loopback tests and the demo.
	Local bool
	// Name is the agent's name in the lab, unique in it; default the host
	// name, the agent's address (netbooted workstations often share one
	// host name) and 4 random hex digits (a restarted agent is a new
	// member; its old entry goes when the lab declares it dead).
	Name string
	// MAC is the MAC address the print server knows the machine by, when
	// the agent re-images one (labseed clone sets it): it is gossiped, so
	// that the print server's record of the machine shows the agent's
	// progress. Default none.
	MAC string
	// MaxConns is the most BitTorrent connections the agent keeps; default
	// 10. Every connection that uploads can hold 4 MiB of piece data
	// (swarm.MaxAllocPeerRequestData), so this bounds the agent's memory
	// (about 60 MiB + 4 MiB × MaxConns); on a switched LAN ten partners
	// keep both directions of a port busy.
	MaxConns int
	// ApplyWorkers is how many chunks are applied at once; default 2.
	ApplyWorkers int
	// Logger receives the agent's logs; nil discards.
	Logger *slog.Logger
	// Progress, if set, is called about once a second, and at every
	// phase change, from a goroutine of the agent's, never two at once.
	Progress func(Progress)
	// HTTPClient talks to the print server; default a client with timeouts,
	// connecting from ListenIP when one is given (the print server limits
	// and confirms deals per address).
	HTTPClient *http.Client
	// TraceDir, if set, is a directory where the agent appends its
	// torrent client's own status (every connection's request queue,
	// choke and interest flags, bytes) every 5 s to ADDR.status, ADDR
	// being its torrent address: how swarm behaviour in the lab bench is
	// diagnosed (docs/lab-bench.md; "labseed peer" sets it from
	// $LABSEED_TORRENT_STATUS).
	TraceDir string
}

// DefaultLinger is how long a finished agent keeps seeding by default.
const DefaultLinger = 10 * time.Minute

// ErrNoKeys is returned when the agent has neither keys nor Insecure.
var ErrNoKeys = errors.New("peer: no keys: copy the directory written by 'labseed keys export' on the print server and give it with --keys (or run with --insecure)")
