package seeder

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/internal/textsafe"
)

// adminOnly wraps h, a request that changes the lab (the hosts table, next
// boots; wake and deploy), with the admin credential's check: a request
// signed with the admin key (api.AdminAuth), now, for the first time.
// Anything else gets 401 and h never runs. The body (at most
// api.MaxAdminBody) is read to check its hash and handed to h as it was.
func (s *Server) adminOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.admin == nil {
			http.Error(w, "this print server has no admin key: it takes no changes over the network", http.StatusForbidden)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, api.MaxAdminBody+1))
		if err != nil {
			http.Error(w, "reading the request: "+err.Error(), http.StatusBadRequest)
			return
		}
		if len(body) > api.MaxAdminBody {
			http.Error(w, "request body larger than 1 MiB", http.StatusRequestEntityTooLarge)
			return
		}
		if err := s.admin.Verify(r, body); err != nil {
			s.refusedLog(r, "admin request refused", err)
			msg := err.Error()
			if errors.Is(err, api.ErrNoCredential) || errors.Is(err, api.ErrBadCredential) {
				msg += ": run labseed on the print server (--store), or give it the admin key with --admin-key FILE ('labseed keys admin FILE' writes one)"
			}
			http.Error(w, msg, http.StatusUnauthorized)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h(w, r)
	}
}

// refusedLog logs a refused request, at most once a minute per client
// address and kind, with its request-derived strings bounded and cleaned.
func (s *Server) refusedLog(r *http.Request, msg string, err error) {
	ip := remoteIP(r)
	if s.logLimit.Allow(msg+" "+ip, time.Now()) {
		s.log.Warn(msg, "remote", ip, "method", textsafe.Clean(r.Method, 16),
			"path", textsafe.Clean(r.URL.Path, 128), "err", textsafe.Clean(err.Error(), 256))
	}
}

// sourceAddr is the address a request came from, an IPv4 address in its
// 4-byte form (remoteIP is its text for logs).
func sourceAddr(r *http.Request) (netip.Addr, error) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	return ap.Addr().Unmap(), err
}

// remoteIP is the address a request came from, without its port.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return textsafe.Clean(r.RemoteAddr, 64)
	}
	return host
}
