package seeder

import (
	"time"

	"github.com/labseed/labseed/gossip"
)

// Paths of the HTTP API.
const (
	PathImages  = "/api/v1/images" // GET: []ImageInfo; GET PathImages/NAME: Image
	PathStatus  = "/api/v1/status" // GET: LabStatus
	PathSeed    = "/seed/"         // GET PathSeed+TORRENTNAME: payload, with ranges (BitTorrent web seed)
	PathDeal    = "/api/v1/deal/"  // POST PathDeal+INFOHASH, body: deal.Bitmap of the pieces wanted; 200: pieces (HeaderFirstPiece), 204: none now
	PathMetrics = "/metrics"       // GET: Prometheus metrics of the whole lab
)

// HeaderFirstPiece and HeaderPieces name the pieces a PathDeal answer
// carries: the body holds pieces FIRST..FIRST+N-1 of the payload, back to
// back.
const (
	HeaderFirstPiece = "Labseed-First-Piece"
	HeaderPieces     = "Labseed-Pieces"
)

// ImageInfo describes one published image in the image list.
type ImageInfo struct {
	Name         string    `json:"name"`
	Version      int       `json:"version"`
	InfoHash     string    `json:"infohash"`
	PayloadBytes int64     `json:"payload_bytes"`
	InputBytes   int64     `json:"input_bytes"`
	Chunks       int       `json:"chunks"`
	Created      time.Time `json:"created"`
}

// Image is everything a workstation needs to start: the signed manifest, the
// torrent and where the lab's gossip and torrent seed listen. Served in one
// response so that a publish in between cannot mix versions.
type Image struct {
	Manifest  []byte `json:"manifest"`  // manifest.json as stored and signed
	Signature []byte `json:"signature"` // ed25519 signature of Manifest
	Torrent   []byte `json:"torrent"`   // bencoded metainfo
	Lab       Lab    `json:"lab"`
}

// Lab says where the print server's services listen.
type Lab struct {
	GossipAddr  string `json:"gossip_addr"`
	TorrentAddr string `json:"torrent_addr"`
	HTTPAddr    string `json:"http_addr"`
}

// LabStatus is the lab as the print server sees it.
type LabStatus struct {
	Server  string       `json:"server"`
	Time    time.Time    `json:"time"`
	Images  []ImageInfo  `json:"images"`
	Hosts   []HostStatus `json:"hosts"`
	Summary Summary      `json:"summary"`
	// Boot is the hosts table and every machine that network-booted, with
	// their boot events and clone reports; BootError says why it is
	// missing (a hand edit of hosts.csv or lab.conf that does not parse).
	Boot      []BootHost `json:"boot,omitempty"`
	BootError string     `json:"boot_error,omitempty"`
}

// HostStatus is one workstation's last gossiped status.
type HostStatus struct {
	Name   string        `json:"name"`
	Addr   string        `json:"addr"`
	State  string        `json:"state"` // alive, suspect, dead, left
	Phase  string        `json:"phase"`
	Status gossip.Status `json:"status"`
}

// Summary aggregates the workstations.
type Summary struct {
	Hosts      int     `json:"hosts"`
	Done       int     `json:"done"` // finished: seeding or done
	Failed     int     `json:"failed"`
	DownRate   uint64  `json:"down_rate"` // bytes/s, all workstations
	FromServer uint64  `json:"from_server"`
	FromPeers  uint64  `json:"from_peers"`
	PeerShare  float64 `json:"peer_share"` // FromPeers ÷ (FromServer + FromPeers)
	ServerUp   uint64  `json:"server_uploaded"`
}
