# Builds table.md from raw.md (rounds of build/bench_gemv before/after; see the header written below).
import re, collections
txt = open('raw.md').read()
D = collections.defaultdict(list); loads = []
for b in re.split(r'^### ', txt, flags=re.M)[1:]:
    m = re.match(r'round (\d+), (\w+), (\S+) (\d), load ([\d.]+)', b.split('\n', 1)[0])
    if not m: continue
    r, who, typ, T, load = m.groups(); loads.append(float(load))
    for line in b.split('\n'):
        if line.startswith('| ') and ' x ' in line and 'rows x cols' not in line:
            c = [x.strip() for x in line.strip('|').split('|')]
            i8 = c[4]
            D[(typ, T, c[0], who)].append((float(c[2].split('/')[0]), float(i8.split('/')[0]) if '/' in i8 else None))
shapes = ['tiny qkv', 'tiny o_proj', 'tiny gate+up', 'tiny down', 'tiny lm_head', '0.5B qkv', '0.5B o_proj', '0.5B gate+up', '0.5B down', '0.5B lm_head']
out = ["| weights | tokens per call | shape | exact arm before, µs | exact arm after, µs | after vs before | int8 arm, µs | int8 vs exact (after) |",
       "|---|---:|---|---:|---:|---:|---:|---:|"]
for typ in ['q8_0', 'q4_0', 'bf16']:
    for T in ['1', '4']:
        for s in shapes:
            b, a = D[(typ, T, s, 'before')], D[(typ, T, s, 'after')]
            if not b: continue
            bm, am = min(x[0] for x in b), min(x[0] for x in a)
            i8 = [x[1] for x in a if x[1] is not None]
            tail = f"{min(i8):.1f} | {am / min(i8):.2f}× |" if i8 else "– | – |"
            out.append(f"| {typ} | {T} | {s} | {bm:.1f} | {am:.1f} | {bm / am:.2f}× | {tail}")
hdr = f"""`build/bench_gemv <type> <tokens>` (cuda/tests/bench_gemv.cpp): one thread, per call through `matmul()`, thread CPU
time; each cell is the min over 2 alternating rounds of the min of 7 repetitions (raw.md: every round with min / median
and the load average, {min(loads):.1f}-{max(loads):.1f} during these runs). "before" = main at a1c54d8 (the kernels before the
decode-sized AVX-512 matmuls; its int8 column is the same kernel as "after"), "after" = 7a553ff. Weights cache-warm
(one copy of the matrix; `cold` mode reads DRAM-resident copies). `python3 analyze.py` rebuilds this table.

"""
open('table.md', 'w').write(hdr + '\n'.join(out) + '\n')
print(hdr + '\n'.join(out))
