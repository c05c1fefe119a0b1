// Package hosts is a lab's hosts table and settings: who each workstation
// is (MAC, host name, static address, per-host settings) and how the lab
// configures them, kept as hand-editable files in the print server's store
// (hosts.csv, lab.conf, templates/, hooks/; docs/hosts.md).
//
// A DB reads the files, picks up hand edits on the next call, keeps the last
// good table when an edit does not parse, and writes atomically. The print
// server (package seeder) answers a workstation's "who am I" from it
// (WhoAmI: the merged Identity, auto-enrolling an unknown machine when
// lab.conf allows) and marks next boots (SetNextBoot); the network boot
// (package pxe) follows the table.
//
// Usage:
//
//	db, err := hosts.Open("/var/lib/labseed")
//	...
//	id, err := db.WhoAmI([]net.HardwareAddr{mac})
//	n, err := db.SetNextBoot(nil, hosts.BootClone) // every host
package hosts
