#!/usr/bin/env bash
# lab.sh: a whole computer lab on this machine, and the ways to image it, timed.
#
# As root it builds a switch (a Linux bridge in its own network namespace), a
# print server and N workstations (one namespace each, joined to the switch by a
# veth pair, 10.77.0.0/24), shapes every port like a switched full-duplex port
# of RATE in both directions (tc tbf on both ends of each veth), checks the
# shaping with iperf3, then times each method from a common start until every
# workstation holds the complete, verified tree:
#   unicast     HTTP server on the print server, every workstation `curl | tar -xz`
#   udpcast     udp-sender on the print server, `udp-receiver | tar -xz` on each
#   libtorrent  python3-libtorrent seeder + one peer per workstation, tar -xzf after
#   labseed     labseed serve + publish on the print server, labseed peer on each
#   reimage     labseed again: every workstation holds the image from a full
#               labseed clone (not timed), v2 of the image is published (the
#               image with --update's Debian packages upgraded), and the
#               workstations re-image by sync (labseed peer --sync); timed
#               against the full clone of the same run (reimage.tsv)
# Everything it makes carries a per-run prefix (lsb<PID>-) and is removed by
# exact name on exit, Ctrl-C or failure. See docs/lab-bench.md.
#
# usage: bench/lab.sh [--n N[,N...]] [--rate 20mbit] [--image FILE.tar.gz|gen:MIB]
#                     [--methods unicast,udpcast,libtorrent,labseed,reimage] [--out DIR]
#                     [--timeout SECS] [--linger SECS] [--fs ext4|dir]
#                     [--update PKG,...] [--cc cubic] [--no-check] [--keep] [--smoke]
#                     [--loss PCT] [--port-loss PCT] [--slow-port DIV]
# Faults (applied after the shaping check): --loss drops PCT % of the packets
# at random on every port, each direction; --port-loss drops PCT % on ws1's
# port only; --slow-port shapes ws1's port to RATE/DIV (a bad cable).
set -Eeuo pipefail
umask 022
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
lab=$here/lab
PY=/usr/bin/python3 # Debian's python3: python3-libtorrent and matplotlib live there

usage() { sed -n '2,/^set -E/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
die() { printf 'lab.sh: %s\n' "$*" >&2; exit 1; }
say() { printf '[lab %s] %s\n' "$(date +%T)" "$*" >&2; }

# ---- options ----------------------------------------------------------------
cmdline=$(printf '%q ' "$0" "$@")
opt_n= opt_rate= opt_image= opt_methods= OUT= TIMEOUT= LINGER=60 FS=ext4 CHECK=1 KEEP=0 SMOKE=0 CC=cubic LOSS= PORT_LOSS= SLOW_DIV=
UPDATE_PKGS=openssh-server,openssh-client,libssl3,tzdata,bash
while (($#)); do
  case $1 in
  --n) opt_n=$2; shift 2 ;;
  --rate) opt_rate=$2; shift 2 ;;
  --image) opt_image=$2; shift 2 ;;
  --methods) opt_methods=$2; shift 2 ;;
  --out) OUT=$2; shift 2 ;;
  --timeout) TIMEOUT=$2; shift 2 ;;
  --linger) LINGER=$2; shift 2 ;;
  --fs) FS=$2; shift 2 ;;
  --update) UPDATE_PKGS=$2; shift 2 ;;
  --cc) CC=$2; shift 2 ;;
  --no-check) CHECK=0; shift ;;
  --keep) KEEP=1; shift ;;
  --smoke) SMOKE=1; shift ;;
  --loss) LOSS=$2; shift 2 ;;
  --port-loss) PORT_LOSS=$2; shift 2 ;;
  --slow-port) SLOW_DIV=$2; shift 2 ;;
  -h | --help) usage; exit 0 ;;
  *) usage >&2; die "unknown argument $1" ;;
  esac
done
if ((SMOKE)); then
  : "${opt_n:=3}" "${opt_rate:=100mbit}" "${opt_image:=gen:24}" "${opt_methods:=udpcast,labseed}"
fi
N_LIST=${opt_n:-8}
RATE=${opt_rate:-20mbit}
IMAGE=${opt_image:-/var/cache/labseed-bench/debian.tar.gz}
METHODS=${opt_methods:-unicast,udpcast,libtorrent,labseed}
OUT=${OUT:-$repo/bench/out/$(date +%Y%m%d-%H%M%S)}

rate_bps() { # 20mbit -> 20000000 (tc's units: bit kbit mbit gbit, decimal)
  awk -v r="$1" 'BEGIN {
    if (!match(r, /^[0-9]+(\.[0-9]+)?/)) exit 1
    n = substr(r, 1, RLENGTH); u = tolower(substr(r, RLENGTH + 1))
    m["bit"] = 1; m[""] = 1; m["kbit"] = 1e3; m["mbit"] = 1e6; m["gbit"] = 1e9
    if (!(u in m)) exit 1
    printf "%.0f", n * m[u] }'
}
BPS=$(rate_bps "$RATE") || die "--rate $RATE: want e.g. 20mbit, 100mbit, 1gbit"
((BPS >= 1000000)) || die "--rate $RATE: at least 1mbit"
IFS=, read -ra NS_LIST <<<"$N_LIST"
NMAX=0
for n in "${NS_LIST[@]}"; do
  [[ $n =~ ^[0-9]+$ ]] && ((n >= 1 && n <= 200)) || die "--n $N_LIST: want numbers 1..200"
  ((n > NMAX)) && NMAX=$n
done
IFS=, read -ra METHOD_LIST <<<"$METHODS"
for m in "${METHOD_LIST[@]}"; do
  case $m in unicast | udpcast | libtorrent | labseed | reimage) ;; *) die "--methods: unknown method $m" ;; esac
done
[[ -z $TIMEOUT || $TIMEOUT =~ ^[0-9]+$ ]] || die "--timeout $TIMEOUT: want seconds"
[[ $LINGER =~ ^[0-9]+$ ]] || die "--linger $LINGER: want seconds"
[[ $FS == ext4 || $FS == dir ]] || die "--fs $FS: want ext4 or dir"
[[ " $(cat /proc/sys/net/ipv4/tcp_available_congestion_control 2>/dev/null) " == *" $CC "* ]] ||
  die "--cc $CC: this kernel offers $(cat /proc/sys/net/ipv4/tcp_available_congestion_control 2>/dev/null)"
for pct in "$LOSS" "$PORT_LOSS"; do
  [[ -z $pct || $pct =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--loss/--port-loss $pct: want a percentage, e.g. 1"
done
[[ -z $SLOW_DIV || $SLOW_DIV =~ ^[0-9]+$ && $SLOW_DIV -ge 2 ]] || die "--slow-port $SLOW_DIV: want a divisor of the rate, 2 or more"
[[ $(id -u) == 0 ]] || die "needs root (network namespaces, tc, mounts)"

# ---- tools --------------------------------------------------------------------
has() { command -v "$1" >/dev/null 2>&1; }
need_pkgs=()
has ip || need_pkgs+=(iproute2)
has ping || need_pkgs+=(iputils-ping)
has iperf3 || need_pkgs+=(iperf3)
[[ -n $LOSS || -n $PORT_LOSS ]] && ! has nft && need_pkgs+=(nftables)
has timeout || need_pkgs+=(coreutils)
has sysctl || need_pkgs+=(procps)
has unshare || need_pkgs+=(util-linux)
$PY -c 'import matplotlib' 2>/dev/null || need_pkgs+=(python3-matplotlib)
if [[ $FS == ext4 ]]; then
  has mkfs.ext4 || need_pkgs+=(e2fsprogs)
  has losetup || need_pkgs+=(mount)
fi
for m in "${METHOD_LIST[@]}"; do
  case $m in
  unicast) has curl || need_pkgs+=(curl) ;;
  udpcast) has udp-sender || need_pkgs+=(udpcast) ;;
  libtorrent) $PY -c 'import libtorrent' 2>/dev/null || need_pkgs+=(python3-libtorrent) ;;
  labseed | reimage) has zstd || need_pkgs+=(zstd) ;; # publish's default level runs it (the .deb recommends it)
  esac
done
if ((${#need_pkgs[@]})); then
  has apt-get || die "missing: ${need_pkgs[*]} (install them)"
  say "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${need_pkgs[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq "${need_pkgs[@]}" >/dev/null; } ||
    die "apt-get install ${need_pkgs[*]} failed"
fi

# ---- run state and teardown ---------------------------------------------------
# P prefixes every namespace, cgroup and directory this run makes. Links live
# only inside those namespaces (made there directly, never in the host's), so
# their plain names (br0, eth0, ws3) cannot collide with anything.
P=lsb$$
while ip netns list | grep -q "^$P-" || [[ -e /var/tmp/$P ]]; do P=lsb$$r$RANDOM; done
WORK=/var/tmp/$P
CGROOT=
for d in /sys/fs/cgroup/unified /sys/fs/cgroup; do
  if [[ -e $d/cgroup.procs && -w $d ]] && mountpoint -q "$d" && [[ $(stat -fc %T "$d") == cgroup2fs ]]; then
    CGROOT=$d; break
  fi
done
NS_MADE=() CG_MADE=() MOUNTS=() BG=() CC_ALLOWED= NEIGH_SAVED=

# copy_logs: the method's logs and tallies (MD) into OUT/logs/<method>-n<N>.
copy_logs() {
  mkdir -p "$OUT/logs/${MD##*/}" &&
    find "$MD" -maxdepth 1 -type f \( -name '*.log' -o -name '*.rc' -o -name '*.done' -o -name '*.end' -o -name '*.tsv' \) \
      -exec cp -t "$OUT/logs/${MD##*/}/" {} +
}

cleanup() {
  local rc=$? ns cg m i pids
  trap - EXIT INT TERM ERR
  set +e
  ((${#NS_MADE[@]} + ${#CG_MADE[@]} + ${#MOUNTS[@]})) && say "teardown of $P"
  for cg in "${CG_MADE[@]}"; do [[ -e $cg/cgroup.kill ]] && echo 1 >"$cg/cgroup.kill"; done
  for ns in "${NS_MADE[@]}"; do
    pids=$(ip netns pids "$ns" 2>/dev/null)
    [[ -n $pids ]] && kill -9 $pids 2>/dev/null
  done
  for i in "${BG[@]}"; do kill -9 "$i" 2>/dev/null; done
  { for i in "${BG[@]}"; do wait "$i"; done; } 2>/dev/null
  for m in "${MOUNTS[@]}"; do mountpoint -q "$m" && { umount "$m" 2>/dev/null || umount -l "$m"; }; done
  for ((i = ${#NS_MADE[@]} - 1; i >= 0; i--)); do ip netns del "${NS_MADE[i]}" 2>/dev/null; done
  [[ -n $CC_ALLOWED ]] && echo "$CC_ALLOWED" >/proc/sys/net/ipv4/tcp_allowed_congestion_control
  [[ -n $NEIGH_SAVED ]] && sysctl -qw $NEIGH_SAVED
  for cg in "${CG_MADE[@]}"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do rmdir "$cg"/*/ 2>/dev/null; rmdir "$cg" 2>/dev/null && break; sleep 0.2; done
  done
  # A run stopped or failed in the middle of a method: its logs are the ones
  # worth reading (a lab that stood still), so they go to OUT before WORK goes.
  if ((rc)) && [[ -n $MD && -d $MD && ! -e $OUT/logs/${MD##*/} ]]; then
    copy_logs && say "the logs of the method under way are in $OUT/logs/${MD##*/}"
  fi
  if ((KEEP)); then say "kept $WORK"; else [[ -d $WORK ]] && rm -rf --one-file-system "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT
trap 'say "terminated"; exit 143' TERM
trap 'say "failed at line $LINENO: $BASH_COMMAND"' ERR

mkdir -p "$WORK" "$OUT"
OUT=$(cd "$OUT" && pwd)
# A namespace may only make an algorithm of the machine's allowed list its
# default: CC is added to the list for the run (restored on exit).
allowed=$(cat /proc/sys/net/ipv4/tcp_allowed_congestion_control)
if [[ " $allowed " != *" $CC "* ]]; then
  CC_ALLOWED=$allowed
  echo "$allowed $CC" >/proc/sys/net/ipv4/tcp_allowed_congestion_control
fi
printf '%s\n' "$cmdline" >"$OUT/command.txt"
{
  echo "# date: $(date -Is)"
  echo "# git: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null)$(git -C "$repo" diff --quiet 2>/dev/null || echo ' (+ uncommitted changes)')"
  echo "# host: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# prefix: $P"
} >>"$OUT/command.txt"

now_us() { local t=$EPOCHREALTIME; echo $((${t%.*} * 1000000 + 10#${t#*.})); }
fsec() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; } # a-b in seconds

# ---- the image ----------------------------------------------------------------
if [[ $IMAGE == gen:* ]]; then
  mib=${IMAGE#gen:}
  [[ $mib =~ ^[0-9]+$ ]] || die "--image gen:MIB: want a size in MiB"
  say "generating a ${mib} MiB image (internal/fixture, seed 1)"
  (cd "$repo" && go run ./bench/lab -out "$WORK/image-$mib.tar.gz" -size "$mib" -seed 1) || die "generating the image failed"
  IMAGE=$WORK/image-$mib.tar.gz
  IMAGE_LABEL="gen:$mib (fixture, seed 1)"
else
  [[ -s $IMAGE ]] || die "--image $IMAGE: no such file (bench/mkimage.sh makes the default one)"
  IMAGE=$(readlink -f "$IMAGE")
  IMAGE_LABEL=$IMAGE
fi
S=$(stat -c %s "$IMAGE")
TLIM=$(awk -v s="$S" -v b="$BPS" 'BEGIN { printf "%.3f", s * 8 / b }')
echo "# image: $IMAGE_LABEL, $S bytes; rate $RATE = $BPS bit/s; T_lim $TLIM s; TCP congestion control $CC" >>"$OUT/command.txt"

# tree_list DIR: one line per entry below DIR, sorted: the "complete,
# verified" check. Size is left out for directories (it depends on the file
# system's history, not on the image); labseed's staging directory .labseed
# at the top is left out (it may remain while a peer lingers).
tree_list() {
  (cd "$1" && find . -mindepth 1 -path ./.labseed -prune -o \
    \( -type d -printf '%P d %m %U:%G %Ts\n' \) -o -printf '%P %y %s %m %U:%G %Ts %l\n') | sort
}

# The reference listing is made once per image (tar -xzf as root, as every
# workstation of unicast and udpcast does it) and cached beside the big image.
refkey=$(printf '%s %s %s' "$IMAGE" "$S" "$(stat -c %Y "$IMAGE")" | sha256sum | cut -c1-16)
[[ $IMAGE == "$WORK"/* ]] && refkey=gen-$(sha256sum "$IMAGE" | cut -c1-16)
REFDIR=/var/cache/labseed-bench
mkdir -p "$REFDIR"
REF=$REFDIR/ref-$refkey.list
if [[ ! -s $REF || ! -s $REFDIR/ref-$refkey.bytes ]]; then
  say "extracting the image once for the reference listing"
  mkdir "$WORK/ref"
  tar -xzf "$IMAGE" -C "$WORK/ref" || die "tar -xzf $IMAGE failed: not a tar.gz?"
  tree_list "$WORK/ref" >"$REF.$P" && mv "$REF.$P" "$REF"
  du -sb "$WORK/ref" | cut -f1 >"$REFDIR/ref-$refkey.bytes.$P" && mv "$REFDIR/ref-$refkey.bytes.$P" "$REFDIR/ref-$refkey.bytes"
  rm -rf --one-file-system "$WORK/ref"
fi
TREE_BYTES=$(cat "$REFDIR/ref-$refkey.bytes")
say "image $S bytes ($(wc -l <"$REF") entries, $TREE_BYTES bytes unpacked); T_lim = $TLIM s at $RATE"

# The re-image method's v2: the image with --update's Debian packages
# upgraded (go run ./bench/lab -update), and its reference listing; both
# cached beside the image's.
if [[ ,$METHODS, == *,reimage,* ]]; then
  ukey=$(printf '%s %s' "$refkey" "$UPDATE_PKGS" | sha256sum | cut -c1-16)
  UPDATE_IMAGE=$REFDIR/update-$ukey.tar.gz REF2=$REFDIR/ref-update-$ukey.list
  if [[ ! -s $UPDATE_IMAGE ]]; then
    say "making v2 of the image: $UPDATE_PKGS upgraded"
    (cd "$repo" && go run ./bench/lab -update "$UPDATE_PKGS" -in "$IMAGE" -out "$UPDATE_IMAGE.$P") >&2 ||
      die "go run ./bench/lab -update $UPDATE_PKGS failed (are they packages of the image?)"
    mv "$UPDATE_IMAGE.$P" "$UPDATE_IMAGE"
  fi
  if [[ ! -s $REF2 ]]; then
    mkdir "$WORK/ref2"
    tar -xzf "$UPDATE_IMAGE" -C "$WORK/ref2" || die "tar -xzf $UPDATE_IMAGE failed"
    tree_list "$WORK/ref2" >"$REF2.$P" && mv "$REF2.$P" "$REF2"
    rm -rf --one-file-system "$WORK/ref2"
  fi
  echo "# reimage: v2 = the image with $UPDATE_PKGS upgraded ($UPDATE_IMAGE, $(stat -c %s "$UPDATE_IMAGE") bytes)" >>"$OUT/command.txt"
fi

# ---- the lab network ------------------------------------------------------------
SW=$P-sw PS=$P-ps
wsns() { echo "$P-ws$1"; }
wsip() { echo "10.77.0.$((10 + $1))"; }
PSIP=10.77.0.1

# shape DEV NS [BPS]: tbf on the egress of DEV, RATE (or BPS) with a burst
# of 4 ms (at least 16 KiB) and a queue of 50 ms, about what a switch port
# buffers.
shape() {
  local bps=${3:-$BPS}
  local burst=$((bps / 8 / 250)) limit=$((bps / 8 / 20))
  ((burst < 16384)) && burst=16384
  ((limit < 65536)) && limit=65536
  ip netns exec "$2" tc qdisc replace dev "$1" root handle 1: tbf rate "${bps}bit" burst "$burst" limit "$limit"
}

# lossy PORT PCT: the switch drops PCT % of the frames PORT brings in and of
# those it sends out on PORT, at random (nftables numgen in the bridge's
# prerouting and postrouting hooks: netem is not in every kernel). Dropped
# in the switch, as on a real port, not in the hosts: a drop in a host's
# output hook fails the sender's sendto with EPERM, which no real loss
# does (udp-receiver gave up at once: "sendto to locate server: Operation
# not permitted"), and TCP sees its own drops. A multicast frame lost on
# its way in is lost for every port, one lost on its way out for that
# port only. Counted: lossy_counts.
lossy() {
  local per10k
  per10k=$(awk -v p="$2" 'BEGIN { printf "%d", p * 100 + 0.5 }')
  if ! ip netns exec "$SW" nft list table bridge lsbloss >/dev/null 2>&1; then
    ip netns exec "$SW" nft add table bridge lsbloss
    ip netns exec "$SW" nft add chain bridge lsbloss in '{ type filter hook prerouting priority 0; }'
    ip netns exec "$SW" nft add chain bridge lsbloss out '{ type filter hook postrouting priority 0; }'
  fi
  ip netns exec "$SW" nft add rule bridge lsbloss in iifname "$1" numgen random mod 10000 '<' "$per10k" counter drop
  ip netns exec "$SW" nft add rule bridge lsbloss out oifname "$1" numgen random mod 10000 '<' "$per10k" counter drop
}
# lossy_counts: the frames the switch dropped so far, coming in and going
# out, every port ("IN OUT").
lossy_counts() {
  ip netns exec "$SW" nft list table bridge lsbloss 2>/dev/null |
    awk '/counter packets/ { for (i = 1; i < NF; i++) if ($i == "packets") { if (/iifname/) a += $(i + 1); else b += $(i + 1) } }
      END { printf "%d %d\n", a, b }'
}

add_host() { # NAME NS IP
  ip netns add "$2"
  NS_MADE+=("$2")
  # Every host's TCP congestion control is CC (default cubic, what a Debian
  # machine runs): a new namespace would take this machine's default.
  ip netns exec "$2" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 \
    net.ipv4.tcp_congestion_control="$CC"
  ip -n "$SW" link add "$1" type veth peer name eth0 netns "$2"
  ip -n "$SW" link set "$1" master br0
  ip -n "$SW" link set "$1" up
  ip -n "$2" link set lo up
  ip -n "$2" addr add "$3/24" brd + dev eth0 # udpcast needs the broadcast address
  ip -n "$2" link set eth0 up
  ip -n "$2" route add 224.0.0.0/4 dev eth0 # udpcast's multicast stays on the lab link
  shape "$1" "$SW"                         # the switch port's egress: the host's download
  shape eth0 "$2"                          # the host's NIC egress: its upload
}

# The kernel's ARP table is one for the whole machine: every namespace's
# entries count against net.ipv4.neigh.default.gc_thresh3 (1024 by
# default), and a lab of N hosts that all talk to each other holds about
# (N+1)^2. At N = 48 and 90 the table overflowed ("neighbor table
# overflow!" in dmesg): workstations started after the lab was busy could
# not resolve the print server's address for minutes ("no route to host",
# SYN-SENT with no neighbour entry), which a real workstation, with its own
# table, never sees. Raised for the run, restored at teardown.
need=$(((NMAX + 2) * (NMAX + 2)))
t2=$(sysctl -n net.ipv4.neigh.default.gc_thresh2) t3=$(sysctl -n net.ipv4.neigh.default.gc_thresh3)
if ((t3 < 2 * need)); then
  NEIGH_SAVED="net.ipv4.neigh.default.gc_thresh2=$t2 net.ipv4.neigh.default.gc_thresh3=$t3"
  sysctl -qw net.ipv4.neigh.default.gc_thresh2=$((need > t2 ? need : t2)) net.ipv4.neigh.default.gc_thresh3=$((2 * need))
  echo "# neighbour table: gc_thresh2/3 raised from $t2/$t3 to $((need > t2 ? need : t2))/$((2 * need)) for the run" >>"$OUT/command.txt"
fi
say "building the lab $P: switch, print server, $NMAX workstations, $RATE ports"
ip netns add "$SW"
NS_MADE+=("$SW")
ip netns exec "$SW" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
ip -n "$SW" link set lo up
ip -n "$SW" link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
ip -n "$SW" link set br0 up
add_host ps "$PS" "$PSIP"
for ((k = 1; k <= NMAX; k++)); do add_host "ws$k" "$(wsns $k)" "$(wsip $k)"; done
ip netns exec "$PS" ping -c 1 -W 2 -q "$(wsip "$NMAX")" >/dev/null || die "no connectivity across the switch"

txbytes() { ip netns exec "$1" cat /sys/class/net/eth0/statistics/tx_bytes; }
# net_stats N: per host (ps, ws1..N) the counters so far: TCP segments
# sent and retransmitted, and packets the host's upload (its NIC's tbf) and
# download (the switch port's tbf) dropped.
net_stats() {
  local n=$1 k h ns port
  for ((k = 0; k <= n; k++)); do
    if ((k == 0)); then h=ps ns=$PS port=ps; else h=ws$k ns=$(wsns $k) port=ws$k; fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$h" \
      "$(ip netns exec "$ns" nstat -asz TcpOutSegs 2>/dev/null | awk '$1 == "TcpOutSegs" { print $2 }')" \
      "$(ip netns exec "$ns" nstat -asz TcpRetransSegs 2>/dev/null | awk '$1 == "TcpRetransSegs" { print $2 }')" \
      "$(ip netns exec "$ns" tc -s qdisc show dev eth0 | awk '/dropped/ { sub(",", "", $7); print $7; exit }')" \
      "$(ip netns exec "$SW" tc -s qdisc show dev "$port" | awk '/dropped/ { sub(",", "", $7); print $7; exit }')"
  done
}
# tcp.tsv of a method: net_stats at its end minus at its start.
net_diff() { # BEFORE AFTER
  printf 'host\ttcp_out_segs\ttcp_retrans_segs\tretrans_pct\tup_dropped\tdown_dropped\n'
  awk -F'\t' -v OFS='\t' 'NR == FNR { for (i = 2; i <= 5; i++) b[$1, i] = $i; next }
    { o = $2 - b[$1, 2]; r = $3 - b[$1, 3]
      print $1, o, r, (o ? sprintf("%.2f", 100 * r / o) : ""), $4 - b[$1, 4], $5 - b[$1, 5] }' "$1" "$2"
}
# sample_ports N FILE: until FILE.stop exists, every 0.5 s one line: the time
# and, from the switch's side, the bytes the print server sent (ps_up) and
# each workstation received (wsK_down): where a run's seconds went.
sample_ports() {
  local n=$1 f=$2 k hdr="t ps_up"
  for ((k = 1; k <= n; k++)); do hdr+=" ws${k}_down"; done
  echo "$hdr" >"$f"
  while [[ ! -e $f.stop ]]; do
    ip netns exec "$SW" bash -c 'cd /sys/class/net; l="$EPOCHREALTIME $(<ps/statistics/rx_bytes)"
      for ((k = 1; k <= $0; k++)); do l+=" $(<ws$k/statistics/tx_bytes)"; done; echo "$l"' "$n" >>"$f" 2>/dev/null
    sleep 0.5
  done
}

# ---- shaping check with iperf3 ---------------------------------------------------
# 1) print server <-> ws1, one flow each way at once (--bidir): each ~ RATE;
# 2) print server and ws2 both send into ws1: they share RATE.
iperf_json() { # JSONFILE: prints "forward_bps reverse_bps" (received)
  $PY -c '
import json, sys
e = json.load(open(sys.argv[1]))["end"]
f = e.get("sum_received", {}).get("bits_per_second", 0)
r = e.get("sum_received_bidir_reverse", {}).get("bits_per_second", 0)
print("%.0f %.0f" % (f, r))' "$1"
}
check_shaping() {
  local d=$WORK/iperf pids=() f r a b ok=1
  mkdir -p "$d"
  ip netns exec "$(wsns 1)" timeout 30 iperf3 -s -1 -B "$(wsip 1)" -p 5201 >"$d/s1.log" 2>&1 &
  pids+=($!)
  sleep 0.5
  ip netns exec "$PS" timeout 30 iperf3 -c "$(wsip 1)" -p 5201 -t 5 --bidir -J >"$d/bidir.json" 2>"$d/bidir.err" || true
  wait "${pids[@]}" 2>/dev/null || true
  read -r f r < <(iperf_json "$d/bidir.json") || { f=0; r=0; }
  pids=()
  ip netns exec "$(wsns 1)" timeout 30 iperf3 -s -1 -B "$(wsip 1)" -p 5201 >"$d/s2.log" 2>&1 &
  pids+=($!)
  ip netns exec "$(wsns 1)" timeout 30 iperf3 -s -1 -B "$(wsip 1)" -p 5202 >"$d/s3.log" 2>&1 &
  pids+=($!)
  sleep 0.5
  ip netns exec "$PS" timeout 30 iperf3 -c "$(wsip 1)" -p 5201 -t 5 -J >"$d/two-a.json" 2>/dev/null &
  pids+=($!)
  if ((NMAX >= 2)); then
    ip netns exec "$(wsns 2)" timeout 30 iperf3 -c "$(wsip 1)" -p 5202 -t 5 -J >"$d/two-b.json" 2>/dev/null &
    pids+=($!)
  else
    ip netns exec "$(wsns 1)" timeout 10 iperf3 -c "$(wsip 1)" -p 5202 -t 1 >/dev/null 2>&1 || true # free the server
  fi
  wait "${pids[@]}" 2>/dev/null || true
  read -r a _ < <(iperf_json "$d/two-a.json") || a=0
  b=0
  ((NMAX >= 2)) && { read -r b _ < <(iperf_json "$d/two-b.json") || b=0; }
  {
    printf 'test\tflow\tbps\tratio_to_rate\n'
    awk -v b="$BPS" -v f="$f" -v r="$r" -v a="$a" -v c="$b" 'BEGIN {
      printf "bidir\tps->ws1\t%d\t%.3f\n", f, f / b
      printf "bidir\tws1->ps\t%d\t%.3f\n", r, r / b
      printf "two-into-one\tps->ws1\t%d\t%.3f\n", a, a / b
      printf "two-into-one\tws2->ws1\t%d\t%.3f\n", c, c / b
      printf "two-into-one\tsum\t%d\t%.3f\n", a + c, (a + c) / b }'
  } >"$OUT/shaping.tsv"
  say "iperf3 (TCP goodput ÷ RATE): $(awk -F'\t' 'NR > 1 { printf "%s %s %s; ", $1, $2, $4 }' "$OUT/shaping.tsv")"
  # TCP goodput is at most ~0.96 of the line rate (headers); a port that
  # gives much less or more than that is not shaped as asked.
  awk -F'\t' -v two=$((NMAX >= 2)) '($1 == "bidir" || ($2 == "sum" && two)) && ($4 < 0.85 || $4 > 1.02) { bad = 1 }
    END { exit bad }' "$OUT/shaping.tsv" || ok=0
  if ((!ok)); then
    say "WARNING: the ports are not shaped to $RATE (see $OUT/shaping.tsv); the machine may be too busy"
    return 1
  fi
}
SHAPING=unchecked
if ((CHECK)); then
  if check_shaping; then SHAPING=ok; else SHAPING=off; fi
fi

# ---- faults (after the check) ------------------------------------------------------
FAULTS=
if [[ -n $LOSS || -n $PORT_LOSS || -n $SLOW_DIV ]]; then
  for ((k = 1; k <= NMAX + 1; k++)); do
    if ((k > NMAX)); then dev=ps ns=$PS; else dev=ws$k ns=$(wsns $k); fi
    bps=$BPS loss=$LOSS
    if [[ $dev == ws1 ]]; then
      [[ -n $SLOW_DIV ]] && bps=$((BPS / SLOW_DIV))
      [[ -n $PORT_LOSS ]] && loss=$PORT_LOSS
    fi
    if [[ $bps != "$BPS" ]]; then
      shape "$dev" "$SW" "$bps"
      shape eth0 "$ns" "$bps"
    fi
    [[ -n $loss ]] && lossy "$dev" "$loss"
  done
  [[ -n $LOSS ]] && FAULTS+="${LOSS} % loss on every port; "
  [[ -n $PORT_LOSS ]] && FAULTS+="${PORT_LOSS} % loss on ws1's port; "
  [[ -n $SLOW_DIV ]] && FAULTS+="ws1's port at RATE/$SLOW_DIV; "
  FAULTS=${FAULTS%; }
  say "faults: $FAULTS"
  echo "# faults: $FAULTS" >>"$OUT/command.txt"
fi

# ---- running things in the lab ----------------------------------------------------
# Each method runs in its own cgroup (CPU seconds of everything it started) and
# directory MD; spawn runs one command inside a namespace, bounded in time, and
# leaves NAME.pid (the command's pid), NAME.log, NAME.rc and NAME.end (epoch
# seconds when it ended).
CG= MD=
spawn() { # NAME NS SECS CMD...
  local name=$1 ns=$2 secs=$3
  shift 3
  (
    if [[ -n $CG && $name =~ ^ws[0-9]+$ ]]; then
      # each workstation in its own child cgroup: its CPU seconds
      mkdir -p "$CG/$name" && echo "$BASHPID" >"$CG/$name/cgroup.procs"
    elif [[ -n $CG ]]; then
      echo "$BASHPID" >"$CG/cgroup.procs"
    fi
    rc=0
    # Each host also gets its own UTS namespace and host name (ps, ws1, ...),
    # as real machines have.
    timeout -k 5 "$secs" ip netns exec "$ns" unshare --uts bash -c 'hostname "$1"; echo $$ >"$0"; shift; exec "$@"' \
      "$MD/$name.pid" "${ns#"$P"-}" "$@" \
      </dev/null >"$MD/$name.log" 2>&1 || rc=$?
    echo "$rc" >"$MD/$name.rc"
    echo "$EPOCHREALTIME" >"$MD/$name.end"
  ) 2>>"$MD/spawn.err" &
  BG+=($!)
}
stop() { # NAME...: SIGTERM to a spawned command (exactly its pid), wait up to 10 s
  local name pid t
  for name; do
    [[ -e $MD/$name.end || ! -s $MD/$name.pid ]] && continue
    pid=$(cat "$MD/$name.pid")
    kill -TERM "$pid" 2>/dev/null || true
  done
  for name; do
    for ((t = 0; t < 100; t++)); do [[ -e $MD/$name.end ]] && break; sleep 0.1; done
  done
}
wait_port() { # NS IP PORT SECS NAME: until something listens there (or NAME ended)
  local t
  for ((t = 0; t < $4 * 10; t++)); do
    ip netns exec "$1" bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null && return 0
    [[ -n ${5:-} && -e $MD/$5.end ]] && return 1
    sleep 0.1
  done
  return 1
}
cpu_usec() { [[ -n $CG ]] && awk '$1 == "usage_usec" { print $2 }' "$CG/cpu.stat" || echo 0; }
host_busy_usec() { # all CPUs of the machine, every process (other engineers' too)
  awk '/^cpu / { t = 0; for (i = 2; i <= 8; i++) if (i != 5 && i != 6) t += $i; printf "%.0f", t * 1e6 / '"$(getconf CLK_TCK)"' }' /proc/stat
}

# Workstation disks: with --fs ext4 each workstation gets a fresh ext4 file
# system (a sparse file on a loop device, like a disk after mkfs) for every
# method, so that no method pays for deleting the previous one's tree.
# (A re-image holds the tree, the payload kept from the last clone and the
# new version's staging payload.)
DISK_BYTES=$(((TREE_BYTES * 13 / 10 + S * 24 / 10 + (256 << 20)) / 1048576 * 1048576))
make_disks() { # N
  local k d
  for ((k = 1; k <= $1; k++)); do
    d=$WORK/ws$k
    mkdir -p "$d"
    if [[ $FS == ext4 ]]; then
      truncate -s "$DISK_BYTES" "$WORK/ws$k.img"
      mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1,nodiscard "$WORK/ws$k.img"
      # A direct-I/O loop device: the workstation's file system is cached
      # once, as on a real disk (a buffered loop device caches its data a
      # second time in the image file's pages, and 8 workstations' 2 GB
      # each made the kernel reclaim memory inside their writes: a third
      # of a workstation's CPU in the lab bench was pwrite). losetup -d on
      # the mounted device frees it when it is unmounted.
      local dev
      if dev=$(losetup --direct-io=on -f --show "$WORK/ws$k.img" 2>/dev/null); then
        mount -o noinit_itable "$dev" "$d"
        losetup -d "$dev"
      else
        mount -o loop,noinit_itable "$WORK/ws$k.img" "$d"
      fi
      MOUNTS+=("$d")
    fi
    mkdir -p "$d/target" "$d/dl"
  done
}
drop_disks() { # N
  local k d i
  for ((k = 1; k <= $1; k++)); do
    d=$WORK/ws$k
    if [[ $FS == ext4 ]]; then
      umount "$d" || umount -l "$d"
      for i in "${!MOUNTS[@]}"; do [[ ${MOUNTS[i]} == "$d" ]] && unset 'MOUNTS[i]'; done
      rm -f "$WORK/ws$k.img"
    else
      rm -rf --one-file-system "$d"
    fi
  done
}

printf 'method\tn\trate_bps\ts_bytes\tt_lim_s\tfirst_s\tmedian_s\tlast_s\tlast_over_tlim\tserver_tx_bytes\tserver_tx_over_s\tcpu_s\tprep_s\tprep_cpu_s\thost_busy_s\tfailures\tstatus\tnote\n' >"$OUT/results.tsv"
printf 'method\tn\tws\tdone_s\texit_s\tok\tnote\tcpu_s\treceived_bytes\tcpu_s_per_gb\tpeak_rss_mib\n' >"$OUT/workstations.tsv"
FAILED=0

# ==== METHODS ======================================================================
# Each method defines M_prep (before the clock starts: servers up, image
# prepared), M_start N (starts the workstations, at T0; may start a server) and
# M_finish N (after every workstation is done: stop servers). A workstation
# is done when its command ended, or, for commands that keep seeding after
# they are done, when it wrote ws<K>.done ("EPOCH_SECONDS RC").

# -- 1. unicast: HTTP from the print server, curl | tar -xz on every workstation --
unicast_prep() {
  mkdir -p "$MD/www"
  ln -s "$IMAGE" "$MD/www/image.tar.gz"
  spawn http "$PS" "$SRV_S" $PY -m http.server --bind "$PSIP" --directory "$MD/www" 8000
  wait_port "$PS" "$PSIP" 8000 20 http || { NA="http.server did not start: $(tail -3 "$MD/http.log")"; return 1; }
}
unicast_start() {
  local k
  for ((k = 1; k <= $1; k++)); do
    spawn "ws$k" "$(wsns $k)" "$WS_S" bash -c 'set -o pipefail; curl -sS --fail "$0" | tar -xzf - -C "$1"' \
      "http://$PSIP:8000/image.tar.gz" "$WORK/ws$k/target"
  done
}
unicast_finish() { stop http; }

# -- 2. udpcast: multicast from the print server --------------------------------
# udp-sender is capped at 95 % of RATE (its payload rate; with UDP/IP/Ethernet
# headers that is about 98 % of the port), so that it does not overrun the ports.
UDPCAST_FRACTION=0.95
udpcast_prep() { :; }
udpcast_start() {
  local k mbit
  mbit=$(awk -v b="$BPS" -v f="$UDPCAST_FRACTION" 'BEGIN { printf "%.0fk", b * f / 1000 }')
  spawn sender "$PS" "$SRV_S" udp-sender --interface eth0 --min-receivers "$1" --max-bitrate "$mbit" \
    --nokbd --file "$IMAGE"
  for ((k = 1; k <= $1; k++)); do
    spawn "ws$k" "$(wsns $k)" "$WS_S" bash -c 'set -o pipefail; udp-receiver --interface eth0 --nokbd | tar -xzf - -C "$0"' \
      "$WORK/ws$k/target"
  done
}
udpcast_finish() { stop sender; }

# -- 3. libtorrent: python3-libtorrent seeder and peers, tar -xzf after download --
libtorrent_prep() {
  spawn seeder "$PS" "$SRV_S" $PY "$lab/ltpeer.py" seed --file "$IMAGE" --torrent "$MD/image.torrent" \
    --listen "$PSIP" --ready "$MD/seeder.ready" --stop "$MD/stop" --max-time "$SRV_S"
  local t
  for ((t = 0; t < 1200; t++)); do
    [[ -e $MD/seeder.ready ]] && return 0
    [[ -e $MD/seeder.end ]] && break
    sleep 0.1
  done
  NA="libtorrent seeder did not start: $(tail -3 "$MD/seeder.log")"
  return 1
}
libtorrent_start() {
  local k peers=$PSIP
  for ((k = 1; k <= $1; k++)); do peers+=,$(wsip $k); done
  for ((k = 1; k <= $1; k++)); do
    spawn "ws$k" "$(wsns $k)" "$WS_S" $PY "$lab/ltpeer.py" peer --torrent "$MD/image.torrent" \
      --listen "$(wsip $k)" --peers "$peers" --save "$WORK/ws$k/dl" --target "$WORK/ws$k/target" \
      --done "$MD/ws$k.done" --stop "$MD/stop" --linger "$LINGER" --max-time "$WS_S"
  done
}
libtorrent_finish() {
  touch "$MD/stop"
  local k names=()
  for ((k = 1; k <= $1; k++)); do names+=("ws$k"); done
  wait_ended $((LINGER + 30)) "${names[@]}"
  stop seeder "${names[@]}"
}

# -- 4. labseed ---------------------------------------------------------------------
# ######## labseed method: the commands (adjust here) ########
# LABSEED_BIN: a prebuilt binary (default: go build ./cmd/labseed of this tree).
# LABSEED_DONE_RE: a regular expression matched against each line the peer
# prints; the first match marks the workstation done (its tree complete and
# verified) even while the peer keeps seeding (--linger); labseed peer logs
# 'msg="image applied, seeding"' then. Empty: the peer's exit marks it done
# (then first and median include the lingering).
LABSEED_DONE_RE=${LABSEED_DONE_RE-'msg="image applied'}
# LABSEED_LEVEL: the publish --level (default: none, labseed's default, as a
# new user publishes: it runs the zstd program, which lab.sh installs).
# LABSEED_PUBLISH_ARGS: more publish options (word-split). The image is
# published once per run, before the first N, and each N gets a copy of
# that store.
LABSEED_LEVEL=${LABSEED_LEVEL-}
LABSEED_PUBLISH_ARGS=${LABSEED_PUBLISH_ARGS-}
publish_opts() { # the publish options, in the array POPTS
  POPTS=()
  [[ -n $LABSEED_LEVEL ]] && POPTS+=(--level "$LABSEED_LEVEL")
  local extra
  read -ra extra <<<"$LABSEED_PUBLISH_ARGS"
  POPTS+=("${extra[@]}")
}
labseed_bin() { # built once per run, before the lab (not part of any timing)
  if [[ -n ${LABSEED_BIN:-} ]]; then echo "$LABSEED_BIN"; return; fi
  if [[ ! -x $WORK/labseed && ! -e $WORK/labseed-build.log ]]; then
    (cd "$repo" && go build -o "$WORK/labseed" ./cmd/labseed) >"$WORK/labseed-build.log" 2>&1 || return 1
  fi
  [[ -x $WORK/labseed ]] && echo "$WORK/labseed"
}
labseed_prep() {
  local bin c
  bin=$(labseed_bin) || { NA="go build ./cmd/labseed failed: $(tail -5 "$WORK/labseed-build.log" | tr '\n' ' ')"; return 1; }
  for c in serve peer; do
    "$bin" help "$c" >/dev/null 2>&1 || { NA="labseed has no '$c' command yet: $("$bin" help "$c" 2>&1 | head -1)"; return 1; }
  done
  LS=$bin
  grep -q '^# labseed binary' "$OUT/command.txt" ||
    echo "# labseed binary: $bin, sha256 $(sha256sum "$bin" | cut -c1-16), built $(date -r "$bin" -Is)" >>"$OUT/command.txt"
  if [[ ! -d $WORK/labseed-store ]]; then
    local p0=$SECONDS
    publish_opts
    "$LS" publish --store "$WORK/labseed-store.new" --name img "${POPTS[@]}" "$IMAGE" >"$WORK/labseed-publish.log" 2>&1 ||
      { NA="labseed publish failed: $(tail -5 "$WORK/labseed-publish.log" | tr '\n' ' ')"; return 1; }
    mv "$WORK/labseed-store.new" "$WORK/labseed-store"
    echo "# labseed publish ${POPTS[*]}: $((SECONDS - p0)) s, $("$LS" images --store "$WORK/labseed-store" 2>&1 | tail -1) (once per run, before the first N)" >>"$OUT/command.txt"
  fi
  # What every workstation receives: the published payload.
  RECEIVED=$(stat -c %s "$WORK"/labseed-store/images/img/v*/img-v*.chunks)
  cp -a "$WORK/labseed-store" "$MD/store"
  # The lab's hosts table, as a real lab's print server has one: the
  # print server counts its workstations from it before they start
  # (api.Lab.Workstations; a lab larger than a workstation's MaxConns
  # asks for smaller blocks). labseed peer does not ask who it is, so the
  # trees are the image's whatever the table says.
  local k
  {
    echo "mac,hostname,ip"
    for ((k = 1; k <= $1; k++)); do
      echo "$(ip netns exec "$(wsns $k)" cat /sys/class/net/eth0/address),ws$k,$(wsip $k)"
    done
  } >"$MD/store/hosts.csv"
  spawn keys "$PS" 60 "$LS" keys export --store "$MD/store" "$MD/keys"
  wait_ended 60 keys
  [[ $(cat "$MD/keys.rc") == 0 ]] || { NA="labseed keys export failed: $(tail -5 "$MD/keys.log" | tr '\n' ' ')"; return 1; }
  spawn serve "$PS" "$SRV_S" "$LS" serve --store "$MD/store" --listen "$PSIP"
  wait_port "$PS" "$PSIP" 7480 30 serve || {
    NA="labseed serve is not listening on $PSIP:7480: $(tail -5 "$MD/serve.log" | tr '\n' ' ')"
    return 1
  }
}
labseed_start() {
  local k
  for ((k = 1; k <= $1; k++)); do
    # Every output line is stamped with the epoch time (the labseed authors
    # read the logs), and the first line matching LABSEED_DONE_RE writes the
    # done file.
    spawn "ws$k" "$(wsns $k)" "$WS_S" bash -c '
      set -o pipefail
      done=$1 re=$2; shift 2
      printf "%s lab.sh: starting labseed peer\n" "$EPOCHREALTIME" # start-up until here: the bench, not labseed
      "$@" 2>&1 | while IFS= read -r line; do
        printf "%s %s\n" "$EPOCHREALTIME" "$line"
        if [[ -n $re && ! -e $done && $line =~ $re ]]; then echo "$EPOCHREALTIME 0" >"$done"; fi
      done' _ "$MD/ws$k.done" "$LABSEED_DONE_RE" \
      "$LS" peer --server "$PSIP:7480" --target "$WORK/ws$k/target" --keys "$MD/keys" --linger "${LINGER}s" ${LS_PEER_ARGS:-}
  done
}
labseed_finish() {
  local k names=()
  for ((k = 1; k <= $1; k++)); do names+=("ws$k"); done
  wait_ended $((LINGER + 30)) "${names[@]}" # peers linger until all are done
  stop "${names[@]}" serve
}

# -- 5. reimage: labseed re-imaging a lab that holds the image ---------------------
# Prep (not timed): the labseed method's prep, then every workstation gets
# v1 by a full labseed clone (the full clone's time, T_full), then v2 is
# published (once per run, copied into each N's store as a publish would
# put it there). Timed: every workstation syncs to v2 (labseed peer
# --sync). reimage.tsv has the ratios: the sync's last done ÷ T_full, and
# the bytes the print server sent and the workstations received ÷ the
# changed chunks' bytes (v2's chunks that v1 does not have); phases-nN.tsv
# where each workstation's seconds went (bench/lab/phases.py).
reimage_prep() {
  local n=$1 k t0a last=0 d
  labseed_prep "$n" || return 1
  if [[ ! -d $WORK/labseed-store-v2 ]]; then
    local p0=$SECONDS
    publish_opts
    cp -a "$WORK/labseed-store" "$WORK/labseed-store-v2.new"
    "$LS" publish --store "$WORK/labseed-store-v2.new" --name img "${POPTS[@]}" "$UPDATE_IMAGE" >"$WORK/labseed-publish-v2.log" 2>&1 ||
      { NA="labseed publish of v2 failed: $(tail -5 "$WORK/labseed-publish-v2.log" | tr '\n' ' ')"; return 1; }
    mv "$WORK/labseed-store-v2.new" "$WORK/labseed-store-v2"
    echo "# reimage: labseed publish v2 ${POPTS[*]}: $((SECONDS - p0)) s, $("$LS" images --store "$WORK/labseed-store-v2" 2>&1 | tail -1)" >>"$OUT/command.txt"
  fi
  # The full clone of v1.
  say "reimage, N=$n: every workstation gets v1 by a full labseed clone first"
  t0a=$EPOCHREALTIME
  LS_PEER_ARGS= labseed_start "$n"
  local names=()
  for ((k = 1; k <= n; k++)); do names+=("ws$k"); done
  wait_ended $((DEADLINE_S + LINGER + 30)) "${names[@]}" || { NA="the full clone of v1 did not end in time"; return 1; }
  for ((k = 1; k <= n; k++)); do
    [[ $(cat "$MD/ws$k.rc") == 0 && -s $MD/ws$k.done ]] || { NA="the full clone of v1 failed on ws$k: $(tail -3 "$MD/ws$k.log" | tr '\n' ' ')"; return 1; }
    d=$(fsec "$(cut -d' ' -f1 "$MD/ws$k.done")" "$t0a")
    last=$(awk -v a="$d" -v b="$last" 'BEGIN { print (a > b) ? a : b }')
    for f in log done end rc pid; do mv "$MD/ws$k.$f" "$MD/full-ws$k.$f"; done
  done
  RE_TFULL=$last
  say "reimage, N=$n: the full clone took $RE_TFULL s (last workstation done); publishing v2"
  cp -a "$WORK/labseed-store-v2/images/img/v2" "$MD/store/images/img/.v2.copy"
  mv "$MD/store/images/img/.v2.copy" "$MD/store/images/img/v2"
  ln -sfn v2 "$MD/store/images/img/.current.new"
  mv -T "$MD/store/images/img/.current.new" "$MD/store/images/img/current"
  local t
  for ((t = 0; t < 300; t++)); do
    ip netns exec "$PS" "$LS" status --server "$PSIP:7480" --json 2>/dev/null | grep -q '"version": 2' && break
    sleep 0.2
  done
  ((t < 300)) || { NA="the print server does not serve v2"; return 1; }
  RE_CHANGED=$($PY - "$MD/store/images/img/v1/manifest.json" "$MD/store/images/img/v2/manifest.json" <<'PYEOF'
import json, sys
v1 = {c["sha256"] for c in json.load(open(sys.argv[1]))["chunks"]}
m2 = json.load(open(sys.argv[2]))
ch = [c for c in m2["chunks"] if c["sha256"] not in v1]
print(sum(c["size"] for c in ch), len(ch), len(m2["chunks"]), m2["payload_bytes"])
PYEOF
)
  RE_TX0=$(txbytes "$PS")
  RE_RX0=()
  for ((k = 1; k <= n; k++)); do RE_RX0[k]=$(ip netns exec "$(wsns $k)" cat /sys/class/net/eth0/statistics/rx_bytes); done
}
reimage_start() { LS_PEER_ARGS=--sync labseed_start "$1"; }
reimage_finish() {
  local n=$1 k rx=0 last=0 d
  labseed_finish "$n"
  local tx=$(($(txbytes "$PS") - RE_TX0))
  for ((k = 1; k <= n; k++)); do
    rx=$((rx + $(ip netns exec "$(wsns $k)" cat /sys/class/net/eth0/statistics/rx_bytes) - RE_RX0[k]))
    if [[ -s $MD/ws$k.done ]]; then
      d=$(fsec "$(cut -d' ' -f1 "$MD/ws$k.done")" "$t0")
      last=$(awk -v a="$d" -v b="$last" 'BEGIN { print (a > b) ? a : b }')
    fi
  done
  local changed nch nall payload synced
  read -r changed nch nall payload <<<"$RE_CHANGED"
  synced=$(grep -ho 'synced: .*' "$MD"/ws*.log | head -1)
  [[ -s $OUT/reimage.tsv ]] ||
    printf 'n\tt_full_s\tt_sync_s\tsync_over_full\tchanged_chunks\tchunks\tchanged_bytes\tpayload_bytes\tserver_tx_bytes\tserver_tx_over_changed\tlab_rx_bytes\tlab_rx_over_n_changed\tws1\n' >"$OUT/reimage.tsv"
  printf '%d\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%s\t%s\n' "$n" "$RE_TFULL" "$last" \
    "$(awk -v a="$last" -v b="$RE_TFULL" 'BEGIN { printf "%.3f", a / b }')" "$nch" "$nall" "$changed" "$payload" "$tx" \
    "$(awk -v a="$tx" -v b="$changed" 'BEGIN { printf "%.3f", a / b }')" "$rx" \
    "$(awk -v a="$rx" -v b="$changed" -v n="$n" 'BEGIN { printf "%.3f", a / (n * b) }')" "$synced" >>"$OUT/reimage.tsv"
  $PY "$lab/phases.py" "$MD" >"$OUT/phases-n$n.tsv" || say "WARNING: phases.py failed"
  say "reimage N=$n: $(tail -1 "$OUT/reimage.tsv" | awk -F'\t' '{ printf "full clone %s s, sync %s s (%s); %s of %s chunks changed (%s bytes); print server sent %s x, the lab received %s x N x the changed bytes", $2, $3, $4, $5, $6, $7, $10, $12 }')"
}
# ######## end of the labseed method ########

wait_ended() { # SECS NAME...: until every NAME ended, at most SECS
  local secs=$1 t name all
  shift
  for ((t = 0; t < secs * 5; t++)); do
    all=1
    for name; do [[ -e $MD/$name.end ]] || { all=0; break; }; done
    ((all)) && return 0
    sleep 0.2
  done
  return 1
}

# ---- one method at one N ------------------------------------------------------------
run_method() { # METHOD N
  local m=$1 n=$2 k t0= t0us dt drc dlt cpu0 busy0 tx0 tx1 prep0 prep_s prep_cpu cpu_s busy_s status note=
  local ref=$REF
  [[ $m == reimage ]] && ref=$REF2
  local -a times=() donet exitt okk notes
  MD=$WORK/$m-n$n
  mkdir -p "$MD"
  local expect
  # With --slow-port the slow workstation's own limit is T_lim·DIV.
  expect=$(awk -v t="$TLIM" -v n="$n" -v m="$m" -v d="${SLOW_DIV:-1}" 'BEGIN { printf "%d", (m == "unicast" ? n : 1) * t * d }')
  DEADLINE_S=${TIMEOUT:-$((4 * expect + 90))}
  WS_S=$((DEADLINE_S + LINGER + 60)) SRV_S=$((2 * DEADLINE_S + LINGER + 300))
  [[ $m == reimage ]] && SRV_S=$((3 * DEADLINE_S + 3 * LINGER + 600)) # the full clone first
  say "== $m, N=$n: T_lim $TLIM s, timeout $DEADLINE_S s"
  make_disks "$n"
  CG=
  if [[ -n $CGROOT ]]; then
    CG=$CGROOT/$P-$m-n$n
    mkdir "$CG"
    CG_MADE+=("$CG")
  fi
  NA=
  RECEIVED=$S # what each workstation receives (labseed_prep: the payload)
  prep0=$(now_us)
  if ! "${m}_prep" "$n"; then
    NA=${NA:-$m prep failed}
  fi
  tx0=$(txbytes "$PS") # after the prep: the re-image method's full clone is in it
  prep_s=$(awk -v a="$(now_us)" -v b="$prep0" 'BEGIN { printf "%.1f", (a - b) / 1e6 }')
  prep_cpu=$(cpu_usec)
  status=ok
  if [[ -n $NA ]]; then
    say "$m: not available: $NA"
    status=n/a
    note=$NA
  else
    # net_stats runs ip netns exec four times per host: 5-7 s at N = 8 on
    # a loaded machine, so before the clock starts, not after.
    net_stats "$n" >"$MD/net0"
    local loss0=
    [[ -n $LOSS || -n $PORT_LOSS ]] && loss0=$(lossy_counts)
    cpu0=$(cpu_usec) busy0=$(host_busy_usec)
    t0us=$(now_us)
    t0=$EPOCHREALTIME
    echo "$t0" >"$MD/t0" # phases.py reads it (reimage_finish), before the logs are copied
    sample_ports "$n" "$MD/ports.tsv" &
    local sampler=$!
    "${m}_start" "$n"
    local dl=$((t0us + DEADLINE_S * 1000000)) left
    while :; do
      left=0
      for ((k = 1; k <= n; k++)); do [[ -e $MD/ws$k.end || -e $MD/ws$k.done ]] || left=$((left + 1)); done
      ((left == 0)) && break
      if (($(now_us) > dl)); then
        say "$m: timeout after $DEADLINE_S s, $left of $n workstations not done"
        note="timeout ${DEADLINE_S}s"
        break
      fi
      sleep 0.2
    done
    say "$m: $((n - left)) of $n done after $(fsec "$EPOCHREALTIME" "$t0") s; stopping"
    touch "$MD/ports.tsv.stop"
    wait "$sampler" 2>/dev/null || true
    net_stats "$n" >"$MD/net1"
    net_diff "$MD/net0" "$MD/net1" >"$MD/tcp.tsv"
    if [[ -n $loss0 ]]; then # the frames the faults dropped during the method (loss.tsv)
      printf 'in_dropped\tout_dropped\n%s\n' "$(paste -d' ' <(echo "$loss0") <(lossy_counts) | awk -v OFS='\t' '{ print $3 - $1, $4 - $2 }')" >"$MD/loss.tsv"
      say "$m: the switch dropped $(tail -1 "$MD/loss.tsv" | awk '{ printf "%d frames coming in, %d going out", $1, $2 }') (--loss/--port-loss)"
    fi
    "${m}_finish" "$n" || true
    cpu_s=$(awk -v a="$(cpu_usec)" -v b="$cpu0" 'BEGIN { printf "%.1f", (a - b) / 1e6 }')
    busy_s=$(awk -v a="$(host_busy_usec)" -v b="$busy0" 'BEGIN { printf "%.1f", (a - b) / 1e6 }')
  fi
  # anything of this method still running (a straggler, a hung server) dies now
  if [[ -n $CG ]]; then
    echo 1 >"$CG/cgroup.kill"
    for ((k = 0; k < 50; k++)); do [[ -s $CG/cgroup.procs ]] || break; sleep 0.1; done
  fi
  local pid
  { for pid in "${BG[@]}"; do wait "$pid" || true; done; } 2>/dev/null
  BG=()
  tx1=$(txbytes "$PS")
  copy_logs # MD is $WORK/$m-n$n
  [[ -n $t0 ]] && echo "$t0" >"$OUT/logs/$m-n$n/t0"

  if [[ $status == n/a ]]; then
    printf '%s\t%d\t%d\t%d\t%s\t\t\t\t\t%d\t\t\t%s\t\t\t\t%s\t%s\n' "$m" "$n" "$BPS" "$S" "$TLIM" $((tx1 - tx0)) "$prep_s" n/a "$note" >>"$OUT/results.tsv"
  else
    local fails=0 d e rc ok wnote
    set +e # judge every workstation, whatever goes wrong with one
    for ((k = 1; k <= n; k++)); do
      d= e= ok=1 wnote=
      [[ -e $MD/ws$k.end ]] && e=$(fsec "$(cat "$MD/ws$k.end")" "$t0")
      rc=$(cat "$MD/ws$k.rc" 2>/dev/null || echo none)
      if [[ -s $MD/ws$k.done ]]; then
        dt= drc= dlt=
        read -r dt drc dlt <"$MD/ws$k.done" || true
        d=$(fsec "$dt" "$t0")
        [[ -n $dlt ]] && wnote+="downloaded at $(fsec "$dlt" "$t0") s; "
        [[ $drc == 0 ]] || { ok=0; wnote+="rc=$drc; "; }
        # killed by this script after it was done (lingering too long) is no failure
        [[ $rc == 0 || $rc == none || $rc == 124 || $rc == 137 || $rc == 143 ]] || { ok=0; wnote+="exit rc=$rc after done; "; }
        [[ $rc == 0 ]] || wnote+="exit rc=$rc; "
      elif [[ -n $e ]]; then
        d=$e
        if [[ $rc == 124 ]]; then
          ok=0 wnote+="rc=124 (timeout); "
        elif [[ $rc != 0 ]]; then
          ok=0 wnote+="rc=$rc; "
        fi
      else
        ok=0
        wnote+="not done; "
      fi
      if ((ok)); then
        tree_list "$WORK/ws$k/target" >"$MD/ws$k.list"
        if ! cmp -s "$ref" "$MD/ws$k.list"; then
          ok=0
          wnote+="tree differs ($(diff "$ref" "$MD/ws$k.list" | grep -c '^[<>]' || true) lines); "
          diff "$ref" "$MD/ws$k.list" | head -40 >"$MD/ws$k.treediff" || true
        fi
        # What stays in .labseed: the record of the image installed.
        [[ -e $WORK/ws$k/target/.labseed && $(ls -A "$WORK/ws$k/target/.labseed") != installed ]] && wnote+=".labseed holds staging data; "
      fi
      ((ok)) || fails=$((fails + 1))
      ((ok)) && times+=("$d")
      # CPU seconds of the workstation's processes (its cgroup), per GB it
      # received; peak RSS as labseed peer reports it on its last line
      local wcpu= wgb= wrss=
      if [[ -n $CG && -e $CG/ws$k/cpu.stat ]]; then
        wcpu=$(awk '$1 == "usage_usec" { printf "%.1f", $2 / 1e6 }' "$CG/ws$k/cpu.stat")
        wgb=$(awk -v c="$wcpu" -v r="$RECEIVED" 'BEGIN { printf "%.1f", c / (r / 1e9) }')
      fi
      wrss=$(grep -ao 'peak RSS [0-9.]* MiB' "$MD/ws$k.log" 2>/dev/null | tail -1 | awk '{ print $3 }') || true
      printf '%s\t%d\t%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n' "$m" "$n" "$k" "$d" "$e" "$ok" "${wnote%; }" \
        "$wcpu" "$RECEIVED" "$wgb" "$wrss" >>"$OUT/workstations.tsv"
      ((ok)) || say "$m: ws$k failed: ${wnote%; } (see $OUT/logs/$m-n$n/ws$k.*)"
    done
    set -e
    ((fails)) && status=failed && FAILED=1
    local stats
    if ((${#times[@]})); then
      stats=$(printf '%s\n' "${times[@]}" | sort -g | awk -v tl="$TLIM" -v f="$fails" '
        { v[NR] = $1 } END {
          med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
          printf "%.1f\t%.1f\t%.1f\t%s", v[1], med, v[NR], f ? "" : sprintf("%.2f", v[NR] / tl) }')
    else
      stats=$'\t\t\t'
    fi
    printf '%s\t%d\t%d\t%d\t%s\t%s\t%d\t%.2f\t%s\t%s\t%.1f\t%s\t%d\t%s\t%s\n' "$m" "$n" "$BPS" "$S" "$TLIM" "$stats" \
      $((tx1 - tx0)) "$(awk -v a=$((tx1 - tx0)) -v s="$S" 'BEGIN { print a / s }')" "$cpu_s" "$prep_s" \
      "$(awk -v a="$prep_cpu" 'BEGIN { print a / 1e6 }')" "$busy_s" "$fails" "$status" "$note" >>"$OUT/results.tsv"
    say "$m N=$n: $(tail -1 "$OUT/results.tsv" | awk -F'\t' '{ printf "first %s median %s last %s s, last/T_lim %s, server TX/S %s, CPU %s s, failures %s", $6, $7, $8, $9, $11, $12, $16 }')"
    # The peak RSS: its range, and the largest ÷ the largest at this
    # method's first N of the run (its baseline).
    say "$m N=$n: per workstation $(awk -F'\t' -v m="$m" -v n="$n" '$1 == m && fn == "" { fn = $2 }
      $1 == m && $2 == fn && $11 + 0 > b { b = $11 + 0 }
      $1 == m && $2 == n && $10 != "" {
        v = $10 + 0; t += v; if (!k++ || v < lo) lo = v; if (v > hi) hi = v
        w = $11 + 0; if (w && (!rlo || w < rlo)) rlo = w; if (w > r) r = w } END {
        if (!k) { print "CPU unknown"; exit }
        printf "CPU %.1f-%.1f s per GB received (mean %.1f)", lo, hi, t / k
        if (r) printf ", peak RSS %.0f-%.0f MiB", rlo, r
        if (r && b && n != fn) printf " (%.2f x N=%s'"'"'s %.0f MiB)", r / b, fn, b }' "$OUT/workstations.tsv")"
    if [[ -n $SLOW_DIV || -n $PORT_LOSS ]]; then
      # ws1 (the slow or lossy port) against its own port's limit (T_lim·DIV;
      # T_lim with --port-loss), the others' median against T_lim (faults.tsv).
      local slow others div=${SLOW_DIV:-1}
      slow=$(awk -F'\t' -v m="$m" -v n="$n" '$1 == m && $2 == n && $3 == 1 && $6 == 1 { print $4 }' "$OUT/workstations.tsv")
      others=$(awk -F'\t' -v m="$m" -v n="$n" '$1 == m && $2 == n && $3 != 1 && $6 == 1 { print $4 }' "$OUT/workstations.tsv" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR) printf "%.1f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
      [[ -s $OUT/faults.tsv ]] || printf 'method\tn\tslow_div\tothers_median_s\tothers_median_over_tlim\tslow_s\tslow_over_its_tlim\n' >"$OUT/faults.tsv"
      # ws1 not done or wrong: "failed" in its two columns.
      [[ -n $others ]] && awk -v m="$m" -v n="$n" -v tl="$TLIM" -v div="$div" -v med="$others" -v slow="$slow" \
        'BEGIN { printf "%s\t%d\t%s\t%.1f\t%.2f\t", m, n, div, med, med / tl
          if (slow == "") print "failed\tfailed"; else printf "%.1f\t%.2f\n", slow, slow / (tl * div) }' >>"$OUT/faults.tsv"
      [[ -s $OUT/faults.tsv ]] && say "$m N=$n, ws1 ($FAULTS): $(tail -1 "$OUT/faults.tsv" | awk -F'\t' '{ printf "others median %s s = %s T_lim; ws1 %s s = %s of its own port limit", $4, $5, $6, $7 }')"
    fi
  fi
  find "$MD" -maxdepth 1 -type f -name '*.treediff' -exec cp -t "$OUT/logs/$m-n$n/" {} +
  drop_disks "$n"
  rm -rf --one-file-system "$MD"
  if [[ -n $CG ]]; then
    rmdir "$CG"/*/ 2>/dev/null
    rmdir "$CG" 2>/dev/null && unset 'CG_MADE[-1]'
  fi
}

if [[ ,$METHODS, == *,labseed,* || ,$METHODS, == *,reimage,* ]] && [[ -z ${LABSEED_BIN:-} ]]; then
  say "building labseed (go build ./cmd/labseed)"
  labseed_bin >/dev/null || say "go build ./cmd/labseed failed: labseed will be reported not available"
fi
for m in "${METHOD_LIST[@]}"; do
  for n in "${NS_LIST[@]}"; do
    run_method "$m" "$n"
  done
done

# ---- report -------------------------------------------------------------------------
echo "# shaping: $SHAPING" >>"$OUT/command.txt"
$PY "$lab/report.py" --out "$OUT" "$OUT" || say "WARNING: report.py failed"
cat "$OUT/table.md"
say "results in $OUT"
((FAILED == 0)) || die "a method failed (see the table)"
