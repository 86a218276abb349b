// test/gpu/sparse-run.ts — the child process of sparse.test.ts's attend and selection arms: the native library reads
// QW_SPARSE_MMA and QW_SPARSE_HOST_SELECT from the process environment at each sparse step, so each arm (SIMT or mma
// attend, device or host selection) runs in a process started with that environment. Usage: bun
// test/gpu/sparse-run.ts OUT.json [block-sparse | vertical-slash]. On tiny-qwen2-passkey (CUDA, head_dim 64), one
// profiled prefill per run: the last position's logits, each layer's attention launcher names and the attention
// records' summed FLOPs.
//   dense / full / small    600 prompt tokens in one call: sparsePrefill off / every block (every line) / blocks 2,
//                           local 128, sink 64 (vertical 32, slash 32, local 64, sink 4)
//   chunked-dense / -full   the same tokens as 150 + 250 + 200 (pieces start inside a 64-position block)
//   dca-small               2000 tokens, dca on, the small budgets (DCA keeps the SIMT attend in every arm)
import { writeFileSync } from "node:fs";
import { openModel, type Model } from "../../engine/index.ts";
import type { SparseOptions } from "../../engine/api.ts";
import { opNames } from "../../engine/catalog.ts";
import { buildPasskeyPrompt, FillerStream, PASSKEY_MODEL_DIR, rngFor } from "../../engine/measure/passkey.ts";
import { launcher } from "./gpu.ts";

export interface SparseRun { logits: number[]; kernels: string[][]; flops: number }
export type SparseRunSummary = Record<"dense" | "full" | "small" | "chunked-dense" | "chunked-full" | "dca-small", SparseRun>;

const out = process.argv[2], mode = process.argv[3] ?? "block-sparse";
if (!out || (mode !== "block-sparse" && mode !== "vertical-slash"))
  throw new Error("usage: bun test/gpu/sparse-run.ts OUT.json [block-sparse | vertical-slash]");
const m = (await openModel(PASSKEY_MODEL_DIR, { backend: "cuda" })) as Model;
const filler = new FillerStream(m.tokenizer);
const prompt = (n: number) => buildPasskeyPrompt(m.tokenizer, filler, n, rngFor(3, n)).tokens;

function run(pieces: number[][], o: { sparse?: SparseOptions; dca?: boolean }): SparseRun {
  const total = pieces.reduce((a, p) => a + p.length, 0);
  const s = m.newSession({ maxContext: total + 8, ...(o.sparse ? { sparse: o.sparse } : {}) });
  try {
    if (o.dca) s.setToggle("dca", "on");
    if (o.sparse) s.setToggle("sparsePrefill", mode);
    s.setLogitsMode(1);
    s.setProfiling(true);
    for (const p of pieces) s.prefill(0, p);
    const r = s.takeRecords();
    const L = m.config.num_hidden_layers;
    const kernels: string[][] = Array.from({ length: L }, () => []);
    let flops = 0;
    r.ops.op.forEach((op, i) => {
      if (opNames()[op] !== "attention") return;
      kernels[r.ops.layer[i]].push(launcher(r.kernels[r.ops.kernel[i]]));
      flops += r.ops.flops[i];
    });
    return { logits: Array.from(s.logits().data), kernels: kernels.map((k) => [...new Set(k)]), flops };
  } finally {
    s.close();
  }
}

const t = prompt(600), chunks = [t.slice(0, 150), t.slice(150, 400), t.slice(400)];
const full = mode === "block-sparse" ? { blocks: 1 << 20 } : { vertical: 1 << 20, slash: 1 << 20 };
const small = mode === "block-sparse" ? { blocks: 2, local: 128, sink: 64 } : { vertical: 32, slash: 32, local: 64, sink: 4 };
const summary: SparseRunSummary = {
  dense: run([t], {}),
  full: run([t], { sparse: full }),
  small: run([t], { sparse: small }),
  "chunked-dense": run(chunks, {}),
  "chunked-full": run(chunks, { sparse: full }),
  "dca-small": run([prompt(2000)], { sparse: small, dca: true }),
};
writeFileSync(out, JSON.stringify(summary));
m.close();
