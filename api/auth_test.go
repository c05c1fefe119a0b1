package api

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// signed returns a request as a print server's handler sees it, signed
// with key at time ts (AdminAuth's format, built by hand so that the time
// can be chosen).
func signed(t *testing.T, key []byte, method, uri, body string, ts int64, nonce string) *http.Request {
	t.Helper()
	r := httptest.NewRequest(method, uri, strings.NewReader(body))
	sig := adminMAC(key, AdminSigningString(method, uri, ts, nonce, []byte(body)))
	r.Header.Set("Authorization", fmt.Sprintf("%s ts=%d,nonce=%s,sig=%x", AuthScheme, ts, nonce, sig))
	return r
}

func TestAdminAuth(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	v, err := NewAdminVerifier(key)
	if err != nil {
		t.Fatal(err)
	}
	// What AdminAuth signs, the verifier takes, once.
	var got []error
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, v.Verify(r, b))
	}))
	defer srv.Close()
	c := NewClient(strings.TrimPrefix(srv.URL, "http://"))
	c.Auth = AdminAuth(key)
	ctx := t.Context()
	c.ImportCSV(ctx, strings.NewReader("mac,hostname,ip\n"))
	c.SetNextBoot(ctx, NextBootRequest{All: true, Boot: BootClone})
	c.ExportCSV(ctx, io.Discard)
	for i, err := range got {
		if err != nil {
			t.Errorf("request %d: %v", i, err)
		}
	}
	if len(got) != 3 {
		t.Fatalf("%d requests", len(got))
	}

	now := time.Now().Unix()
	other := bytes.Repeat([]byte{8}, 32)
	for name, tc := range map[string]struct {
		r    *http.Request
		body string // what the handler read, if not the request's
		want error
	}{
		"no header": {r: httptest.NewRequest("PUT", PathHostsCSV, nil), want: ErrNoCredential},
		"bearer token": {r: func() *http.Request {
			r := httptest.NewRequest("PUT", PathHostsCSV, nil)
			r.Header.Set("Authorization", "Bearer abc")
			return r
		}(), want: ErrBadCredential},
		"other key":  {r: signed(t, other, "PUT", PathHostsCSV, "x", now, "0123456789abcdef"), want: ErrBadCredential},
		"other body": {r: signed(t, key, "PUT", PathHostsCSV, "x", now, "0123456789abcdef"), body: "y", want: ErrBadCredential},
		"other path": {r: func() *http.Request {
			r := signed(t, key, "PUT", PathHostsCSV, "x", now, "0123456789abcdef")
			r.RequestURI = PathNextBoot
			return r
		}(), want: ErrBadCredential},
		"short nonce":      {r: signed(t, key, "PUT", PathHostsCSV, "x", now, "0123"), want: ErrBadCredential},
		"six minutes old":  {r: signed(t, key, "PUT", PathHostsCSV, "x", now-360, "0123456789abcdef"), want: ErrStale},
		"six minutes late": {r: signed(t, key, "PUT", PathHostsCSV, "x", now+360, "0123456789abcdef"), want: ErrStale},
	} {
		body := tc.body
		if body == "" {
			b, _ := io.ReadAll(tc.r.Body)
			body = string(b)
		}
		if err := v.Verify(tc.r, []byte(body)); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}

	// A replay is refused, even four minutes later.
	r := signed(t, key, "POST", PathNextBoot, "{}", now, "00000000000000aa")
	if err := v.Verify(r, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	v.Now = func() time.Time { return time.Unix(now+240, 0) }
	if err := v.Verify(r, []byte("{}")); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay: %v", err)
	}
	// Past the window it is stale, and its nonce is forgotten.
	v.Now = func() time.Time { return time.Unix(now+400, 0) }
	if err := v.Verify(r, []byte("{}")); !errors.Is(err, ErrStale) {
		t.Fatalf("replay after the window: %v", err)
	}
}

// TestAdminNonceBound: the nonce cache stays bounded, and a nonce it had to
// forget cannot be replayed.
func TestAdminNonceBound(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	v, _ := NewAdminVerifier(key)
	v.Nonces = 8
	now := time.Now().Unix()
	v.Now = func() time.Time { return time.Unix(now, 0) }
	var reqs []*http.Request
	for i := range 100 {
		r := signed(t, key, "POST", PathNextBoot, "{}", now-100+int64(i), fmt.Sprintf("%016x", i))
		if err := v.Verify(r, []byte("{}")); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		reqs = append(reqs, r)
	}
	if len(v.seen) > 8 || len(v.order) > 8 {
		t.Fatalf("%d nonces kept, bound 8", len(v.seen))
	}
	for i, r := range reqs {
		if err := v.Verify(r, []byte("{}")); err == nil {
			t.Fatalf("request %d replayed", i)
		}
	}
	// A fresh request still goes through.
	if err := v.Verify(signed(t, key, "POST", PathNextBoot, "{}", now, "ffffffffffffffff"), []byte("{}")); err != nil {
		t.Fatal(err)
	}
}

// TestIdentitySignature: a signed identity checks out with its public key
// only, and any change to its bytes (a man in the middle rewriting the
// bootloader command) or a signature made over the same bytes without the
// identity context (a manifest's) is refused.
func TestIdentitySignature(t *testing.T) {
	pub := testKey.Public().(ed25519.PublicKey)
	sid, err := SignIdentity(testKey, Identity{MAC: "52:54:00:12:34:56", Hostname: "ws07", Bootloader: "grub", Nonce: "abcd"})
	if err != nil {
		t.Fatal(err)
	}
	if id, err := VerifyIdentity(pub, sid); err != nil || id.Bootloader != "grub" || id.Nonce != "abcd" {
		t.Fatalf("%+v, %v", id, err)
	}
	tampered := sid
	tampered.Identity = bytes.Replace(sid.Identity, []byte(`"grub"`), []byte(`"curl x|sh"`), 1)
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{6}, ed25519.SeedSize))
	for name, s := range map[string]SignedIdentity{
		"tampered":          tampered,
		"other key":         func() SignedIdentity { s, _ := SignIdentity(other, Identity{Hostname: "ws07"}); return s }(),
		"no context":        {Identity: sid.Identity, Signature: ed25519.Sign(testKey, sid.Identity)},
		"no signature":      {Identity: sid.Identity},
		"signature of none": {Signature: sid.Signature},
	} {
		if _, err := VerifyIdentity(pub, s); !errors.Is(err, ErrBadIdentity) {
			t.Errorf("%s: %v, want ErrBadIdentity", name, err)
		}
	}
	if _, err := VerifyIdentity(nil, sid); !errors.Is(err, ErrBadIdentity) {
		t.Errorf("no public key: %v", err)
	}
}
