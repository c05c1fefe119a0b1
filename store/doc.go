// Package store is the print server's image store: a directory holding the
// lab's keys and every published image, each version in its own directory so
// that publishing a new version never disturbs a clone in progress.
//
// Layout:
//
//	DIR/keys/image.key      ed25519 signing key (PKCS#8 PEM, mode 0600)
//	DIR/keys/image.pub      its public key (PKIX PEM), carried by the netboot image
//	DIR/keys/lab.key        the lab's 32-byte gossip key (hex, mode 0600)
//	DIR/keys/identity.key   on a follower (image.pub pinned, no image.key):
//	                        signs its "who am I" answers; identity.pub beside it
//	DIR/images/NAME/current symlink to the newest version, swapped atomically
//	DIR/images/NAME/vN/     manifest.json, manifest.sig, image.torrent, the
//	                        payload, named chunker.TorrentName(NAME, N), and
//	                        complete, written last; origin on a follower
//	DIR/images/NAME/.receive-vN/ a version being replicated (Receive)
//
// Publish syncs every file of a version before its manifest, the manifest
// before the complete marker, the marker before the rename that makes the
// version visible, and syncs the directory after the rename and after the
// swap of current: a power cut leaves the old version current or the new
// one whole. A version without the marker (an older labseed did not sync)
// is verified before Image hands it out.
//
// Usage:
//
//	s, err := store.Open("/var/lib/labseed")
//	img, err := s.Publish(ctx, f, chunker.Config{Name: "lab1"})
//	imgs, err := s.Images()
package store
