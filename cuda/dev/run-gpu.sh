#!/usr/bin/env bash
# run-gpu.sh — the GPU machine's batch for the CUDA backend, in stages (each logged under $OUT, a summary last).
#   bash .gpu/on-device 'bash cuda/dev/run-gpu.sh build lab ref test'       (correctness, ~6 min)
#   bash .gpu/on-device 'bash cuda/dev/run-gpu.sh build calib bench'        (ceilings + quick bench, ~5 min)
#   bash .gpu/on-device 'bash cuda/dev/run-gpu.sh peers'                    (HF eager + torch.compile, ~8 min)
# Stages: build (libqwen_cuda.so, libqwen_cpu.so, the lab) · lab (kernel lab --quick; LAB_MODE=all for the full
# run) · sanitize (compute-sanitizer memcheck/racecheck/synccheck on the lab's small cases) · ref (random-init HF checkpoints + fp32 references, notebooks/peers/make_ref.py) · test (bun test
# test/gpu) · calib (notebooks/calibrate.ts -> profiles/ceilings/) · bench (notebooks/bench.ts on random HF
# checkpoints made on the GPU; BENCH_MODELS default 0.5b, BENCH_ARGS default --quick, e.g.
# BENCH_MODELS=7b BENCH_ARGS='--types bf16 --batches 1,8,16 --pp 512,4096') · peers (notebooks/peers/*.py;
# PEER_MODELS, default 0.5b,1.5b,7b).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
OUT=${OUT:-/tmp/qw-out}
mkdir -p "$OUT"
export PATH=/usr/local/cuda/bin:$PATH
lt=$(bash cuda/dev/find-cublaslt.sh || true)
if [[ -n "$lt" ]]; then export QW_CUBLASLT="$lt"; export LD_LIBRARY_PATH="$(dirname "$lt"):${LD_LIBRARY_PATH:-}"; fi
export QW_GPU_REF="$OUT/qw-ref"
# libcudart.so.13 for libqwen_cuda.so (linked shared by cuda/Makefile)
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}"
summary=()
stage() { local name=$1 limit=$2; shift 2; local t0=$(date +%s); timeout "$limit" bash -c "$*" > "$OUT/$name.log" 2>&1; local rc=$?;
  summary+=("$(printf '%-6s rc=%-3s %4ss  %s' "$name" "$rc" "$(( $(date +%s) - t0 ))" "$OUT/$name.log")"); return $rc; }
stages=("$@"); [[ ${#stages[@]} -eq 0 ]] && stages=(build lab ref test)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader 2>/dev/null | tee "$OUT/gpu.txt"
echo "cuBLASLt: ${lt:-not found}"
for s in "${stages[@]}"; do
  case $s in
    build) stage build 400 "make -C cuda -j16 cuda cpu & make -C cuda/dev -j16 & wait; test -f cuda/build/libqwen_cuda.so && test -x cuda/build/dev/qwlab"
           cp cuda/build/dev/*.ptxas.txt "$OUT/" 2>/dev/null; tail -5 "$OUT/build.log" ;;
    lab)   stage lab 400 "./cuda/build/dev/qwlab ${LAB_MODE:-all} $([[ ${LAB_MODE:-quick} == all ]] || echo --quick) --json $OUT/lab.json"
           grep -E "FAIL|FATAL|^qwlab" "$OUT/lab.log" | head -30; sed -n '/^| case/,$p' "$OUT/lab.log" ;;
    sanitize) stage sanitize 500 "for t in memcheck racecheck synccheck; do echo \"== \$t\"; compute-sanitizer --tool \$t --error-exitcode 3 ./cuda/build/dev/qwlab sanitize 2>&1 | grep -E 'ERROR SUMMARY|========= [A-Z]|FAIL|qwlab:' | head -20; done"
           cat "$OUT/sanitize.log" | tail -30 ;;
    ref)   stage ref 400 "python3 notebooks/peers/make_ref.py --models 0.5b,1.5b --out $OUT/qw-ref"; cat "$OUT/ref.log" | tail -4 ;;
    test)  QW_LAB_LOG="$OUT/lab.log" stage test 500 "QW_LAB_LOG=$OUT/lab.log bun test test/gpu"
           grep -E "^\[|pass|fail|skip|error" "$OUT/test.log" | tail -40 ;;
    calib) stage calib 120 "bun notebooks/calibrate.ts --out $OUT/ceilings && mkdir -p profiles/ceilings && cp $OUT/ceilings/*.json profiles/ceilings/"; tail -4 "$OUT/calib.log" ;;
    bench) stage bench 550 "python3 notebooks/peers/make_ref.py --no-ref --models ${BENCH_MODELS:-0.5b} --out $OUT/qw-hf && bun notebooks/bench.ts --models ${BENCH_MODELS:-0.5b} --hf-root $OUT/qw-hf ${BENCH_ARGS:---quick} --out $OUT/bench"
           tail -45 "$OUT/bench.log" ;;
    peers) stage peers 580 "python3 notebooks/peers/gpt_fast.py --models ${PEER_MODELS:-0.5b,1.5b,7b} --out $OUT/peers.jsonl; python3 notebooks/peers/hf_eager.py --models ${PEER_MODELS:-0.5b,1.5b,7b} --out $OUT/peers.jsonl"
           cat "$OUT/peers.jsonl" 2>/dev/null ;;
    *) echo "unknown stage $s"; exit 2 ;;
  esac
done
echo; echo "== run-gpu summary (outputs under $OUT)"; printf '%s\n' "${summary[@]}"
