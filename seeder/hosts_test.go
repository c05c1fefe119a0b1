package seeder

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/deal"
	"github.com/labseed/labseed/hosts"
	"github.com/labseed/labseed/internal/fixture"
	"github.com/labseed/labseed/pxe"
	"github.com/labseed/labseed/store"
)

// startServer runs a print server with a hosts table (and a network boot,
// if given) on loopback and returns a client holding the admin key.
func startServer(t *testing.T, dir string, boot *pxe.Config) (*Server, *api.Client) {
	t.Helper()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	key, err := st.LabKey()
	if err != nil {
		t.Fatal(err)
	}
	admin, err := st.AdminKey()
	if err != nil {
		t.Fatal(err)
	}
	db, err := hosts.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := LocalConfig()
	cfg.Store, cfg.LabKey, cfg.AdminKey, cfg.Hosts, cfg.PXE = st, key, admin, db, boot
	srv := runServer(t, cfg)
	c := api.NewClient(srv.Lab().HTTPAddr)
	c.Auth = api.AdminAuth(admin)
	return srv, c
}

func TestHostsAPI(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, hosts.SettingsFile), []byte("gateway = 10.1.0.1\nenroll_name = lab1-ws%02d\nenroll_range = 10.1.0.100-10.1.0.199\n"), 0o644)
	cfg := pxe.DefaultConfig()
	cfg.Mode, cfg.ProxyAddr = pxe.ModeOff, "-"
	srv, c := startServer(t, dir, &cfg)
	boot := srv.Boot()
	ctx := context.Background()

	// Without the admin key: refused.
	anon := api.NewClient(srv.Lab().HTTPAddr)
	var ae *api.APIError
	if err := anon.ImportCSV(ctx, strings.NewReader("mac,hostname,ip\n")); !errors.As(err, &ae) || ae.Code != 401 {
		t.Fatalf("import without the admin key: %v", err)
	}

	// A bad table is refused whole, with its line.
	err := c.ImportCSV(ctx, strings.NewReader("mac,hostname,ip\n52:54:00:00:00:01,a,10.1.0.10\n52:54:00:00:00:02,a,10.1.0.11\n"))
	if !errors.As(err, &ae) || ae.Code != 400 || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("bad import: %v", err)
	}
	table := "mac,hostname,ip,next_boot\n52:54:00:00:00:01,lab1-ws01,10.1.0.101,\n52:54:00:00:00:02,lab1-ws02,10.1.0.102,\n"
	if err := c.ImportCSV(ctx, strings.NewReader(table)); err != nil {
		t.Fatal(err)
	}
	var csv bytes.Buffer
	if err := c.ExportCSV(ctx, &csv); err != nil || !strings.Contains(csv.String(), "52:54:00:00:00:02,lab1-ws02,10.1.0.102,local") {
		t.Fatalf("export: %v\n%s", err, csv.String())
	}

	// Marks reach the network boot's menus.
	mac1, _ := hosts.ParseMAC("52:54:00:00:00:01")
	if n, err := c.SetNextBoot(ctx, api.NextBootRequest{MACs: []string{"52-54-00-00-00-01"}, Boot: hosts.BootClone}); n != 1 || err != nil {
		t.Fatalf("next boot: %d, %v", n, err)
	}
	if !boot.NextBoot(mac1) || !boot.Menu(mac1).Clone {
		t.Fatal("the mark did not reach the boot menu")
	}
	if _, err := c.SetNextBoot(ctx, api.NextBootRequest{MACs: []string{"52:54:00:00:00:09"}, Boot: hosts.BootClone}); !errors.As(err, &ae) || ae.Code != 404 {
		t.Fatalf("unknown MAC: %v", err)
	}

	// Who am I: a known MAC, then an unknown one enrolled.
	id, err := whoami(srv, c, []string{"02:00:00:00:00:aa", "52:54:00:00:00:01"})
	if err != nil || id.Hostname != "lab1-ws01" || id.Gateway != "10.1.0.1" || id.NextBoot != hosts.BootClone {
		t.Fatalf("who am I: %+v, %v", id, err)
	}
	id, err = whoami(srv, c, []string{"02:00:00:00:00:bb"})
	if err != nil || !id.Enrolled || id.Hostname != "lab1-ws03" || id.IP != "10.1.0.100" {
		t.Fatalf("enrolment: %+v, %v", id, err)
	}

	// A finished clone returns to local boot, and the status shows it all.
	for _, r := range []api.Report{{Step: "fetch", State: api.StateRunning}, {Step: "done", State: api.StateDone}} {
		r.Time = time.Now()
		if err := c.Report(ctx, "52:54:00:00:00:01", r); err != nil {
			t.Fatal(err)
		}
	}
	if boot.NextBoot(mac1) {
		t.Fatal("still marked for clone after its clone was done")
	}
	ls, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls.Boot) != 3 || ls.Boot[0].NextBoot != hosts.BootLocal || len(ls.Boot[0].Clone) != 2 || ls.Boot[2].Hostname != "lab1-ws03" {
		t.Fatalf("status boot: %+v", ls.Boot)
	}

	// A broken hand edit: the status says why, the boot keeps the last table.
	os.WriteFile(filepath.Join(dir, hosts.HostsFile), []byte("mac,hostname\n"), 0o644)
	os.Chtimes(filepath.Join(dir, hosts.HostsFile), time.Now(), time.Now().Add(2*time.Second))
	ls, err = c.Status(ctx)
	if err != nil || !strings.Contains(ls.BootError, `no "ip" column`) {
		t.Fatalf("broken table: %q, %v", ls.BootError, err)
	}
	if len(boot.Leases()) != 3 {
		t.Fatalf("the boot lost the last good table: %v", boot.Leases())
	}
}

// whoami asks srv who the machine with macs is, with a fresh nonce, and
// checks the signed answer as a clone does.
func whoami(srv *Server, c *api.Client, macs []string) (api.Identity, error) {
	sid, err := c.WhoAmI(context.Background(), api.WhoAmIRequest{MACs: macs, Nonce: "0123456789abcdef"})
	if err != nil {
		return api.Identity{}, err
	}
	id, err := api.VerifyIdentity(srv.signer.Public().(ed25519.PublicKey), sid)
	if err == nil && id.Nonce != "0123456789abcdef" {
		err = errors.New("the answer's nonce is not the request's")
	}
	return id, err
}

// runServer creates a print server from cfg and runs it until the test
// ends; the test fails if it cannot start or Run returns an error.
func runServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	return srv
}

// waitSeeding waits until srv seeds its store's image (10 s at most).
func waitSeeding(t testing.TB, srv *Server) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); len(srv.Status().Images) == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the print server does not seed the image")
		}
	}
}

// publishGenerated publishes a generated image (fixture.GenerateImage with
// opts) into st with cfg.
func publishGenerated(t testing.TB, st *store.Store, opts fixture.ImageOptions, cfg chunker.Config) *store.Image {
	t.Helper()
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(fixture.GenerateImage(pw, opts)) }()
	im, err := st.Publish(t.Context(), pr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return im
}

// TestPortInUse: a second print server on the same HTTP port is refused
// with the likely cause and the flag to change.
func TestPortInUse(t *testing.T) {
	dir := t.TempDir()
	srv, _ := startServer(t, dir, nil)
	_, port, _ := net.SplitHostPort(srv.Lab().HTTPAddr)
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := LocalConfig()
	cfg.Store, cfg.LabKey = st, mustLabKey(t, st)
	cfg.HTTPPort, _ = strconv.Atoi(port)
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "another 'labseed serve'") || !strings.Contains(err.Error(), "--http-port") {
		t.Fatalf("a second print server on port %s: %v", port, err)
	}
}

// TestImageCountsWorkstations has a real print server tell workstations,
// with the image, how many workstations its lab has (api.Lab.Workstations):
// the rows of its hosts table before any of them has started, and the new
// count after the table changes; a lab of 48 holds its deals longer.
func TestImageCountsWorkstations(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	publishGenerated(t, st, fixture.ImageOptions{TotalBytes: 1 << 20}, chunker.Config{Name: "lab1", Level: 1, PieceLength: 16 << 10,
		ChunkMin: 16 << 10, ChunkAvg: 32 << 10, ChunkMax: 128 << 10})
	table := func(n int) string {
		s := "mac,hostname,ip\n"
		for k := 1; k <= n; k++ {
			s += fmt.Sprintf("52:54:00:00:00:%02x,lab1-ws%02d,10.1.0.%d\n", k, k, 100+k)
		}
		return s
	}
	if err := os.WriteFile(filepath.Join(dir, "hosts.csv"), []byte(table(3)), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, admin := startServer(t, dir, nil)
	ws := api.NewClient(srv.Lab().HTTPAddr)
	workstations := func() int {
		t.Helper()
		im, err := ws.Image(t.Context(), "lab1")
		if err != nil {
			t.Fatal(err)
		}
		return im.Lab.Workstations
	}
	if n := workstations(); n != 3 {
		t.Fatalf("image with 3 hosts in the table: the lab has %d workstations, want 3", n)
	}
	if h := srv.dealHold(); h != 0 {
		t.Errorf("a lab of 3: the deals' hold is %v, want the default (0)", h)
	}
	if err := admin.ImportCSV(t.Context(), strings.NewReader(table(48))); err != nil {
		t.Fatal(err)
	}
	if n := workstations(); n != 48 {
		t.Fatalf("image with 48 hosts in the table: the lab has %d workstations, want 48", n)
	}
	if h := srv.dealHold(); h != deal.CrowdHold {
		t.Errorf("a lab of 48: the deals' hold is %v, want deal.CrowdHold", h)
	}
}
