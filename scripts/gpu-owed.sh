#!/usr/bin/env bash
# gpu-owed.sh — the measurements owed after the eleventh run (2026-12-06, H100; issue 14's steps done there), most
# important first, each cut so that the call ends inside DEADLINE (on the GPU machine, from the repo root; carry
# [".gpu"]). The four tiny models do not fit the 64 MiB tree together: the strip default packs brown + passkey
# (TESTS="dca" needs passkey).
#   first call (~570 s): bash scripts/gpu-pack.sh && bash scripts/gpu-strip.sh strip; bash .gpu/on-device
#     'DEADLINE=570 TESTS="persistent" ONLY="lab-persistent ncu-persistent lab-sage" bash scripts/gpu-owed.sh'
#     (a cold build took > 260 s in the eleventh run: a warm retry finishes it in ~130 s)
#   then, warm (the build stays): DEADLINE=570 TESTS="cpu-vs-cuda weights" ONLY="lab-sage-poly ncu-sage lab-gemv
#   q4-7b-marlin-rule="; later: lab-bsparse, vs-7b, tile-0.5b / tile-7b (docs/GPU-NEXT.md);
#   short (~450 s, labs only): DEADLINE=450 BUILD=lab TESTS="" ONLY="lab-persistent ncu-persistent lab-sage".
# Steps (ONLY= prefixes of step names, or NAME= for that step alone; build and the TESTS always run):
# 1. build (libraries and the lab); the 7B checkpoint beside it;
# 2. TESTS (default: weights sparse dca cpu-vs-cuda kvcache; sparse checks the device selection of block-sparse
#    against the host's, bit for bit through the engine; cpu-vs-cuda the batch invariance with gemv_q16's word order);
# 3. lab-bsparse: qwlab bsparse (device selection = host selection per case; grouped scores = warp scores, bits;
#    step 1 with both scoring kernels, mma attend and the whole step against dense mma.sync / wgmma at 4k .. 128k);
#    lab-vs: qwlab sparse (vertical-slash: device selection = host selection; SIMT and the new mma attend against
#    fp64, each other, dense bits with every diagonal; timed at 4k / 16k / 32k / 128k);
#    lab-persistent: qwlab persistent --quick (decode = persistent: checks, and its step against the graph path);
#    lab-marlin: qwlab marlin --quick (gemv = marlin: rb 128 / 256 block shapes and exact zero points, compile-checked;
#    check rows per shape, each timed 7B case next to the other shapes); later, q4-7b-marlin-rule / -256: end to end;
# 4. sparse-7b: block-sparse vs dense prefill on random 7B shapes at 32k / 64k / 128k (SPARSE_LENGTHS, SPARSE_BLOCKS),
#    with device memory after load, per session and per first pass (issue 14: >= 3x attention, >= 2x prefill at 128k);
#    vs-7b: vertical-slash vs dense prefill on random 7B shapes at 32k (VS_LENGTHS);
# 5. lab-gemv: qwlab gemv (gemv_q16 against the CPU reference and, timed, against QW_GEMV_Q16=0 on 7B shapes at batch 1
#    and 16: ninth run, rotated word order + U=1 at b >= 8: W4 gate_up b16 still 0.80x; since, K tiles of whole lane
#    rounds, unmeasured);
# 6. lab-prefill: qwlab prefill (wgmma DCA prefill rows; all PASS in the ninth run);
# 7. dca-7b: DCA on vs off on 7B at 8k (ninth run: 1.02x prefill, 1.00x decode);
# 8. q4-7b / q8-7b: 7B requantized at load, tg128 b1 / b16 and pp512, gemv_q16 then QW_GEMV_Q16=0 (ninth run, before
#    the word-order change: q4 b1 271.6 vs 208.8, b16 366.8 vs 546.3; q8 b1 226.2).
# $OUT: owed.log (the summary, also printed) and owed.tgz (one log per step, and the notebooks' md / json).
set -u
source scripts/gpu-env.sh  # OUT, D, CUDA / cuBLASLt paths, the models unpacked
t0=$(date +%s); S=$OUT/owed.log; R=/tmp/qw-ref
left() { echo $(( D - ($(date +%s) - t0) )); }
# ONLY="lab dca- q4 q8" (prefixes of step names; build and the TESTS always run): a second call on
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
ref=""  # the random 0.5B / 7B checkpoints, made beside the build (not for BUILD=lab or NOREF=1: no engine step runs)
if [[ ${BUILD:-all} != lab && ${NOREF:-0} != 1 ]]; then ( python3 notebooks/peers/make_ref.py --no-ref --models 0.5b,7b --out $R > /tmp/ref.log 2>&1 ) & ref=$!; fi
# LAB=0: the libraries only (about 65 s less; no lab-prefill step), for a late call with little time left
# BUILD=lab: the lab alone (about half the build; no library, so TESTS="" and only lab steps), for a short call
# BUILD=carried: no build at all (scripts/gpu-prebuild.sh here first)
lab_build=""; [[ ${LAB:-1} == 0 ]] || lab_build=" && make -C cuda/dev -j16 GENCODE=-gencode=arch=compute_90a,code=sm_90a"
lib_build="make -C cuda -j16 cuda cpu GENCODE=-gencode=arch=compute_90a,code=sm_90a$lab_build"
[[ ${BUILD:-all} == lab ]] && lib_build="make -C cuda/dev -j16 GENCODE=-gencode=arch=compute_90a,code=sm_90a"
# BUILD=carried: the binaries scripts/gpu-prebuild.sh built here travel in .gpu/prebuilt (no device time spent on a
# build); refused unless they were built from these very sources (gpu-src-hash.sh)
if [[ ${BUILD:-all} == carried ]]; then
  make_build=$lib_build
  # each binary that travelled is unpacked; one that did not (scripts/gpu-carry.sh lab | engine: Bun and all three do
  # not fit 64 MiB together) is taken from an earlier call on this warm machine if there is one, else it stays absent
  # and only the steps that need it fail
  lib_build='h=$(bash scripts/gpu-src-hash.sh); [[ $h == "$(cat .gpu/prebuilt/src.hash)" ]] || { echo "prebuilt binaries are of other sources ($(cat .gpu/prebuilt/src.hash), tree $h): run scripts/gpu-prebuild.sh again" >&2; exit 1; }
    mkdir -p cuda/build/dev; have=""
    for f in cuda/build/libqwen_cuda.so cuda/build/libqwen_cpu.so cuda/build/dev/qwlab; do x=.gpu/prebuilt/$(basename $f).xz
      if [[ -f $x ]]; then xz -dc $x > $f && chmod +x $f && echo "$h" > $f.src && have="$have $f"
      elif [[ -f $f && "$(cat $f.src 2>/dev/null)" == "$h" ]]; then have="$have $f"; echo "kept from an earlier call: $f"
      else rm -f $f; echo "not carried: $f (its steps fail)"; fi; done
    echo "prebuilt $h:$have"'
  # binaries of this machine that do not load there (an older glibc / libstdc++): build after all
  lib_build="$lib_build"'; if ldd $have 2>&1 | grep -E "not found|No such file"; then
    echo "prebuilt binaries do not load here: building"; '"$make_build; fi"
fi
step 360 build "$lib_build" \
  || { grep -m10 -E " error|prebuilt" "$OUT/build.log" >> "$S"; cat "$S"; exit 1; }
for f in ${TESTS-weights sparse dca cpu-vs-cuda kvcache}; do
  step 120 "test-$f" "bun test --timeout 300000 test/gpu/$f.test.ts"
  grep -hE "^\(fail\)|near-tie|passkey [0-9]|^ *[0-9]+ (pass|fail)" "$OUT/test-$f.log" | sed "s/^/  $f: /" >> "$S"; done
# issue 10: gemv = marlin's prefill GEMM (marlin_gemm.cu: wgmma over the packed W4 / W8 units dequantized into A
# registers; compile-checked): every check case against the chunked path (dequantize + bf16 GEMM), then 7B shapes at
# M 512 / 2048 timed against it (TFLOP/s; a trap = the mbarrier ring, read marlin_gemm.cu's producer / consumer waits)
# (twelfth run: every check exact, 0.96-1.03x the chunked path at M512, 0.43-0.65x at M2048: one wgmma group in flight
# per warpgroup, 128 tokens per CTA). Since: two A register sets (dequantize u + 1 while u's wgmmas run), setmaxnreg
# 24 / 240, 256 tokens per CTA where >= 2 CTAs per SM (marlin_gemm_tokens); -128 / -256 force the token tile
for tn in "" 128 256; do
  n=lab-marlin-gemm${tn:+-$tn}
  [[ ${LAB:-1} == 0 ]] || step 100 "$n" "${tn:+QW_MARLIN_GEMM_TN=$tn }QW_LAB_MARLIN_GEMM_ONLY=1 ./cuda/build/dev/qwlab marlin --quick"
  grep -E "FAIL|failure|SKIP|^\|.*(marlin gemm 7B|chunked 7B)" "$OUT/$n.log" 2>/dev/null | head -40 | sed "s/^/  $n: /" >> "$S"; done
# what binds the prefill GEMM: Nsight Compute on one 7B gate_up W4 M512 launch (tensor pipe, issue slots, stalls)
[[ ${LAB:-1} == 0 ]] || step 120 ncu-mgemm "QW_LAB_MARLIN_GEMM_ONLY=1 QW_LAB_MARLIN_GEMM_SHAPE='7B gate_up' ncu --print-details all --kernel-name regex:marlin_gemm_kernel --launch-skip 2 --launch-count 1 --section SpeedOfLight --section ComputeWorkloadAnalysis --section SchedulerStats --section WarpStateStats --section Occupancy ./cuda/build/dev/qwlab marlin --quick > $OUT/ncu-mgemm.txt 2>&1"
grep -E "Throughput|Duration|Pipe|Issue Slots|Eligible|Warp Cycles|Registers|Stall|stall" "$OUT/ncu-mgemm.txt" 2>/dev/null | head -40 | sed "s/^/  ncu mgemm: /" >> "$S"
# issue 14: vertical-slash's mma attend (contiguous + gathered key tiles; compile-checked) against SIMT, fp64, dense
[[ ${LAB:-1} == 0 ]] || step 300 lab-vs "./cuda/build/dev/qwlab sparse"
grep -E "FAIL|failure|keys visited|bits|mma vs SIMT|selection = host|step 1|walk" "$OUT/lab-vs.log" 2>/dev/null | sed "s/^/  vs: /" >> "$S"
# issue 14: block-sparse (mma attend, device selection) in the lab at 4k / 16k / 32k / 128k, then end to end on 7B
[[ ${LAB:-1} == 0 ]] || step 150 lab-bsparse "./cuda/build/dev/qwlab bsparse"
grep -E "FAIL|failure|keys visited|selection = host" "$OUT/lab-bsparse.log" 2>/dev/null | grep -v "^|" | sed "s/^/  bsparse: /" >> "$S"
# issue 10: gemv = marlin with the wide block shapes (rb 128 / 256) and the zero-point path (q4), compile-checked:
# every check row (rb 64 / 128 / 256, zero points and random offsets) and, per timed 7B case, the other shapes' times
[[ ${LAB:-1} == 0 ]] || step 240 lab-marlin "./cuda/build/dev/qwlab marlin --quick"
grep -E "FAIL|failure|(marlin|simple).*7B.*(w4|w8) g128" "$OUT/lab-marlin.log" 2>/dev/null | grep -v "^|" | sed "s/^/  marlin: /" >> "$S"
[[ -n $ref ]] && { wait $ref; tail -1 /tmp/ref.log >> "$S"; }
step 300 sparse-7b "bun notebooks/sparse-bench.ts $R/7b --backend cuda --arms off,block-sparse --lengths ${SPARSE_LENGTHS:-32768,65536,131072} --blocks ${SPARSE_BLOCKS:-16} --local 128 --sink 64 --chunk ${SPARSE_CHUNK:-16384} --reps 3 --out $OUT/sparse-7b"
grep -E "^\| |^length|in use" "$OUT/sparse-7b.log" 2>/dev/null | sed "s/^/  sparse: /" >> "$S"
# vertical-slash end to end (mma estimate, device selection, mma attend: compile-checked until the lab ran) at 32k
step 200 vs-7b "bun notebooks/sparse-bench.ts $R/7b --backend cuda --arms off,vertical-slash --lengths ${VS_LENGTHS:-32768} --vertical 1000 --slash 1024 --local 128 --sink 64 --chunk ${SPARSE_CHUNK:-16384} --reps 3 --out $OUT/vs-7b"
grep -E "^\| |^length|in use" "$OUT/vs-7b.log" 2>/dev/null | sed "s/^/  vs-7b: /" >> "$S"
# the H100's ceilings (copy and L2 bandwidth, bf16 tensor rate; ~15 s): profiles/ceilings has none for it, so the tp
# scaling table and the roofline views of H100 profiles lack their roofs. Here: bun notebooks/calibrate.ts
# --from-lab-log <lab-calib.log> --out profiles/ceilings
[[ ${LAB:-1} == 0 ]] || step 60 lab-calib "./cuda/build/dev/qwlab calib"
grep -E "^CALIB" "$OUT/lab-calib.log" 2>/dev/null | cut -c1-300 | sed "s/^/  calib: /" >> "$S"
# issue 12: decode = persistent (eleventh run: 0.5B B1 1703 against 759 us, attention splits 17 us of run each); since,
# splits of >= 256 keys (kMinChunk: every warp a tile; a lone split writes z itself, no partials / atomic / combine;
# compile-checked): every check row, the step against the graph path, the trace's attention level (was 21.6 us)
[[ ${LAB:-1} == 0 ]] || step 150 lab-persistent "./cuda/build/dev/qwlab persistent --quick"
grep -E "FAIL|failure|step|vs fp64" "$OUT/lab-persistent.log" 2>/dev/null | grep -v "^|" | sed "s/^/  persistent: /" >> "$S"
# issue 12: the GEMV weights through a shared-memory ring of bulk copies (QW_PERSIST_RING=1, compile-checked): every row
# on the ring, plus "ring = register path, bits" (0 differ expected) and "persistent step (ring)" of 0.5B / 1.5B B1;
# then the L2 bulk prefetch on (QW_PERSIST_PREFETCH=1; off by default since the twelfth run): its steps against lab-persistent's. ONLY="lab-persistent"
# matches both (prefixes); ONLY="lab-persistent=" runs the plain one alone
[[ ${LAB:-1} == 0 ]] || step 150 lab-persistent-ring "QW_PERSIST_RING=1 ./cuda/build/dev/qwlab persistent --quick"
grep -E "FAIL|failure|step|vs fp64|ring" "$OUT/lab-persistent-ring.log" 2>/dev/null | grep -v "^|" | sed "s/^/  persistent ring: /" >> "$S"
[[ ${LAB:-1} == 0 ]] || step 150 lab-persistent-pf "QW_PERSIST_PREFETCH=1 ./cuda/build/dev/qwlab persistent --quick"
grep -E "FAIL|failure|step|vs fp64" "$OUT/lab-persistent-pf.log" 2>/dev/null | grep -v "^|" | sed "s/^/  persistent prefetch: /" >> "$S"
# issue 12: why decode = persistent is slow (eleventh run: 0.5B B1 1703 against 759 us; GEMVs at 1-2 TB/s, attention
# splits 17 us of run each): Nsight Compute on one 0.5B B1 step (stall reasons, memory throughput, issue slots)
[[ ${LAB:-1} == 0 ]] || step 150 ncu-persistent "QW_LAB_PERSIST_ONLY='persistent 0.5B/1' ncu --kernel-name regex:persistent_decode_kernel --launch-skip 3 --launch-count 1 --section SpeedOfLight --section MemoryWorkloadAnalysis --section SchedulerStats --section WarpStateStats --section Occupancy ./cuda/build/dev/qwlab persistent --quick > $OUT/ncu-persistent.txt 2>&1"
grep -E "Throughput|Duration|Stall|Issue|Warp Cycles|L2 Hit|Eligible" "$OUT/ncu-persistent.txt" 2>/dev/null | head -30 | sed "s/^/  ncu persistent: /" >> "$S"
# issue 11: the Sage arms on wgmma with the scales folded into exp2's FFMA and P' = 448 p out of exp2 (2026-12-06 evening,
# compile-checked): every row against the CPU arm and exact attention, and 4k / 16k / 32k against the wgmma flash
# (fifth run: int8 0.8 / 0.9x, fp8 0.9 / 1.0x)
[[ ${LAB:-1} == 0 ]] || step 200 lab-sage "QW_LAB_SAGE_ARMS=wgmma ./cuda/build/dev/qwlab sage"
grep -E "FAIL|failure|16384|32768|4096" "$OUT/lab-sage.log" 2>/dev/null | grep -v "^|" | sed "s/^/  sage: /" >> "$S"
# issue 11: sage-fp8 with a quarter of its exp2 on the FMA pipe (QW_SAGE_POLY_EXP=1, compile-checked), the 16k cases
# against lab-sage's (the same session)
[[ ${LAB:-1} == 0 ]] || step 90 lab-sage-poly "QW_SAGE_POLY_EXP=1 QW_LAB_SAGE_ARMS=wgmma QW_LAB_SAGE_T=16384 ./cuda/build/dev/qwlab sage"
grep -E "FAIL|failure|poly" "$OUT/lab-sage-poly.log" 2>/dev/null | grep -v "^|" | sed "s/^/  sage-poly: /" >> "$S"
# issue 11: which unit binds the Sage kernels (the README's estimate: the softmax's issue slots and, at fp8, the SFU),
# measured: Nsight Compute on one 16k launch of the bf16 flash (ARM 0), sage-int8 (1) and sage-fp8 (2)
[[ ${LAB:-1} == 0 ]] || step 240 ncu-sage "for k in 0 1 2; do QW_LAB_SAGE_ARMS=wgmma QW_LAB_SAGE_T=16384 ncu --print-details all --kernel-name-base mangled --kernel-name regex:fa3_prefill_kernelILi128ELi2ELb1ELi\${k}E --launch-count 1 --section SpeedOfLight --section ComputeWorkloadAnalysis --section SchedulerStats --section WarpStateStats ./cuda/build/dev/qwlab sage > $OUT/ncu-sage-\$k.txt 2>&1; done"
for k in 0 1 2; do grep -E "Pipe|Issue Slots Busy|Compute \(SM\) Throughput|Duration|Stall|stall" "$OUT/ncu-sage-$k.txt" 2>/dev/null | head -30 | sed "s/^/  ncu arm $k: /" >> "$S"; done
# issue 12 item 3: tile = auto against fixed end to end (the tuner measures every candidate of the model's shapes on
# this GPU into $OUT/tuning, then bench runs each value; per shape the second run's lab kept fixed within a few % but
# 0.5B qkv, 1.14x)
for m in 0.5b 7b; do
  step 240 "tile-$m" "export QW_TUNING_DIR=$OUT/tuning; bun notebooks/calibrate.ts --tile $R/$m --backend cuda --out $OUT/tuning && for t in fixed auto; do bun engine/cli/main.ts bench $R/$m --backend cuda --pp 512 --tg 128 --reps 3 --toggle tile=\$t; done"; done
# issue 10, end to end: 7B q4 with gemv = marlin at the rule's block shape and with QW_MARLIN_RB (MARLIN_RB, default 256)
for rbv in rule "${MARLIN_RB:-256}"; do
  step 300 "q4-7b-marlin-$rbv" "$( [[ $rbv != rule ]] && echo "QW_MARLIN_RB=$rbv ")bun engine/cli/main.ts bench $R/7b --backend cuda --weights q4 --toggle gemv=marlin --pp 512 --tg 128 --batch 1,16 --reps 3"; done
# issue 10: what binds the W4 decode GEMVs (7B gate_up W4 g128: marlin 71.6 us at M1 = 948 GB/s, gemv_q16 63.7; the
# desk estimate: gemv_q16 issue-bound at ~5 FP32-pipe instructions per weight, marlin latency-bound): Nsight Compute
# on one launch of each kernel at M1 and M16 (issue slots, stall reasons, DRAM throughput, L2 hit rate)
[[ ${LAB:-1} == 0 ]] || step 200 ncu-gemv "for b in 1 16; do for k in marlin_gemv_kernel gemv_q16_kernel; do QW_LAB_MARLIN_ONLY=\"7B gate_up/w4/128/\$b\" ncu --kernel-name regex:\$k --launch-skip 2 --launch-count 1 --section SpeedOfLight --section MemoryWorkloadAnalysis --section SchedulerStats --section WarpStateStats --section Occupancy --section LaunchStats ./cuda/build/dev/qwlab marlin --quick > $OUT/ncu-gemv-\$k-m\$b.txt 2>&1; done; done"
for f in "$OUT"/ncu-gemv-*.txt; do [[ -f $f ]] && grep -E "Memory Throughput|DRAM Throughput|Duration|Issue Slots Busy|Stall|L2 Hit|Eligible|Registers|Achieved Occupancy" "$f" | head -14 | sed "s/^/  $(basename "$f" .txt): /" >> "$S"; done
# issue 10, short: 7B q4 pp512 with gemv = marlin (the fused prefill GEMM) and a short decode, for a call with little
# time left after a cold build (~125 s of it is the requantization at load)
# (tg128 at b1 / b16 as well: a few seconds beside the load)
step 160 q4-7b-pp "bun engine/cli/main.ts bench $R/7b --backend cuda --weights q4 --toggle gemv=marlin --pp 512 --tg 128 --batch 1,16 --reps 3"
# the bf16 baseline of the same session (issue 10's prefill bar is 0.8x it; issue 12's 7B bf16 b1 target)
step 120 bf16-7b "bun engine/cli/main.ts bench $R/7b --backend cuda --pp 512 --tg 128 --batch 1,16 --reps 3"
# issue 10 item 3: bf16 decode GEMVs on mma.sync tensor cores (gemv_mma.cu, QW_GEMV_MMA=1; lab-checked in the first runs,
# never timed end to end): 7B and 0.5B bf16 tg128 at b1 / b8 / b16, on then off, same session (targets: 7B b16 >= 2500
# total, 0.5B b16 >= 8000; b16 never slower than b8)
for m in 7b 0.5b; do for q in 1 0; do
  step 120 "mma-$m-$q" "QW_GEMV_MMA=$q bun engine/cli/main.ts bench $R/$m --backend cuda --pp 0 --tg 128 --batch 1,8,16 --reps 3"; done; done
# issue 10 item 3, 2026-12-07 10:30: the tensor-core GEMV's K walk piped did not help (fourteenth run call 1). Since:
# 128-column chunks (QW_GEMV_MMA_WIDE=1, opt-in until measured; the first version's are 32: a quad reads 256 contiguous
# bytes of a row instead of 64) and blocks per SM balanced (gemv_pick.hpp; QW_GEMV_MMA_PICK=1; the first rule puts
# 7B qkv's 144 blocks on 132 SMs).
# Lab both ways (new, and the first version: WIDE=0 PICK=0; every check and invariance row must PASS; the W4 g128
# tensor-core rows `mma w4` run in both passes), then 7B tg128 at b1 / b8 / b16 through the toggle: new, wide with the
# first pick, the first version, gemv = simple; 0.5B new and simple; same session. Predicted: 7B b1 148.5 -> >= 175.
# The small matrices (qkv / o / down, 896-1152 rows) split K over blocks on tensor cores by default since the
# fifteenth run (0.5B b16 2856 -> 5860, b1 1085 -> 796); 0.5b-nosplit: QW_GEMV_MMA_SPLIT=0, the CUDA cores.
for mv in 0.5b-first 0.5b-nosplit 7b-new 7b-simple 7b-first 0.5b-new 0.5b-simple 7b-pick0; do m=${mv%%-*}; v=${mv#*-}
  env=""; [[ $v == new ]] && env="QW_GEMV_MMA_PICK=1 QW_GEMV_MMA_WIDE=1 "; [[ $v == pick0 ]] && env="QW_GEMV_MMA_WIDE=1 "
  [[ $v == nosplit ]] && env="QW_GEMV_MMA_SPLIT=0 "
  step 120 "mmap-$mv" "${env}bun engine/cli/main.ts bench $R/$m --backend cuda --toggle gemv=$( [[ $v == simple ]] && echo simple || echo marlin) --pp 0 --tg 128 --batch 1,8,16 --reps 3"; done
{ for f in "$OUT"/mmap-*.log; do [[ -f $f ]] && grep -hE "^\| " "$f" | grep -vE "^\| model|^\|---" | sed "s|^|  $(basename "$f" .log) |"; done; } >> "$S"
[[ ${LAB:-1} == 0 ]] || step 200 lab-gemv-mma "for p in 1 0; do echo \"== QW_GEMV_MMA_WIDE=\$p QW_GEMV_MMA_PICK=\$p\"; QW_GEMV_MMA=1 QW_GEMV_MMA_WIDE=\$p QW_GEMV_MMA_PICK=\$p ./cuda/build/dev/qwlab gemv --quick; done"
grep -E "^== |FAIL|failure|mma w4|(7B|0\.5B) (qkv|o_proj|gate_up|down).* (bf16|w4) [0-9]+x" "$OUT/lab-gemv-mma.log" 2>/dev/null | grep -v "^| " | sed "s/^/  gemv-mma: /" >> "$S"
# issue 10: toggle actQuant = int8 on CUDA (opt/act_quant/gemv_i8.cu: W4 / W8 decode GEMVs with int8 activations per
# token and weight group, dp4a): the lab against the CPU math (every row PASS in the four modes pre pass x loop variant,
# invariance rows bitwise across batch and modes) and the exact kernel on the 7B shapes (same run: rows pre pass /
# in-block / loop / exact arm at b1 / b4 / b8 / b16), then 7B q4 / q8 tg128 b1 / b8 / b16 with and without it.
# Sixteenth run (in-block only): 7B q4 b1 319 against 254 tok/s, b16 405 against 493. Predicted with the pre pass
# (2026-12-07 evening, unmeasured): down b1 31.6 -> ~20 us a layer, b16 >= 1500 tok/s; loop: gate_up b1 37.5 -> ~30 us.
[[ ${LAB:-1} == 0 ]] || step 240 lab-gemv-i8 "./cuda/build/dev/qwlab gemv-i8"
grep -E "FAIL|failure|gemv i8" "$OUT/lab-gemv-i8.log" 2>/dev/null | grep -v "^|" | sed "s/^/  i8: /" >> "$S"
# issue 10: the int8 arm's ring variant (opt/act_quant/gemv_i8_ring.cuh, QW_GEMV_I8_RING=1, sm_90, UNMEASURED): one block
# per SM stages the whole K's activations once and walks its row tiles while the TMA unit bulk-copies each tile's codes /
# scales / offsets into 2-4 shared-memory stages (whole rows, or K chunks for 7B down), the first before the PDL wait.
# lab-gemv-i8 checks it (rows "... ring": against the CPU math; "ring = register path, bits": 0 differing on every 7B
# shape it runs; "ring": its time). Then 7B q4 / q4o8 / Q4_K_M tg128 with it. Predicted (W4 g128 b1): gate_up 43 -> ~30
# us, down 30 -> ~18, qkv 17 -> ~10; 7B q4 b1 366 -> ~450 tok/s on the eighteenth run's H100.
for w in q4 q4o8 q4km; do
  src="$R/7b --weights $w"; [[ $w == q4km ]] && src="synthetic:7b:q4_k_m"; [[ $w == q4o8 ]] && src="$R/7b --weights q4,output=q8"
  step 150 "ring-7b-$w" "QW_GEMV_I8_RING=1 bun engine/cli/main.ts bench $src --backend cuda --toggle actQuant=int8 --pp 0 --tg 128 --batch 1,8,16 --reps 3"; done
{ for f in "$OUT"/ring-7b-*.log; do [[ -f $f ]] && grep -hE "^\| " "$f" | grep -vE "^\| model|^\|---" | sed "s|^|  $(basename "$f" .log) |"; done; } >> "$S"
# issue 10: what binds the int8 arm's b1 GEMVs at 40-60 % of the copy rate (2026-12-08 eighteenth run: two-level scales cut
# 21 % of their bytes and none of their time, so not the bytes): ncu on one launch each of 7B gate_up (loop variant, and
# the exact gemv_q16, and the ring variant), down (pre pass) and qkv (loop), W4 g128 b1; QW_LAB_I8_ONLY runs only that
# timed case.
[[ ${LAB:-1} == 0 ]] || step 200 ncu-i8 "for c in 'gate_up:gemv_i8_loop_kernel' 'gate_up:gemv_i8_ring_kernel' 'gate_up:gemv_q16_kernel' 'down:gemv_i8_kernel' 'qkv:gemv_i8_loop_kernel'; do sh=\${c%%:*}; k=\${c#*:}; QW_LAB_I8_ONLY=\"w4 \$sh g128 b1\" ncu --print-details all --kernel-name regex:\$k --launch-skip 3 --launch-count 1 --section SpeedOfLight --section MemoryWorkloadAnalysis --section SchedulerStats --section WarpStateStats --section Occupancy --section LaunchStats ./cuda/build/dev/qwlab gemv-i8 > $OUT/ncu-i8-\$sh-\$k.txt 2>&1; done"
for f in "$OUT"/ncu-i8-*.txt; do [[ -f $f ]] && grep -E "Memory Throughput|DRAM Throughput|Duration|Issue Slots Busy|Stall|stall|L2 Hit|L1/TEX Hit|Eligible|Registers Per|Achieved Occupancy|Theoretical Occupancy|Block Limit|Warp Cycles Per Issued" "$f" | head -30 | sed "s/^/  $(basename "$f" .txt): /" >> "$S"; done
# the arm's error next to the time it saves, one decode step per layer (notebooks/quant-error.nb.ts, phase decode) on the
# embedded model requantized to q4
step 90 qe-i8 "QW_NB_MODEL=default QW_NB_WEIGHTS=q4 QW_NB_TOGGLE=actQuant=int8 QW_NB_PHASE=decode bun notebooks/quant-error.nb.ts"
grep -E "^reference|^logits|^finding" "$OUT/qe-i8.log" 2>/dev/null | sed "s/^/  qe-i8: /" >> "$S"
# its perplexity / KL against the exact arm on the Brown validation text, one decode step per scored token (--phase decode)
for w in q8 q4; do
  step 120 "ppl-i8-$w" "bun engine/cli/main.ts perplexity --backend cuda --weights $w --phase decode --toggle actQuant=int8 --reference-toggle actQuant=off --ctx 256 --max-tokens 4096"
  grep -iE "ppl|kl|top-1" "$OUT/ppl-i8-$w.log" 2>/dev/null | head -8 | sed "s/^/  ppl-i8-$w: /" >> "$S"; done
# q4o8: q4 with the lm_head requantized to q8 too (weights_layers "output"; 1.09 GB bf16 -> 0.55 GB)
for w in q4 q4o8 q8 q4km; do for aq in int8 off; do  # q4km: the synthetic 7B Q4_K_M GGUF (Q4_K = W4 g32, Q6_K = W8 g16)
  src="$R/7b --weights $w"; [[ $w == q4km ]] && src="synthetic:7b:q4_k_m"; [[ $w == q4o8 ]] && src="$R/7b --weights q4,output=q8"
  step 150 "i8-7b-$w-$aq" "bun engine/cli/main.ts bench $src --backend cuda --toggle actQuant=$aq --pp 0 --tg 128 --batch 1,8,16 --reps 3"; done; done
# issue 10, two-level group scales (opt/gemv/two_level.hpp; eighteenth run, H100: bit for bit, no faster: exact b1
# 208.3 -> 200.4, int8 286.1 -> 289.9; opt-in since): K-quant matrices read a 16-bit
# code a group and a (D, M) pair per 256 columns instead of two fp32 a group (Q4_K 6 -> 4.75 bits a weight, Q6_K 12 ->
# 9.25; 7B Q4_K_M 6.44 -> 5.05 GB a step), the same bits. The lab (every "differing" row 0; timed fp32 scales vs two
# levels on the 7B Q4_K / Q6_K shapes), then 7B Q4_K_M tg128 with and without (QW_TWO_LEVEL=0), both arms.
# Predicted: Q4_K_M b1 int8 ~310 -> ~380 tok/s, exact 227 -> ~280 (the bytes' ratio, if the GEMVs stay as bandwidth-bound).
[[ ${LAB:-1} == 0 ]] || step 150 lab-two-level "./cuda/build/dev/qwlab two-level"
grep -E "FAIL|failure|two-level .*(differing|us\))" "$OUT/lab-two-level.log" 2>/dev/null | grep -v "^|" | sed "s/^/  tl: /" >> "$S"
for tl in 1 0; do for aq in int8 off; do
  step 150 "tl$tl-7b-q4km-$aq" "QW_TWO_LEVEL=$tl bun engine/cli/main.ts bench synthetic:7b:q4_k_m --backend cuda --toggle actQuant=$aq --pp 0 --tg 128 --batch 1,8,16 --reps 3"; done; done
{ for f in "$OUT"/tl[01]-7b-*.log; do [[ -f $f ]] && grep -hE "^\| " "$f" | grep -vE "^\| model|^\|---" | sed "s|^|  $(basename "$f" .log) |"; done; } >> "$S"
{ for f in "$OUT"/i8-7b-*.log; do [[ -f $f ]] && grep -hE "^\| " "$f" | grep -vE "^\| model|^\|---" | sed "s|^|  $(basename "$f" .log) |"; done; } >> "$S"
# issue 10 "batch 16 never slower than batch 8": 0.5B bf16 b16 (2460-2886 tok/s) is slower than b8 and ~8x its b1
# step, far above what its 1 GB of weights cost; where the step goes per op at b1 / b8 / b16 (notebooks/
# batch-breakdown.ts: unprofiled step time, then kernel µs per op from one profiled run), 0.5B and 7B bf16 with
# gemv = marlin, 7B q4 with gemv = simple.
# 7b-q4i8: 7B q4 with actQuant = int8 (its defaults since the seventeenth run: pre pass by rule, loop, R4), b1 399 tok/s
# there: where the remaining 2.5 ms of a b1 step go, against the lab's ~90 us a layer
for mv in 0.5b 0.5b-nosplit 7b 7b-q4 7b-q4i8; do m=${mv%%-*}
  a="--toggle gemv=marlin"; [[ $mv == *-q4 ]] && a="--weights q4"; [[ $mv == *-q4i8 ]] && a="--weights q4 --toggle actQuant=int8"
  step 90 "bb-$mv" "$( [[ $mv == *-nosplit ]] && echo "QW_GEMV_MMA_SPLIT=0 ")bun notebooks/batch-breakdown.ts $R/$m --backend cuda $a --batches 1,8,16 --steps 16 --out $OUT/bb-$mv"; done
{ for f in "$OUT"/bb-*/batch-breakdown.md; do [[ -f $f ]] && grep -E "^\| (\*\*|qkv|gate_up|down|o_proj|lm_head|attention|sample)" "$f" | sed "s|^|  $(basename "$(dirname "$f")") |"; done; } >> "$S"
# issue 10 item 4: the fused prefill GEMM only where it measured faster (marlin_gemm_preferred: >= 64 M weights at
# <= 1024 tokens; QW_MARLIN_GEMM=2 runs it everywhere, the thirteenth run's pick). 7B q4 pp512 / pp2048, same session.
# Predicted: pp512 +1-2 % (qkv and o chunked: ~9 us a layer), pp2048 +10-20 % (every shape chunked).
for mode in 1 2; do
  step 200 "q4-7b-rule$mode" "QW_MARLIN_GEMM=$mode bun engine/cli/main.ts bench $R/7b --backend cuda --weights q4 --toggle gemv=marlin --pp 512,2048 --tg 0 --reps 3"; done
{ for f in "$OUT"/q4-7b-rule*.log; do [[ -f $f ]] && grep -hE "^\| " "$f" | grep -vE "^\| model|^\|---" | sed "s|^|  $(basename "$f" .log) |"; done; } >> "$S"
# the same kernel through the toggle: gemv = marlin runs bf16 weights on tensor cores at every batch size (since
# 2026-12-07); expected = mma-7b-1
step 120 bf16-7b-marlin "bun engine/cli/main.ts bench $R/7b --backend cuda --toggle gemv=marlin --pp 0 --tg 128 --batch 1,8,16 --reps 3"
[[ ${LAB:-1} == 0 ]] || step 120 lab-gemv "./cuda/build/dev/qwlab gemv"
grep -E "w4|w8|W4|W8" "$OUT/lab-gemv.log" 2>/dev/null | grep -E "FAIL|7B|invariance" | grep -v "^|" | sed "s/^/  gemv: /" >> "$S"
[[ ${LAB:-1} == 0 ]] || step 150 lab-prefill "./cuda/build/dev/qwlab prefill"
grep -E "dca" "$OUT/lab-prefill.log" 2>/dev/null | grep -v "^|" | sed "s/^/  lab: /" >> "$S"
# issue 14: DCA's cost on 7B shapes (chunk 8192, local 1024: all three parts active), dca off vs on
step 150 dca-7b "bun notebooks/dca-bench.ts $R/7b --backend cuda --lengths ${DCA_LENGTHS:-8192} --tg 16 --reps 3 --chunk 8192 --local 1024 --out $OUT/dca-7b"
grep -E "^\| [0-9]|^length" "$OUT/dca-7b.log" 2>/dev/null | sed "s/^/  dca: /" >> "$S"
# issue 10: 7B requantized at load (each run ~125 s of requantizing before it measures), gemv_q16 then the old kernel
for w in q4 q8; do for q in 1 0; do
  step 300 "$w-7b-q16$q" "QW_GEMV_Q16=$q bun engine/cli/main.ts bench $R/7b --backend cuda --weights $w --pp 512 --tg 128 --batch 1,16 --reps 3"; done; done
{ echo "===== $(( $(date +%s) - t0 )) s"
  for f in "$OUT"/q[48]-7b-*.log "$OUT"/bf16-7b.log; do [[ -f $f ]] && grep -hE "^\| " "$f" | grep -vE "^\| model|^\|---" | sed "s|^|$(basename "$f" .log) |"; done; } >> "$S"
cat "$S"
# few files come back from a call (about 8): everything but the summary travels as one archive
(cd "$OUT" && tar czf /tmp/owed.tgz --exclude ./owed.log . && find . -mindepth 1 ! -name owed.log -delete && mv /tmp/owed.tgz .)
