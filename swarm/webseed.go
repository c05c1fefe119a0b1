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
// url.PathEscape'd and "+" becomes "%2B". So one URL serves every image, and
// the server must answer GET WebSeedPrefix + info.Name with the payload,
// honouring Range (http.ServeContent does): anacrolix asks for aligned
// slices of up to 64 MiB with "Range: bytes=a-b" and omits Range only when
// it wants the whole file. It treats 503 as "too fast" and any other status
// but 200/206 as a bad response.
func WebSeedURL(httpBase string) string {
	return strings.TrimRight(httpBase, "/") + WebSeedPrefix
}

// WebSeedPath returns the request path anacrolix uses for the payload of a
// single-file torrent named infoName on a WebSeedURL web seed: the path a
// server must route (Go's http.ServeMux matches it already unescaped, so
// "/seed/{name}" with r.PathValue("name") == infoName works).
func WebSeedPath(infoName string) string {
	return WebSeedPrefix + strings.ReplaceAll(url.PathEscape(infoName), "+", "%2B")
}
