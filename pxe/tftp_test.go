package pxe

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pin/tftp/v3"

	"github.com/labseed/labseed/internal/syncbuf"
)

func TestCleanBootPath(t *testing.T) {
	tests := []struct {
		in, want string // want "" = refused
	}{
		{"undionly.kpxe", "undionly.kpxe"},
		{"/undionly.kpxe", "undionly.kpxe"},
		{"pxelinux.cfg/01-52-54-00-12-34-56", "pxelinux.cfg/01-52-54-00-12-34-56"},
		{"efi\\boot\\bootx64.efi", "efi/boot/bootx64.efi"},
		{"a//b/./c", "a/b/c"},
		{"../../etc/passwd", ""},
		{"/../etc/passwd", ""},
		{"a/../../etc/passwd", ""},
		{"a/../b", ""},
		{"..\\..\\etc\\passwd", ""},
		{"", ""},
		{"/", ""},
		{".", ""},
		{"a\x00b", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := CleanBootPath(tt.in)
			if tt.want == "" {
				if err == nil || !errors.Is(err, ErrBadPath) {
					t.Errorf("CleanBootPath(%q) = %q, %v; want ErrBadPath", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("CleanBootPath(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func runServer(t *testing.T, s *Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func TestTFTPLoopback(t *testing.T) {
	cfg := testConfig(t)
	dir, data := bootDir(t, 100_000)
	os.WriteFile(filepath.Join(filepath.Dir(dir), "secret"), []byte("secret"), 0o644)
	os.Symlink("../secret", filepath.Join(dir, "link"))
	cfg.BootDir = dir
	cfg.Mode = ModeOff
	s := newServer(t, cfg)
	runServer(t, s)

	c, err := tftp.NewClient(s.TFTPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetBlockSize(1468)
	c.RequestTSize(true)
	fetch := func(name string) ([]byte, int64, error) {
		wt, err := c.Receive(name, "octet")
		if err != nil {
			return nil, 0, err
		}
		size, _ := wt.(tftp.IncomingTransfer).Size()
		var b bytes.Buffer
		_, err = wt.WriteTo(&b)
		return b.Bytes(), size, err
	}
	got, size, err := fetch("/undionly.kpxe")
	if err != nil || !bytes.Equal(got, data) || size != int64(len(data)) {
		t.Fatalf("fetch: %d bytes, tsize %d, err %v", len(got), size, err)
	}
	for _, bad := range []string{"../../etc/passwd", "link", "missing.efi", "pxelinux.cfg"} {
		if _, _, err := fetch(bad); err == nil {
			t.Errorf("%q served", bad)
		}
	}
	got, _, err = fetch("pxelinux.cfg/01-52-54-00-12-34-56")
	if err != nil || !strings.Contains(string(got), "LOCALBOOT 0") {
		t.Fatalf("generated pxelinux config: %q %v", got, err)
	}
	// The server finishes after the client has the last block: poll.
	poll(t, 5*time.Second, "2 transfers counted", func() bool { return s.Stats().TFTPSent == 2 })
	if st := s.Stats(); st.TFTPRefused != 4 {
		t.Errorf("stats %+v", st)
	}
	var sent bool
	for _, e := range s.Events(macA) {
		sent = sent || (e.Kind == EventTFTPSent && strings.Contains(e.Detail, "pxelinux.cfg/01-"))
	}
	if !sent {
		t.Errorf("events %+v: want tftp-sent of the pxelinux config", s.Events(macA))
	}
	// pxelinux then fetches the kernel over HTTP, without ?mac=: the
	// address it fetched its config from names it.
	r := httptest.NewRequest(http.MethodGet, "/pxe/boot/undionly.kpxe", nil)
	r.RemoteAddr = "127.0.0.1:40000"
	s.HTTPHandler().ServeHTTP(httptest.NewRecorder(), r)
	if ev := s.Events(macA); ev[len(ev)-1].Kind != EventHTTPFile {
		t.Errorf("HTTP kernel fetch after pxelinux config not recorded: %+v", ev)
	}
}

func TestHTTPHandler(t *testing.T) {
	cfg := testConfig(t)
	dir, data := bootDir(t, 1000)
	cfg.BootDir = dir
	s := newServer(t, cfg)
	h := s.HTTPHandler()
	tests := []struct {
		path string
		code int
		want string
	}{
		{"/pxe/ipxe/bios/52-54-00-12-34-56", 200, "sanboot --no-describe --drive 0x80"},
		{"/pxe/ipxe/uefi/52:54:00:12:34:56", 200, ":local\nexit\n"},
		{"/pxe/ipxe/arm/52-54-00-12-34-56", 404, ""},
		{"/pxe/ipxe/bios/zz", 404, ""},
		{"/pxe/boot/undionly.kpxe", 200, string(data)},
		{"/pxe/boot/ipxe.efi?mac=52-54-00-ab-cd-ef", 200, string(data[:500])},
		{"/pxe/boot/vmlinuz?mac=52-54-00-ab-cd-ef", 404, ""},
		{"/pxe/boot/../../etc/passwd", 404, ""},
		{"/pxe/boot/%2e%2e/%2e%2e/etc/passwd", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tt.path, nil))
			body, _ := io.ReadAll(rec.Body)
			if rec.Code/100 != tt.code/100 && !(tt.code == 404 && rec.Code >= 300) {
				t.Errorf("code %d, want %d", rec.Code, tt.code)
			}
			if tt.code == 200 && !strings.Contains(string(body), tt.want) {
				t.Errorf("body %q lacks %q", body, tt.want)
			}
			if strings.Contains(string(body), "root:") {
				t.Error("served /etc/passwd")
			}
		})
	}
	// macA fetched its scripts from 192.0.2.1 (httptest's client), so the
	// boot files that come without ?mac= from there are its own.
	kinds := func(mac net.HardwareAddr) (k []string) {
		for _, e := range s.Events(mac) {
			k = append(k, string(e.Kind)+" "+strings.Fields(e.Detail)[0])
		}
		return k
	}
	wantA := []string{"ipxe-script iPXE", "ipxe-script iPXE", "http-file undionly.kpxe", "http-failed passwd"}
	if got := kinds(macA); !slices.Equal(got[:min(len(got), 4)], wantA) {
		t.Errorf("events of %s: %q, want %q first", macA, got, wantA)
	}
	if got, want := kinds(macB), []string{"http-file ipxe.efi", "http-failed vmlinuz"}; !slices.Equal(got, want) {
		t.Errorf("events of %s: %q, want %q", macB, got, want)
	}
	if e := s.Events(macB); len(e) > 0 && !strings.Contains(e[0].Detail, "500 bytes") {
		t.Errorf("http-file detail %q lacks the size", e[0].Detail)
	}
}

// TestTFTPSizeProbe: UEFI PXE asks for the size (tsize in the RRQ), stops
// at the OACK with error 8, then fetches the file. The probe is no
// failure.
func TestTFTPSizeProbe(t *testing.T) {
	cfg := testConfig(t)
	dir, _ := bootDir(t, 10_000)
	cfg.BootDir, cfg.Mode = dir, ModeOff
	var logs syncbuf.Buffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := newServer(t, cfg)
	runServer(t, s)
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rrq := append([]byte{0, 1}, "ipxe.efi\x00octet\x00tsize\x000\x00"...)
	if _, err := c.WriteTo(rrq, s.TFTPAddr()); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 600)
	n, from, err := c.ReadFrom(buf)
	if err != nil || n < 2 || buf[1] != 6 {
		t.Fatalf("want an OACK, got %q %v", buf[:n], err)
	}
	if !bytes.Contains(buf[:n], []byte("tsize\x005000\x00")) {
		t.Errorf("OACK %q lacks tsize 5000", buf[:n])
	}
	c.WriteTo(append([]byte{0, 5, 0, 8}, "User aborted the transfer\x00"...), from)
	poll(t, 5*time.Second, "the probe logged", func() bool { return strings.Contains(logs.String(), "TFTP size probe") })
	if st := s.Stats(); st.TFTPFailed != 0 || st.TFTPRefused != 0 {
		t.Errorf("stats %+v: the probe counted as a failure", st)
	}
	if ev := s.Events(macA); len(ev) != 0 {
		t.Errorf("events %+v, want none", ev)
	}
}
