#!/bin/bash
# interleaved rounds: every arm once per round
cd "$(dirname "$0")/../../.."
shape=$1; reps=$2; pp=$3; tg=$4; rounds=$5
for r in $(seq 1 $rounds); do
  for arm in ffn=separate,norm=separate ffn=fused-swiglu,norm=separate ffn=fused-norm-gemv-swiglu,norm=separate ffn=separate,norm=fused-residual-norm ffn=fused-norm-gemv-swiglu,norm=fused-residual-norm; do
    echo "== round $r arm $arm load $(cut -d' ' -f1 /proc/loadavg)"
    QW_BENCH_TOGGLE=$arm ./cuda/build/bench $shape bf16 $reps $pp $tg 2 2>&1 | grep "tok/s"
  done
done
