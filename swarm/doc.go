// Package swarm is the BitTorrent side of labseed, shared by the print-server
// seeder and the workstation peer: a BitTorrent client tuned for one lab
// subnet (NewClient), a storage for single-file payloads with pread/pwrite
// I/O and persistent piece completion (Storage, Completion, OpenBitmap),
// the web-seed URL convention (WebSeedURL) and per-source traffic totals
// (Meter).
//
// The client bounds what peers can make it hold: a connection's requests
// may hold at most MaxAllocPeerRequestData of piece data, a request at
// most RateBurst bytes, and one address at most Config.MaxConnsPerIP
// connections; Config.AcceptPeer can refuse addresses (the print server
// accepts lab members only).
//
// Every labseed image payload is one file, described by a single-file
// BitTorrent v1 torrent whose info.Name is the file name. Membership comes
// from gossip, not from trackers, DHT or PEX: the caller adds the addresses
// it learns with Torrent.AddPeers.
//
// Usage (a workstation peer; the seeder registers Files{ReadOnly: true,
// Completion: AllComplete()} instead):
//
//	st := swarm.NewStorage()
//	defer st.Close() // after the client
//	cl, err := swarm.NewClient(swarm.Config{Port: 6881, Storage: st, Logger: log})
//	if err != nil { ... }
//	defer cl.Close()
//
//	comp, err := swarm.OpenBitmap(filepath.Join(dir, ih.HexString()+".bitmap"), info.NumPieces())
//	if err != nil { ... }
//	st.Register(ih, swarm.Files{
//		Path:       filepath.Join(dir, info.Name),
//		Completion: comp, // owned by the storage from now on
//		OnPiece:    func(piece int, ok bool) { verified <- piece }, // must not block
//	})
//	t, err := cl.AddTorrent(mi) // opens the registered payload
//	if err != nil { ... }
//	t.AddWebSeeds([]string{swarm.WebSeedURL("http://printserver:8080")})
//	t.AddPeers(peersFromGossip)
//	t.DownloadAll() // anacrolix downloads nothing until asked
//	select {
//	case <-t.Complete().On():
//	case <-ctx.Done():
//	}
package swarm
