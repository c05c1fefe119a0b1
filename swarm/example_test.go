package swarm_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"

	"github.com/labseed/labseed/swarm"
)

// A print server seeds a 1 MiB payload and a workstation peer downloads it,
// both on 127.0.0.1.
func Example() {
	dir, err := os.MkdirTemp("", "swarm-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// The payload and its single-file torrent (labseed's image store makes
	// these at publish time).
	src := filepath.Join(dir, "lab1-v1.payload")
	if err := os.WriteFile(src, bytes.Repeat([]byte("labseed "), 128<<10), 0o644); err != nil {
		log.Fatal(err)
	}
	info := metainfo.Info{PieceLength: 256 << 10}
	if err := info.BuildFromFilePath(src); err != nil {
		log.Fatal(err)
	}
	infoBytes, err := bencode.Marshal(info)
	if err != nil {
		log.Fatal(err)
	}
	mi := &metainfo.MetaInfo{InfoBytes: infoBytes}
	ih := mi.HashInfoBytes()

	// The seeder: read-only payload, every piece complete without hashing.
	seedStore := swarm.NewStorage()
	defer seedStore.Close()
	seeder, err := swarm.NewClient(swarm.Config{ListenIP: "127.0.0.1", Port: -1, Storage: seedStore})
	if err != nil {
		log.Fatal(err)
	}
	defer seeder.Close()
	seedStore.Register(ih, swarm.Files{Path: src, ReadOnly: true, Completion: swarm.AllComplete()})
	if _, err := swarm.AddTorrent(seeder, mi, 0); err != nil {
		log.Fatal(err)
	}

	// The peer: a bitmap beside the payload so that a restart resumes.
	peerDir := filepath.Join(dir, "peer")
	if err := os.Mkdir(peerDir, 0o755); err != nil {
		log.Fatal(err)
	}
	peerStore := swarm.NewStorage()
	defer peerStore.Close()
	peer, err := swarm.NewClient(swarm.Config{ListenIP: "127.0.0.1", Port: -1, Storage: peerStore})
	if err != nil {
		log.Fatal(err)
	}
	defer peer.Close()
	comp, err := swarm.OpenBitmap(filepath.Join(peerDir, ih.HexString()+".bitmap"), info.NumPieces())
	if err != nil {
		log.Fatal(err)
	}
	verified := make(chan int, info.NumPieces()) // OnPiece must not block
	peerStore.Register(ih, swarm.Files{
		Path:       filepath.Join(peerDir, info.Name),
		Completion: comp,
		OnPiece: func(piece int, ok bool) {
			if ok {
				verified <- piece // extract the chunks in this piece now
			}
		},
	})
	t, err := swarm.AddTorrent(peer, mi, 0)
	if err != nil {
		log.Fatal(err)
	}
	// Normally from gossip.
	server := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(seeder.LocalPort()))
	t.AddPeers([]torrent.PeerInfo{{Addr: server, Source: torrent.PeerSourceDirect}})
	t.DownloadAll()

	// The traffic by source, updated while the download runs so that what
	// came over a connection that closes is kept.
	meter := swarm.NewMeter(server.String())
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for done := false; !done; {
		meter.Update(t)
		select {
		case <-t.Complete().On():
			done = true
		case <-ctx.Done():
			log.Fatal("download timed out")
		case <-tick.C:
		}
	}
	tr := meter.Update(t)
	fmt.Printf("%d pieces verified, %d bytes from the server, %d from other peers\n", len(verified), tr.FromServer, tr.FromPeers)
	// Output: 4 pieces verified, 1048576 bytes from the server, 0 from other peers
}
