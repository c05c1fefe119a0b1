package api

import "time"

// ImageInfo describes one published image in the image list.
type ImageInfo struct {
	Name    string `json:"name"`
	Version int    `json:"version"`
	// InfoHash is the BitTorrent infohash of the image's payload, in hex.
	InfoHash string `json:"infohash"`
	// PayloadBytes is the size of the payload (the compressed chunks),
	// InputBytes of the tar archive published.
	PayloadBytes int64     `json:"payload_bytes"`
	InputBytes   int64     `json:"input_bytes"`
	Chunks       int       `json:"chunks"`
	Created      time.Time `json:"created"`
}

// Image is everything a workstation needs to start: the signed manifest, the
// torrent and where the lab's gossip and torrent seed listen. Served in one
// answer so that a publish in between cannot mix versions.
type Image struct {
	Manifest  []byte `json:"manifest"`  // manifest.json as stored and signed
	Signature []byte `json:"signature"` // ed25519 signature of Manifest
	Torrent   []byte `json:"torrent"`   // bencoded metainfo
	Lab       Lab    `json:"lab"`
}

// Lab says where the print server's services listen, each as host:port.
type Lab struct {
	GossipAddr  string `json:"gossip_addr"`
	TorrentAddr string `json:"torrent_addr"`
	HTTPAddr    string `json:"http_addr"`
	// Workstations is how many workstations the print server counts in
	// its lab when it answers: the machines of its hosts table and the
	// others it heard of (network boot, clone, gossip), or the
	// workstations in its gossip, whichever is more. A workstation that
	// joins early sees few others in the gossip; this says how large the
	// lab will be (a lab larger than a workstation's connections asks for
	// smaller blocks). 0 from a print server that does not say.
	Workstations int `json:"workstations,omitempty"`
}

// LabStatus is the lab as the print server sees it.
type LabStatus struct {
	// Server is the print server's HTTP address; Time its clock.
	Server string      `json:"server"`
	Time   time.Time   `json:"time"`
	Images []ImageInfo `json:"images"`
	// Hosts is every workstation of the gossip, by name.
	Hosts   []HostStatus `json:"hosts"`
	Summary Summary      `json:"summary"`
	// Boot is one record per machine: the hosts table's, then every other
	// machine heard of (network boot, clone, gossip), each with where it
	// is in its re-imaging. BootError says why the hosts table cannot be
	// read (a hand edit of hosts.csv or lab.conf that does not parse):
	// Boot then shows the last good table.
	Boot      []BootHost `json:"boot,omitempty"`
	BootError string     `json:"boot_error,omitempty"`
	// Deploy is the current deploy task, or the last one, without its
	// machines; left out when there was none.
	Deploy *Deploy `json:"deploy,omitempty"`
	// Upstream is this print server's replication when it follows
	// another one (labseed serve --upstream); nil otherwise.
	Upstream *UpstreamStatus `json:"upstream,omitempty"`
	// Followers is every print server that follows this one and reported
	// within the last hour (at most 64), by name; left out when none.
	Followers []FollowerStatus `json:"followers,omitempty"`
}

// Member states of HostStatus.State, as the gossip sees the member.
const (
	MemberAlive   = "alive"
	MemberSuspect = "suspect"
	MemberDead    = "dead"
	MemberLeft    = "left"
)

// Phases of WorkstationStatus.Phase, in the order a workstation goes
// through them.
const (
	PhaseJoining     = "joining"     // started, joining the lab, fetching the manifest
	PhaseDownloading = "downloading" // fetching and extracting chunks
	PhaseFinishing   = "finishing"   // every chunk applied; finishing the target
	PhaseSeeding     = "seeding"     // done, lingering to upload to the rest of the lab
	PhaseDone        = "done"        // done and gone
	PhaseFailed      = "failed"      // gave up; WorkstationStatus.Error says why
)

// HostStatus is one workstation as the gossip sees it.
type HostStatus struct {
	// Name is the workstation's name in the lab; Addr its gossip address.
	Name string `json:"name"`
	Addr string `json:"addr"`
	// State is the gossip's view of the member: MemberAlive, MemberSuspect,
	// MemberDead or MemberLeft.
	State string `json:"state"`
	// Phase is Status.Phase, repeated for the clients that read it here.
	Phase  string            `json:"phase"`
	Status WorkstationStatus `json:"status"`
	// MAC is the machine this workstation re-images (a clone's agent),
	// whose BootHost shows it too; left out for an agent of no machine.
	MAC string `json:"mac,omitempty"`
}

// WorkstationStatus is what a workstation last gossiped about itself.
type WorkstationStatus struct {
	// Phase is one of the Phase constants.
	Phase string `json:"phase"`
	// Image is the image's name and version, e.g. "lab1-v3".
	Image string `json:"image,omitempty"`
	// TorrentAddr is the host:port of the workstation's BitTorrent listener.
	TorrentAddr string `json:"torrent_addr,omitempty"`
	// Percent is the progress, 0 to 100, to 0.01.
	Percent float64 `json:"percent"`
	// Chunks is the number of chunks verified and applied, of ChunksTotal.
	Chunks      int `json:"chunks"`
	ChunksTotal int `json:"chunks_total"`
	// DownRate and UpRate are recent transfer rates in bytes/s.
	DownRate uint64 `json:"down_rate"`
	UpRate   uint64 `json:"up_rate"`
	// FromServer, FromPeers and Uploaded count bytes since the workstation
	// started: downloaded from the print server, downloaded from other
	// workstations, uploaded to anyone.
	FromServer uint64 `json:"from_server"`
	FromPeers  uint64 `json:"from_peers"`
	Uploaded   uint64 `json:"uploaded"`
	// Peers is the number of connected BitTorrent peers.
	Peers int `json:"peers"`
	// ETA is the estimated time to finish, in seconds; 0 means unknown.
	ETA int64 `json:"eta_seconds"`
	// HashFailures counts pieces that failed verification.
	HashFailures int64 `json:"hash_failures"`
	// Started is when the workstation started its run, Updated when it
	// made this status (to the second; omitted when unknown).
	Started time.Time `json:"started,omitzero"`
	Updated time.Time `json:"updated,omitzero"`
	// Error is a short reason when Phase is PhaseFailed.
	Error string `json:"error,omitempty"`
	// Sync is true when the workstation re-images a disk that holds an
	// image by syncing it: only what changed is fetched and written.
	// ChunksLocal is the chunks it found on its own disk (not fetched,
	// seeded to the lab), ChunksFetched those it applied from the lab
	// (every chunk of a full clone), FilesRemoved the paths it removed
	// because the image does not hold them, once every chunk is applied.
	Sync          bool  `json:"sync,omitempty"`
	ChunksLocal   int   `json:"chunks_local"`
	ChunksFetched int   `json:"chunks_fetched"`
	FilesRemoved  int64 `json:"files_removed"`
}

// Summary aggregates the workstations.
type Summary struct {
	Hosts  int `json:"hosts"`
	Done   int `json:"done"` // finished: seeding or done
	Failed int `json:"failed"`
	// DownRate is the download rate of all live workstations, bytes/s.
	DownRate uint64 `json:"down_rate"`
	// FromServer and FromPeers are the bytes all workstations downloaded
	// from the print server and from each other; PeerShare is
	// FromPeers ÷ (FromServer + FromPeers).
	FromServer uint64  `json:"from_server"`
	FromPeers  uint64  `json:"from_peers"`
	PeerShare  float64 `json:"peer_share"`
	// ServerUp is the bytes the print server uploaded (BitTorrent, deals
	// and web seed).
	ServerUp uint64 `json:"server_uploaded"`
}

// WhoAmIRequest asks for the identity of a machine by its MACs, the one it
// boots from first.
type WhoAmIRequest struct {
	MACs []string `json:"macs"`
	// Nonce is a fresh random string (16 to 64 hex digits) the signed
	// answer repeats, so that an older answer cannot be replayed.
	Nonce string `json:"nonce,omitempty"`
	// Image is the image the workstation means to install, if it was told
	// one (labseed.image=, --image); the answer's Image and MinVersion are
	// then about it.
	Image string `json:"image,omitempty"`
}

// Next boots of NextBootRequest.Boot and BootHost.NextBoot.
const (
	BootLocal = "local" // boot the local disk
	BootClone = "clone" // boot the clone environment and re-image
)

// NextBootRequest sets the next boot of some hosts (MACs), those of a
// group (Group) or all (All); one of the three.
type NextBootRequest struct {
	MACs  []string `json:"macs,omitempty"`
	All   bool     `json:"all,omitempty"`
	Group string   `json:"group,omitempty"`
	Boot  string   `json:"boot"` // BootClone or BootLocal
}

// NextBootResult says how many hosts were marked.
type NextBootResult struct {
	Marked int `json:"marked"`
}

// Stages of BootHost.Stage, in the order a machine goes through them.
const (
	StageBooted      = "booted"      // it network-booted and has not asked who it is yet
	StageIdentified  = "identified"  // its clone asked who it is and prepares the disk
	StageDownloading = "downloading" // its clone fetches the image (step fetch)
	StageConfigured  = "configured"  // the image is in: configuring, bootloader, seeding (steps mount to unmount)
	StageDone        = "done"        // its clone reported done
	StageFailed      = "failed"      // a step failed: BootHost.Step and Error
)

// BootHost is the print server's record of one machine: a host of the
// table, or a machine heard of without being in it (it network-booted, or
// its clone reported).
type BootHost struct {
	MAC      string `json:"mac"`
	Hostname string `json:"hostname,omitempty"`
	IP       string `json:"ip,omitempty"`
	NextBoot string `json:"next_boot,omitempty"` // BootLocal or BootClone
	// Groups are its groups in the table (the group column); left out
	// when none.
	Groups []string `json:"groups,omitempty"`
	// Stage is where the machine is in its re-imaging (the Stage
	// constants); left out while nothing was heard of it.
	Stage string `json:"stage,omitempty"`
	// Step is its clone's last reported step, Error why it failed
	// (StageFailed).
	Step  string `json:"step,omitempty"`
	Error string `json:"error,omitempty"`
	// Started is when its current run began (its first boot event,
	// who-am-I or clone report after the previous run ended), Heard the
	// last of those, Updated the last change of the record.
	Started time.Time `json:"started,omitzero"`
	Heard   time.Time `json:"heard,omitzero"`
	Updated time.Time `json:"updated,omitzero"`
	// Clone is the host's clone reports, oldest first.
	Clone []Report `json:"clone,omitempty"`
	// Events is the host's network-boot events, oldest first.
	Events []BootEvent `json:"events,omitempty"`
	// Agent is its clone's agent as the gossip last saw it; left out
	// when none.
	Agent *HostStatus `json:"agent,omitempty"`
}

// BootEvent is one network-boot event of one machine.
type BootEvent struct {
	Time time.Time `json:"time"`
	// Kind is what happened: "proxy-offer", "dhcp-offer", "dhcp-ack",
	// "dhcp-nak", "ignored", "tftp-sent", "tftp-failed", "ipxe-script",
	// "http-file" or "http-failed" (docs/pxe.md).
	Kind string `json:"kind"`
	// Detail is a short human-readable description (boot file, address,
	// reason).
	Detail string `json:"detail"`
}

// States of a clone's Report.
const (
	StateRunning = "running"
	StateDone    = "done"
	StateFailed  = "failed"
)

// Report is one step of a host's clone as reported to the print server.
// A report with State StateDone ends the clone: the host's next boot
// returns to its local disk.
type Report struct {
	Step  string    `json:"step"`  // "identify", "disk", "fetch", "configure", "bootloader", ...
	State string    `json:"state"` // StateRunning, StateDone or StateFailed
	Error string    `json:"error,omitempty"`
	Time  time.Time `json:"time"`
	// Detail says more about a step that went well, e.g. the disk step's
	// choice between a sync and a full clone, and what the sync did.
	Detail string `json:"detail,omitempty"`
}

// Identity is what the print server tells a workstation about itself when it
// asks "who am I" with its MAC addresses: everything "labseed clone" needs to
// partition the disk and configure the new system as that host.
type Identity struct {
	// MAC is the address the host is known by in the hosts table.
	MAC string `json:"mac"`
	// Hostname is the host's short name; Domain the lab's DNS domain.
	Hostname string `json:"hostname"`
	Domain   string `json:"domain,omitempty"`
	// IP is the host's static IPv4 address and Prefix its network's prefix
	// length (24 for 255.255.255.0).
	IP     string `json:"ip"`
	Prefix int    `json:"prefix"`
	// Gateway and DNS of the lab network; optional.
	Gateway string   `json:"gateway,omitempty"`
	DNS     []string `json:"dns,omitempty"`
	// PrinterQueue and PrinterServer are the host's printer (/etc/printcap).
	PrinterQueue  string `json:"printer_queue,omitempty"`
	PrinterServer string `json:"printer_server,omitempty"`
	// Display is the X display mode, e.g. "1920x1080"; empty: leave X alone.
	Display string `json:"display,omitempty"`
	// Image is the image to install: the one asked for
	// (WhoAmIRequest.Image), else the host's in the hosts table, else
	// the print server's only image; empty when none of these is known.
	Image string `json:"image,omitempty"`
	// MinVersion is the version of Image the print server serves now: a
	// workstation installs no older one (a replayed older manifest, signed
	// as it is, is refused). 0: no image named.
	MinVersion int `json:"min_version,omitempty"`
	// Filesystem of the root partition: "ext4" (default), "ext3" or "xfs".
	Filesystem string `json:"filesystem"`
	// SwapMiB is the swap partition's size (0: no swap partition); RootMiB
	// the root partition's (0: the rest of the disk).
	SwapMiB int `json:"swap_mib"`
	RootMiB int `json:"root_mib,omitempty"`
	// Bootloader is "grub" (default), "extlinux", "lilo", "none", or a
	// shell command run in the new system's chroot (text/template with
	// .Disk, the whole disk's device, and .Root, the root partition's).
	Bootloader string `json:"bootloader"`
	// NextBoot is the host's next network boot, BootLocal or BootClone.
	NextBoot string `json:"next_boot,omitempty"`
	// Enrolled is true when this very request added the host to the table.
	Enrolled bool `json:"enrolled,omitempty"`
	// Keep lists the paths a re-image by sync leaves as they are (lab.conf
	// keep, or the host's keep column), absolute, e.g. /home.
	Keep []string `json:"keep,omitempty"`
	// Vars holds every other lab setting and per-host column, by name, for
	// the lab's own templates.
	Vars map[string]string `json:"vars,omitempty"`
	// Templates are the lab's and the image's configuration templates,
	// by path in the new system ("etc/hosts"); they replace the shipped ones.
	Templates map[string]string `json:"templates,omitempty"`
	// Hooks are the lab's hook scripts, run in the new system's chroot after
	// the configuration, in this order.
	Hooks []Hook `json:"hooks,omitempty"`
	// Time is the print server's clock when it answered; Nonce the
	// request's nonce.
	Time  time.Time `json:"time"`
	Nonce string    `json:"nonce,omitempty"`
}

// Hook is one lab hook script.
type Hook struct {
	Name   string `json:"name"`
	Script string `json:"script"`
}

// Replication states (ImageReplication.State).
const (
	ReplicationWaiting     = "waiting"     // known upstream, not started (another image first)
	ReplicationReplicating = "replicating" // chunks being fetched
	ReplicationComplete    = "complete"    // verified, served to the lab
	ReplicationRefused     = "refused"     // its manifest is not signed with the pinned key
	ReplicationFailed      = "failed"      // the last attempt failed (Error); tried again
)

// UpstreamStatus is a follower's replication (labseed serve --upstream):
// in its own LabStatus.Upstream, and in the reports it sends its upstream
// (FollowerReport).
type UpstreamStatus struct {
	// Upstream is the print server followed, host:port.
	Upstream string `json:"upstream"`
	// Key is the fingerprint of the image key it trusts (keys.Fingerprint:
	// the upstream's image.pub, pinned or given).
	Key string `json:"key"`
	// Contact is when the upstream last answered; Error the last error
	// talking to it (left out once it answers again).
	Contact time.Time `json:"contact,omitzero"`
	Error   string    `json:"error,omitempty"`
	// Images is every image the upstream serves, by name.
	Images []ImageReplication `json:"images"`
	// BytesFetched is the payload bytes fetched from the upstream,
	// ChunksFetched the chunks, ChunksReused the chunks found in this
	// store instead (shared with an earlier version), since the follower
	// started.
	BytesFetched  int64 `json:"bytes_fetched"`
	ChunksFetched int64 `json:"chunks_fetched"`
	ChunksReused  int64 `json:"chunks_reused"`
	// BytesFromFollowers and ChunksFromFollowers are the payload fetched
	// from the other followers of the upstream instead (PathChunks);
	// BytesToFollowers what this one served them.
	BytesFromFollowers  int64 `json:"bytes_from_followers"`
	ChunksFromFollowers int64 `json:"chunks_from_followers"`
	BytesToFollowers    int64 `json:"bytes_to_followers"`
	// BytesStaged and ChunksStaged are the payload fetched while the
	// upstream was still publishing (PathPublishing), before its signed
	// manifest existed, from it or the other followers; StagedClaimed the
	// chunks of them that a signed manifest then named (the others are
	// discarded); since the follower started.
	BytesStaged   int64 `json:"bytes_staged"`
	ChunksStaged  int64 `json:"chunks_staged"`
	StagedClaimed int64 `json:"staged_claimed"`
	// Siblings is the other followers of the upstream this one shares
	// chunks with (their HTTPAddr), as the upstream last answered.
	Siblings []string `json:"siblings,omitempty"`
	// Rate is the cap on the bytes fetched per second (--upstream-rate),
	// 0 for none.
	Rate int64 `json:"rate,omitempty"`
}

// Publishing is a publish in progress (GET PathPublishing): the image's
// name and the chunks written so far, in payload order. Nothing in it is
// signed: a follower uses it only to fetch chunks early (PathChunk), which
// it keeps apart and unserved until a signed manifest names them.
type Publishing struct {
	Name string `json:"name"`
	// ID names this publish; another publish of the image has another.
	ID string `json:"id"`
	// From is the position of the first chunk of Chunks among the chunks
	// written: 0, or the count the request said it knew of this ID
	// (Client.Publishing).
	From   int            `json:"from"`
	Chunks []PublishChunk `json:"chunks"`
}

// PublishChunk is a chunk of a publish in progress: its SHA-256 (hex) and
// compressed size.
type PublishChunk struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// ImageReplication is one image of the upstream as a follower has it.
type ImageReplication struct {
	Name string `json:"name"`
	// Version is the upstream's current version; Local the newest version
	// complete here (0: none).
	Version int `json:"version"`
	Local   int `json:"local"`
	// State is one of the Replication* constants.
	State string `json:"state"`
	// Chunks of ChunksTotal of Version are here (fetched or reused);
	// ChunksReused of them were found in this store; BytesFetched is what
	// was fetched for Version.
	Chunks       int   `json:"chunks"`
	ChunksTotal  int   `json:"chunks_total"`
	ChunksReused int   `json:"chunks_reused"`
	BytesFetched int64 `json:"bytes_fetched"`
	// BytesFromFollowers is what was fetched for Version from the other
	// followers of the upstream.
	BytesFromFollowers int64 `json:"bytes_from_followers"`
	// Error says why State is refused or failed.
	Error string `json:"error,omitempty"`
	// Updated is when this record last changed.
	Updated time.Time `json:"updated,omitzero"`
}

// FollowerReport is what a follower sends its upstream (POST
// PathFollowers) every few seconds.
type FollowerReport struct {
	// Name is the follower's name (its gossip node name); HTTPAddr where
	// its lab reaches its API.
	Name     string         `json:"name"`
	HTTPAddr string         `json:"http_addr"`
	Status   UpstreamStatus `json:"status"`
}

// Siblings is a print server's answer to a FollowerReport: the other
// print servers that follow it, heard of lately, where their API is. A
// follower fetches its share of a new version's chunks from the upstream
// and the rest from them (PathChunks).
type Siblings struct {
	// Self is the address the upstream gives the others for the follower
	// that reported (its HTTPAddr, or the address its report came from
	// when it listens on every address).
	Self      string    `json:"self"`
	Followers []Sibling `json:"followers"`
}

// Sibling is another follower of the same upstream.
type Sibling struct {
	Name     string `json:"name"`
	HTTPAddr string `json:"http_addr"`
	// Addr is the address its reports come from (its campus side, which
	// may not be HTTPAddr's); left out by an upstream older than it.
	Addr string `json:"addr,omitempty"`
}

// FollowerStatus is a follower as its upstream last heard of it.
type FollowerStatus struct {
	FollowerReport
	// Addr is the address its report came from; Heard when.
	Addr  string    `json:"addr"`
	Heard time.Time `json:"heard"`
}
