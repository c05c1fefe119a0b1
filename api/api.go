package api

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// DefaultPort is the print server's HTTP port: the API, the web seed, the
// network boot's files and /metrics.
const DefaultPort = 7480

// Paths of the HTTP API. The request and answer of each are in docs/api.md.
const (
	PathImages  = "/api/v1/images" // GET: []ImageInfo; GET PathImages/NAME: Image
	PathStatus  = "/api/v1/status" // GET: LabStatus
	PathSeed    = "/seed/"         // GET PathSeed+TORRENTNAME: payload, with ranges (BitTorrent web seed)
	PathDeal    = "/api/v1/deal/"  // POST PathDeal+INFOHASH, body: deal.Bitmap of the pieces wanted; 200: pieces (HeaderFirstPiece), 204: none now
	PathMetrics = "/metrics"       // GET: Prometheus metrics of the whole lab

	// Print servers following this one (labseed serve --upstream).
	PathImageKey  = "/api/v1/image-key" // GET: the image key images are signed with (image.pub, PEM)
	PathFollowers = "/api/v1/followers" // POST FollowerReport: Siblings
	// PathChunks + NAME/VERSION/INDEX (ChunkPath), GET: chunk INDEX of
	// version VERSION of image NAME, its compressed bytes as in the
	// payload, from a follower that holds it (404: not here, 503: busy).
	// Followers of one upstream fetch from each other so.
	PathChunks = "/api/v1/chunks/"
	// PathPublishing, GET: []Publishing, the publishes in progress on
	// this print server and the chunks each has written so far, which
	// its followers fetch (PathChunk) before the signed manifest exists.
	PathPublishing = "/api/v1/publishing"
	// PathChunk + SHA256 (hex), GET: the chunk with that SHA-256, from a
	// publish in progress on the upstream, or from the chunks a follower
	// staged (to the other followers of its upstream only); 404 when not
	// here. The receiver checks the bytes against the name.
	PathChunk = "/api/v1/chunk/"

	// The hosts API: the print server answers 404 to these when it has
	// no hosts table. PathHostsCSV and PathNextBoot need the admin key
	// (AdminAuth); PathWhoAmI and the reports are answered for the
	// requester's own MAC only.
	PathWhoAmI   = "/api/v1/whoami"          // POST WhoAmIRequest: SignedIdentity (404: unknown machine)
	PathHosts    = "/api/v1/hosts"           // GET: []BootHost
	PathHostsCSV = "/api/v1/hosts.csv"       // GET: the table as CSV; PUT CSV: replace the table (400 names the line)
	PathNextBoot = "/api/v1/hosts/next-boot" // POST NextBootRequest: NextBootResult
	// PathHosts + "/MAC/report" (ReportPath), POST Report: one step of a clone (204).
)

// ChunkPath is the path of chunk index of version version of image name
// on a follower (PathChunks).
func ChunkPath(name string, version, index int) string {
	return PathChunks + url.PathEscape(name) + "/" + strconv.Itoa(version) + "/" + strconv.Itoa(index)
}

// ReportPath is the path a clone's reports for mac are sent to.
func ReportPath(mac string) string { return PathHosts + "/" + mac + "/report" }

// HeaderFirstPiece and HeaderPieces name the pieces a PathDeal answer
// carries: the body holds pieces FIRST..FIRST+N-1 of the payload, back to
// back.
const (
	HeaderFirstPiece = "Labseed-First-Piece"
	HeaderPieces     = "Labseed-Pieces"
)

// HeaderDealLocal, on a PathDeal request, is the deal.Bitmap of the
// image's chunks the workstation holds already (a sync found them on its
// disk), in base64 (standard alphabet, no padding). A print server that
// reads it leaves the bytes of those chunks out of the pieces it deals
// (the pieces at the edges of a chunk the workstation lacks hold bytes of
// its neighbours), back to back in payload order, and says so with
// HeaderDealSkipped "1" on its answer; one that does not sends whole
// pieces.
const (
	HeaderDealLocal   = "Labseed-Deal-Local"
	HeaderDealSkipped = "Labseed-Deal-Skipped"
)

// HeaderDealSession, on a PathDeal request, names the workstation's run
// (random, the same for every deal of one run). A print server that sees
// a new one from an address gives back the pieces it dealt the previous
// run and had no word of, instead of refusing deals for a while as it does
// to an address that asks again for pieces it was dealt: a workstation
// restarted after a power cut lost them, it did not refuse to read them.
const HeaderDealSession = "Labseed-Deal-Session"

// ValidChunkSum reports whether sum names a chunk as PathChunk does: a
// SHA-256 in 64 lower-case hex digits.
func ValidChunkSum(sum string) bool {
	return len(sum) == 64 && strings.Trim(sum, "0123456789abcdef") == ""
}

// WithDefaultPort returns server ("host" or "host:port") with DefaultPort
// added when it has no port.
func WithDefaultPort(server string) string {
	if _, _, err := net.SplitHostPort(server); err != nil {
		return net.JoinHostPort(server, strconv.Itoa(DefaultPort))
	}
	return server
}

// ParseMAC parses an Ethernet MAC address as labseed accepts it, in the API
// and in the hosts table: six bytes, with colons or dashes
// ("52:54:00:12:34:56", "52-54-00-12-34-56"). Its String is the form the
// API sends.
func ParseMAC(s string) (net.HardwareAddr, error) {
	mac, err := net.ParseMAC(strings.ReplaceAll(strings.TrimSpace(s), "-", ":"))
	if err != nil || len(mac) != 6 {
		return nil, fmt.Errorf("%q is not an Ethernet MAC address (like 52:54:00:12:34:56)", s)
	}
	return mac, nil
}
