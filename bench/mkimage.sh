#!/usr/bin/env bash
# mkimage.sh builds the benchmark image: a real Debian root filesystem made with
# debootstrap (minbase plus a kernel, an X server, python3, perl and grub, about
# 1 GB unpacked), packed the way sysadmins pack theirs:
#   tar --xattrs --numeric-owner -czf (gzip -6).
# The result is cached; a second run prints the cached path at once.
#
# usage: bench/mkimage.sh [OUT]   (default /var/cache/labseed-bench/debian.tar.gz)
# env:   SUITE (bookworm), MIRROR (default: the first Debian mirror apt uses,
#        else http://deb.debian.org/debian),
#        PACKAGES (comma-separated, instead of the list below: test.sh makes a
#        smaller image for the clone test this way)
set -euo pipefail
out=${1:-/var/cache/labseed-bench/debian.tar.gz}
if [[ -s $out ]]; then echo "$out"; exit 0; fi
[[ $(id -u) == 0 ]] || { echo "mkimage.sh: debootstrap needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; }
suite=${SUITE:-bookworm}
# The mirror apt already uses (CI reaches the package registries only).
apt_mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p; s/^deb \(\[[^]]*\] \)\?\(http[^ ]*\) .*/\2/p' \
  /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | grep -v -- '-security' | head -1 || true)
mirror=${MIRROR:-${apt_mirror:-http://deb.debian.org/debian}}
pkgs=${PACKAGES:-linux-image-amd64,xserver-xorg-core,xinit,python3,perl,grub-pc-bin,grub2-common,ifupdown,openssh-server,iputils-ping,cups-client,less,nano}
work=$(mktemp -d /var/tmp/labseed-mkimage.XXXXXX)
trap 'rm -rf --one-file-system "$work"' EXIT
mkdir -p "$(dirname "$out")"
echo "mkimage.sh: debootstrap $suite into $work/root (a few minutes)..." >&2
debootstrap --variant=minbase --include="$pkgs" "$suite" "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -30 "$work/debootstrap.log" >&2; exit 1; }
rm -rf "$work/root/var/cache/apt/archives/"*.deb
tar --xattrs --numeric-owner -C "$work/root" -czf "$out.tmp" .
mv "$out.tmp" "$out"
echo "$out"
