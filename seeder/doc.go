// Package seeder is the print-server daemon behind "labseed serve".
//
// A Server seeds every image of a store.Store over BitTorrent (the payload
// files are served as they are, without re-hashing: the store verified them
// at publish time), serves them over HTTP (the API workstations start from,
// and the payloads with range requests so the server is also a BitTorrent web
// seed), is the gossip seed node of the lab, and aggregates the status every
// workstation gossips into the lab status that "labseed status" shows.
// Images published while it runs are picked up within Config.ScanInterval.
// With Config.Hosts it answers the hosts API (who am I, clone reports,
// next-boot marks); with Config.PXE it is also the lab's network boot
// (package pxe), built and started here, after its own listeners, with
// the server's advertised address and its hosts table: the print server
// is assembled in this one place.
//
// Usage:
//
//	st, _ := store.Open("/var/lib/labseed")
//	cfg := seeder.DefaultConfig()
//	cfg.Store = st
//	srv, err := seeder.New(cfg)
//	...
//	err = srv.Run(ctx) // until ctx is cancelled
package seeder
