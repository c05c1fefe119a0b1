package seeder

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"
	"github.com/labseed/labseed/chunker"
	"github.com/labseed/labseed/gossip"
	"github.com/labseed/labseed/internal/btwire"
	"github.com/labseed/labseed/internal/fixture"
	"github.com/labseed/labseed/store"
)

// handshake tries a BitTorrent handshake for ih with the print server's
// torrent address, from ip; it reports whether the server answered.
func handshake(ip, addr string, ih [20]byte) bool {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return btwire.Handshake(c, ih, [20]byte([]byte("-TEST-member-or-not-"))) == nil
}

// TestTorrentMembersOnly: the print server's BitTorrent port answers lab
// members only. A host that is not in the lab's gossip gets no handshake
// (before, anyone could connect and, for one, flood it with requests); once
// it has joined, it does.
func TestTorrentMembersOnly(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	im := publishGenerated(t, st, fixture.ImageOptions{TotalBytes: 1 << 20}, chunker.Config{Name: "lab1", Level: 1})
	key, err := st.LabKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := LocalConfig()
	cfg.Store, cfg.LabKey = st, key
	srv := runServer(t, cfg)
	ih := metainfo.NewHashFromHex(im.Manifest.InfoHash)
	addr := srv.Lab().TorrentAddr
	for deadline := time.Now().Add(10 * time.Second); len(srv.Status().Images) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the print server does not list the image")
		}
		time.Sleep(50 * time.Millisecond)
	}

	const outsider, member = "127.0.0.77", "127.0.0.78"
	if handshake(outsider, addr, ih) {
		t.Errorf("%s, not a lab member, got a BitTorrent handshake", outsider)
	}
	node, err := gossip.New(gossip.Config{Name: "ws1", BindAddr: member, BindPort: -1, AdvertiseAddr: member,
		Key: key, Local: true, Seeds: []string{srv.Lab().GossipAddr}})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	jctx, jcancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer jcancel()
	if err := node.Join(jctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); !handshake(member, addr, ih); {
		if time.Now().After(deadline) {
			t.Fatalf("%s joined the lab and still gets no BitTorrent handshake", member)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if handshake(outsider, addr, ih) {
		t.Errorf("%s, not a lab member, got a BitTorrent handshake", outsider)
	}
}
