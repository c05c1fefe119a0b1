import sys, collections
for fn in sys.argv[1:]:
    ev = collections.defaultdict(list)
    for line in open(fn):
        f = line.split(); ev[int(f[3])].append((float(f[0]), f[1], f[2]))
    gaps=[]
    for p, es in ev.items():
        rms=[e for e in es if e[1]=='RM']
        if len(rms)<2: continue
        # find first SR; the peer whose request was deleted without RM just before
        for i,e in enumerate(es):
            if e[1]=='SR':
                peer=e[2]; t1=e[0]
                # next DR for this peer
                dr=[x for x in es[i+1:] if x[1]=='DR' and x[2]==peer]
                rm=[x for x in es[i+1:] if x[1]=='RM' and x[2]==peer]
                if dr and rm and rm[0][0]>dr[0][0]+0.0005:
                    gaps.append((round(dr[0][0]-t1,2), round(rm[0][0]-dr[0][0],2)))
                    break
    print(fn.split('/')[-1], sorted(gaps))
