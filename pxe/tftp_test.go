package pxe

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pin/tftp/v3"
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
	if ev := s.Events(macA); len(ev) != 2 || ev[0].Kind != EventScript {
		t.Errorf("events %+v", ev)
	}
}
