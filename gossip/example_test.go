package gossip_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/labseed/labseed/gossip"
)

// A print server and one workstation on loopback: the workstation joins,
// reports its progress, and the print server sees it.
func Example() {
	key := make([]byte, gossip.KeySize) // the lab key: 32 random bytes in real life
	server, err := gossip.New(gossip.Config{
		Name: "print-server", Key: key,
		BindAddr: "127.0.0.1", BindPort: -1, Local: true,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer server.Close()
	server.SetStatus(gossip.Status{Role: gossip.RoleServer, Phase: gossip.PhaseSeeding, TorrentAddr: "127.0.0.1:42069"})

	ws, err := gossip.New(gossip.Config{
		Name: "ws01", Key: key, Seeds: []string{server.Addr()},
		BindAddr: "127.0.0.1", BindPort: -1, Local: true,
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ws.Join(ctx); err != nil {
		log.Fatal(err)
	}
	ws.SetStatus(gossip.Status{Role: gossip.RolePeer, Phase: gossip.PhaseDownloading, TorrentAddr: "127.0.0.1:42070", Percent: 12.5})

	// Wait until the print server has the workstation's status.
	for ctx.Err() == nil {
		ms := server.Members()
		if len(ms) == 2 && ms[1].Status.Phase == gossip.PhaseDownloading {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, m := range server.Members() {
		fmt.Println(m.Name, m.State, m.Status.Role, m.Status.Phase, m.Status.TorrentAddr, m.Status.Percent)
	}

	// The workstation is done: it leaves, and the print server keeps it as "left".
	if err := ws.Leave(ctx); err != nil {
		log.Fatal(err)
	}
	for ctx.Err() == nil && server.Members()[1].State != gossip.StateLeft {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println(server.Members()[1].Name, server.Members()[1].State)
	// Output:
	// print-server alive server seeding 127.0.0.1:42069 0
	// ws01 alive peer downloading 127.0.0.1:42070 12.5
	// ws01 left
}
