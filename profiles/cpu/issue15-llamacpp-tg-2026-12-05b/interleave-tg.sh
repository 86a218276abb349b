#!/usr/bin/env bash
# Decode-only interleaved comparison (issue 15): llama-bench tg32 vs our CLI bench tg32 (actQuant off, and int8 on Q8_0).
# Usage: [FILES="0.5b-f16 ..."] interleave-tg.sh ROUNDS OUTDIR
set -uo pipefail
rounds=${1:-3}; out=${2:-/work/peer-files/runs-tg}; mkdir -p $out
LB=/work/peer-npm/bench/llama-bench
cd /work/main
for r in $(seq 1 $rounds); do
  for f in ${FILES:-tiny-f32 tiny-q8_0 0.5b-f16 0.5b-q8_0}; do  # FILES: a subset
    m=/work/peer-files/$f.gguf
    echo "$(date +%T) round $r $f load $(cut -d' ' -f1 /proc/loadavg)" >> $out/log
    nice -n -20 $LB -m $m -t 2 -p 0 -n 32 -r 5 -o jsonl 2>/dev/null | sed "s/^{/{\"round\":$r,\"loadavg\":$(cut -d' ' -f1 /proc/loadavg),/" >> $out/llama.jsonl
    for aq in off int8; do
      [[ $f == *q8_0 || $aq == off ]] || continue
      nice -n -20 ./node_modules/.bin/bun engine/cli/main.ts bench $m --backend cpu --threads 2 --pp 0 --tg 32 --reps 5 --retries 0 --toggle actQuant=$aq --format jsonl 2>/dev/null | grep '^{' | sed "s/^{/{\"round\":$r,\"actQuant\":\"$aq\",/" >> $out/ours.jsonl
    done
  done
done
echo "$(date +%T) done" >> $out/log
