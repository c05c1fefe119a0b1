package seeder

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/labseed/labseed/api"
	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/gossip"
	"github.com/labseed/labseed/internal/fixture"
	"github.com/labseed/labseed/store"
)

// TestSlowClientsCut is the HTTP part of finding 6 of issue 19 as an
// attack: clients that dribble a request's headers or body, sit on an idle
// connection, or stop reading a deal or a web-seed answer, each from an
// address of its own, lose their connection within the limits (1 s here;
// 10 s, 60 s, 30 s and 10 s by default). Before, only the headers had a
// timeout: the others held their connection past 60 s. One address cannot
// open more than ConnsPerIP connections at once.
func TestSlowClientsCut(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(fixture.GenerateImage(pw, fixture.ImageOptions{TotalBytes: 48 << 20, Seed: 5}))
	}()
	// Big pieces: a deal of four is more than the kernel's buffers take.
	im, err := st.Publish(t.Context(), pr, chunker.Config{Name: "lab1", Level: 1, PieceLength: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := st.LabKey()
	cfg := LocalConfig()
	cfg.Store, cfg.LabKey = st, key
	cfg.HTTPLimits = HTTPLimits{HeaderTimeout: time.Second, IdleTimeout: time.Second, RequestTimeout: time.Second,
		StallTimeout: time.Second, ConnsPerIP: 8}
	srv := runServer(t, cfg)
	waitSeeding(t, srv)
	m := im.Manifest
	if m.PayloadBytes < 4*m.PieceLength {
		t.Fatalf("payload of %d bytes: fewer than four pieces of %d", m.PayloadBytes, m.PieceLength)
	}
	// The deal's client must be a lab member.
	const member = "127.0.0.64"
	node, err := gossip.New(gossip.Config{Name: "ws64", BindAddr: member, BindPort: -1, AdvertiseAddr: member,
		Key: key, Local: true, Seeds: []string{srv.Lab().GossipAddr}})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	if err := node.Join(t.Context()); err != nil {
		t.Fatal(err)
	}
	addr := srv.Lab().HTTPAddr
	dial := func(ip string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// cut waits until the server holds a connection from ip, then until it
	// holds none.
	cut := func(name, ip string, within time.Duration) {
		t.Helper()
		for deadline := time.Now().Add(2 * time.Second); srv.conns.open(netip.MustParseAddr(ip)) == 0; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the server has no connection from %s", name, ip)
			}
		}
		start := time.Now()
		for srv.conns.open(netip.MustParseAddr(ip)) > 0 {
			if time.Since(start) > within {
				t.Errorf("%s: the connection is still open after %s", name, within)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("%s: cut after %.1f s", name, time.Since(start).Seconds())
	}
	dribble := func(c net.Conn, s string) {
		go func() {
			for i := range len(s) {
				if _, err := c.Write([]byte{s[i]}); err != nil {
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
		}()
	}

	c := dial("127.0.0.61")
	dribble(c, "GET "+api.PathStatus+" HTTP/1.1\r\nHost: x\r\nX-Slow: "+string(make([]byte, 100))+"\r\n\r\n")
	cut("headers dribbled", "127.0.0.61", 3*time.Second)

	c = dial("127.0.0.62")
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", api.PathImages)
	buf := make([]byte, 4096)
	c.Read(buf) // the answer; then the connection sits idle
	cut("idle", "127.0.0.62", 3*time.Second)

	c = dial("127.0.0.63")
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n", api.PathImages)
	dribble(c, string(make([]byte, 1000)))
	cut("body dribbled", "127.0.0.63", 3*time.Second)

	c = dial(member)
	pieces := int((m.PayloadBytes + m.PieceLength - 1) / m.PieceLength)
	want := make([]byte, (pieces+7)/8)
	for i := range want {
		want[i] = 0xff
	}
	fmt.Fprintf(c, "POST %s%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", api.PathDeal, m.InfoHash, len(want), want)
	cut("deal not read", member, 5*time.Second) // (never read: the kernel's buffers fill, then the stall)
	if d := srv.dealt.Load(); d >= 4*m.PieceLength {
		t.Errorf("the unread deal counted %d bytes sent", d)
	}

	c = dial("127.0.0.65")
	fmt.Fprintf(c, "GET %s%s HTTP/1.1\r\nHost: x\r\n\r\n", api.PathSeed, chunker.TorrentName(m.Name, m.Version))
	cut("web seed not read", "127.0.0.65", 5*time.Second)

	// ConnsPerIP: the ninth connection from one address is closed at once.
	for range 8 {
		dial("127.0.0.66")
	}
	for deadline := time.Now().Add(2 * time.Second); srv.conns.open(netip.MustParseAddr("127.0.0.66")) < 8; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("8 connections from 127.0.0.66: %d open", srv.conns.open(netip.MustParseAddr("127.0.0.66")))
		}
	}
	c = dial("127.0.0.66")
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(buf); err == nil || isTimeout(err) {
		t.Errorf("a ninth connection from one address: %v, want it closed", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestShutdownSilentConnection: a client that opened a connection and sent
// nothing on it (an HTTP client's spare connection does that) does not
// make the print server's shutdown fail: Run cuts it after the grace
// period and returns no error (it returned "context deadline exceeded").
func TestShutdownSilentConnection(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key, _ := st.LabKey()
	cfg := LocalConfig()
	cfg.Store, cfg.LabKey = st, key
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	c, err := net.Dial("tcp", srv.Lab().HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(200 * time.Millisecond) // the server has accepted it
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run with a silent connection open: %v, want nil", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run did not return a minute after its cancellation")
	}
}
