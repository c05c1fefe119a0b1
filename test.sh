#!/usr/bin/env bash
# test.sh: everything labseed's tests need, then the tests. Run it as root on a
# fresh Debian machine (root runs the exactness, device-node, full-disk and
# network-namespace tests; without root they skip and say why).
#
#   sudo ./test.sh            # vet, unit and integration tests, short fuzz runs
#   FUZZTIME=0 ./test.sh      # skip the fuzz runs
# The Debian package (packaging/deb/build.sh) is built and installed into a
# chroot of the Debian image below by the Go tests of ./packaging/deb.
set -euo pipefail
cd "$(dirname "$0")"

need=(tar gzip zstd cpio libarchive-tools e2fsprogs mount prometheus iproute2 busybox tftp-hpa atftp dnsmasq-base tcpdump udpcast iperf3 iputils-ping curl python3-matplotlib fdisk extlinux syslinux-common qemu-system-x86 ipxe-qemu ipxe ovmf openssh-client util-linux procps lintian man-db)
if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  missing=()
  for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]})); then
    echo "test.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

# A small real Debian (debootstrap: kernel, GRUB, ifupdown, OpenSSH) for
# TestCloneDebian, cached between runs. It needs the Debian mirror; if that
# fails the test says so and skips, the rest runs.
if [[ $(id -u) == 0 ]] && [[ ${LABSEED_DEBIAN:-1} != 0 ]]; then
  # systemd-sysv: the netboot qemu test boots the cloned disk to its login
  # prompt (the file name changes with the package list: no stale cache).
  export LABSEED_DEBIAN_IMAGE=${LABSEED_DEBIAN_IMAGE:-/var/cache/labseed-bench/debian-clone-systemd.tar.gz}
  echo "== Debian image for the clone tests ($LABSEED_DEBIAN_IMAGE)"
  if PACKAGES=linux-image-amd64,grub-pc-bin,grub2-common,ifupdown,openssh-server,systemd-sysv \
    timeout 1200 bench/mkimage.sh "$LABSEED_DEBIAN_IMAGE"; then
    export LABSEED_DEBIAN=1
    # TestNetbootQEMU: a qemu machine re-imaged from power-on to its login prompt (~5 min).
    export LABSEED_NETBOOT_QEMU=${LABSEED_NETBOOT_QEMU:-1}
  else
    echo "test.sh: warning: no Debian image (debootstrap failed): TestCloneDebian will skip"
  fi
fi

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [[ -n $unformatted ]]; then echo "gofmt would change: $unformatted"; exit 1; fi
echo "== go vet"
go vet ./...
echo "== GOOS=darwin go build (the packages build off Linux; extraction says at run time that it needs Linux)"
GOOS=darwin go build ./...
echo "== go test (LABSEED_LONG=1: swarm, Prometheus and netns tests; LABSEED_LAB_SMOKE=1: the lab benchmark smoke run)"
# -p 1: the multi-process, namespace and benchmark tests each want the 2 cores.
LABSEED_LONG=1 LABSEED_LAB_SMOKE=1 go test -p 1 -count=1 -timeout 45m ./...
echo "== labseed demo (the README's main command, with its defaults)"
go run ./cmd/labseed demo
fuzztime=${FUZZTIME:-5s}
if [[ $fuzztime != 0 ]]; then
  echo "== fuzz ($fuzztime each)"
  for pf in chunker:FuzzReadFragment chunker:FuzzDecodeManifest chunker:FuzzPublish \
    hosts:FuzzParseCSV hosts:FuzzParseSettings pxe:FuzzDHCP pxe:FuzzParseUDP4 pxe:FuzzCleanBootPath deal:FuzzDeal; do
    go test -run '^$' -fuzz "^${pf#*:}\$" -fuzztime "$fuzztime" "./${pf%%:*}"
  done
fi
