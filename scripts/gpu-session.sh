#!/usr/bin/env bash
# gpu-session.sh — one device call within a small budget: the named stages in order, each with its own time
# limit, skipped once the deadline (seconds since start) is near.
#
#   bash scripts/gpu-session.sh DEADLINE_S STAGE [STAGE ...]      (from the repo root on the GPU machine)
#
# Stages:
#   build        libqwen_cuda.so + libqwen_cpu.so + the kernel lab, sm_90a only (incremental on a warm machine)
#   lab          qwlab all --quick: every kernel against a CPU reference, batch invariance, decode-step chain
#   ref          random-init HF checkpoints + fp32 references for 0.5b and 1.5b (notebooks/peers/make_ref.py)
#   test         bun test test/gpu (needs ref for the HF parity tests)
#   bench:M[:T]  notebooks/bench.ts on model M (0.5b | 1.5b | 7b): bf16 (HF checkpoint), q8_0, q4_k_m (our GGUF
#                writer); decode batch 1, 8, 16 (tg128); prefill 512, 4096, 32768; 3 reps
#   peers:M      HF transformers eager generate + gpt-fast-style torch.compile decode on shape M (batch 1, tg128
#                after an 8-token prompt: the same decode case as bench.ts)
# Env: BENCH_TYPES (default bf16,q8_0,q4_k_m), BENCH_BATCHES (1,8,16), BENCH_PP (512,4096,32768), BENCH_REPS (3),
#      LAB_WHAT (qwlab sections, default all), TEST_FILES (default test/gpu).
#
# $OUT gets at most 8 files (the device tool returns no more): session.log (summary, build, ref) · lab.log ·
# test.log · bench.log · peers.jsonl · bench.tgz (profile JSONs + bench.md/csv/jsonl of every bench stage).
set -uo pipefail
deadline=${1:?usage: gpu-session.sh DEADLINE_S STAGE...}; shift
OUT=${OUT:-/tmp/qw-out}; mkdir -p "$OUT"
export PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1
lt=$(bash cuda/dev/find-cublaslt.sh || true)
[[ -n "$lt" ]] && export QW_CUBLASLT="$lt" LD_LIBRARY_PATH="$(dirname "$lt"):${LD_LIBRARY_PATH:-}"
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}"
REF=/tmp/qw-ref                      # random-init HF checkpoints (+ fp32 references): test and bench share them
export QW_GPU_REF=$REF
BENCH=/tmp/qw-bench; mkdir -p "$BENCH"
SES=$OUT/session.log; touch "$SES"
t0=$(date +%s); summary=()
# stage NAME LIMIT_S LOGFILE CMD: appends CMD's output to LOGFILE under a header; skipped near the deadline
stage() { local name=$1 limit=$2 log=$3; shift 3; local el=$(( $(date +%s) - t0 ));
  if (( el + 20 > deadline )); then summary+=("$(printf '%-12s skipped (deadline, %ss elapsed)' "$name" "$el")"); return 1; fi
  (( limit > deadline - el )) && limit=$(( deadline - el ))
  echo "===== $name (limit ${limit}s, at ${el}s)" >> "$log"
  local s=$(date +%s); timeout "$limit" bash -c "$*" >> "$log" 2>&1; local rc=$?
  summary+=("$(printf '%-12s rc=%-3s %4ss (limit %s)' "$name" "$rc" "$(( $(date +%s) - s ))" "$limit")"); return $rc; }
finish() {
  (cd "$BENCH" && find . -name '*.json' -o -name 'bench.*' | tar czf "$OUT/bench.tgz" -T - 2>/dev/null)
  { echo "===== summary ($(( $(date +%s) - t0 ))s)"; printf '%s\n' "${summary[@]}"; } | tee -a "$SES"
  grep -hE "^\| (qwen|ours|engine|torch|transformers)|fast step" "$OUT/bench.log" 2>/dev/null | tail -40
  ls -la "$OUT"; }
trap finish EXIT
{ echo "cuBLASLt: ${lt:-none}"; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader 2>&1; nproc; df -h /tmp | tail -1; } | tee -a "$SES"

types=${BENCH_TYPES:-bf16,q8_0,q4_k_m}; batches=${BENCH_BATCHES:-1,8,16}; pps=${BENCH_PP:-512,4096,32768}; reps=${BENCH_REPS:-3}
for st in "$@"; do
  case $st in
    build)
      stage build 200 "$SES" "make -C cuda -j16 cuda cpu GENCODE=-gencode=arch=compute_90a,code=sm_90a >/tmp/qw-build.log 2>&1 & make -C cuda/dev -j16 GENCODE=-gencode=arch=compute_90a,code=sm_90a >/tmp/qw-build-dev.log 2>&1 & wait; tail -n 2 /tmp/qw-build.log /tmp/qw-build-dev.log; grep -h -B2 -A3 ' error' /tmp/qw-build*.log | head -30; test -f cuda/build/libqwen_cuda.so && test -x cuda/build/dev/qwlab" || break ;;
    lab)
      stage lab 90 "$OUT/lab.log" "for w in ${LAB_WHAT:-all}; do ./cuda/build/dev/qwlab \$w --quick --json /tmp/qw-lab-\$w.json || exit 1; done"
      grep -E "FAIL|FATAL|^qwlab|invariance|decode step" "$OUT/lab.log" | head -40 ;;
    ref)
      stage ref 150 "$SES" "python3 notebooks/peers/make_ref.py --models 0.5b,1.5b --out $REF" ;;
    test)
      stage test 150 "$OUT/test.log" "QW_LAB_LOG=$OUT/lab.log bun test --timeout 300000 ${TEST_FILES:-test/gpu}"
      grep -E "^\(fail\)|^\[hf|^\[cuda| pass$| fail$| skip$" "$OUT/test.log" | tail -30 ;;
    bench:*)  # bench:M or bench:M:TYPES (TYPES comma-separated, default $BENCH_TYPES)
      spec=${st#bench:}; m=${spec%%:*}; ty=$types; [[ $spec == *:* ]] && ty=${spec#*:}
      stage "bench $m $ty" 330 "$OUT/bench.log" "python3 notebooks/peers/make_ref.py --no-ref --models $m --out $REF && bun notebooks/bench.ts --models $m --hf-root $REF --types $ty --batches $batches --pp $pps --tg 128 --reps $reps --out $BENCH/$m-${ty//,/-}"
      grep -E "^\| (qwen|ours|engine)" "$OUT/bench.log" | tail -30 ;;
    peers:*)
      m=${st#peers:}
      stage "hf $m" 120 "$SES" "python3 notebooks/peers/hf_eager.py --models $m --reps 3 --prompt 8 --gen 128 --out $OUT/peers.jsonl"
      stage "compile $m" 200 "$SES" "python3 notebooks/peers/gpt_fast.py --models $m --batches 1 --reps 3 --prompt 8 --gen 128 --out $OUT/peers.jsonl"
      tail -4 "$OUT/peers.jsonl" ;;
    *) echo "unknown stage $st" | tee -a "$SES" ;;
  esac
done
