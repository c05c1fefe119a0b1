// Package deb holds the Debian package of labseed: build.sh makes
// labseed_VERSION_ARCH.deb with dpkg-deb from the files beside it (the
// systemd unit labseed.service, /etc/default/labseed, the maintainer
// scripts). The package has no Go code; its tests build the .deb, check what
// it holds, verify the unit with systemd-analyze, and install, upgrade,
// remove and purge it in a chroot of a real Debian image.
//
//	packaging/deb/build.sh                              # ./labseed_0.1.0~N.gHASH_amd64.deb
//	LABSEED_LONG=1 go test ./packaging/deb              # as root, with LABSEED_DEBIAN_IMAGE
package deb
