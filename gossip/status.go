package gossip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxStatusSize is the largest encoded Status, in bytes. It is memberlist's
// limit on node metadata (memberlist.MetaMaxSize): memberlist panics on
// anything longer, so Encode never returns more.
const MaxStatusSize = 512

// Limits on the strings of a Status, in bytes of UTF-8. Err gets whatever room
// the rest of the encoding leaves, at least 150 bytes.
const (
	maxImageLen = 64 // Status.Image is truncated to this
	maxAddrLen  = 96 // Status.TorrentAddr and HTTPAddr longer than this are dropped
)

// statusVersion is the leading byte of an encoded Status.
const statusVersion = 1

// ErrBadStatus is wrapped by every error DecodeStatus returns.
var ErrBadStatus = errors.New("gossip: bad status encoding")

// Role says what a lab member is.
type Role uint8

// Roles. The zero value is RolePeer.
const (
	RolePeer   Role = iota // a workstation being imaged
	RoleServer             // the lab's print server: the gossip seed and the image's first seeder
)

// String returns "peer" or "server" ("role(N)" for values this version does not know).
func (r Role) String() string {
	switch r {
	case RolePeer:
		return "peer"
	case RoleServer:
		return "server"
	}
	return "role(" + strconv.Itoa(int(r)) + ")"
}

// Phase is where a lab member is in its imaging run. The zero value is PhaseJoining.
type Phase uint8

// Phases, in the order a workstation goes through them.
const (
	PhaseJoining     Phase = iota // started, joining the lab, fetching the manifest
	PhaseDownloading              // fetching and extracting chunks
	PhaseFinishing                // every chunk applied; finishing the target (links, metadata, bootloader, identity)
	PhaseSeeding                  // done, lingering to upload to the rest of the lab
	PhaseDone                     // done and gone (stopped seeding after finishing)
	PhaseFailed                   // gave up; Status.Err says why
)

var phaseNames = [...]string{"joining", "downloading", "finishing", "seeding", "done", "failed"}

// String returns the phase's lower-case name, as in the constants' names:
// "joining", "downloading", "finishing", "seeding", "done", "failed"
// ("phase(N)" for values this version does not know).
func (p Phase) String() string {
	if int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return "phase(" + strconv.Itoa(int(p)) + ")"
}

// Status is what a lab member gossips about itself: role, progress and the
// addresses the others need. Its encoding (Encode) fits in MaxStatusSize bytes
// whatever the field values: Image is truncated to 64 bytes, TorrentAddr and
// HTTPAddr longer than 96 bytes (no valid host:port in a lab is) are dropped,
// Err is truncated to the room left (at least 150 bytes), strings are made
// valid UTF-8, and Percent is kept to 0.01.
type Status struct {
	Role  Role
	Phase Phase
	// Image is the image name and version, e.g. "lab1-v3" (at most 64 bytes).
	Image string
	// TorrentAddr is the host:port of the member's BitTorrent listener.
	TorrentAddr string
	// HTTPAddr is the host:port of the member's HTTP API (print server only).
	HTTPAddr string
	// Percent is the progress, 0 to 100, to 0.01.
	Percent float64
	// Chunks is the number of chunks verified and applied, of ChunksTotal.
	Chunks, ChunksTotal uint32
	// DownRate and UpRate are recent transfer rates in bytes/s.
	DownRate, UpRate uint64
	// FromServer, FromPeers and Uploaded count bytes since the member started:
	// downloaded from the print server, downloaded from other workstations,
	// uploaded to anyone.
	FromServer, FromPeers, Uploaded uint64
	// Peers is the number of connected torrent peers.
	Peers uint16
	// ETA is the estimated time to finish in seconds; 0 means unknown.
	ETA uint32
	// HashFailures counts pieces that failed verification.
	HashFailures uint32
	// StartedUnix and UpdatedUnix are Unix times in seconds: when the member
	// started its run and when this status was made (Node.SetStatus fills in
	// UpdatedUnix when it is zero).
	StartedUnix, UpdatedUnix int64
	// Err is a short reason when Phase is PhaseFailed (truncated to fit).
	Err string
	// MAC is the machine whose re-imaging this member is (labseed clone's
	// agent), in net.HardwareAddr's form ("52:54:00:12:34:56"), so that the
	// print server joins the member to the machine's boot and clone
	// record; "" for a member that is no machine's clone. Anything but a
	// 6-byte MAC is dropped.
	MAC string
	// Sync is true when the member re-images a disk that holds an image
	// by syncing it (peer.Config.Sync): ChunksLocal is the chunks it
	// found on its disk, ChunksFetched those it applied from the lab,
	// FilesRemoved the paths it removed because the image does not hold
	// them. (A full extraction fetches every chunk.)
	Sync                       bool
	ChunksLocal, ChunksFetched uint32
	FilesRemoved               uint64
}

// Encode returns the compact binary form of s that is gossiped as the member's
// metadata: a version byte, then the fields as varints and length-prefixed
// strings. It is at most MaxStatusSize bytes whatever s holds (see Status for
// what is truncated). DecodeStatus reverses it.
func (s Status) Encode() []byte {
	b := make([]byte, 0, 128)
	b = append(b, statusVersion, byte(s.Role), byte(s.Phase))
	b = binary.AppendUvarint(b, percentHundredths(s.Percent))
	b = binary.AppendUvarint(b, uint64(s.Chunks))
	b = binary.AppendUvarint(b, uint64(s.ChunksTotal))
	b = binary.AppendUvarint(b, s.DownRate)
	b = binary.AppendUvarint(b, s.UpRate)
	b = binary.AppendUvarint(b, s.FromServer)
	b = binary.AppendUvarint(b, s.FromPeers)
	b = binary.AppendUvarint(b, s.Uploaded)
	b = binary.AppendUvarint(b, uint64(s.Peers))
	b = binary.AppendUvarint(b, uint64(s.ETA))
	b = binary.AppendUvarint(b, uint64(s.HashFailures))
	b = binary.AppendVarint(b, s.StartedUnix)
	b = binary.AppendVarint(b, s.UpdatedUnix)
	b = appendString(b, truncateUTF8(s.Image, maxImageLen))
	b = appendString(b, fitAddr(s.TorrentAddr))
	b = appendString(b, fitAddr(s.HTTPAddr))
	// After Err, each only when it says something (a status without them
	// encodes as before they were added; a decoder that predates them
	// ignores them, see DecodeStatus): MAC, as its length (6) and bytes,
	// then a sync's fields, as uvarints, after MAC or an empty MAC (0).
	var tail []byte
	if hw, err := net.ParseMAC(s.MAC); err == nil && len(hw) == 6 {
		tail = append(append(tail, 6), hw...)
	}
	if s.Sync || s.ChunksLocal != 0 || s.ChunksFetched != 0 || s.FilesRemoved != 0 {
		if tail == nil {
			tail = []byte{0}
		}
		var flags uint64
		if s.Sync {
			flags |= 1
		}
		tail = binary.AppendUvarint(tail, flags)
		tail = binary.AppendUvarint(tail, uint64(s.ChunksLocal))
		tail = binary.AppendUvarint(tail, uint64(s.ChunksFetched))
		tail = binary.AppendUvarint(tail, s.FilesRemoved)
	}
	// Err gets the room that is left.
	room := MaxStatusSize - len(b) - len(tail)
	n := room - 1
	for n > 0 && n+uvarintLen(uint64(n)) > room {
		n--
	}
	b = appendString(b, truncateUTF8(s.Err, n))
	return append(b, tail...)
}

// DecodeStatus parses an encoding made by Status.Encode. It rejects (with an
// error wrapping ErrBadStatus) anything longer than MaxStatusSize, another
// encoding version, truncated or out-of-range fields and strings that are not
// UTF-8 or longer than Encode writes them. Bytes after the last field are
// ignored, so that later versions can append fields without a new version byte.
func DecodeStatus(b []byte) (Status, error) {
	var s Status
	if len(b) > MaxStatusSize {
		return s, fmt.Errorf("%w: %d bytes, more than %d", ErrBadStatus, len(b), MaxStatusSize)
	}
	if len(b) < 3 {
		return s, fmt.Errorf("%w: %d bytes, too short", ErrBadStatus, len(b))
	}
	if b[0] != statusVersion {
		return s, fmt.Errorf("%w: version %d, want %d (is the sender another labseed version?)", ErrBadStatus, b[0], statusVersion)
	}
	s.Role, s.Phase = Role(b[1]), Phase(b[2])
	d := decoder{b: b[3:]}
	pct := d.uvarint("percent", 10000)
	s.Percent = float64(pct) / 100
	s.Chunks = uint32(d.uvarint("chunks", math.MaxUint32))
	s.ChunksTotal = uint32(d.uvarint("chunks total", math.MaxUint32))
	s.DownRate = d.uvarint("down rate", math.MaxUint64)
	s.UpRate = d.uvarint("up rate", math.MaxUint64)
	s.FromServer = d.uvarint("from server", math.MaxUint64)
	s.FromPeers = d.uvarint("from peers", math.MaxUint64)
	s.Uploaded = d.uvarint("uploaded", math.MaxUint64)
	s.Peers = uint16(d.uvarint("peers", math.MaxUint16))
	s.ETA = uint32(d.uvarint("eta", math.MaxUint32))
	s.HashFailures = uint32(d.uvarint("hash failures", math.MaxUint32))
	s.StartedUnix = d.varint("started")
	s.UpdatedUnix = d.varint("updated")
	s.Image = d.string("image", maxImageLen)
	s.TorrentAddr = d.string("torrent address", maxAddrLen)
	s.HTTPAddr = d.string("http address", maxAddrLen)
	s.Err = d.string("err", MaxStatusSize)
	// MAC, then a sync's fields, were appended later: older encodings end
	// before them, and bytes that are not an encoding of them are a later
	// version's (ignored, as any after them).
	if d.err == nil && len(d.b) > 0 {
		switch {
		case len(d.b) >= 7 && d.b[0] == 6:
			s.MAC = net.HardwareAddr(d.b[1:7]).String()
			d.b, d.off = d.b[7:], d.off+7
		case d.b[0] == 0:
			d.b, d.off = d.b[1:], d.off+1
		default:
			d.b = nil
		}
		if len(d.b) > 0 {
			s.Sync = d.uvarint("flags", math.MaxUint64)&1 != 0
			s.ChunksLocal = uint32(d.uvarint("chunks local", math.MaxUint32))
			s.ChunksFetched = uint32(d.uvarint("chunks fetched", math.MaxUint32))
			s.FilesRemoved = d.uvarint("files removed", math.MaxUint64)
		}
	}
	if d.err != nil {
		return Status{}, d.err
	}
	return s, nil
}

// decoder reads fields in order and keeps the first error.
type decoder struct {
	b   []byte
	off int // bytes consumed, for error messages (after the 3-byte header)
	err error
}

func (d *decoder) fail(field, format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at byte %d: %s", ErrBadStatus, field, d.off+3, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) uvarint(field string, max uint64) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(field, "truncated or overflowing varint")
		return 0
	}
	if v > max {
		d.fail(field, "%d out of range (max %d)", v, max)
		return 0
	}
	d.b, d.off = d.b[n:], d.off+n
	return v
}

func (d *decoder) varint(field string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(field, "truncated or overflowing varint")
		return 0
	}
	d.b, d.off = d.b[n:], d.off+n
	return v
}

func (d *decoder) string(field string, max int) string {
	n := d.uvarint(field+" length", uint64(max))
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.fail(field, "length %d but %d bytes left", n, len(d.b))
		return ""
	}
	s := string(d.b[:n])
	if !utf8.ValidString(s) {
		d.fail(field, "not UTF-8")
		return ""
	}
	d.b, d.off = d.b[n:], d.off+int(n)
	return s
}

// percentHundredths turns a percentage into hundredths of a percent in
// 0..10000 (NaN counts as 0).
func percentHundredths(p float64) uint64 {
	switch {
	case !(p > 0): // also NaN
		return 0
	case p >= 100:
		return 10000
	}
	return uint64(math.Round(p * 100))
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// truncateUTF8 returns s as valid UTF-8, cut to at most max bytes at a rune
// boundary.
func truncateUTF8(s string, max int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "?")
	}
	if max <= 0 {
		return ""
	}
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// fitAddr returns addr, or "" when it is too long to gossip: a cut address
// would only make the others dial a wrong one.
func fitAddr(addr string) string {
	if len(addr) > maxAddrLen || !utf8.ValidString(addr) {
		return ""
	}
	return addr
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
