package peer

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/labseed/labseed/gossip"
	"github.com/labseed/labseed/swarm"
)

func TestDialsExactlyOneOfEachPair(t *testing.T) {
	const n = 90
	addr := func(i int) string { return fmt.Sprintf("10.1.0.%d:6881", 100+i) }
	dialled := make([]int, n)
	for i := range n {
		for j := range n {
			if i == j {
				continue
			}
			a, b := dials(addr(i), addr(j)), dials(addr(j), addr(i))
			if a == b {
				t.Fatalf("%s and %s: both dial = %v", addr(i), addr(j), a)
			}
			if a {
				dialled[i]++
			}
		}
	}
	// Every workstation dials some but not all of the others: no
	// workstation is left to wait for all the others, none dials them all.
	for i, d := range dialled {
		if d < n/4 || d > 3*n/4 {
			t.Errorf("%s dials %d of %d", addr(i), d, n-1)
		}
	}
}

func TestDiscovery(t *testing.T) {
	const self, server = "10.1.0.21:6881", "10.1.0.1:6881"
	var dialled, dialling string // a workstation this one dials, one that dials it
	for i := 22; dialled == "" || dialling == ""; i++ {
		a := fmt.Sprintf("10.1.0.%d:6881", i)
		if dials(self, a) {
			dialled = a
		} else {
			dialling = a
		}
	}
	lab := []gossip.Member{
		{State: gossip.StateAlive, Status: gossip.Status{Role: gossip.RoleServer, TorrentAddr: server}},
		{State: gossip.StateAlive, Status: gossip.Status{Role: gossip.RolePeer, TorrentAddr: self}},
		{State: gossip.StateAlive, Status: gossip.Status{Role: gossip.RolePeer, TorrentAddr: dialled}},
		{State: gossip.StateAlive, Status: gossip.Status{Role: gossip.RolePeer, TorrentAddr: dialling}},
		{State: gossip.StateAlive, Status: gossip.Status{Role: gossip.RolePeer}}, // still joining
		{State: gossip.StateDead, Status: gossip.Status{Role: gossip.RolePeer, TorrentAddr: "10.1.0.99:6881"}},
	}
	d := discovery{self: self, server: server}
	now := time.Unix(1_700_000_000, 0)
	if got := d.toAdd(lab, now); !slices.Equal(got, []string{dialled}) {
		t.Fatalf("first: %v, want only %s (the print server deals, %s dials this one)", got, dialled, dialling)
	}
	if got := d.toAdd(lab, now.Add(time.Second)); got != nil {
		t.Errorf("again at once: %v, want nothing", got)
	}
	// The print server does not deal: the client connects to it.
	d.useServer = true
	if got := d.toAdd(lab, now.Add(2*time.Second)); !slices.Equal(got, []string{server}) {
		t.Errorf("without deals: %v, want the print server", got)
	}
	// Later, everything is offered again (a peer the client dropped).
	if got := d.toAdd(lab, now.Add(rediscoverAfter+3*time.Second)); !slices.Equal(got, []string{server, dialled}) {
		t.Errorf("after %s: %v, want the print server and %s again", rediscoverAfter, got, dialled)
	}
}

// TestBlocks: smaller blocks only where a workstation cannot connect to
// every other one (more others than MaxConns), with a quarter of the bytes
// requested; the sync's own in a sync.
func TestBlocks(t *testing.T) {
	for _, c := range []struct {
		sync                   bool
		workstations, maxConns int
		size, requests         int
	}{
		{false, 1, 10, swarm.BlockSize, 4},
		{false, 8, 10, swarm.BlockSize, 4},
		{false, 11, 10, swarm.BlockSize, 4}, // ten others, ten connections
		{false, 12, 10, swarm.CrowdBlockSize, 4},
		{false, 48, 10, swarm.CrowdBlockSize, 4},
		{false, 48, 64, swarm.BlockSize, 4},
		{true, 8, 10, syncBlockSize, 4},
		{true, 90, 10, syncBlockSize, 4},
	} {
		size, requests := blocks(c.sync, c.workstations, c.maxConns)
		if size != c.size || requests != c.requests {
			t.Errorf("blocks(sync %v, %d workstations, MaxConns %d) = %d, %d; want %d, %d",
				c.sync, c.workstations, c.maxConns, size, requests, c.size, c.requests)
		}
	}
}
