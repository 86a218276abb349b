#!/usr/bin/env bash
# gpu-ab.sh — same-run A/B of this tree against an older revision on the GPU machine (issue 9: the restructure
# must not change outputs or speed). Two halves:
#
#   bash scripts/gpu-ab.sh pack REV [SLOT]     here: writes .gpu/ab-SLOT.tar.xz (cuda/ engine/ notebooks/ of REV;
#                                              SLOT old (default) or new; run scripts/gpu-pack.sh as usual, carry
#                                              [".gpu"]). Without a packed new slot, "new" is this working tree; with
#                                              one, both arms are revisions (e.g. the refactor's last commit before
#                                              later kernel changes, so only the refactor differs between them)
#   bash scripts/gpu-ab.sh run MODELS ROUNDS   on the device, after `gpu-session.sh ... build ref`: builds the old
#                                              tree in /tmp/ab-old, then ROUNDS interleaved rounds (new, old, old,
#                                              new, ...) of notebooks/bench.ts, bf16, batch 1, pp512, tg128, 3 reps,
#                                              each tree with its own engine and library; greedy tokens of both
#                                              trees are compared on the same prompt (bit-identical expected);
#                                              AB_REPS (3) reps per round, AB_WHAT="tokens rounds" picks the halves,
#                                              AB_SKIP_REF=1 when the checkpoints exist, AB_JOBS make -j per tree
#
# Output under $OUT: ab.log (everything), ab.tgz (each round's bench.jsonl).
set -uo pipefail
cmd=${1:?usage: gpu-ab.sh pack REV | run MODELS ROUNDS}
root=$(git rev-parse --show-toplevel 2>/dev/null || pwd); cd "$root"
case $cmd in
  pack)
    rev=${2:?usage: gpu-ab.sh pack REV [old|new]}; slot=${3:-old}
    [[ $slot == old || $slot == new ]] || { echo "gpu-ab: SLOT is old or new, not '$slot'" >&2; exit 2; }
    git rev-parse --verify -q "$rev^{commit}" >/dev/null || { echo "gpu-ab: '$rev' is not a commit here" >&2; exit 2; }
    mkdir -p .gpu
    git archive --prefix=ab-$slot/ "$rev" cuda engine notebooks package.json tsconfig.json | xz -T2 -6 > .gpu/ab-$slot.tar.xz
    echo "$rev" > .gpu/ab-$slot.rev
    echo "gpu-ab: .gpu/ab-$slot.tar.xz ($(du -k .gpu/ab-$slot.tar.xz | cut -f1) KiB) = $rev" ;;
  run)
    models=${2:-0.5b}; rounds=${3:-3}
    OUT=${OUT:-/tmp/qw-out}; mkdir -p "$OUT"; log=$OUT/ab.log
    REF=${QW_GPU_REF:-/tmp/qw-ref}
    old=/tmp/ab-old
    new=$(pwd); [[ -f .gpu/ab-new.tar.xz ]] && new=/tmp/ab-new
    slot_tree() { # slot_tree SLOT: unpack .gpu/ab-SLOT.tar.xz into /tmp/ab-SLOT (reused when it is the same revision:
                  # make is incremental, so the prologue can run early) and build it
      local d=/tmp/ab-$1
      [[ "$(cat "$d/.rev" 2>/dev/null)" == "$(cat .gpu/ab-$1.rev)" ]] || { rm -rf "$d" && tar xJf .gpu/ab-$1.tar.xz -C /tmp && cp .gpu/ab-$1.rev "$d/.rev"; }
      ln -sfn "$(pwd)/node_modules" "$d/node_modules"; ln -sfn "$(pwd)/models" "$d/models"
      make -C "$d/cuda" -j${AB_JOBS:-16} cuda cpu GENCODE=-gencode=arch=compute_90a,code=sm_90a > /tmp/ab-$1-build.log 2>&1 \
        || { tail -20 /tmp/ab-$1-build.log; return 1; }; }
    { echo "new: $new $(cat .gpu/ab-new.rev 2>/dev/null)  old: $(cat .gpu/ab-old.rev 2>/dev/null)"
      pids=(); slot_tree old & pids+=($!)
      [[ $new != $(pwd) ]] && { slot_tree new & pids+=($!); }
      for p in "${pids[@]}"; do wait "$p" || exit 1; done
      [[ ${AB_SKIP_REF:-0} == 1 ]] || python3 notebooks/peers/make_ref.py --no-ref --models "$models" --out "$REF" | tail -2
    } >> "$log" 2>&1 || { echo "gpu-ab: a tree's build failed (see ab.log)"; exit 1; }
    [[ ${AB_PREPARE_ONLY:-0} == 1 ]] && { echo "gpu-ab: trees built, references ready"; exit 0; }
    mkdir -p /tmp/ab-runs
    # Greedy tokens first (seconds; a call cut short by its limit still has them), same prompt, both trees (each tree's own CLI): identical text is the bit-exactness check.
    what=" ${AB_WHAT:-tokens rounds} "  # AB_WHAT: either half alone (e.g. tokens in one call, rounds in the next)
    [[ $what == *" tokens "* ]] && for m in ${models//,/ }; do
      for t in new old; do
        dir=$new; [[ $t == old ]] && dir=$old
        cli=engine/cli/main.ts; [[ -f $dir/$cli ]] || cli=engine/cli.ts  # the CLI moved in the restructure
        (cd "$dir" && bun $cli generate "$REF/$m" --backend cuda --prompt "The history of the" --max-tokens 64 \
          2>/dev/null) > /tmp/ab-runs/gen-$m-$t.txt
      done
      if cmp -s /tmp/ab-runs/gen-$m-new.txt /tmp/ab-runs/gen-$m-old.txt; then echo "tokens $m: identical" | tee -a "$log"
      else echo "tokens $m: DIFFER" | tee -a "$log"; diff /tmp/ab-runs/gen-$m-new.txt /tmp/ab-runs/gen-$m-old.txt | head -5 | tee -a "$log"; fi
    done
    # ABBA order per pair of rounds, so drift over the call does not favour one tree.
    [[ $what == *" rounds "* ]] && for r in $(seq 1 "$rounds"); do
      if (( r % 2 )); then order="new old"; else order="old new"; fi
      for t in $order; do
        dir=$new; [[ $t == old ]] && dir=$old
        echo "===== round $r $t" >> "$log"
        (cd "$dir" && bun notebooks/bench.ts --models "$models" --hf-root "$REF" --types bf16 --batches 1 --pp 512 \
          --tg 128 --reps ${AB_REPS:-3} --out /tmp/ab-runs/r$r-$t) >> "$log" 2>&1
        grep -E '^\| (qwen|ours|engine)' "$log" | tail -3
      done
    done
    (cd /tmp/ab-runs && tar czf "$OUT/ab.tgz" .) ;;
  *) echo "gpu-ab: unknown command $cmd" >&2; exit 2 ;;
esac
