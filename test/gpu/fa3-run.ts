// test/gpu/fa3-run.ts — the child process of fa3.test.ts: the native library reads QW_FLASH_WGMMA from the process
// environment at each prefill attention launch, so each arm runs in a process started with that environment.
// Usage: bun test/gpu/fa3-run.ts OUTDIR. On the embedded model (CUDA), three prefills, each capturing every layer's
// attn.hook_z and the attention kernel's name per layer:
//   one      sequence 0, 700 tokens in one call (six 128-key tiles, the last partial);
//   chunked  sequence 0, the same 700 tokens as 300 + 300 + 100 (the last piece attends to 600 cached keys);
//   second   after `one`, sequence 1 (its own cache slot) with 77 other tokens.
// Writes OUTDIR/<name>.f32 (layers' captures concatenated) and OUTDIR/summary.json.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { openModel, type Model } from "../../engine/index.ts";
import { opNames } from "../../engine/catalog.ts";
import { textTokens } from "../../engine/measure/perplexity-run.ts";
import { launcher } from "./gpu.ts";

export interface Fa3RunSummary {
  runs: Record<string, { rows: number; cols: number; layers: number; kernels: string[][]; argmax: number }>;
}

const outDir = process.argv[2];
if (!outDir) throw new Error("usage: bun test/gpu/fa3-run.ts OUTDIR");
mkdirSync(outDir, { recursive: true });
const m = (await openModel("default", { backend: "cuda" })) as Model;
const L = m.config.num_hidden_layers;
const toks = textTokens(m, { kind: "brown" }, 800).tokens;
if (toks.length < 777) throw new Error(`the Brown text gave ${toks.length} tokens, want 777`);
const summary: Fa3RunSummary = { runs: {} };

// prefill `pieces` of sequence `seq` after the `before` prefills; the last piece is captured
function run(name: string, before: [number, number[]][], seq: number, pieces: number[][]): void {
  const s = m.newSession({ maxBatch: 2, maxContext: 1024 });
  try {
    s.setLogitsMode(1);
    for (const [sq, t] of before) s.prefill(sq, t);
    s.setProfiling(true);
    pieces.forEach((p, i) => {
      if (i === pieces.length - 1) s.setCapture(Array.from({ length: L }, (_, l) => `blocks.${l}.attn.hook_z`));
      s.prefill(seq, p);
    });
    const caps = s.captures();
    const rows = caps[0].rows, cols = caps[0].cols;
    const all = new Float32Array(L * rows * cols);
    for (let l = 0; l < L; l++) {
      const c = caps.find((x) => x.name === `blocks.${l}.attn.hook_z`);
      if (!c) throw new Error(`no capture of layer ${l}`);
      all.set(c.data, l * rows * cols);
    }
    writeFileSync(join(outDir, `${name}.f32`), Buffer.from(all.buffer));
    const r = s.takeRecords();
    const kernels: string[][] = Array.from({ length: L }, () => []);
    r.ops.op.forEach((o, i) => {
      if (opNames()[o] === "attention") kernels[r.ops.layer[i]].push(launcher(r.kernels[r.ops.kernel[i]]));
    });
    const lg = s.logits().data;
    const argmax = lg.reduce((b, x, i) => (x > lg[b] ? i : b), 0);
    summary.runs[name] = { rows, cols, layers: L, kernels: kernels.map((k) => [...new Set(k)]), argmax };
  } finally {
    s.close();
  }
}

const t700 = toks.slice(0, 700);
run("one", [], 0, [t700]);
run("chunked", [], 0, [t700.slice(0, 300), t700.slice(300, 600), t700.slice(600)]);
run("second", [[0, t700]], 1, [toks.slice(700, 777)]);
writeFileSync(join(outDir, "summary.json"), JSON.stringify(summary));
m.close();
