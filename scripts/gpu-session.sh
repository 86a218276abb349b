#!/usr/bin/env bash
# gpu-session.sh — one device call within a small budget: stages in order of value, each with its own time
# limit, skipped once the deadline (seconds since start, $1, default 420) is near.
# $OUT gets at most 8 files (the device tool returns no more):
#   session.log (summary, build tail, ref, tokgold, peers) · lab.log · test.log · bench.log (every bench stage)
#   golden-ids.json · bench/bench-{0.5b,1.5b,7b}-bf16-*.json (profile JSONs; bench.md/csv stay in /tmp)
# Usage (from the repo root on the device):  bash scripts/gpu-session.sh [deadline_s]
set -uo pipefail
deadline=${1:-420}
OUT=${OUT:-/tmp/qw-out}; mkdir -p "$OUT/bench"
export PATH=/usr/local/cuda/bin:$PATH
lt=$(bash cuda/dev/find-cublaslt.sh || true)
[[ -n "$lt" ]] && export QW_CUBLASLT="$lt" LD_LIBRARY_PATH="$(dirname "$lt"):${LD_LIBRARY_PATH:-}"
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}"
REF=/tmp/qw-ref                      # random-init HF checkpoints (+ fp32 reference for 0.5b): test and bench share it
export QW_GPU_REF=$REF
SES=$OUT/session.log; : > "$SES"
t0=$(date +%s); summary=()
# stage NAME LIMIT_S LOGFILE CMD: appends CMD's output to LOGFILE under a header; skipped near the deadline
stage() { local name=$1 limit=$2 log=$3; shift 3; local el=$(( $(date +%s) - t0 ));
  if (( el + 15 > deadline )); then summary+=("$(printf '%-10s skipped (deadline, %ss elapsed)' "$name" "$el")"); return 1; fi
  (( limit > deadline - el )) && limit=$(( deadline - el ))
  echo "===== $name (limit ${limit}s, at ${el}s)" >> "$log"
  local s=$(date +%s); timeout "$limit" bash -c "$*" >> "$log" 2>&1; local rc=$?
  summary+=("$(printf '%-10s rc=%-3s %4ss (limit %s)' "$name" "$rc" "$(( $(date +%s) - s ))" "$limit")"); return $rc; }
finish() { { echo "===== summary"; printf '%s\n' "${summary[@]}"; } | tee -a "$SES"; ls -la "$OUT" "$OUT/bench"; }
trap finish EXIT
{ echo "cuBLASLt: ${lt:-none}"; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader 2>&1; } | tee -a "$SES"

# 1. build (sm_90a only), 2. kernel lab --quick (every kernel vs CPU reference + decode-step chain tok/s)
stage build 180 "$SES" "make -C cuda -j16 cuda cpu GENCODE=-gencode=arch=compute_90a,code=sm_90a & make -C cuda/dev -j16 GENCODE=-gencode=arch=compute_90a,code=sm_90a & wait; test -f cuda/build/libqwen_cuda.so && test -x cuda/build/dev/qwlab"
tail -3 "$SES"
stage lab 75 "$OUT/lab.log" "./cuda/build/dev/qwlab all --quick --json /tmp/qw-lab.json"
grep -E "FAIL|FATAL|^qwlab|decode step|attn decode" "$OUT/lab.log" | head -40
# 3. HF random checkpoint + fp32 reference for 0.5b, 4. test/gpu (lab log, CPU vs CUDA, HF parity 0.5b)
stage ref05 100 "$SES" "python3 notebooks/peers/make_ref.py --models 0.5b --out $REF"
stage test 150 "$OUT/test.log" "QW_LAB_LOG=$OUT/lab.log QW_GPU_REF=$REF bun test test/gpu"
grep -E "^\(fail\)|^\[| pass$| fail$| skip$" "$OUT/test.log" | tail -25
# 5. bench 0.5b (batch 1 and 8) and 1.5b (batch 1), bf16, pp512, tg128, 3 reps
stage bench05 90 "$OUT/bench.log" "python3 notebooks/peers/make_ref.py --no-ref --models 0.5b --out $REF && bun notebooks/bench.ts --models 0.5b --hf-root $REF --types bf16 --batches 1,8 --pp 512 --tg 128 --reps 3 --out /tmp/qw-bench/05 && cp /tmp/qw-bench/05/bench-*.json $OUT/bench/"
stage bench15 120 "$OUT/bench.log" "python3 notebooks/peers/make_ref.py --no-ref --models 1.5b --out $REF && bun notebooks/bench.ts --models 1.5b --hf-root $REF --types bf16 --batches 1 --pp 512 --tg 128 --reps 3 --out /tmp/qw-bench/15 && cp /tmp/qw-bench/15/bench-*.json $OUT/bench/"
grep -E "^\| qwen|fast step" "$OUT/bench.log"
# 6. tokenizer golden ids (cheap), 7. 7B bench (random checkpoint made on the GPU: ~15 GB written to /tmp)
# (tokenizer golden ids were produced in the first run and are committed)
stage bench7b 170 "$OUT/bench.log" "python3 notebooks/peers/make_ref.py --no-ref --models 7b --out $REF && bun notebooks/bench.ts --models 7b --hf-root $REF --types bf16 --batches 1 --pp 512 --tg 128 --reps 3 --out /tmp/qw-bench/7b && cp /tmp/qw-bench/7b/bench-*.json $OUT/bench/"
grep -E "^\| qwen.*7b|7b.*fast step" "$OUT/bench.log"
# 8. peer: torch.compile (gpt-fast style) 0.5b, whatever time is left
stage peers 200 "$SES" "python3 notebooks/peers/gpt_fast.py --models 0.5b --batches 1 --reps 3 --out /tmp/qw-peers.jsonl; cat /tmp/qw-peers.jsonl"
tail -4 "$SES"
