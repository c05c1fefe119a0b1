// Package api is the print server's HTTP API as both ends see it: the paths
// (under /api/v1, plus the web seed's /seed/ and /metrics), the header names,
// the default port, the request and answer types with their JSON, and Client,
// which the workstation side (peer, clone) and the labseed commands use to
// talk to a print server. The print server (package seeder) serves it.
//
// The types here are the wire format and nothing else: the print server
// converts its own records (the hosts table, the network boot's events, the
// gossiped status) into them, so that changing an internal struct never
// changes the JSON silently. Every JSON name is snake_case;
// docs/api.md documents each path and field.
//
// The package depends on little more than net/http, encoding/json and
// package deal, so that a workstation does not compile against the print
// server.
//
// Usage:
//
//	c := api.NewClient("10.1.0.1") // port DefaultPort
//	ls, err := c.Status(ctx)
//	...
//	for _, h := range ls.Hosts {
//		fmt.Println(h.Name, h.Phase, h.Status.Percent)
//	}
package api
