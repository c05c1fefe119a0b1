// Package keys reads and writes labseed's key files, the one place that
// knows their names and formats: the print server's store (package store)
// keeps them in STORE/keys, and a workstation (labseed peer, labseed clone,
// the netboot image) reads the directory "labseed keys export" writes.
//
//   - image.key: the ed25519 signing key, PKCS #8 PEM, 0600; it never
//     leaves the print server (package store reads and writes it).
//   - image.pub: its public half, PKIX PEM, 0644: checks image signatures.
//   - lab.key: the lab key, 32 random bytes as 64 hex digits, 0600: the
//     workstation credential. It encrypts the lab's gossip and is in every
//     netboot image, so it is public and gives no right to change anything.
//   - admin.key: the admin key, 32 random bytes as 64 hex digits, 0600: the
//     admin credential, which signs the requests that change the lab
//     (api.AdminAuth). Never in an exported key directory; "labseed keys
//     admin FILE" copies it for a sysadmin's machine.
//   - identity.key, identity.pub: on a print server that follows another
//     one (labseed serve --upstream) and so has no image.key (its image.pub
//     is the upstream's, pinned), the ed25519 key that signs its "who am I"
//     answers, and its public half, which its workstations check them with.
//
// Usage, on a workstation:
//
//	w, err := keys.ReadWorkstation(keys.DefaultDir)
//	...
//	cfg := peer.Config{PublicKey: w.PublicKey, LabKey: w.LabKey, ...}
package keys
