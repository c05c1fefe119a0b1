package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labseed/labseed/deal"
	"github.com/labseed/labseed/internal/textsafe"
)

// Client talks to a print server's HTTP API: what "labseed hosts",
// "labseed status", "labseed clone" and the workstation agent use. Its
// methods may be called from several goroutines at once.
type Client struct {
	// Addr is the print server's "host:port"; NewClient adds DefaultPort
	// when it is missing.
	Addr string
	// HTTP is the client used; nil: http.DefaultClient. NewClient sets
	// one with a 30 s timeout. Deal uses its Transport without the
	// timeout.
	HTTP *http.Client
	// Auth, if set, authenticates every request before it is sent: it is
	// called with the request, its headers set, and its whole body (nil
	// for none), and may add headers. An error stops the request.
	// Nil sends requests as they are (the print server then refuses
	// those that need a credential).
	Auth func(req *http.Request, body []byte) error
	// Session, if set, is sent with every deal request as
	// HeaderDealSession: a workstation sets one random value per run.
	Session string
}

// NewClient returns a Client for server ("host" or "host:port"), without
// credentials.
func NewClient(server string) *Client {
	return &Client{Addr: WithDefaultPort(server), HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// APIError is an error answer of the print server.
type APIError struct {
	Code int    // HTTP status
	Msg  string // the server's message
}

// Error says the server's message and the HTTP status.
func (e *APIError) Error() string {
	return fmt.Sprintf("print server: %s (%d %s)", e.Msg, e.Code, http.StatusText(e.Code))
}

// do sends a request with body (see send) and decodes a JSON answer into
// out (unless nil or an io.Writer, which gets the raw answer). Errors carry
// the server's own message.
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := c.send(ctx, hc, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch o := out.(type) {
	case nil:
		return nil
	case io.Writer:
		_, err = io.Copy(o, resp.Body)
		return err
	default:
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return fmt.Errorf("print server %s: bad answer to %s: %w", c.Addr, path, err)
		}
		return nil
	}
}

// octets is a request body sent as application/octet-stream.
type octets []byte

// send sends a request with body (JSON-encoded unless octets or an
// io.Reader, which is CSV) through hc and returns a 2xx answer; other
// answers become an *APIError.
func (c *Client) send(ctx context.Context, hc *http.Client, method, path string, body any) (*http.Response, error) {
	return c.sendHeader(ctx, hc, method, path, body, nil)
}

// sendHeader is send with more request headers.
func (c *Client) sendHeader(ctx context.Context, hc *http.Client, method, path string, body any, hdr http.Header) (*http.Response, error) {
	var b []byte
	ctype := "application/json"
	switch v := body.(type) {
	case nil:
	case octets:
		b, ctype = v, "application/octet-stream"
	case io.Reader:
		var err error
		if b, err = io.ReadAll(v); err != nil {
			return nil, err
		}
		ctype = "text/csv"
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			return nil, err
		}
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.Addr+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if c.Auth != nil {
		if err := c.Auth(req, b); err != nil {
			return nil, fmt.Errorf("print server %s: %s %s: %w", c.Addr, method, path, err)
		}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("print server %s: is 'labseed serve' running there? %w", c.Addr, err)
	}
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		// The message is printed on terminals: no escape sequences. It
		// may name several errors, a line each (a hosts table's bad lines).
		return nil, &APIError{Code: resp.StatusCode, Msg: textsafe.CleanLines(strings.TrimSpace(string(msg)), 25, 0)}
	}
	return resp, nil
}

// Deal asks the print server for pieces of the torrent infohash among
// those set in want (see package deal). It returns the first piece's index,
// how many pieces follow and a body holding them back to back, which the
// caller must close; n is 0 (and body nil) when the server has none to
// send now. Only ctx bounds the transfer.
func (c *Client) Deal(ctx context.Context, infohash string, want deal.Bitmap) (first, n int, body io.ReadCloser, err error) {
	first, n, _, body, err = c.DealSkipping(ctx, infohash, want, nil)
	return first, n, body, err
}

// DealSkipping is Deal for a workstation that holds the chunks of the
// image set in local (HeaderDealLocal; nil: none): skipped reports
// whether the print server left their bytes out of the pieces.
func (c *Client) DealSkipping(ctx context.Context, infohash string, want, local deal.Bitmap) (first, n int, skipped bool, body io.ReadCloser, err error) {
	hc := http.DefaultClient
	if c.HTTP != nil {
		hc = &http.Client{Transport: c.HTTP.Transport}
	}
	hdr := http.Header{}
	if local != nil {
		hdr.Set(HeaderDealLocal, base64.RawStdEncoding.EncodeToString(local))
	}
	if c.Session != "" {
		hdr.Set(HeaderDealSession, c.Session)
	}
	resp, err := c.sendHeader(ctx, hc, "POST", PathDeal+infohash, octets(want), hdr)
	if err != nil {
		return 0, 0, false, nil, err
	}
	if resp.StatusCode == http.StatusNoContent {
		resp.Body.Close()
		return 0, 0, false, nil, nil
	}
	first, err1 := strconv.Atoi(resp.Header.Get(HeaderFirstPiece))
	n, err2 := strconv.Atoi(resp.Header.Get(HeaderPieces))
	if err1 != nil || err2 != nil || first < 0 || n <= 0 {
		resp.Body.Close()
		return 0, 0, false, nil, fmt.Errorf("print server %s: deal answer without valid %s/%s headers", c.Addr, HeaderFirstPiece, HeaderPieces)
	}
	return first, n, resp.Header.Get(HeaderDealSkipped) == "1", resp.Body, nil
}

// Images lists the print server's images.
func (c *Client) Images(ctx context.Context) ([]ImageInfo, error) {
	var out []ImageInfo
	return out, c.do(ctx, "GET", PathImages, nil, &out)
}

// Image returns what a workstation needs to fetch image name: its signed
// manifest and torrent (not verified here) and the lab's addresses.
func (c *Client) Image(ctx context.Context, name string) (*Image, error) {
	var im Image
	return &im, c.do(ctx, "GET", PathImages+"/"+url.PathEscape(name), nil, &im)
}

// Status returns the lab status.
func (c *Client) Status(ctx context.Context) (*LabStatus, error) {
	var ls LabStatus
	return &ls, c.do(ctx, "GET", PathStatus, nil, &ls)
}

// Hosts returns the hosts table with boot events and clone reports.
func (c *Client) Hosts(ctx context.Context) ([]BootHost, error) {
	var out []BootHost
	return out, c.do(ctx, "GET", PathHosts, nil, &out)
}

// ExportCSV writes the hosts table as CSV to w.
func (c *Client) ExportCSV(ctx context.Context, w io.Writer) error {
	return c.do(ctx, "GET", PathHostsCSV, nil, w)
}

// ImportCSV replaces the hosts table with the CSV in r; a table with an
// error is refused whole and the error names its line.
func (c *Client) ImportCSV(ctx context.Context, r io.Reader) error {
	return c.do(ctx, "PUT", PathHostsCSV, r, nil)
}

// SetNextBoot sets the next boot of some or all hosts; it returns how many
// were marked.
func (c *Client) SetNextBoot(ctx context.Context, req NextBootRequest) (int, error) {
	var res NextBootResult
	return res.Marked, c.do(ctx, "POST", PathNextBoot, req, &res)
}

// WhoAmI asks for the identity of the machine with req.MACs. The answer
// is signed; check it with VerifyIdentity (and its Nonce) before use.
func (c *Client) WhoAmI(ctx context.Context, req WhoAmIRequest) (SignedIdentity, error) {
	var s SignedIdentity
	return s, c.do(ctx, "POST", PathWhoAmI, req, &s)
}

// Report sends one step of mac's clone.
func (c *Client) Report(ctx context.Context, mac string, r Report) error {
	return c.do(ctx, "POST", ReportPath(mac), r, nil)
}

// ImageKey returns the print server's image key, PEM-encoded as in
// image.pub: the key its images are signed with. Not authenticated: a
// follower pins it on first contact and shows its fingerprint.
func (c *Client) ImageKey(ctx context.Context) ([]byte, error) {
	var b bytes.Buffer
	if err := c.do(ctx, "GET", PathImageKey, nil, &b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Publishing returns the publishes in progress on the print server (none
// from one that does not know PathPublishing: an older labseed). known
// gives, by publish ID, how many of its chunks the caller knows already:
// the answer for that publish lists only the others (From).
func (c *Client) Publishing(ctx context.Context, known map[string]int) ([]Publishing, error) {
	var out []Publishing
	q := url.Values{}
	for id, n := range known {
		q.Add("known", id+":"+strconv.Itoa(n))
	}
	path := PathPublishing
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	err := c.do(ctx, "GET", path, nil, &out)
	var ae *APIError
	if errors.As(err, &ae) && ae.Code == http.StatusNotFound {
		return nil, nil
	}
	return out, err
}

// ChunkHashPath is the path of the chunk with SHA-256 sum (hex) (PathChunk).
func ChunkHashPath(sum string) string { return PathChunk + sum }

// ReportFollower sends a follower's replication to its upstream and
// returns the upstream's answer: the other print servers that follow it
// (none from an upstream that answers 204, as before they shared chunks).
func (c *Client) ReportFollower(ctx context.Context, r FollowerReport) (*Siblings, error) {
	var buf bytes.Buffer
	if err := c.do(ctx, "POST", PathFollowers, r, &buf); err != nil {
		return nil, err
	}
	var sib Siblings
	if buf.Len() == 0 {
		return &sib, nil
	}
	if err := json.Unmarshal(buf.Bytes(), &sib); err != nil {
		return nil, fmt.Errorf("print server %s: bad answer to %s: %w", c.Addr, PathFollowers, err)
	}
	return &sib, nil
}
