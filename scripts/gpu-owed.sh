#!/usr/bin/env bash
# gpu-owed.sh — the measurements still owed after the fifth H100 run, in one device call, most important first, each
# cut so that the call ends inside DEADLINE (on the GPU machine, from the repo root, after `bash scripts/gpu-pack.sh &&
# GPU_MODELS=tiny-qwen2-brown,tiny-qwen2-brown-draft,tiny-qwen2-brown-eagle bash scripts/gpu-strip.sh strip` here;
# carry [".gpu"]):
#   bash .gpu/on-device 'DEADLINE=560 bash scripts/gpu-owed.sh'
# 1. libraries only (the lab is not needed here), the 7B checkpoint beside the build;
# 2. deferred logits, a default-path change compile-checked only: test/gpu/logits.test.ts, then the tests that read
#    logits (speculative, cpu-vs-cuda, kvcache);
# 3. the 7B verify cost with the per-op breakdown, default (tree steps split over their keys, attention_split.cu)
#    and QW_TREE_SPLIT=0 (issue 13: 16 tree tokens <= 1.25x a decode step);
# 4. 7B decode at depth 32k, batch 8, q8 vs bf16 KV (issue 11: q8 >= 1.3x);
# 5. the decode split rule QW_ATTN_SPLIT=kv against today's (qwlab attn, so the lab is built here);
# 6. 7B q8 weights, gemv simple vs marlin (issue 10; ~135 s each, most of it requantizing at load);
# 7. issue 12: the 7B counters target and the 0.5B fusion ablation;
# 8. issue 14: DCA on vs off on 7B shapes at 8k / 32k (notebooks/dca-bench.ts).
# $OUT: owed.log (the summary, also printed) and owed.tgz (one log per step, vc-*/ with the verify-cost md + json).
set -u
source scripts/gpu-env.sh  # OUT, D, CUDA / cuBLASLt paths, the models unpacked
t0=$(date +%s); S=$OUT/owed.log; R=/tmp/qw-ref
left() { echo $(( D - ($(date +%s) - t0) )); }
# ONLY="verify depth split q8 counters ablate dca" (prefixes of step names; build and the tests always run): a second call on a warm
# machine runs what the first left
step() { # step LIMIT NAME CMD...: runs CMD (output in $OUT/NAME.log) unless fewer than LIMIT/2 seconds are left
  local lim=$1 name=$2; shift 2; local l; l=$(left)
  if [[ -n ${ONLY:-} && $name != build && $name != test-* ]]; then
    local o hit=0; for o in $ONLY; do [[ $name == "$o"* ]] && hit=1; done; (( hit )) || return 1; fi
  (( l < lim / 2 )) && { echo "SKIP $name (deadline)" >> "$S"; return 1; }
  (( lim > l )) && lim=$l
  local s; s=$(date +%s); timeout "$lim" bash -c "$*" > "$OUT/$name.log" 2>&1; local rc=$?
  printf '%-30s rc=%-3s %4ss\n' "$name" "$rc" $(( $(date +%s) - s )) >> "$S"; return $rc; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader >> "$S" 2>&1
( python3 notebooks/peers/make_ref.py --no-ref --models 0.5b,7b --out $R > /tmp/ref.log 2>&1 ) &
ref=$!
step 200 build "make -C cuda -j16 cuda cpu GENCODE=-gencode=arch=compute_90a,code=sm_90a" \
  || { grep -m10 " error" "$OUT/build.log" >> "$S"; cat "$S"; exit 1; }
for f in logits speculative cpu-vs-cuda kvcache; do
  step 90 "test-$f" "bun test --timeout 300000 test/gpu/$f.test.ts"
  grep -hE "^\(fail\)|near-tie|^ *[0-9]+ (pass|fail)" "$OUT/test-$f.log" | sed "s/^/  $f: /" >> "$S"; done
wait $ref; tail -1 /tmp/ref.log >> "$S"
vc() { echo "bun notebooks/verify-cost.ts --backend cuda --hf-root $R --models 7b --context 1024 --reps 5 --breakdown --out $OUT/$1"; }
step 120 verify-cost "$(vc vc-default)"
step 120 verify-cost-nosplit "QW_TREE_SPLIT=0 $(vc vc-nosplit)"
for kv in q8 bf16; do
  step 110 "depth32k-b8-$kv" "bun engine/cli/main.ts bench $R/7b --backend cuda -d 32768 --pp 0 --tg 64 --batch 8 --reps 3 --toggle kvCache=$kv"; done
# the decode split rule (QW_ATTN_SPLIT=kv: splits per kv head, >= 512 keys each) against today's, lab rows 1k-32k
if step 150 split-lab-build "make -C cuda/dev -j16 GENCODE=-gencode=arch=compute_90a,code=sm_90a"; then
  for a in head kv; do step 90 "split-lab-$a" "QW_ATTN_SPLIT=$a ./cuda/build/dev/qwlab attn"
    grep -E "attn decode splitkv +B1 " "$OUT/split-lab-$a.log" | grep -v "^|" | sed "s/^/  split $a: /" >> "$S"; done; fi
for g in simple marlin; do
  step 150 "q8-$g" "bun engine/cli/main.ts bench $R/7b --backend cuda --weights q8 --toggle gemv=$g --pp 512 --tg 128 --batch 1,16 --reps 3"; done
# issue 12: the 7B decode step's measured DRAM bytes against weights + KV (profiling = counters), and the fusion
# ablation on 0.5B (every ffn x norm x graphs arm, 3 repeats)
step 150 counters-7b "QW_COUNTERS_7B=1 QW_GPU_REF=$R bun test --timeout 900000 test/gpu/counters.test.ts"
grep -hE "7B|^\(fail\)|^ *[0-9]+ (pass|fail)" "$OUT/counters-7b.log" 2>/dev/null | head -6 | sed "s/^/  counters: /" >> "$S"
step 240 ablate-0.5b "bun notebooks/ablate.ts --model $R/0.5b --backend cuda --toggle ffn=* --toggle norm=* --toggle graphs=* --cartesian --repeats 3 --max-tokens 64 --out $OUT/ablate-0.5b"
# issue 14: DCA's cost on 7B shapes at 8k and 32k (chunk 8192, local 1024: all three parts active), dca off vs on
step 300 dca-7b "bun notebooks/dca-bench.ts $R/7b --backend cuda --lengths 8192,32768 --tg 16 --reps 3 --chunk 8192 --local 1024 --out $OUT/dca-7b"
grep -E "^\| [0-9]" "$OUT/dca-7b.log" 2>/dev/null | sed "s/^/  dca: /" >> "$S"
{ echo "===== $(( $(date +%s) - t0 )) s"
  for v in vc-default vc-nosplit; do [[ -f $OUT/$v/verify-cost.md ]] && { echo "## $v"; grep -E "^\||^decode step" "$OUT/$v/verify-cost.md"; }; done
  grep -hE "^\| 7b" "$OUT"/depth32k-*.log "$OUT"/q8-*.log 2>/dev/null; } >> "$S"
cat "$S"
# few files come back from a call (about 8): everything but the summary travels as one archive
(cd "$OUT" && tar czf /tmp/owed.tgz --exclude ./owed.log . && find . -mindepth 1 ! -name owed.log -delete && mv /tmp/owed.tgz .)
