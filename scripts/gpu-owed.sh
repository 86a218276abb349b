#!/usr/bin/env bash
# gpu-owed.sh — the measurements still owed after the eighth run (2026-12-06, H100), most important first, each cut so
# that the call ends inside DEADLINE (on the GPU machine, from the repo root; carry [".gpu"]). The four tiny models do
# not fit the 64 MiB tree together: the strip default packs brown + passkey (TESTS="dca" needs passkey).
#   first call: bash scripts/gpu-pack.sh && bash scripts/gpu-strip.sh strip; bash .gpu/on-device 'DEADLINE=540
#     bash scripts/gpu-owed.sh' (the tile DCA decode kernel: lab rows, passkey test, 7B at 32k; 7B fidelity; depth)
#   then, warm (the build stays): ONLY="ablate-7b".
# Steps (ONLY= prefixes of step names, or NAME= for that step alone; build and the TESTS always run):
# 1. build (libraries and the lab); the 7B checkpoint beside it;
# 2. TESTS (default: dca cpu-vs-cuda decode-steps kvcache: the DCA decode kernel and its windows are new);
# 3. lab-prefill: qwlab prefill (its DCA decode rows: the tile kernel in windows and whole vs the SIMT kernel);
# 4. dca-7b: DCA on vs off on 7B shapes (DCA_LENGTHS, default 32768; issue 14: <= 1.3x dense; decode was 2.95x with
#    the first warp kernel, 674 us a layer at 32k);
# 5. fidelity-7b: kernels / events mode overhead and the sum check on 7B at 1 and 8 steps per call (issue 16; 0.5B:
#    +0.35 % at 8);
# 6. depth32k-b8: 7B batch 8 at depth 32k, q8 vs bf16 KV (issue 11: q8 >= 1.3x; the bench now fills the depth once
#    per case and truncates back for each rep: the q8 fill is ~100 s);
# 7. ablate-7b: issue 12's fusion ablation on 7B (ffn x norm x graphs, 3 repeats, 8 steps per call, profiled and not).
# $OUT: owed.log (the summary, also printed) and owed.tgz (one log per step, and the notebooks' md / json).
set -u
source scripts/gpu-env.sh  # OUT, D, CUDA / cuBLASLt paths, the models unpacked
t0=$(date +%s); S=$OUT/owed.log; R=/tmp/qw-ref
left() { echo $(( D - ($(date +%s) - t0) )); }
# ONLY="lab dca- fidelity depth ablate" (prefixes of step names; build and the TESTS always run): a second call on
# a warm machine runs what the first left
step() { # step LIMIT NAME CMD...: runs CMD (output in $OUT/NAME.log) unless fewer than LIMIT/2 seconds are left
  local lim=$1 name=$2; shift 2; local l; l=$(left)
  if [[ -n ${ONLY:-} && $name != build && $name != test-* ]]; then
    local o hit=0; for o in $ONLY; do
      if [[ $o == *= ]]; then [[ $name == "${o%=}" ]] && hit=1; else [[ $name == "$o"* ]] && hit=1; fi; done
    (( hit )) || return 1; fi
  (( l < lim / 2 )) && { echo "SKIP $name (deadline)" >> "$S"; return 1; }
  (( lim > l )) && lim=$l
  local s; s=$(date +%s); timeout "$lim" bash -c "$*" > "$OUT/$name.log" 2>&1; local rc=$?
  printf '%-30s rc=%-3s %4ss\n' "$name" "$rc" $(( $(date +%s) - s )) >> "$S"; return $rc; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader >> "$S" 2>&1
( python3 notebooks/peers/make_ref.py --no-ref --models 0.5b,7b --out $R > /tmp/ref.log 2>&1 ) &
ref=$!
# LAB=0: the libraries only (about 65 s less; no lab-prefill step), for a late call with little time left
lab_build=""; [[ ${LAB:-1} == 0 ]] || lab_build=" && make -C cuda/dev -j16 GENCODE=-gencode=arch=compute_90a,code=sm_90a"
step 200 build "make -C cuda -j16 cuda cpu GENCODE=-gencode=arch=compute_90a,code=sm_90a$lab_build" \
  || { grep -m10 " error" "$OUT/build.log" >> "$S"; cat "$S"; exit 1; }
for f in ${TESTS-dca cpu-vs-cuda decode-steps kvcache}; do
  step 120 "test-$f" "bun test --timeout 300000 test/gpu/$f.test.ts"
  grep -hE "^\(fail\)|near-tie|passkey [0-9]|^ *[0-9]+ (pass|fail)" "$OUT/test-$f.log" | sed "s/^/  $f: /" >> "$S"; done
[[ ${LAB:-1} == 0 ]] || step 150 lab-prefill "./cuda/build/dev/qwlab prefill"
grep -E "dca decode" "$OUT/lab-prefill.log" 2>/dev/null | grep -v "^|" | sed "s/^/  lab: /" >> "$S"
wait $ref; tail -1 /tmp/ref.log >> "$S"
# issue 14: DCA's cost on 7B shapes (chunk 8192, local 1024: all three parts active), dca off vs on
step 240 dca-7b "bun notebooks/dca-bench.ts $R/7b --backend cuda --lengths ${DCA_LENGTHS:-32768} --tg 16 --reps 3 --chunk 8192 --local 1024 --out $OUT/dca-7b"
grep -E "^\| [0-9]|^length" "$OUT/dca-7b.log" 2>/dev/null | sed "s/^/  dca: /" >> "$S"
# issue 16: profiling's cost on 7B, 1 and 8 steps per call
step 150 fidelity-7b "bun notebooks/fidelity.ts --model $R/7b --backend cuda --steps-per-sync 1,8 --rounds 5 --out $OUT/fidelity-7b"
grep -E "^\|" "$OUT/fidelity-7b/fidelity.md" 2>/dev/null | sed "s/^/  fidelity: /" >> "$S"
for kv in bf16 q8; do
  step 240 "depth32k-b8-$kv" "bun engine/cli/main.ts bench $R/7b --backend cuda -d 32768 --pp 0 --tg 64 --batch 8 --reps 3 --toggle kvCache=$kv"; done
# issue 12: the fusion ablation on 7B (the 0.5B one ran in the eighth run's first call)
step 400 ablate-7b "bun notebooks/ablate.ts --model $R/7b --backend cuda --toggle ffn=* --toggle norm=* --toggle graphs=* --cartesian --repeats 3 --max-tokens 64 --steps-per-sync 8 --profiling on,off --out $OUT/ablate-7b; rm -f $OUT/ablate-7b/*-*.json $OUT/ablate-7b/baseline*.json"
{ echo "===== $(( $(date +%s) - t0 )) s"
  grep -hE "^\| " "$OUT"/depth32k-*.log 2>/dev/null | grep -vE "^\| model|^\|---"; } >> "$S"
cat "$S"
# few files come back from a call (about 8): everything but the summary travels as one archive
(cd "$OUT" && tar czf /tmp/owed.tgz --exclude ./owed.log . && find . -mindepth 1 ! -name owed.log -delete && mv /tmp/owed.tgz .)
