// Package netboot builds labseed's clone environment: the kernel and
// initrd that network-booted workstations run to re-image themselves, and
// the iPXE first stages that load them.
//
// The kernel and its modules come from a published image (read from the
// store's chunks, without extracting the image) or from files given. The
// initrd is a compressed newc cpio archive holding the labseed binary as
// /init, the workstation's keys (image.pub and lab.key, nothing that can
// change the lab), the kernel modules of the network cards, disk
// controllers and file systems of lab PCs with their dependencies, and the
// tools "labseed clone" runs (sfdisk, mkfs, ...) with the shared libraries
// their ELF headers name.
//
//	res, err := netboot.Build(ctx, netboot.Config{Image: img, KeysDir: keys, Out: "/var/lib/labseed/boot"})
//
// The init that runs inside is package netinit.
package netboot
