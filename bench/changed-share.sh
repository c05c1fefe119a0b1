#!/bin/bash
# changed-share.sh V1 V2 [PUBLISH-ARGS...]: how much of an image's published
# bytes an update changes, without a lab. Publishes the tarballs V1 and V2 as
# versions 1 and 2 of one image into a temporary store (labseed publish
# PUBLISH-ARGS, e.g. --level 1 --order input) and prints the chunks of v2 that
# v1 does not have: their count and their share of v2's published bytes (what
# a re-image by sync fetches), and each version's published size ÷ its input.
#   bench/changed-share.sh /var/cache/labseed-bench/debian-clone.tar.gz \
#     /var/cache/labseed-bench/update-c1df4cd288d2d3fa.tar.gz --order input
set -euo pipefail
(($# >= 2)) || { sed -n 2,9p "$0" >&2; exit 2; }
v1=$1 v2=$2
shift 2
repo=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$repo" && go build -o "$tmp/labseed" ./cmd/labseed)
for img in "$v1" "$v2"; do
  "$tmp/labseed" publish --store "$tmp/store" --name img "$@" "$img" </dev/null | tail -1
done
python3 - "$tmp/store/images/img/v1/manifest.json" "$tmp/store/images/img/v2/manifest.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
old = {c["sha256"] for c in a["chunks"]}
ch = [c for c in b["chunks"] if c["sha256"] not in old]
size = sum(c["size"] for c in ch)
print(f"changed: {len(ch)} of {len(b['chunks'])} chunks, {size} of {b['payload_bytes']} published bytes "
      f"= {size / b['payload_bytes']:.3f}; published / input: v1 {a['payload_bytes'] / a['input_bytes']:.4f}, "
      f"v2 {b['payload_bytes'] / b['input_bytes']:.4f}")
PY
