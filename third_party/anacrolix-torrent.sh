#!/usr/bin/env bash
# third_party/anacrolix-torrent.sh: rebuild third_party/anacrolix-torrent, the
# copy of github.com/anacrolix/torrent that go.mod's replace directive points
# at, from the module proxy: the packages labseed builds and tests with
# (non-test Go files, and the LICENSE files), go.mod and go.sum, then labseed's patch
# (third_party/anacrolix-torrent.patch, explained in LABSEED.md there) and
# gofmt. Run it from the repository to move to another anacrolix version
# (VERSION=v1.x.y third_party/anacrolix-torrent.sh), then read the patch's
# hunks against the new requesting.go and run ./test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${VERSION:-v1.59.1}
mod=github.com/anacrolix/torrent
src=$(GOFLAGS=-mod=mod go mod download -json "$mod@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[[ -d $src ]] || { echo "anacrolix-torrent.sh: no source for $mod@$version" >&2; exit 1; }
dst=third_party/anacrolix-torrent
pkgs=$(go list -deps -test ./... | grep "^$mod\(/\|$\)" | grep -v -e '\.test$' -e ' \[' | sort -u)
keep=$(mktemp)
cp "$dst/LABSEED.md" "$keep"
rm -rf "$dst"
for p in $pkgs; do
  rel=${p#"$mod"}
  rel=${rel#/}
  mkdir -p "$dst/$rel"
  for f in "$src/$rel"/*.go; do
    [[ $f == *_test.go ]] || cp "$f" "$dst/$rel/"
  done
  [[ ! -f $src/$rel/LICENSE ]] || cp "$src/$rel/LICENSE" "$dst/$rel/"
done
cp "$src/LICENSE" "$src/go.mod" "$src/go.sum" "$dst/"
cp "$keep" "$dst/LABSEED.md"
rm -f "$keep"
chmod -R u+w "$dst"
patch -d "$dst" -p1 --no-backup-if-mismatch <third_party/anacrolix-torrent.patch
gofmt -w "$dst"
echo "anacrolix-torrent.sh: $dst is $mod@$version with labseed's patch"
