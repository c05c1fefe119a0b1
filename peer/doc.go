// Package peer is the workstation agent behind "labseed peer": it fetches the
// signed manifest of an image from the print server, joins the lab's gossip,
// downloads the payload, and applies each chunk to the target the moment all
// its pieces are verified, in whatever order they arrive. The print server
// deals it pieces no other workstation has over HTTP (package deal: each
// piece leaves the print server once); everything else comes over
// BitTorrent from the other workstations. When every chunk is in,
// it finishes the extraction, keeps seeding until every workstation of the lab
// is done (or Config.Linger passes), removes its staging data and returns.
//
// An Agent runs in three phases, which Run chains:
//
//   - Resolve fetches the image's manifest and torrent and verifies them
//     (Image); nothing is written yet, so the caller can check the image's
//     name and version first.
//   - Fetch joins the lab and downloads and applies the image into the
//     target; it returns once the target holds the verified image, with a
//     Session still seeding to the lab.
//   - Session.Seed keeps seeding until the lab is done, then leaves it and
//     removes the staging data.
//
// Killed at any point, it resumes: verified pieces are recorded in a bitmap
// and applied chunks in the applier's state, both in the target's .labseed
// directory.
//
// Usage:
//
//	a, err := peer.New(peer.Config{Server: "10.1.0.1", Target: "/mnt/target",
//		PublicKey: pub, LabKey: key})
//	...
//	err = a.Run(ctx) // nil: the target holds the verified image
//
// or, phase by phase (see Example):
//
//	im, err := a.Resolve(ctx) // check im.Manifest.Name and Version here
//	s, err := a.Fetch(ctx, im)
//	err = s.Seed(ctx)
package peer
