import json,statistics as st,sys,collections
d=sys.argv[1] if len(sys.argv)>1 else '/work/peer-files/runs'
L=collections.defaultdict(dict); O=collections.defaultdict(dict)
for line in open(d+'/llama.jsonl'):
    j=json.loads(line); f=j['model_filename'].split('/')[-1][:-5]
    t=('pp%d'%j['n_prompt']) if j['n_prompt'] else ('tg%d'%j['n_gen'])
    L[(f,t)][j['round']]=(st.median(j['samples_ts']),min(j['samples_ts']),max(j['samples_ts']))
for line in open(d+'/ours.jsonl'):
    j=json.loads(line); f=j['model']; t=j['test'].split(' ')[0]
    s=j['tokens_per_s']['samples']
    O[(f,t,j['actQuant'])][j['round']]=(st.median(s),min(s),max(s))
def fmt(v): return f"{v:.0f}" if v>=100 else f"{v:.1f}"
print("| file | test | llama.cpp | ours exact | ratio | ours int8 | ratio | per-round ratios exact (int8) |")
print("|---|---|---:|---:|---:|---:|---:|---|")
for (f,t),rl in sorted(L.items()):
    rounds=sorted(rl)
    lm=st.median([rl[r][0] for r in rounds]); lo=min(rl[r][0] for r in rounds); hi=max(rl[r][0] for r in rounds)
    row=[f,t,f"{fmt(lm)} ({fmt(lo)}–{fmt(hi)})"]
    rr=[]
    for aq in ('off','int8'):
        ro=O.get((f.replace('0.5b','0.5b').split('-')[0]+'-'+f.split('-',1)[1],t,aq)) or O.get((f,t,aq))
        if not ro: row+=['–','–']; continue
        rs=[r for r in rounds if r in ro]
        om=st.median([ro[r][0] for r in rs]); olo=min(ro[r][0] for r in rs); ohi=max(ro[r][0] for r in rs)
        ratios=[ro[r][0]/rl[r][0] for r in rs]
        row+=[f"{fmt(om)} ({fmt(olo)}–{fmt(ohi)})", f"{st.median(ratios):.2f}×"]
        rr.append(aq+': '+', '.join(f"{x:.2f}" for x in ratios))
    row.append('; '.join(rr))
    print('| '+' | '.join(row)+' |')
