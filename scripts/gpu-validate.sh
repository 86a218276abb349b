#!/usr/bin/env bash
# gpu-validate.sh — one device call that validates everything (on the GPU machine, from the repo root, after
# `bash scripts/gpu-pack.sh && bash scripts/gpu-strip.sh strip` here; carry [".gpu"]):
#   bash .gpu/on-device 'DEADLINE=560 bash scripts/gpu-validate.sh'
# build; then every qwlab section and every test/gpu file, each in its own process (a CUDA fault in one must not hide
# the rest), lab and tests side by side (their timings are not results); then, time permitting, the issue 9 A/B
# (needs `bash scripts/gpu-ab.sh pack REV` here), CUPTI buffer variants (issue 16) and 7B Marlin benches (issue 10).
# Every step is cut at DEADLINE seconds. $OUT: session.log (summary first), lab.log, test.log, ab.log, bench.log, *.tgz.
set -u
source scripts/gpu-env.sh  # OUT, D, CUDA / cuBLASLt paths, the models unpacked
export QW_GPU_REF=/tmp/qw-ref
t0=$(date +%s); S=$OUT/session.log
left() { echo $(( D - ($(date +%s) - t0) )); }
run() { # run LIMIT LOG NAME CMD...
  local lim=$1 log=$2 name=$3; shift 3; local l=$(left); (( l < 10 )) && { echo "SKIP $name (deadline)" | tee -a "$log" >> "$S"; return; }
  (( lim > l )) && lim=$l; echo "===== $name (limit $lim, at $(( $(date +%s) - t0 ))s)" >> "$log"
  local s=$(date +%s); timeout "$lim" bash -c "$*" >> "$log" 2>&1; local rc=$?
  echo "$(printf '%-28s rc=%-3s %4ss' "$name" $rc $(( $(date +%s) - s )))" >> "$S"; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader >> "$S" 2>&1
echo "cublasLt: ${lt:-none}" >> "$S"
# the 7B checkpoint (random bf16, no reference logits) is what the 7B benches below read: `bench synthetic:7b` would first
# write 15 GB of GGUF in TypeScript (> 75 s, the 2026-12-05 run lost 300 s to it)
(( EXTRA )) && ( run 240 /tmp/ref.log ref "python3 notebooks/peers/make_ref.py --models 0.5b,1.5b --out /tmp/qw-ref && python3 notebooks/peers/make_ref.py --no-ref --models 7b --out /tmp/qw-ref" ) &
(( EXTRA )) && [[ -f .gpu/ab-old.tar.xz ]] && ( run 300 /tmp/ab-prep.log ab-prepare "AB_PREPARE_ONLY=1 OUT=/tmp/abp bash scripts/gpu-ab.sh run 7b 1 && tail -3 /tmp/abp/ab.log" ) &
run 260 "$S" build "make -C cuda -j16 cuda cpu GENCODE=-gencode=arch=compute_90a,code=sm_90a >/tmp/b1.log 2>&1 & make -C cuda/dev -j16 all kvqlab GENCODE=-gencode=arch=compute_90a,code=sm_90a >/tmp/b2.log 2>&1 & wait; tail -n 3 /tmp/b1.log /tmp/b2.log; grep -h -B2 -A6 ' error' /tmp/b1.log /tmp/b2.log | head -60"
L=$OUT/lab.log; T=$OUT/test.log
# LABS / TESTS choose the sections and test files (a second call on a warm machine re-runs only what is left); EXTRA=0
# skips the extras (the A/B, CUPTI variants and 7B benches) and the reference models.
LABS=${LABS:-misc gemv fusion attn chain persistent fa3 prefill sparse bsparse sage gemm marlin tile counters mma sanitize}
TESTS=${TESTS:-cpu-vs-cuda weights fusion persistent fa3 sage kvcache dca sparse speculative tile parallel counters hf-parity}
EXTRA=${EXTRA:-1}
has() { [[ " $1 " == *" $2 "* ]]; }
( for w in $LABS; do [[ $w == mma || $w == sanitize ]] && continue
    run 100 "$L" "lab $w" "./cuda/build/dev/qwlab $w --quick --json /tmp/lab-$w.json"; done
  has "$LABS" mma && run 60 "$L" "lab gemv QW_GEMV_MMA=1" "QW_GEMV_MMA=1 ./cuda/build/dev/qwlab gemv --quick"
  has "$LABS" mma && run 90 "$L" kvqlab "./cuda/build/dev/kvqlab --quick"
  has "$LABS" sanitize || exit 0
  run 90 "$L" "memcheck sanitize" "compute-sanitizer --tool memcheck ./cuda/build/dev/qwlab sanitize 2>&1 | tail -25"
  run 60 "$L" "racecheck sanitize" "compute-sanitizer --tool racecheck ./cuda/build/dev/qwlab sanitize 2>&1 | tail -15" ) &
for f in $TESTS; do
  run 150 "$T" "test $f" "bun test --timeout 300000 test/gpu/$f.test.ts"; done
wait
(cd /tmp && tar czf "$OUT/lab.tgz" lab-*.json ref.log b1.log b2.log ab-prep.log 2>/dev/null)
# Timed runs on a quiet GPU (after the lab/test burst, one at a time): FULL = qwlab sections without --quick (fa3 and
# sage reach 16k / 32k there), PEERS=1 = cuDNN / FA2 through PyTorch on the same shapes (notebooks/peers/attn_peers.py),
# SPEC=1 = the speculative notebook on CUDA (needs GPU_MODELS with the draft and the EAGLE head in the pack).
for w in ${FULL:-}; do run 120 "$L" "lab $w (full)" "./cuda/build/dev/qwlab $w --json /tmp/lab-full-$w.json"; done
# FA3_VARIANTS=1: the wgmma flash kernel's lab variants (QW_FA3_VARIANT, docs/GPU-NEXT.md fa3-variants), full lengths
(( ${FA3_VARIANTS:-0} )) && for v in s3 split s3split; do
  run 120 "$L" "lab fa3 (full, $v)" "QW_FA3_VARIANT=$v ./cuda/build/dev/qwlab fa3 --json /tmp/lab-full-fa3-$v.json"; done
(( ${PEERS:-0} )) && run 120 "$L" "attn peers" "python3 notebooks/peers/attn_peers.py --json $OUT/attn-peers.json"
(( ${SPEC:-0} )) && run 200 "$L" "speculative notebook" "bun notebooks/speculative.ts --backend cuda --eagle models/tiny-qwen2-brown-eagle --k 1,2,4,8 --prompts ${SPEC_PROMPTS:-16} --tokens 64 --reps 3 --out $OUT/spec-cuda"
(cd /tmp && tar czf "$OUT/lab-full.tgz" lab-full-*.json 2>/dev/null)
(( EXTRA )) && [[ -f .gpu/ab-old.tar.xz ]] && run 400 "$S" "ab rounds" "bash scripts/gpu-ab.sh run 0.5b,7b 3"
cat "$S" | tail -3
B=$OUT/bench.log; R=/tmp/qw-ref
(( EXTRA )) && i=0 && for a in "QW_CUPTI_ATTR=" "QW_PDL=0" "QW_CUPTI_ATTR=pinned=1" "QW_CUPTI_ATTR=devbuf_mib=64,prealloc=4" "QW_CUPTI_KINDS=kernel,ext,runtime"; do i=$((i+1))
  run 80 "$B" "cupti '$a'" "env $a bun notebooks/bench.ts --models 0.5b --hf-root $R --types bf16 --batches 1 --pp 512 --tg 128 --reps 3 --out /tmp/b16-$i"; done
(( EXTRA )) && for w in q4 q8; do for g in simple marlin; do
  run 75 "$B" "7b $w gemv=$g" "bun engine/cli/main.ts bench $R/7b --backend cuda --weights $w --toggle gemv=$g --pp 512 --tg 128 --batch 1,16 --reps 3 --out /tmp/m-$w-$g.json"; done; done
(cd /tmp && tar czf "$OUT/bench.tgz" b16-* m-*.json 2>/dev/null)
echo "===== summary ($(( $(date +%s) - t0 ))s)" >> "$S"; cat "$S"
grep -E "FAIL|FATAL|failure\(s\)|ERROR SUMMARY|Hazard|error" "$L" | grep -v '^|' | head -40
grep -E "^\(fail\)| pass$| fail$| skip$|error:" "$T" | head -60
grep -E "tokens|^\\| " "$OUT/ab.log" | tail -24; grep -E "^\\| |overhead|fidelity" "$OUT/bench.log" | head -60; ls -la "$OUT"
