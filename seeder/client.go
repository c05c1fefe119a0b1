package seeder

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labseed/labseed/hosts"
)

// Client talks to a print server's HTTP API: what "labseed hosts",
// "labseed status" and "labseed clone" use.
type Client struct {
	// Addr is the print server's "host:port"; NewClient adds port 7480
	// when it is missing.
	Addr string
	// Token is the API token (APIToken of the lab key); "" for an
	// insecure server.
	Token string
	// HTTP is the client used; default one with a 30 s timeout.
	HTTP *http.Client
}

// NewClient returns a Client for server ("host" or "host:port") holding
// the lab key labKey (nil: no token).
func NewClient(server string, labKey []byte) *Client {
	if _, _, err := net.SplitHostPort(server); err != nil {
		server = net.JoinHostPort(server, "7480")
	}
	c := &Client{Addr: server, HTTP: &http.Client{Timeout: 30 * time.Second}}
	if labKey != nil {
		c.Token = APIToken(labKey)
	}
	return c
}

// do sends a request with body (JSON-encoded unless an io.Reader) and
// decodes a JSON answer into out (unless nil or an io.Writer, which gets
// the raw answer). Errors carry the server's own message.
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	ctype := "application/json"
	switch b := body.(type) {
	case nil:
	case io.Reader:
		rd, ctype = b, "text/csv"
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.Addr+path, rd)
	if err != nil {
		return err
	}
	if rd != nil {
		req.Header.Set("Content-Type", ctype)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("print server %s: is 'labseed serve' running there? %w", c.Addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return &APIError{Code: resp.StatusCode, Msg: strings.TrimSpace(string(msg))}
	}
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

// APIError is an error answer of the print server.
type APIError struct {
	Code int    // HTTP status
	Msg  string // the server's message
}

func (e *APIError) Error() string {
	return fmt.Sprintf("print server: %s (%d %s)", e.Msg, e.Code, http.StatusText(e.Code))
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

// WhoAmI asks for the identity of the machine with macs.
func (c *Client) WhoAmI(ctx context.Context, macs []string) (hosts.Identity, error) {
	var id hosts.Identity
	return id, c.do(ctx, "POST", PathWhoAmI, WhoAmIRequest{MACs: macs}, &id)
}

// Report sends one step of mac's clone.
func (c *Client) Report(ctx context.Context, mac string, r hosts.Report) error {
	return c.do(ctx, "POST", PathHosts+"/"+mac+"/report", r, nil)
}
