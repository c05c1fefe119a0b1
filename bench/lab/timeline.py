#!/usr/bin/env python3
"""timeline.py LOGDIR: where the seconds of one labseed lab-bench run went.

LOGDIR is OUT/logs/labseed-nN of a bench/lab.sh run. It reads ports.tsv (the
bytes the print server sent and each workstation received, every 0.5 s, as
the switch counted them), t0, serve.log and ws*.log, and prints:

  * a line every 5 s: seconds since T0, the print server's send rate and
    the workstations' mean receive rate (Mbit/s), and the bytes the
    slowest workstation had received;
  * the events: the workstations' first dealt piece (first to last), when
    the print server had dealt every piece, each workstation done;
  * the start loss: where the steady-state line of the slowest
    workstation's received bytes crosses zero (seconds the start cost
    against a lab at full speed from T0), and the end: seconds from the
    print server's last new piece until the last workstation was done.
"""
import os
import re
import sys


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    d = sys.argv[1]
    t0 = float(open(os.path.join(d, "t0")).read())
    rows = []
    with open(os.path.join(d, "ports.tsv")) as f:
        hdr = f.readline().split()
        for line in f:
            v = line.split()
            if len(v) != len(hdr):
                continue
            rows.append([float(v[0]) - t0] + [int(x) for x in v[1:]])
    if len(rows) < 3:
        sys.exit("timeline.py: ports.tsv has too few samples")
    base = rows[0]
    n = len(hdr) - 2
    # events
    first_deal, started, resolved = [], [], []
    done = {}
    for k in range(1, n + 1):
        p = os.path.join(d, "ws%d.log" % k)
        if not os.path.exists(p):
            continue
        for line in open(p, errors="replace"):
            m = re.match(r"^(\d+\.\d+) ", line)
            if not m:
                continue
            t = float(m.group(1)) - t0
            if "first piece from the print server" in line:
                first_deal.append(t)
            if "lab.sh: starting labseed peer" in line:
                started.append(t)
            if 'msg="image resolved"' in line:
                resolved.append(t)
            if 'msg="image applied' in line and k not in done:
                done[k] = t
    dealt = None
    sp = os.path.join(d, "serve.log")
    if os.path.exists(sp):
        for line in open(sp, errors="replace"):
            if 'msg="every piece dealt"' in line:
                m = re.search(r"time=(\S+)", line)
                if m:
                    import datetime
                    ts = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
                    dealt = ts - t0
    print("   t(s)  server Mbit/s  ws mean Mbit/s  slowest ws MB")
    last_print = -5
    for i in range(1, len(rows)):
        t = rows[i][0]
        if t - last_print < 5 and i != len(rows) - 1:
            continue
        j = max(0, i - 10)
        dt = rows[i][0] - rows[j][0]
        srv = (rows[i][1] - rows[j][1]) * 8 / dt / 1e6
        ws = sum(rows[i][2 + k] - rows[j][2 + k] for k in range(n)) * 8 / dt / 1e6 / n
        slow = min(rows[i][2 + k] - base[2 + k] for k in range(n)) / 1e6
        print("%7.1f  %13.1f  %14.1f  %13.1f" % (t, srv, ws, slow))
        last_print = t
    # steady state: a least-squares line through the slowest workstation's
    # received bytes between 30 % and 70 % of the run
    end = max(done.values()) if done else rows[-1][0]
    pts = [(r[0], min(r[2 + k] - base[2 + k] for k in range(n))) for r in rows if 0.3 * end <= r[0] <= 0.7 * end]
    start_loss = None
    if len(pts) > 2:
        mx = sum(p[0] for p in pts) / len(pts)
        my = sum(p[1] for p in pts) / len(pts)
        sxx = sum((p[0] - mx) ** 2 for p in pts)
        sxy = sum((p[0] - mx) * (p[1] - my) for p in pts)
        slope = sxy / sxx
        start_loss = mx - my / slope
        print("steady state: slowest workstation receives %.2f Mbit/s (wire)" % (slope * 8 / 1e6))
    print("events:")
    if started:
        print("  labseed peer started (the bench's start-up): %.2f-%.2f s" % (min(started), max(started)))
    if resolved:
        print("  image resolved: %.2f-%.2f s" % (min(resolved), max(resolved)))
    if first_deal:
        print("  first dealt piece: %.2f-%.2f s" % (min(first_deal), max(first_deal)))
    if start_loss is not None:
        print("  start loss (steady-state line crosses zero): %.1f s" % start_loss)
    if dealt is not None:
        print("  every piece dealt: %.1f s" % dealt)
    if done:
        ts = sorted(done.values())
        print("  workstations done: first %.1f, last %.1f s" % (ts[0], ts[-1]))
        if dealt is not None:
            print("  end: last done - every piece dealt = %.1f s" % (ts[-1] - dealt))


if __name__ == "__main__":
    main()
