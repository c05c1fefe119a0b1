package swarm

import (
	"net/url"
	"strings"
)

// WebSeedPrefix is the path under which a web seed serves payloads: a
// single-file torrent named N is fetched from WebSeedPrefix + N, e.g.
// "/seed/lab1-v3.payload".
const WebSeedPrefix = "/seed/"

// WebSeedURL returns the URL to give Torrent.AddWebSeeds for the HTTP server
// at httpBase (e.g. "http://10.77.0.1:8080"): httpBase + WebSeedPrefix.
//
// How anacrolix v1.59.1 forms requests (webseed/request.go, BEP 19): a web
// seed URL ending in "/" gets the escaped info name appended, plus the
// file's path components for multi-file torrents (none for a single-file
// one); a URL without the trailing "/" is used as is. Each component is
// url.PathEscape'd and "+" becomes "%2B" (WebSeedPath). So one URL serves
// every image, and the server must answer GET WebSeedPrefix + info.Name with
// the payload, honouring Range (http.ServeContent does).
//
// What to expect from the client: it plans web-seed requests on a
// client-wide 5-second timer (and again as soon as one finishes), so a web
// seed starts up to 5 s after AddWebSeeds (TestWebSeedOnly: 12 MiB took
// 5.1 s on loopback, nearly all of it that wait). Requests cover aligned
// 64 MiB slices, "Range: bytes=a-b", without Range when the slice is the
// whole file; up to 25 at once per host, over at most 10 connections per
// host. A 503 answer means "too fast" to it, any status but 200/206 is a bad
// response. A web seed whose data fails the hash check is suspended for a
// minute, not banned. Reads from web seeds count against the client's
// DownloadRate.
func WebSeedURL(httpBase string) string {
	return strings.TrimRight(httpBase, "/") + WebSeedPrefix
}

// WebSeedPath returns the escaped request path anacrolix uses for the
// payload of a single-file torrent named infoName on a WebSeedURL web seed,
// as it appears in r.URL.EscapedPath(). Go's http.ServeMux matches the
// unescaped path, so a "GET /seed/{name}" route sees
// r.PathValue("name") == infoName.
func WebSeedPath(infoName string) string {
	return WebSeedPrefix + strings.ReplaceAll(url.PathEscape(infoName), "+", "%2B")
}
