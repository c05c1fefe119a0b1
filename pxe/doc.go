// Package pxe network-boots lab workstations into labseed.
//
// A Server answers DHCP as a proxyDHCP server next to the lab's existing DHCP
// server (ModeProxy, the default), or as the lab's only DHCP server with
// static leases from a hosts table and an optional pool (ModeDHCP). Either
// way it only hands out boot information to PXE, iPXE and UEFI HTTP boot
// clients: a BIOS PXE ROM (option 93 = 0) gets Config.BIOSBootFile, an
// x86-64 UEFI firmware (7 or 9) gets Config.UEFIBootFile, both over TFTP
// from Config.BootDir, and iPXE (user class "iPXE") gets the HTTP URL of its
// per-MAC boot script (see Server.IPXEScript and Server.HTTPHandler).
//
// The boot menu of a host has two entries: boot the local disk (default)
// and boot the labseed netboot kernel to clone an image. A host marked for
// cloning in the hosts table (Config.Hosts, asked on every request, as
// pixiecore asks its Booter) gets the clone entry as default with a short
// timeout.
// Every boot event (DHCP answer, TFTP file, iPXE script, HTTP kernel and
// initrd) is recorded per MAC (Events) and malformed packets are counted
// (Stats), never fatal.
//
// On a print server that also runs the lab's DHCP server, Config.NoBind
// reads DHCP with a raw socket instead of binding port 67 (Linux).
//
// Usage:
//
//	cfg := pxe.DefaultConfig()
//	cfg.ServerIP = net.ParseIP("10.0.0.2")
//	cfg.Interface = "eth1"
//	cfg.BootDir = "/var/lib/labseed/boot" // undionly.kpxe, ipxe.efi
//	cfg.Image = "lab-2025"
//	srv, err := pxe.New(cfg)
//	if err != nil { ... }
//	http.Handle("/pxe/", srv.HTTPHandler()) // scripts, kernel, initrd
//	err = srv.Run(ctx) // until ctx is cancelled
package pxe
