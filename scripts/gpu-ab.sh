#!/usr/bin/env bash
# gpu-ab.sh — same-run A/B of this tree against an older revision on the GPU machine (issue 9: the restructure
# must not change outputs or speed). Two halves:
#
#   bash scripts/gpu-ab.sh pack REV            here: writes .gpu/ab-old.tar.xz (cuda/ engine/ notebooks/ of REV;
#                                              run scripts/gpu-pack.sh as usual, carry [".gpu"])
#   bash scripts/gpu-ab.sh run MODELS ROUNDS   on the device, after `gpu-session.sh ... build ref`: builds the old
#                                              tree in /tmp/ab-old, then ROUNDS interleaved rounds (new, old, old,
#                                              new, ...) of notebooks/bench.ts, bf16, batch 1, pp512, tg128, 3 reps,
#                                              each tree with its own engine and library; greedy tokens of both
#                                              trees are compared on the same prompt (bit-identical expected)
#
# Output under $OUT: ab.log (everything), ab.tgz (each round's bench.jsonl).
set -uo pipefail
cmd=${1:?usage: gpu-ab.sh pack REV | run MODELS ROUNDS}
root=$(git rev-parse --show-toplevel 2>/dev/null || pwd); cd "$root"
case $cmd in
  pack)
    rev=${2:?usage: gpu-ab.sh pack REV}
    mkdir -p .gpu
    git archive --prefix=ab-old/ "$rev" cuda engine notebooks package.json tsconfig.json | xz -T2 -6 > .gpu/ab-old.tar.xz
    echo "$rev" > .gpu/ab-old.rev
    echo "gpu-ab: .gpu/ab-old.tar.xz ($(du -k .gpu/ab-old.tar.xz | cut -f1) KiB) = $rev" ;;
  run)
    models=${2:-0.5b}; rounds=${3:-3}
    OUT=${OUT:-/tmp/qw-out}; mkdir -p "$OUT"; log=$OUT/ab.log
    REF=${QW_GPU_REF:-/tmp/qw-ref}
    old=/tmp/ab-old
    { echo "new: $(pwd)  old: $(cat .gpu/ab-old.rev 2>/dev/null)"
      # an old tree already unpacked from the same revision is reused (make is incremental): the prologue can run early
      [[ "$(cat "$old/.rev" 2>/dev/null)" == "$(cat .gpu/ab-old.rev)" ]] || { rm -rf "$old" && tar xJf .gpu/ab-old.tar.xz -C /tmp && cp .gpu/ab-old.rev "$old/.rev"; }
      ln -sfn "$(pwd)/node_modules" "$old/node_modules"; ln -sfn "$(pwd)/models" "$old/models"
      make -C "$old/cuda" -j16 cuda cpu GENCODE=-gencode=arch=compute_90a,code=sm_90a > /tmp/ab-old-build.log 2>&1 \
        || { tail -20 /tmp/ab-old-build.log; exit 1; }
      python3 notebooks/peers/make_ref.py --no-ref --models "$models" --out "$REF" | tail -2
    } >> "$log" 2>&1 || { echo "gpu-ab: old build failed (see ab.log)"; exit 1; }
    [[ ${AB_PREPARE_ONLY:-0} == 1 ]] && { echo "gpu-ab: old tree built, references ready"; exit 0; }
    mkdir -p /tmp/ab-runs
    # Greedy tokens first (seconds; a call cut short by its limit still has them), same prompt, both trees (each tree's own CLI): identical text is the bit-exactness check.
    for m in ${models//,/ }; do
      for t in new old; do
        dir=$(pwd); [[ $t == old ]] && dir=$old
        cli=engine/cli/main.ts; [[ -f $dir/$cli ]] || cli=engine/cli.ts  # the CLI moved in the restructure
        (cd "$dir" && bun $cli generate "$REF/$m" --backend cuda --prompt "The history of the" --max-tokens 64 \
          2>/dev/null) > /tmp/ab-runs/gen-$m-$t.txt
      done
      if cmp -s /tmp/ab-runs/gen-$m-new.txt /tmp/ab-runs/gen-$m-old.txt; then echo "tokens $m: identical" | tee -a "$log"
      else echo "tokens $m: DIFFER" | tee -a "$log"; diff /tmp/ab-runs/gen-$m-new.txt /tmp/ab-runs/gen-$m-old.txt | head -5 | tee -a "$log"; fi
    done
    # ABBA order per pair of rounds, so drift over the call does not favour one tree.
    for r in $(seq 1 "$rounds"); do
      if (( r % 2 )); then order="new old"; else order="old new"; fi
      for t in $order; do
        dir=$(pwd); [[ $t == old ]] && dir=$old
        echo "===== round $r $t" >> "$log"
        (cd "$dir" && bun notebooks/bench.ts --models "$models" --hf-root "$REF" --types bf16 --batches 1 --pp 512 \
          --tg 128 --reps 3 --out /tmp/ab-runs/r$r-$t) >> "$log" 2>&1
        grep -E '^\| (qwen|ours|engine)' "$log" | tail -3
      done
    done
    (cd /tmp/ab-runs && tar czf "$OUT/ab.tgz" .) ;;
  *) echo "gpu-ab: unknown command $cmd" >&2; exit 2 ;;
esac
