package api

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The admin requests (those that change the hosts table, wake or deploy)
// carry a per-request signature made with the admin key (admin.key, 32
// bytes that never leave the print server and the sysadmin's machine):
//
//	Authorization: Labseed-HMAC ts=UNIX,nonce=HEX16,sig=HEX
//
// where sig is hex(HMAC-SHA256(admin key, AdminSigningString(...))). The
// print server accepts a request whose ts is within MaxClockSkew of its
// clock and whose nonce it has not seen in that window, so a recorded
// request cannot be sent again.
const (
	// AuthScheme is the Authorization scheme of admin requests.
	AuthScheme = "Labseed-HMAC"
	// MaxClockSkew is how far an admin request's time may be from the
	// print server's clock.
	MaxClockSkew = 5 * time.Minute
	// MaxAdminBody bounds the body of an admin request (the print server
	// reads it whole to check its hash): 1 MiB, as every request body.
	MaxAdminBody = 1 << 20
	// adminContext starts every signed string, so that a signature made
	// for something else with the same key is never an admin signature.
	adminContext = "labseed-admin-v1\n"
)

// AdminSigningString is what an admin request's signature covers: the
// method, the request URI (path, and "?" and the query when there is one,
// as sent on the request line), the time in Unix seconds, the nonce and the
// SHA-256 of the body, each followed by a newline but the last.
func AdminSigningString(method, requestURI string, ts int64, nonce string, body []byte) string {
	h := sha256.Sum256(body)
	return adminContext + method + "\n" + requestURI + "\n" + strconv.FormatInt(ts, 10) + "\n" + nonce + "\n" + hex.EncodeToString(h[:])
}

func adminMAC(key []byte, s string) []byte {
	m := hmac.New(sha256.New, key)
	io.WriteString(m, s)
	return m.Sum(nil)
}

// AdminAuth returns a Client.Auth that signs every request with the admin
// key (32 bytes), each with the current time and a fresh random nonce.
func AdminAuth(key []byte) func(*http.Request, []byte) error {
	key = bytes.Clone(key)
	return func(req *http.Request, body []byte) error {
		if len(key) != 32 {
			return fmt.Errorf("the admin key is %d bytes, want 32", len(key))
		}
		var n [8]byte
		rand.Read(n[:])
		nonce := hex.EncodeToString(n[:])
		ts := time.Now().Unix()
		sig := adminMAC(key, AdminSigningString(req.Method, req.URL.RequestURI(), ts, nonce, body))
		req.Header.Set("Authorization", fmt.Sprintf("%s ts=%d,nonce=%s,sig=%s", AuthScheme, ts, nonce, hex.EncodeToString(sig)))
		return nil
	}
}

// Errors of AdminVerifier.Verify, wrapped with the detail.
var (
	// ErrNoCredential: the request has no admin signature at all.
	ErrNoCredential = errors.New("api: this request needs the admin key")
	// ErrBadCredential: a malformed or wrong signature, or a request
	// signed for another method, path or body.
	ErrBadCredential = errors.New("api: bad admin signature")
	// ErrStale: the request's time is too far from the server's clock.
	ErrStale = errors.New("api: admin request out of its time window")
	// ErrReplay: the request's nonce was seen already.
	ErrReplay = errors.New("api: admin request replayed")
)

// DefaultNonces is how many nonces an AdminVerifier remembers by default.
const DefaultNonces = 4096

// AdminVerifier checks the admin signature of requests on the print
// server. It remembers the nonces it accepted within MaxClockSkew, at most
// Nonces of them: when more are needed it forgets the oldest and refuses
// every request no newer than it from then on, so that a forgotten nonce
// can never be replayed. Safe for concurrent use.
type AdminVerifier struct {
	key []byte
	// Now is the server's clock; nil: time.Now.
	Now func() time.Time
	// Nonces bounds the nonce cache; 0: DefaultNonces.
	Nonces int

	mu    sync.Mutex
	seen  map[string]int64 // nonce -> ts of the request
	order []nonceAt        // the same, oldest ts first
	floor int64            // requests with ts <= floor are refused (a forgotten nonce could be among them)
}

type nonceAt struct {
	nonce string
	ts    int64
}

// NewAdminVerifier returns a verifier for the admin key (32 bytes).
func NewAdminVerifier(key []byte) (*AdminVerifier, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("api: the admin key is %d bytes, want 32", len(key))
	}
	return &AdminVerifier{key: bytes.Clone(key), seen: map[string]int64{}}, nil
}

// Verify checks r's admin signature over body (r's whole body, which the
// caller has read). A nil error means the request was made with the admin
// key, now, and for the first time.
func (v *AdminVerifier) Verify(r *http.Request, body []byte) error {
	h := r.Header.Get("Authorization")
	if h == "" {
		return ErrNoCredential
	}
	scheme, params, ok := strings.Cut(h, " ")
	if !ok || scheme != AuthScheme {
		return fmt.Errorf("%w: not a %s authorization", ErrBadCredential, AuthScheme)
	}
	var tsStr, nonce, sigHex string
	for _, kv := range strings.Split(params, ",") {
		k, val, _ := strings.Cut(strings.TrimSpace(kv), "=")
		switch k {
		case "ts":
			tsStr = val
		case "nonce":
			nonce = val
		case "sig":
			sigHex = val
		}
	}
	ts, err := strconv.ParseInt(tsStr, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: bad ts", ErrBadCredential)
	}
	if len(nonce) != 16 || !isHex(nonce) {
		return fmt.Errorf("%w: the nonce must be 16 hex digits", ErrBadCredential)
	}
	sig, err := hex.DecodeString(sigHex)
	if err != nil || len(sig) != sha256.Size {
		return fmt.Errorf("%w: bad sig", ErrBadCredential)
	}
	uri := r.RequestURI // as on the request line
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	want := adminMAC(v.key, AdminSigningString(r.Method, uri, ts, nonce, body))
	if !hmac.Equal(sig, want) {
		return fmt.Errorf("%w: not signed with this print server's admin key (admin.key)", ErrBadCredential)
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	t := now().Unix()
	skew := int64(MaxClockSkew / time.Second)
	if ts < t-skew || ts > t+skew {
		return fmt.Errorf("%w: its clock says %s, the print server's %s: set the clocks right",
			ErrStale, time.Unix(ts, 0).UTC().Format(time.RFC3339), time.Unix(t, 0).UTC().Format(time.RFC3339))
	}
	return v.remember(nonce, ts, t-skew)
}

// remember records nonce (of a request at ts), forgetting those older than
// oldest; it fails if the nonce was seen or the request is not newer than
// a nonce forgotten to keep the cache bounded.
func (v *AdminVerifier) remember(nonce string, ts, oldest int64) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	limit := v.Nonces
	if limit <= 0 {
		limit = DefaultNonces
	}
	// Forget what is out of the window anyway. order is kept sorted by ts.
	i := 0
	for i < len(v.order) && v.order[i].ts < oldest {
		delete(v.seen, v.order[i].nonce)
		i++
	}
	v.order = v.order[i:]
	if _, ok := v.seen[nonce]; ok {
		return fmt.Errorf("%w: nonce %s was used already", ErrReplay, nonce)
	}
	if ts <= v.floor {
		return fmt.Errorf("%w: too many admin requests in %s: send it again", ErrStale, MaxClockSkew)
	}
	for len(v.order) >= limit {
		o := v.order[0]
		delete(v.seen, o.nonce)
		v.order = v.order[1:]
		v.floor = max(v.floor, o.ts)
		if ts <= v.floor {
			return fmt.Errorf("%w: too many admin requests in %s: send it again", ErrStale, MaxClockSkew)
		}
	}
	v.seen[nonce] = ts
	// Insert in ts order (requests mostly arrive in order: scan from the end).
	j := len(v.order)
	for j > 0 && v.order[j-1].ts > ts {
		j--
	}
	v.order = append(v.order, nonceAt{})
	copy(v.order[j+1:], v.order[j:])
	v.order[j] = nonceAt{nonce, ts}
	return nil
}

func isHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}
