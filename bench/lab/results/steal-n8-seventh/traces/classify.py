import sys, collections
for fn in sys.argv[1:]:
    ev = collections.defaultdict(list)
    t0 = None
    for line in open(fn):
        f = line.split()
        t = float(f[0]); 
        if t0 is None: t0 = t
        ev[int(f[3])].append((t - t0, f[1], f[2]))
    stats = collections.Counter()
    times = []
    for p, es in ev.items():
        rms = [e for e in es if e[1] == 'RM']
        dealt = [e for e in es if e[1] == 'DEALT']
        srs = [e for e in es if e[1] == 'SR']
        got = len(rms) + len(dealt)
        if got <= 1:
            continue
        extra = got - 1
        peers = set(e[2] for e in srs)
        if dealt and rms:
            stats['dealt+bt'] += extra
        elif len(peers) >= 2:
            stats['stolen(2+ peers asked)'] += extra
        elif len(srs) >= 2:
            stats['same peer asked twice'] += extra
        else:
            stats['other'] += extra
        times.append(rms[-1][0] if rms else 0)
    total = sum(1 for es in ev.values() for e in es if e[1] in ('RM','DEALT'))
    print(fn, 'pieces', len(ev), 'copies', total, dict(stats), 'wasted at', sorted(round(x,1) for x in times))
