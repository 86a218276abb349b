#!/usr/bin/env bash
# Interleaved CPU prefill/decode comparison: llama.cpp (prebuilt CPU libs of node-llama-cpp 3.22.1 = ggml-org
# llama.cpp de3ff81 "v0.5.0", llama-bench compiled here from that source) vs qwen-workbench's CLI bench.
# Usage: interleave.sh ROUNDS OUTDIR [ACTQUANT]
set -uo pipefail
rounds=${1:-3}; out=${2:-/work/peer-files/runs}; mkdir -p $out
LB=/work/peer-npm/bench/llama-bench
cd /work/main
for r in $(seq 1 $rounds); do
  for f in tiny-f32 tiny-q8_0 0.5b-f16 0.5b-q8_0; do
    m=/work/peer-files/$f.gguf
    echo "$(date +%T) round $r $f load $(cut -d' ' -f1 /proc/loadavg)" >> $out/log
    nice -n -20 $LB -m $m -t 2 -p 64,512 -n 32 -r 3 -o jsonl 2>/dev/null | sed "s/^{/{\"round\":$r,\"loadavg\":$(cut -d' ' -f1 /proc/loadavg),/" >> $out/llama.jsonl
    for aq in off int8; do
      [[ $f == *q8_0 || $aq == off ]] || continue
      nice -n -20 ./node_modules/.bin/bun engine/cli/main.ts bench $m --backend cpu --threads 2 --pp 64,512 --tg 32 --reps 3 --retries 0 --toggle actQuant=$aq --format jsonl 2>/dev/null | grep '^{' | sed "s/^{/{\"round\":$r,\"actQuant\":\"$aq\",/" >> $out/ours.jsonl
    done
  done
done
echo "$(date +%T) done" >> $out/log
