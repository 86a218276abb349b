#!/usr/bin/env bash
# run-lab.sh — ONE command for the GPU machine: builds the kernel lab, checks every kernel against its CPU
# reference (fresh random inputs, poisoned outputs) and times it. Writes $OUT/lab/{build.log,lab.log,lab.json}
# and prints the table last.   Usage (from the repo root):  bash cuda/dev/run-lab.sh [all|gemv|attn|prefill|fa3|fa3-small|gemm|misc|calib] [--quick]
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
out=${OUT:-/tmp/qw-out}/lab
mkdir -p "$out"
export PATH=/usr/local/cuda/bin:$PATH
lt=$(bash cuda/dev/find-cublaslt.sh || true)
if [[ -n "$lt" ]]; then export QW_CUBLASLT="$lt"; export LD_LIBRARY_PATH="$(dirname "$lt"):${LD_LIBRARY_PATH:-}"; fi
echo "cuBLASLt: ${lt:-not found (own mma GEMM only)}"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader || true
t0=$(date +%s)
if ! make -C cuda/dev -j"$(nproc)" > "$out/build.log" 2>&1; then tail -40 "$out/build.log"; echo "BUILD FAILED"; exit 1; fi
echo "lab built in $(( $(date +%s) - t0 )) s"
cp cuda/build/dev/*.ptxas.txt "$out/" 2>/dev/null || true
./cuda/build/dev/qwlab "${@:-all}" --json "$out/lab.json" > "$out/lab.log" 2>&1
rc=$?
grep -E "^qwlab|FAIL|FATAL|CALIB" "$out/lab.log" | head -40
sed -n '/^| case/,$p' "$out/lab.log"
exit $rc
