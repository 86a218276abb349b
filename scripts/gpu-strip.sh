#!/usr/bin/env bash
# gpu-strip.sh strip | restore — the travelling tree (tracked files + .gpu/) must stay under the device's 64 MiB and
# Bun alone is 37 MB compressed, so on its own the whole tree no longer fits (2026-12-05: 75 MiB).
#   strip    (here, before a device call) removes from the working tree what the GPU machine does not use (web/, the
#            CPU-side tests, profiles but their ceilings, docs, README) and moves each models/*/model.safetensors into
#            .gpu/models/<name>.safetensors.xz (about 30 % smaller); scripts/gpu-validate.sh unpacks them on the device.
#            All four models do not fit beside Bun (69.6 MB, 2026-12-05): GPU_MODELS (default tiny-qwen2-brown, 7 MB;
#            with the prebuilt binaries there is no room for a second) names the ones that travel; the others are left
#            behind, so the GPU tests that need them (dca: passkey; speculative: the draft and the EAGLE head) fail for
#            want of the file (GPU_MODELS=tiny-qwen2-brown,tiny-qwen2-passkey without BUILD=carried). Duplicate
#            tokenizer.json files become links to the target's.
#   restore  (here, after the call) puts the stripped paths back (git checkout -- models test web README.md docs
#            profiles), so strip refuses to run while those paths are dirty; other edits (a helper's, in cuda/) stay.
set -euo pipefail
root=$(git rev-parse --show-toplevel); cd "$root"
paths="models test web README.md docs profiles"  # what strip removes and restore checks out
case ${1:-} in
  strip)
    # untracked files too: strip deletes them and restore cannot bring them back (a run's profiles were lost so)
    [[ -z "$(git status --porcelain -- $paths)" ]] || { echo "gpu-strip: commit, stash or move the changes and new files under $paths first (restore checks out tracked files only): $(git status --porcelain -- $paths | head -3 | tr '\n' ' ')" >&2; exit 1; }
    mkdir -p .gpu/models; keep=",${GPU_MODELS:-tiny-qwen2-brown},"
    for f in models/*/model.safetensors; do
      n=$(basename "$(dirname "$f")"); x=.gpu/models/$n.safetensors.xz; s=$(git hash-object "$f")
      [[ $keep == *",$n,"* ]] || { rm -f "$f" "$x" "$x.id"; continue; }
      [[ -f $x && "$(cat "$x.id" 2>/dev/null)" == "$s" ]] || { xz -T2 -6 -c "$f" > "$x"; echo "$s" > "$x.id"; }
      rm "$f"
    done
    for t in models/*/tokenizer.json; do
      [[ $t != models/tiny-qwen2-brown/tokenizer.json ]] && cmp -s "$t" models/tiny-qwen2-brown/tokenizer.json && ln -sf ../tiny-qwen2-brown/tokenizer.json "$t"
    done
    # test/engine files that test/gpu imports stay (*-helpers.ts: spec-helpers.ts, logits-helpers.ts)
    find test/engine -type f ! -name '*-helpers.ts' -delete
    rm -rf web test/web test/notebooks README.md docs
    find profiles -mindepth 1 -maxdepth 1 ! -name ceilings -exec rm -rf {} +
    t=$( (git ls-files -z | xargs -0 du -cb 2>/dev/null || true) | tail -1 | cut -f1); g=$(du -sb .gpu | cut -f1)  # du fails on the removed files
    echo "gpu-strip: ~$(( (t + g) / 1048576 )) MiB travels (limit 64); afterwards: bash scripts/gpu-strip.sh restore"
    (( t + g <= 64 * 1048576 )) || echo "gpu-strip: over the limit: fewer GPU_MODELS, or rm .gpu/prebuilt if the device builds" >&2 ;;
  restore) git checkout -- $paths && echo "gpu-strip: working tree restored" ;;
  *) echo "usage: bash scripts/gpu-strip.sh strip | restore" >&2; exit 2 ;;
esac
