#!/usr/bin/env bash
# build.sh: build the labseed Debian package, labseed_VERSION_ARCH.deb, with
# dpkg-deb: the static labseed binary (CGO_ENABLED=0) in /usr/bin, the
# systemd unit labseed.service (labseed serve, options from
# /etc/default/labseed, a conffile), the man page labseed(1) made from
# "labseed help", the README and docs/, the copyright file (with the license
# of every Go module linked into the binary) and a changelog.
#
#   packaging/deb/build.sh [OUTDIR]     (default: the repository's top directory)
#   sudo apt install ./labseed_*.deb
#
# env: LABSEED_DEB_VERSION  the package version (default: from VERSION and git, below)
#      GOARCH               amd64 (default: the Go toolchain's) or arm64
#      DEB_MAINTAINER       "Name <email>" (default: the author of the last commit)
#      SOURCE_DATE_EPOCH    file dates (default: the last commit's): the same
#                           commit builds the same package, byte for byte
#
# The version: VERSION holds the release being prepared (X.Y.Z). A commit
# tagged vX.Y.Z builds X.Y.Z; any other commit builds X.Y.Z~N.gHASH (N: the
# number of commits, so that snapshots sort in history order and before the
# release; ".dirty" is added for uncommitted changes). Prints the .deb's path.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$(mkdir -p "${1:-$repo}" && cd "${1:-$repo}" && pwd)
cd "$repo"

for tool in go dpkg-deb gzip md5sum; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool not found (dpkg-deb: Debian package dpkg)" >&2; exit 1; }
done

git_ok=false
git rev-parse --git-dir >/dev/null 2>&1 && git_ok=true

# Version.
base=$(tr -d ' \n' <VERSION)
if [[ -n ${LABSEED_DEB_VERSION:-} ]]; then
  version=$LABSEED_DEB_VERSION
elif ! $git_ok; then
  version=$base
elif git describe --exact-match --tags --match "v$base" >/dev/null 2>&1 && [[ -z $(git status --porcelain --untracked-files=no) ]]; then
  version=$base
else
  version="$base~$(git rev-list --count HEAD).g$(git rev-parse --short=7 HEAD)"
  [[ -z $(git status --porcelain --untracked-files=no) ]] || version+=.dirty
fi
if ! [[ $version =~ ^[0-9][A-Za-z0-9.+~]*$ ]]; then
  echo "build.sh: version \"$version\" is not a Debian version (digits first; letters, digits, . + ~)" >&2
  exit 1
fi

goarch=${GOARCH:-$(go env GOARCH)}
case $goarch in
amd64 | arm64) arch=$goarch ;;
*) echo "build.sh: GOARCH=$goarch: only amd64 and arm64 are packaged" >&2; exit 1 ;;
esac

if $git_ok; then
  export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
  maintainer=${DEB_MAINTAINER:-$(git log -1 --format='%an <%ae>')}
  commit=$(git rev-parse HEAD)
else
  export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(date +%s)}
  maintainer=${DEB_MAINTAINER:-labseed maintainers <root@localhost>}
  commit=unknown
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/labseed-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
doc=$root/usr/share/doc/labseed
install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/usr/lib/systemd/system" \
  "$root/etc/default" "$root/usr/share/man/man1" "$root/usr/share/lintian/overrides" "$doc"

# The binary: no C library, so it runs on any Debian release.
CGO_ENABLED=0 GOOS=linux GOARCH=$goarch go build -trimpath -ldflags='-s -w -buildid=' \
  -o "$root/usr/bin/labseed" ./cmd/labseed
chmod 0755 "$root/usr/bin/labseed"
helpbin=$root/usr/bin/labseed
if [[ $goarch != "$(go env GOHOSTARCH)" ]]; then
  helpbin=$work/labseed-host
  CGO_ENABLED=0 go build -o "$helpbin" ./cmd/labseed
fi

install -m 0644 "$here/labseed.service" "$root/usr/lib/systemd/system/labseed.service"
install -m 0644 "$here/default" "$root/etc/default/labseed"
install -m 0755 "$here/postinst" "$here/prerm" "$here/postrm" "$root/DEBIAN/"
echo /etc/default/labseed >"$root/DEBIAN/conffiles"
install -m 0644 "$here/lintian-overrides" "$root/usr/share/lintian/overrides/labseed"

# The man page: "labseed help" and "labseed help COMMAND" as they print,
# in roff (.nf: lines kept as they are).
roff() { sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"; }
date=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%d)
{
  echo ".TH LABSEED 1 \"$date\" \"labseed $version\" \"labseed\""
  echo ".SH NAME"
  echo "labseed \\- re-image computer labs from a print server, peer to peer"
  echo ".SH SYNOPSIS"
  echo ".B labseed"
  echo ".I COMMAND"
  echo "[flags] [args]"
  echo ".SH DESCRIPTION"
  echo ".nf"
  "$helpbin" help | roff
  echo ".fi"
  echo ".SH COMMANDS"
  for c in $("$helpbin" help | sed -n '/^commands:/,/^$/s/^  \([a-z][a-z-]*\) .*/\1/p'); do
    echo ".SS $c"
    echo ".nf"
    "$helpbin" help "$c" 2>&1 | roff || true
    echo ".fi"
  done
  echo ".SH FILES"
  echo ".TP"
  echo ".I /var/lib/labseed"
  echo "The store: images, keys, hosts table (hosts.csv), lab settings (lab.conf), boot files (boot/)."
  echo ".TP"
  echo ".I /etc/default/labseed"
  echo "LABSEED_SERVE_OPTS, the options of the daemon (labseed.service runs labseed serve)."
  echo ".SH SEE ALSO"
  echo "/usr/share/doc/labseed/README.md.gz, /usr/share/doc/labseed/*.md.gz"
} >"$work/labseed.1"
if ! grep -q '^\.SS serve' "$work/labseed.1"; then
  echo "build.sh: the man page has no serve command: did \"labseed help\" change its format?" >&2
  exit 1
fi
gzip -9n <"$work/labseed.1" >"$root/usr/share/man/man1/labseed.1.gz"

# Documentation.
gzip -9n <README.md >"$doc/README.md.gz"
for f in docs/*.md; do gzip -9n <"$f" >"$doc/$(basename "$f").gz"; done

# The changelog: this build's entry (a native package: changelog.gz).
{
  echo "labseed ($version) unstable; urgency=medium"
  echo
  echo "  * Built from commit $commit."
  if $git_ok; then
    if prev=$(git describe --tags --abbrev=0 --match 'v[0-9]*' HEAD^ 2>/dev/null); then
      echo "  * Changes since $prev:"
      range=$prev..HEAD
    else
      echo "  * Latest changes:"
      range="-20 HEAD"
    fi
    # shellcheck disable=SC2086
    git log --no-merges --format='%s' $range | while IFS= read -r subject; do
      fold -s -w 70 <<<"$subject" | sed -e 's/ *$//' -e '1s/^/    - /' -e '2,$s/^/      /'
    done
  fi
  echo
  echo " -- $maintainer  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$doc/changelog.gz"

# The copyright file: labseed's, then the license of the Go standard
# library and of every module in the binary (from the module cache), each
# text once with the modules under it. The texts of the Apache License 2.0
# and the MPL 2.0 are replaced by their place in /usr/share/common-licenses
# (Debian policy 12.5); copyright lines, other licenses of the same file
# and NOTICE files stay.
modcache=$(go env GOMODCACHE)
lic=$work/licenses
mkdir -p "$lic"
# license DIR: print the license of the module in DIR.
license() {
  local f notice
  f=$(find "$1" -maxdepth 1 -type f \( -iname 'LICEN[CS]E*' -o -iname 'COPYING*' \) 2>/dev/null | sort | head -1)
  if [[ -z $f ]]; then
    echo "build.sh: no license file in $1 (go mod download)" >&2
    return 1
  fi
  sed 's/[[:space:]]*$//' "$f" | awk '
    /^[[:space:]]*Apache License$/ && !ap { ap = 1; buf = $0 "\n"; next }
    ap {
      buf = buf $0 "\n"
      if ($0 ~ /END OF TERMS AND CONDITIONS/) {
        if (buf ~ /Version 2\.0, January 2004/) print "Apache License 2.0: on Debian systems, the complete text is in /usr/share/common-licenses/Apache-2.0."
        else printf "%s", buf
        ap = 0; buf = ""
      }
      next
    }
    /^Mozilla Public License,? [Vv]ersion 2\.0/ { print "Mozilla Public License 2.0: on Debian systems, the complete text is in /usr/share/common-licenses/MPL-2.0."; mpl = 1; next }
    mpl { next }
    { print }
    END { printf "%s", buf }'
  notice=$(find "$1" -maxdepth 1 -type f -iname 'NOTICE*' | sort | head -1)
  if [[ -n $notice ]]; then
    echo
    echo "NOTICE:"
    sed 's/[[:space:]]*$//' "$notice"
  fi
}
# mods: pairs of lines, the module and the hash of its license text.
license "$(go env GOROOT)" >"$work/text"
h=$(sha256sum <"$work/text" | cut -c1-64)
mv "$work/text" "$lic/$h"
printf 'Go standard library %s\n%s\n' "$(go env GOVERSION)" "$h" >"$work/mods"
# A module replaced by a directory of the repository (go.mod's replace, e.g.
# third_party/anacrolix-torrent) takes its license from there.
go version -m "$root/usr/bin/labseed" | awk '
  $1 == "dep" { if (p) print p; path = $2; ver = $3; p = path " " ver " -" }
  $1 == "=>" { p = path " " ver " " $2 }
  END { if (p) print p }' |
  while read -r path ver dir; do
    if [[ $dir == ./* ]]; then
      license "$repo/${dir#./}" >"$work/text"
      ver="$ver, patched: ${dir#./}"
    else
      [[ $ver == "(devel)" || -z $ver ]] && continue
      # The module cache spells capital letters as "!" and the lower case letter.
      license "$modcache/$(sed 's/[A-Z]/!\L&/g' <<<"$path")@$ver" >"$work/text"
    fi
    h=$(sha256sum <"$work/text" | cut -c1-64)
    mv "$work/text" "$lic/$h"
    printf '%s %s\n%s\n' "$path" "$ver" "$h"
  done >>"$work/mods"
{
  cat <<'EOF'
labseed: re-image computer labs from a print server, peer to peer.

Files: the labseed source (everything built from the labseed repository)
Copyright: the labseed authors
License: the labseed repository has no license file yet; until it has one,
 ask its maintainers before redistributing this package.

The labseed binary (/usr/bin/labseed) is statically linked with the Go
standard library and the Go modules below. Their license texts follow, each
once, after the list of the modules it covers.
EOF
  paste - - <"$work/mods" | awk -F'\t' '{ mods[$2] = mods[$2] "  " $1 "\n"; if (!($2 in seen)) { seen[$2] = 1; order[++n] = $2 } }
    END { for (i = 1; i <= n; i++) printf "%s\t%s", order[i], mods[order[i]] "\x00" }' |
    while IFS=$'\t' read -r -d '' h mods; do
      printf '\n%s\n' "--------------------------------------------------------------------------"
      printf '%s' "$mods"
      echo
      cat "$lic/$h"
    done
} >"$doc/copyright"

# Control file and checksums.
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<EOF
Package: labseed
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size
Recommends: ipxe, zstd, fdisk, busybox
Suggests: xfsprogs
Section: admin
Priority: optional
Description: re-image computer labs from a print server, peer to peer
 labseed re-images whole computer labs. The print server of each lab holds
 a master image; the workstations, booted from the network, fetch it in
 chunks from the print server and from each other, and write each chunk to
 disk as soon as it arrives and checks out.
 .
 This package has the labseed command (publish images, build the clone
 environment, manage the hosts table, watch the lab) and the print-server
 daemon, labseed.service (labseed serve: the image swarm, proxyDHCP or DHCP,
 TFTP and the iPXE menus of the lab's network boot), configured in
 /etc/default/labseed. The store is /var/lib/labseed.
 .
 Recommended: ipxe (the network boot's first stage), zstd (fast
 publishing), fdisk and busybox (carried into the clone environment).
EOF
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"

find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
deb=$out/labseed_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
