// Package gossip is lab membership for labseed: who is in the lab, where
// their BitTorrent listeners are, and how far each one is, spread by gossip
// (hashicorp/memberlist, SWIM) and encrypted with the lab's shared 32-byte key.
//
// The print server runs the seed node; every workstation creates a Node with
// the print server's gossip address as its seed and joins it. From then on
// every node learns every other node's Status (role, phase, torrent address,
// progress, rates) without a tracker, and sees members that leave or die.
//
// A Status is carried as memberlist node metadata, which is capped at 512
// bytes: Status.Encode is a compact versioned binary encoding that always
// fits, truncating strings when it must. SetStatus may be called on every
// progress tick: it propagates a new phase at once and other changes at most
// about once per second (the last one always goes out), or as far apart as
// the node's status budget says (SetStatusBudget: in a large lab on slow
// ports, up to 30 s). Measured on loopback,
// a phase change reached every member within 0.1 to 0.4 s, with 4, 20 and 90
// nodes on the Local preset and with 6 nodes on the lab preset (gossip rounds
// of 200 ms); 90 nodes joining one after the other all knew each other within
// 1 to 6 s. Gossip is probabilistic: the rare member that misses an update
// gets it with the next one or at the next push/pull (Local 15 s, lab 30 s,
// both scaled up beyond 32 members).
//
// Members reports each member as "alive", "suspect", "dead" or "left", and
// keeps dead and left members, with their last status, for
// Config.ForgetAfter.
//
// Usage, on the print server:
//
//	n, err := gossip.New(gossip.Config{Name: "print-server", Key: labKey})
//	...
//	defer n.Close()
//	n.SetStatus(gossip.Status{Role: gossip.RoleServer, Phase: gossip.PhaseSeeding, TorrentAddr: ta, HTTPAddr: ha})
//	for _, m := range n.Members() {
//		fmt.Println(m.Name, m.State, m.Status.Phase, m.Status.Percent)
//	}
//
// and on a workstation:
//
//	n, err := gossip.New(gossip.Config{Key: labKey, Seeds: []string{"10.0.0.1:7946"}})
//	...
//	if err := n.Join(ctx); err != nil { ... }
//	n.SetStatus(gossip.Status{Phase: gossip.PhaseDownloading, TorrentAddr: ta, Percent: 12.5})
//	...
//	err = n.Leave(ctx)
package gossip
