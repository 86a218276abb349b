import sys, statistics as st
for f in sys.argv[1:]:
    rows=[l.split() for l in open(f) if l.strip()]
    types=sorted(set(r[1] for r in rows), key=lambda t:[r[1] for r in rows].index(t))
    print(f)
    for t in types:
        for col,name in ((3,'tok/s'),(4,'tok/cpu-s x thr')):
            a=[float(r[col]) for r in rows if r[1]==t and r[2]=='A' and len(r)>4]
            b=[float(r[col]) for r in rows if r[1]==t and r[2]=='B' and len(r)>4]
            n=min(len(a),len(b)); a,b=a[:n],b[:n]
            if not n or min(a) <= 0 or min(b) <= 0: continue
            ratios=[y/x for x,y in zip(a,b)]
            print(f"  {t:5s} {name:16s} A {st.median(a):7.0f} ({min(a):.0f}-{max(a):.0f})  B {st.median(b):7.0f} ({min(b):.0f}-{max(b):.0f})  B/A med {st.median(ratios):.3f}  B>A {sum(r>1 for r in ratios)}/{n}  disjoint {min(b)>max(a)}")
