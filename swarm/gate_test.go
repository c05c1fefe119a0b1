package swarm

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labseed/labseed/internal/btwire"
)

// handshakeFrom connects to the client at addr from ip and tries a
// BitTorrent handshake for ih: the connection, or nil if the client
// refused it.
func handshakeFrom(t *testing.T, ip string, addr netip.AddrPort, ih [20]byte) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr.String())
	if err != nil {
		return nil // reset before the dial returned
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := btwire.Handshake(c, ih, [20]byte([]byte("-GATE-test-handshake"))); err != nil {
		c.Close()
		return nil
	}
	c.SetDeadline(time.Time{})
	t.Cleanup(func() { c.Close() })
	return c
}

// TestAcceptPeer: connections from addresses AcceptPeer refuses are closed
// before the handshake; the others are served.
func TestAcceptPeer(t *testing.T) {
	src := writePayload(t, t.TempDir(), "image.payload", 1<<20, 2)
	mi := makeTorrent(t, src)
	member := netip.MustParseAddr("127.0.0.21")
	var asked atomic.Int32
	st := NewStorage()
	cl, err := NewClient(Config{ListenIP: "127.0.0.1", Port: -1, Storage: st, AcceptPeer: func(a netip.Addr) bool {
		asked.Add(1)
		return a == member
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close(); st.Close() })
	seeder := testClient{cl: cl, st: st}
	seeder.add(t, mi, Files{Path: src, ReadOnly: true})
	ih := mi.HashInfoBytes()
	if c := handshakeFrom(t, "127.0.0.22", seeder.addr(), ih); c != nil {
		t.Error("a connection from 127.0.0.22, not a member, got a handshake")
	}
	if c := handshakeFrom(t, member.String(), seeder.addr(), ih); c == nil {
		t.Errorf("a connection from the member %s was refused", member)
	}
	if n := asked.Load(); n != 2 {
		t.Errorf("AcceptPeer asked %d times, want 2", n)
	}
}

// TestMaxConnsPerIP: one address gets at most MaxConnsPerIP connections at
// a time, and its place back when one closes; other addresses are not
// affected.
func TestMaxConnsPerIP(t *testing.T) {
	src := writePayload(t, t.TempDir(), "image.payload", 1<<20, 3)
	mi := makeTorrent(t, src)
	seeder := newTestClient(t, Config{MaxConnsPerIP: 3}, nil)
	seeder.add(t, mi, Files{Path: src, ReadOnly: true})
	ih := mi.HashInfoBytes()
	var open []net.Conn
	for range 5 {
		if c := handshakeFrom(t, "127.0.0.31", seeder.addr(), ih); c != nil {
			open = append(open, c)
		}
	}
	if len(open) != 3 {
		t.Fatalf("%d connections from one address accepted, want 3", len(open))
	}
	if c := handshakeFrom(t, "127.0.0.32", seeder.addr(), ih); c == nil {
		t.Error("a connection from another address was refused")
	}
	open[0].Close()
	// The seeder notices the close when its read fails: poll.
	deadline := time.Now().Add(5 * time.Second)
	for handshakeFrom(t, "127.0.0.31", seeder.addr(), ih) == nil {
		if time.Now().After(deadline) {
			t.Fatal("a closed connection's place was not given back")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestListenAllAddresses: with no ListenIP the client takes connections on
// every address, through the gate.
func TestListenAllAddresses(t *testing.T) {
	src := writePayload(t, t.TempDir(), "image.payload", 1<<20, 4)
	mi := makeTorrent(t, src)
	st := NewStorage()
	cl, err := NewClient(Config{Storage: st, Port: -1, MaxConnsPerIP: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close(); st.Close() })
	seeder := testClient{cl: cl, st: st}
	seeder.add(t, mi, Files{Path: src, ReadOnly: true})
	for _, ip := range []string{"127.0.0.41", "127.0.0.42"} {
		if c := handshakeFrom(t, ip, seeder.addr(), mi.HashInfoBytes()); c == nil {
			t.Errorf("a connection from %s was refused", ip)
		}
	}
	if c := handshakeFrom(t, "127.0.0.41", seeder.addr(), mi.HashInfoBytes()); c != nil {
		t.Error("a second connection from 127.0.0.41 got through MaxConnsPerIP 1")
	}
}
