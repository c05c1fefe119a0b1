#!/usr/bin/python3
"""Tables and plots of bench/lab.sh runs.

  report.py --out DIR RUNDIR [RUNDIR...]

Reads results.tsv, workstations.tsv and shaping.tsv of each RUNDIR (the output
directories of bench/lab.sh runs; several runs, e.g. one per N or one with the
small image for unicast, are merged; a later RUNDIR's row for the same method,
N, S and RATE replaces an earlier one's) and writes into DIR:
  table.md            the results table (Markdown), one row per method and N
  per-workstation.png completion time of every workstation, per method
  ratio-vs-n.png      last workstation's time / T_lim against N, per method
"""

import argparse
import csv
import os
import sys

COLORS = {"unicast": "tab:red", "udpcast": "tab:blue", "libtorrent": "tab:orange", "labseed": "tab:green"}
ORDER = ["unicast", "udpcast", "libtorrent", "labseed"]


def read_tsv(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def rate_str(bps):
    bps = int(bps)
    if bps % 1000000000 == 0:
        return "%dgbit" % (bps // 1000000000)
    if bps % 1000000 == 0:
        return "%dmbit" % (bps // 1000000)
    return "%gmbit" % (bps / 1e6)


def fnum(s, fmt="%.1f"):
    try:
        return fmt % float(s)
    except (TypeError, ValueError):
        return "—"


def key(r):
    m = r["method"]
    return (ORDER.index(m) if m in ORDER else 99, int(r["n"]), int(r["s_bytes"]))


def table(results):
    head = ("| method | N | RATE | S (bytes) | T_lim (s) | first (s) | median (s) | last (s) "
            "| last ÷ T_lim | server TX ÷ S | CPU (s) | prep (s) | failures |\n"
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
    rows = []
    notes = []
    for r in sorted(results, key=key):
        fails = r["failures"]
        if r["status"] == "n/a":
            fails = "not available"
        if r.get("note"):
            notes.append("- %s, N=%s: %s" % (r["method"], r["n"], r["note"]))
        rows.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["method"], r["n"], rate_str(r["rate_bps"]), "{:,}".format(int(r["s_bytes"])),
            fnum(r["t_lim_s"]), fnum(r["first_s"]), fnum(r["median_s"]), fnum(r["last_s"]),
            fnum(r["last_over_tlim"], "**%.2f**"), fnum(r["server_tx_over_s"], "%.2f"),
            fnum(r["cpu_s"]), fnum(r["prep_s"]), fails))
    out = head + "\n".join(rows) + "\n"
    if notes:
        out += "\n" + "\n".join(notes) + "\n"
    return out


def shaping_table(shaping):
    if not shaping:
        return ""
    out = "\niperf3 check of the ports (TCP goodput; headers cost ~4 % of the line rate):\n\n"
    out += "| test | flow | Mbit/s | ÷ RATE |\n|---|---|---:|---:|\n"
    for r in shaping:
        out += "| %s | %s | %.1f | %s |\n" % (r["test"], r["flow"], float(r["bps"]) / 1e6, r["ratio_to_rate"])
    return out


def plots(outdir, results, ws):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # completion time per workstation, one panel per (N, S, rate) group
    groups = sorted({(int(r["n"]), int(r["s_bytes"]), int(r["rate_bps"])) for r in results})
    fig, axes = plt.subplots(len(groups), 1, figsize=(8, 3.2 * max(1, len(groups))), squeeze=False)
    for ax, (n, s, bps) in zip(axes[:, 0], groups):
        tlim = s * 8 / bps
        for m in ORDER:
            pts = sorted(float(w["done_s"]) for w in ws
                         if w["method"] == m and int(w["n"]) == n and w["ok"] == "1" and w["done_s"]
                         and any(int(r["s_bytes"]) == s and int(r["rate_bps"]) == bps and r["method"] == m
                                 and int(r["n"]) == n for r in results))
            if pts:
                ax.plot(range(1, len(pts) + 1), pts, marker="o", color=COLORS[m], label=m)
        ax.axhline(tlim, color="gray", ls="--", lw=1, label="T_lim = S·8/RATE")
        ax.set_title("N=%d, %s ports, S=%.1f MB" % (n, rate_str(bps), s / 1e6), fontsize=10)
        ax.set_xlabel("workstation (sorted by completion)")
        ax.set_ylabel("completion time (s)")
        ax.set_xticks(range(1, n + 1))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "per-workstation.png"), dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m in ORDER:
        for s in sorted({int(r["s_bytes"]) for r in results}):
            pts = sorted((int(r["n"]), float(r["last_over_tlim"])) for r in results
                         if r["method"] == m and int(r["s_bytes"]) == s and r["last_over_tlim"])
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=COLORS[m],
                        label="%s (S=%.0f MB)" % (m, s / 1e6),
                        ls="-" if s == max(int(r["s_bytes"]) for r in results) else ":")
    ax.axhline(1, color="gray", ls="--", lw=1, label="physical limit")
    ns = sorted({int(r["n"]) for r in results})
    ax.set_xlim(0, max(ns) + 1)
    ax.set_xticks(range(0, max(ns) + 2, max(1, (max(ns) + 1) // 10)))
    ax.set_xlabel("N workstations")
    ax.set_ylabel("last workstation's time ÷ T_lim")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "ratio-vs-n.png"), dpi=100)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("runs", nargs="+")
    a = p.parse_args()
    # A later run replaces an earlier one's rows of the same method, N, S and
    # RATE (a rerun after a disturbed run).
    byrun = {}
    shaping = []
    for i, d in enumerate(a.runs):
        for r in read_tsv(os.path.join(d, "results.tsv")):
            byrun[(r["method"], r["n"], r["s_bytes"], r["rate_bps"])] = (i, r)
        shaping += read_tsv(os.path.join(d, "shaping.tsv"))
    results = [r for _, r in byrun.values()]
    ws = []
    for i, d in enumerate(a.runs):
        for w in read_tsv(os.path.join(d, "workstations.tsv")):
            k = [key for key, (j, _) in byrun.items() if j == i and key[0] == w["method"] and key[1] == w["n"]]
            if k:
                ws.append(w)
    if not results:
        print("report.py: no results in", " ".join(a.runs), file=sys.stderr)
        return 1
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "table.md"), "w") as f:
        f.write(table(results))
        if len(a.runs) == 1:
            f.write(shaping_table(shaping))
    plots(a.out, results, ws)
    return 0


if __name__ == "__main__":
    sys.exit(main())
