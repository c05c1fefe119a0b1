#!/usr/bin/env bash
# campus.sh: three labs joined by a campus network, one publish (issue 14's
# benchmark), timed.
#
# As root it builds three labs as bench/lab.sh builds one (a switch: a
# bridge in its own network namespace; a print server and N workstations,
# one namespace each, every port shaped to RATE both ways with tc tbf, lab
# X on 10.85.X.0/24) and a router namespace joining the three print
# servers, each by a campus link of its own shaped to CAMPUS (default
# RATE) both ways. Print server A runs labseed serve; B and C run labseed
# serve --upstream A --upstream-key A's image.pub. Then:
#   v1  labseed publish of IMAGE on A; each lab's workstations start
#       labseed peer as soon as their print server offers the image; timed
#       from the start of the publish (and from its end) to the last
#       workstation of the three labs done, ÷ T_lim (IMAGE's size at RATE);
#       the campus bytes each lab received and A sent (the router's
#       interface counters) ÷ the payload.
#   v2  the image with --update's Debian packages upgraded (go run
#       ./bench/lab -update, as lab.sh's reimage), published on A; the
#       workstations sync (labseed peer --sync) once their print server
#       offers it; the campus bytes each lab received ÷ the changed chunks.
# Every workstation's tree is compared with the image's (tar -xzf) listing.
# Results in OUT/results.tsv (one line per version) and OUT/command.txt.
# Everything it makes carries a per-run prefix (lsc<PID>-) and is removed
# by exact name on exit. LABSEED_BIN: a prebuilt binary (default: go build
# ./cmd/labseed of this tree). See docs/lab-bench.md.
#
# usage: bench/campus.sh [--n N] [--rate 20mbit] [--campus RATE]
#                        [--image FILE.tar.gz] [--update PKG,...]
#                        [--interval 1s] [--linger SECS] [--out DIR] [--keep]
set -Eeuo pipefail
umask 022
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
usage() { sed -n '2,/^set -E/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
die() { printf 'campus.sh: %s\n' "$*" >&2; exit 1; }
say() { printf '[campus %s] %s\n' "$(date +%T)" "$*" >&2; }

cmdline=$(printf '%q ' "$0" "$@")
N=2 RATE=20mbit CAMPUS= IMAGE=/var/cache/labseed-bench/minbase.tar.gz UPDATE_PKGS=bash,tzdata,dpkg INTERVAL=1s LINGER=30 OUT= KEEP=0
while (($#)); do
  case $1 in
  --n) N=$2; shift 2 ;;
  --rate) RATE=$2; shift 2 ;;
  --campus) CAMPUS=$2; shift 2 ;;
  --image) IMAGE=$2; shift 2 ;;
  --update) UPDATE_PKGS=$2; shift 2 ;;
  --interval) INTERVAL=$2; shift 2 ;;
  --linger) LINGER=$2; shift 2 ;;
  --out) OUT=$2; shift 2 ;;
  --keep) KEEP=1; shift ;;
  -h | --help) usage; exit 0 ;;
  *) usage >&2; die "unknown argument $1" ;;
  esac
done
CAMPUS=${CAMPUS:-$RATE}
OUT=${OUT:-$repo/bench/out/campus-$(date +%Y%m%d-%H%M%S)}
rate_bps() { # 20mbit -> 20000000
  awk -v r="$1" 'BEGIN {
    if (!match(r, /^[0-9]+(\.[0-9]+)?/)) exit 1
    n = substr(r, 1, RLENGTH); u = tolower(substr(r, RLENGTH + 1))
    m["bit"] = 1; m[""] = 1; m["kbit"] = 1e3; m["mbit"] = 1e6; m["gbit"] = 1e9
    if (!(u in m)) exit 1
    printf "%.0f", n * m[u] }'
}
BPS=$(rate_bps "$RATE") || die "--rate $RATE: want e.g. 20mbit"
CBPS=$(rate_bps "$CAMPUS") || die "--campus $CAMPUS: want e.g. 20mbit"
[[ $N =~ ^[0-9]+$ ]] && ((N >= 1 && N <= 30)) || die "--n $N: want 1..30"
[[ -s $IMAGE ]] || die "--image $IMAGE: no such file (bench/mkimage.sh makes one)"
[[ $(id -u) == 0 ]] || die "needs root (network namespaces, tc)"
for c in ip tc curl python3 tar go; do command -v $c >/dev/null || die "$c not installed"; done

P=lsc$$
while ip netns list | grep -q "^$P-" || [[ -e /var/tmp/$P ]]; do P=lsc$$r$RANDOM; done
WORK=/var/tmp/$P
NS_MADE=() BG=()
cleanup() {
  local rc=$? ns pids i
  trap - EXIT INT TERM ERR
  set +e
  for ns in "${NS_MADE[@]}"; do
    pids=$(ip netns pids "$ns" 2>/dev/null)
    [[ -n $pids ]] && kill -9 $pids 2>/dev/null
  done
  for i in "${BG[@]}"; do kill -9 "$i" 2>/dev/null; done
  { for i in "${BG[@]}"; do wait "$i"; done; } 2>/dev/null
  for ((i = ${#NS_MADE[@]} - 1; i >= 0; i--)); do ip netns del "${NS_MADE[i]}" 2>/dev/null; done
  if ((KEEP)); then say "kept $WORK"; else [[ -d $WORK ]] && rm -rf --one-file-system "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT
trap 'say "terminated"; exit 143' TERM
trap 'say "failed at line $LINENO: $BASH_COMMAND"' ERR
mkdir -p "$WORK" "$OUT"
OUT=$(cd "$OUT" && pwd)
IMAGE=$(readlink -f "$IMAGE")
S=$(stat -c %s "$IMAGE")
TLIM=$(awk -v s="$S" -v b="$BPS" 'BEGIN { printf "%.3f", s * 8 / b }')
{
  printf '%s\n' "$cmdline"
  echo "# date: $(date -Is)"
  echo "# git: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null)$(git -C "$repo" diff --quiet 2>/dev/null || echo ' (+ uncommitted changes)')"
  echo "# host: $(nproc) cores, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# image: $IMAGE, $S bytes; ports $RATE, campus links $CAMPUS; T_lim $TLIM s; $N workstations per lab; --upstream-interval $INTERVAL"
} >"$OUT/command.txt"
now() { echo "$EPOCHREALTIME"; }
fsec() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a - b }'; }

# ---- the image, its v2 and their listings (cached as bench/lab.sh does) -------
tree_list() {
  (cd "$1" && find . -mindepth 1 -path ./.labseed -prune -o \
    \( -type d -printf '%P d %m %U:%G %Ts\n' \) -o -printf '%P %y %s %m %U:%G %Ts %l\n') | sort
}
REFDIR=/var/cache/labseed-bench
refkey=$(printf '%s %s %s' "$IMAGE" "$S" "$(stat -c %Y "$IMAGE")" | sha256sum | cut -c1-16)
REF=$REFDIR/ref-$refkey.list
if [[ ! -s $REF ]]; then
  say "extracting the image once for the reference listing"
  mkdir "$WORK/ref" && tar -xzf "$IMAGE" -C "$WORK/ref" && tree_list "$WORK/ref" >"$REF.$P" && mv "$REF.$P" "$REF"
  rm -rf --one-file-system "$WORK/ref"
fi
ukey=$(printf '%s %s' "$refkey" "$UPDATE_PKGS" | sha256sum | cut -c1-16)
IMAGE2=$REFDIR/update-$ukey.tar.gz REF2=$REFDIR/ref-update-$ukey.list
if [[ ! -s $IMAGE2 ]]; then
  say "making v2 of the image: $UPDATE_PKGS upgraded"
  (cd "$repo" && go run ./bench/lab -update "$UPDATE_PKGS" -in "$IMAGE" -out "$IMAGE2.$P") >&2 || die "go run ./bench/lab -update failed"
  mv "$IMAGE2.$P" "$IMAGE2"
fi
if [[ ! -s $REF2 ]]; then
  mkdir "$WORK/ref2" && tar -xzf "$IMAGE2" -C "$WORK/ref2" && tree_list "$WORK/ref2" >"$REF2.$P" && mv "$REF2.$P" "$REF2"
  rm -rf --one-file-system "$WORK/ref2"
fi
echo "# v2: $UPDATE_PKGS upgraded ($IMAGE2, $(stat -c %s "$IMAGE2") bytes)" >>"$OUT/command.txt"
if [[ -n ${LABSEED_BIN:-} ]]; then # a prebuilt binary, to compare builds run in turn
  cp "$LABSEED_BIN" "$WORK/labseed" || die "LABSEED_BIN=$LABSEED_BIN: cannot copy it"
  echo "# LABSEED_BIN=$LABSEED_BIN" >>"$OUT/command.txt"
else
  say "building labseed"
  (cd "$repo" && go build -o "$WORK/labseed" ./cmd/labseed) || die "go build ./cmd/labseed failed"
fi
LS=$WORK/labseed

# ---- the site -------------------------------------------------------------------
# shape DEV NS BPS: tbf on DEV's egress, as bench/lab.sh shapes a port.
shape() {
  local burst=$(($3 / 8 / 250)) limit=$(($3 / 8 / 20))
  ((burst < 16384)) && burst=16384
  ((limit < 65536)) && limit=65536
  ip netns exec "$2" tc qdisc replace dev "$1" root handle 1: tbf rate "${3}bit" burst "$burst" limit "$limit"
}
newns() {
  ip netns add "$1"
  NS_MADE+=("$1")
  ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "$1" link set lo up
}
LABS=(a b c)
RT=$P-rt
psns() { echo "$P-ps$1"; }
wsns() { echo "$P-w$1$2"; }
labno() { case $1 in a) echo 1 ;; b) echo 2 ;; c) echo 3 ;; esac; }
psip() { echo "10.85.$(labno "$1").1"; }
wsip() { echo "10.85.$(labno "$1").$((10 + $2))"; }
say "building the site $P: 3 labs of $N workstations on $RATE ports, campus links $CAMPUS"
newns "$RT"
ip netns exec "$RT" sysctl -qw net.ipv4.ip_forward=1
for x in "${LABS[@]}"; do
  i=$(labno "$x") sw=$P-s$x ps=$(psns "$x")
  newns "$sw"
  ip -n "$sw" link add br0 type bridge stp_state 0 forward_delay 0
  ip -n "$sw" link set br0 up
  for ((k = 0; k <= N; k++)); do
    if ((k == 0)); then ns=$ps ip=$(psip "$x") port=ps; else ns=$(wsns "$x" "$k") ip=$(wsip "$x" "$k") port=ws$k; fi
    newns "$ns"
    ip -n "$sw" link add "$port" type veth peer name eth0 netns "$ns"
    ip -n "$sw" link set "$port" master br0 up
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "$ns" link set eth0 up
    shape "$port" "$sw" "$BPS"
    shape eth0 "$ns" "$BPS"
  done
  ip -n "$RT" link add "c$x" type veth peer name campus netns "$ps"
  ip -n "$RT" addr add "10.85.$((10 + i)).254/24" dev "c$x"
  ip -n "$ps" addr add "10.85.$((10 + i)).1/24" dev campus
  ip -n "$RT" link set "c$x" up
  ip -n "$ps" link set campus up
  ip -n "$RT" route add "10.85.$i.0/24" via "10.85.$((10 + i)).1"
  ip -n "$ps" route add 10.85.0.0/16 via "10.85.$((10 + i)).254"
  shape "c$x" "$RT" "$CBPS"
  shape campus "$ps" "$CBPS"
done
sleep 1
for x in b c; do ip netns exec "$(psns $x)" ping -c 1 -W 3 -q "$(psip a)" >/dev/null || die "no route from lab $x to lab a"; done
for x in "${LABS[@]}"; do ip netns exec "$(psns $x)" ping -c 1 -W 3 -q "$(wsip $x "$N")" >/dev/null || die "no connectivity in lab $x"; done

# ---- the print servers ------------------------------------------------------------
start_bg() { # LOG NS CMD...: run CMD in NS, its output in LOG
  local log=$1 ns=$2
  shift 2
  ip netns exec "$ns" "$@" </dev/null >"$log" 2>&1 &
  BG+=($!)
}
"$LS" keys export --store "$WORK/store-a" "$WORK/keys-a" >/dev/null
start_bg "$OUT/serve-a.log" "$(psns a)" "$LS" serve --store "$WORK/store-a" --listen "$(psip a)"
for x in b c; do
  start_bg "$OUT/serve-$x.log" "$(psns $x)" "$LS" serve --store "$WORK/store-$x" --listen "$(psip $x)" \
    --upstream "$(psip a)" --upstream-key "$WORK/keys-a/image.pub" --upstream-interval "$INTERVAL"
done
status() { ip netns exec "$(psns "$1")" curl -s -m 5 "http://$(psip "$1"):7480/api/v1/status"; }
for ((t = 0; t < 300; t++)); do
  ok=1
  for x in b c; do status "$x" | python3 -c 'import json,sys; u=json.load(sys.stdin).get("upstream") or {}; sys.exit(0 if len(u.get("siblings") or []) == 1 else 1)' 2>/dev/null || ok=0; done
  ((ok)) && break
  sleep 0.2
done
((ok)) || die "B and C do not learn of each other from A (see $OUT/serve-*.log)"
for x in "${LABS[@]}"; do "$LS" keys export --store "$WORK/store-$x" "$WORK/keys-$x" >/dev/null; done

linkbytes() { ip netns exec "$RT" cat "/sys/class/net/c$1/statistics/$2_bytes"; }
offers() { # X V: lab X's print server offers version V
  ip netns exec "$(psns "$1")" curl -s -m 5 "http://$(psip "$1"):7480/api/v1/images" | grep -q "\"version\": $2,"
}

# run_version V IMAGE REF [PEER ARGS...]: publish V on A; each lab's
# workstations start once their print server offers it; one results line.
printf 'version\tn\trate_bps\tcampus_bps\timage_bytes\tt_lim_s\tpublish_s\treplicated_b_s\treplicated_c_s\tlast_s\tlast_over_tlim\tlast_after_publish_over_tlim\tpayload_bytes\tchanged_bytes\ta_sent_bytes\tb_received_bytes\tc_received_bytes\tper_lab_over_ref\tfailures\n' >"$OUT/results.tsv"
run_version() {
  local v=$1 img=$2 ref=$3 x k t0 tpub a0 b0 c0 fails=0 last=0 d
  shift 3
  local -A started=()
  mkdir -p "$OUT/v$v"
  a0=$(linkbytes a rx) b0=$(linkbytes b tx) c0=$(linkbytes c tx)
  say "v$v: labseed publish on A"
  t0=$(now)
  "$LS" publish --store "$WORK/store-a" --name img "$img" >"$OUT/v$v/publish.log" 2>&1 || die "publish v$v failed"
  tpub=$(now)
  local deadline=$((SECONDS + 20 * ${TLIM%.*} + 300))
  while ((${#started[@]} < 3)); do
    for x in "${LABS[@]}"; do
      [[ -n ${started[$x]:-} ]] && continue
      offers "$x" "$v" || continue
      started[$x]=$(now)
      say "v$v: lab $x offers it after $(fsec "${started[$x]}" "$t0") s; its workstations start"
      for ((k = 1; k <= N; k++)); do
        mkdir -p "$WORK/ws$x$k"
        ip netns exec "$(wsns "$x" "$k")" bash -c '
          done=$1; shift
          "$@" 2>&1 | while IFS= read -r line; do
            printf "%s %s\n" "$EPOCHREALTIME" "$line"
            if [[ ! -e $done && $line == *"msg=\"image applied"* ]]; then echo "$EPOCHREALTIME" >"$done"; fi
          done' _ "$OUT/v$v/ws$x$k.done" \
          "$LS" peer --server "$(psip "$x"):7480" --target "$WORK/ws$x$k" --keys "$WORK/keys-$x" --linger "${LINGER}s" "$@" \
          >"$OUT/v$v/ws$x$k.log" 2>&1 &
        BG+=($!)
      done
    done
    ((SECONDS < deadline)) || die "v$v: not every lab offers it in time"
    sleep 0.2
  done
  while :; do
    local left=0
    for x in "${LABS[@]}"; do for ((k = 1; k <= N; k++)); do [[ -s $OUT/v$v/ws$x$k.done ]] || left=$((left + 1)); done; done
    ((left == 0)) && break
    ((SECONDS < deadline)) || { say "v$v: $left workstations not done in time"; break; }
    sleep 0.2
  done
  for x in "${LABS[@]}"; do
    for ((k = 1; k <= N; k++)); do
      if [[ ! -s $OUT/v$v/ws$x$k.done ]]; then fails=$((fails + 1)); continue; fi
      d=$(fsec "$(cat "$OUT/v$v/ws$x$k.done")" "$t0")
      last=$(awk -v a="$d" -v b="$last" 'BEGIN { print (a > b) ? a : b }')
    done
  done
  local ab bb cb
  ab=$(($(linkbytes a rx) - a0)) bb=$(($(linkbytes b tx) - b0)) cb=$(($(linkbytes c tx) - c0))
  # the peers linger: wait for them to end, then compare the trees
  for ((t = 0; t < (LINGER + 30) * 5; t++)); do
    pgrep -f "$WORK/labseed peer" >/dev/null || break
    sleep 0.2
  done
  for x in "${LABS[@]}"; do
    for ((k = 1; k <= N; k++)); do
      tree_list "$WORK/ws$x$k" >"$WORK/ws$x$k.list"
      if ! cmp -s "$ref" "$WORK/ws$x$k.list"; then
        fails=$((fails + 1))
        say "v$v: ws$x$k's tree differs from the image ($(diff "$ref" "$WORK/ws$x$k.list" | grep -c '^[<>]') lines)"
      fi
    done
  done
  local m=$WORK/store-a/images/img
  read -r payload changed < <(python3 - "$m/v$((v - 1))/manifest.json" "$m/v$v/manifest.json" <<'PYEOF'
import json, sys
old = set()
try:
    old = {c["sha256"] for c in json.load(open(sys.argv[1]))["chunks"]}
except OSError:
    pass
m = json.load(open(sys.argv[2]))
print(m["payload_bytes"], sum(c["size"] for c in m["chunks"] if c["sha256"] not in old))
PYEOF
)
  printf '%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%d\n' "$v" "$N" "$BPS" "$CBPS" "$(stat -c %s "$img")" "$TLIM" \
    "$(fsec "$tpub" "$t0")" "$(fsec "${started[b]}" "$t0")" "$(fsec "${started[c]}" "$t0")" "$last" \
    "$(awk -v a="$last" -v t="$TLIM" 'BEGIN { printf "%.2f", a / t }')" \
    "$(awk -v a="$last" -v p="$(fsec "$tpub" "$t0")" -v t="$TLIM" 'BEGIN { printf "%.2f", (a - p) / t }')" \
    "$payload" "$changed" "$ab" "$bb" "$cb" \
    "$(awk -v b="$bb" -v c="$cb" -v r="$changed" 'BEGIN { printf "%.3f", (b > c ? b : c) / r }')" "$fails" >>"$OUT/results.tsv"
  say "v$v: $(tail -1 "$OUT/results.tsv" | awk -F'\t' '{ printf "publish %s s, B and C offer it at %s and %s s, last workstation %s s = %s T_lim (%s T_lim after the publish); campus: A sent %.3f x, the most a lab received %s x the %s; failures %s", $7, $8, $9, $10, $11, $12, $15 / $14, $18, ($1 == 1 ? "payload" : "changed chunks"), $19 }')"
  for x in b c; do status "$x" >"$OUT/v$v/status-$x.json" || true; done
  ((fails == 0))
}
rc=0
run_version 1 "$IMAGE" "$REF" || rc=1
run_version 2 "$IMAGE2" "$REF2" --sync || rc=1
column -t -s$'\t' "$OUT/results.tsv" >&2 || true
say "results in $OUT"
exit "$rc"
