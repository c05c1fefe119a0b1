#!/usr/bin/python3
"""Where the seconds of a re-image by sync go, per workstation.

  phases.py LOGDIR > phases.tsv

LOGDIR is a reimage run's logs/reimage-n<N>/ (bench/lab.sh --methods reimage).
Each wsK.log line starts with the epoch time bench/lab.sh stamped on it; t0
holds the run's start. The columns are seconds:
  resolve      from the start until the signed manifest is resolved
  check_local  reading the payload kept on the disk, checking each chunk the new
               version shares with the old against the signed manifest, copying
               it into the staging payload (since the fetch overlaps it, the
               workstation joins the lab first and fetches meanwhile; before,
               it joined once the check was done)
  first_piece  from the start until the first piece dealt by the print server
               came (empty if none)
  fetch_apply  from the end of the check until every piece is verified:
               fetching the changed chunks' pieces, and applying every chunk
               (local or fetched) to the tree: each entry compared with the
               disk, the differing ones written
  finish_tree  after the last piece is verified: the last chunks applied, the
               tree walked for what the image does not hold
  done         the workstation's done line, from the start
The last line is the median of each column.
"""

import os
import re
import statistics
import sys

MARKS = [
    ("resolved", 'msg="image resolved"'),
    ("checked", 'msg="sync: chunks found'),
    ("verified", 'msg="every piece verified"'),
    ("synced", 'msg="tree synced"'),
]
FIRST = 'msg="first piece from the print server"'


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    t0 = float(open(os.path.join(d, "t0")).read().split()[0])
    rows = []
    names = [f for f in os.listdir(d) if re.fullmatch(r"ws\d+\.log", f)]
    for f in sorted(names, key=lambda s: int(s[2:-4])):
        ts = {}
        with open(os.path.join(d, f), errors="replace") as fh:
            for line in fh:
                for k, pat in MARKS + [("first", FIRST)]:
                    if pat in line and k not in ts:
                        ts[k] = float(line.split()[0]) - t0
        done_f = os.path.join(d, f[:-4] + ".done")
        if any(k not in ts for k, _ in MARKS) or not os.path.exists(done_f):
            print(f"{f}: not a complete sync, left out", file=sys.stderr)
            continue
        done = float(open(done_f).read().split()[0]) - t0
        rows.append((f[:-4], ts["resolved"], ts["checked"] - ts["resolved"], ts.get("first"),
                     ts["verified"] - ts["checked"], ts["synced"] - ts["verified"], done))
    print("ws\tresolve_s\tcheck_local_s\tfirst_piece_s\tfetch_apply_s\tfinish_tree_s\tdone_s")
    fmt = lambda x: "" if x is None else "%.2f" % x
    for r in rows:
        print(r[0] + "\t" + "\t".join(fmt(x) for x in r[1:]))
    if rows:
        cols = [[r[i] for r in rows if r[i] is not None] for i in range(1, 7)]
        print("median\t" + "\t".join(fmt(statistics.median(c)) if c else "" for c in cols))


if __name__ == "__main__":
    main()
