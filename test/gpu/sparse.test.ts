// Sparse prefill on CUDA (src/opt/sparse_prefill/: vertical-slash sparse_kernels.cu, block-sparse
// block_sparse_kernels.cu; compile-checked only until this runs) against the CPU reference (sparse_prefill_cpu.cpp,
// block_sparse_cpu.cpp, checked in test_sparse_prefill.cpp and test/engine/sparse.test.ts), on the passkey model: full
// budgets = the dense CUDA logits (up to the sparse kernels' fp32 order), small budgets close to the CPU's sparse
// logits with the same argmax, with and without DCA; the attention records' FLOPs (keys visited) against the CPU's;
// passkey retrieval with sparse prefill over DCA at 1024 / 2048 / 4096 tokens. Skips without a GPU.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { openModel, type Model } from "../../engine/index.ts";
import type { SparseMode, SparseOptions } from "../../engine/api.ts";
import { opNames } from "../../engine/catalog.ts";
import { buildPasskeyPrompt, FillerStream, PASSKEY_MODEL_DIR, rngFor, runPasskey } from "../../engine/measure/passkey.ts";
import { argmax, noGpu, rel } from "./gpu.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout();

function lastLogits(m: Model, tokens: number[], o: { sparse?: SparseOptions; dca?: boolean; mode?: SparseMode }): Float32Array {
  return run(m, tokens, o).logits;
}

/** Last-position logits and the summed FLOPs of the attention records of one profiled prefill. */
function run(m: Model, tokens: number[], o: { sparse?: SparseOptions; dca?: boolean; mode?: SparseMode }) {
  const s = m.newSession({ maxContext: tokens.length + 8, ...(o.sparse ? { sparse: o.sparse } : {}) });
  try {
    if (o.dca) s.setToggle("dca", "on");
    if (o.sparse) s.setToggle("sparsePrefill", o.mode ?? "vertical-slash");
    s.setLogitsMode(1);
    s.setProfiling(true);
    s.prefill(0, tokens);
    const r = s.takeRecords();
    const flops = r.ops.op.map((op, i) => (opNames()[op] === "attention" ? r.ops.flops[i] : 0)).reduce((a, b) => a + b, 0);
    return { logits: s.logits().data.slice(), flops };
  } finally {
    s.close();
  }
}

describe.skipIf(noGpu())("sparse prefill: CUDA vs CPU on tiny-qwen2-passkey", () => {
  let cpu: Model, gpu: Model;
  let filler: FillerStream;
  beforeAll(async () => {
    cpu = (await openModel(PASSKEY_MODEL_DIR, { backend: "cpu" })) as Model;
    gpu = (await openModel(PASSKEY_MODEL_DIR, { backend: "cuda" })) as Model;
    filler = new FillerStream(cpu.tokenizer);
  });
  afterAll(() => {
    cpu?.close();
    gpu?.close();
  });
  const prompt = (length: number) =>
    buildPasskeyPrompt(cpu.tokenizer, filler, length, rngFor(2, length)).tokens;

  test("full budgets: the dense CUDA logits; small budgets: close to the CPU's sparse logits, same argmax", () => {
    const full = { vertical: 1 << 20, slash: 1 << 20 };
    const small = { vertical: 32, slash: 32, local: 64, sink: 4 };
    for (const dca of [false, true]) {
      const t = prompt(dca ? 2000 : 500);
      const dense = lastLogits(gpu, t, { dca });
      expect(rel(lastLogits(gpu, t, { dca, sparse: full }), dense)).toBeLessThan(2e-2);
      const g = lastLogits(gpu, t, { dca, sparse: small }), c = lastLogits(cpu, t, { dca, sparse: small });
      const e = rel(g, c);
      console.log(`sparse ${dca ? "+dca " : ""}CUDA vs CPU: rel max |d logits| ${e.toExponential(2)}`);
      expect(e).toBeLessThan(5e-2);
      expect(argmax(g)).toBe(argmax(c));
    }
  });

  test("passkey with sparse prefill over DCA at 1024 / 2048 / 4096 (20 trials each)", async () => {
    const r = await runPasskey(gpu, {
      lengths: [1024, 2048, 4096], trials: 20, dca: true, sparse: "vertical-slash", sparseOptions: { vertical: 64, slash: 64, local: 64, sink: 4 },
    });
    for (const b of r.byLength) console.log(`cuda sparse+dca passkey ${b.length}: ${b.correct}/${b.n}`);
    for (const b of r.byLength) expect(b.accuracy).toBeGreaterThanOrEqual(0.9);
  });

  test("vertical-slash: the attention records count the keys visited, as the CPU's (sparse_cost.hpp)", () => {
    const t = prompt(1500), small = { vertical: 32, slash: 32, local: 64, sink: 4 };
    const dense = run(gpu, t, {}), g = run(gpu, t, { sparse: small }), c = run(cpu, t, { sparse: small });
    console.log(`vertical-slash attention FLOPs: CUDA ${g.flops.toExponential(3)}, CPU ${c.flops.toExponential(3)}, dense ${dense.flops.toExponential(3)}`);
    expect(g.flops).toBeLessThan(dense.flops);
    expect(Math.abs(g.flops - c.flops) / c.flops).toBeLessThan(0.1);  // the selections may differ slightly
  });

  test("block-sparse: every block = the dense CUDA logits; small budgets close to the CPU's, same argmax, same record FLOPs model", () => {
    const full = { blocks: 1 << 20 };
    const small = { blocks: 2, local: 128, sink: 64 };
    for (const dca of [false, true]) {
      const t = prompt(dca ? 2000 : 500);
      const dense = run(gpu, t, { dca });
      expect(rel(run(gpu, t, { dca, sparse: full, mode: "block-sparse" }).logits, dense.logits)).toBeLessThan(2e-2);
      const g = run(gpu, t, { dca, sparse: small, mode: "block-sparse" }), c = run(cpu, t, { dca, sparse: small, mode: "block-sparse" });
      const e = rel(g.logits, c.logits);
      console.log(`block-sparse ${dca ? "+dca " : ""}CUDA vs CPU: rel max |d logits| ${e.toExponential(2)}; attention FLOPs ${g.flops.toExponential(3)} (CPU ${c.flops.toExponential(3)}, dense ${dense.flops.toExponential(3)})`);
      expect(e).toBeLessThan(5e-2);
      expect(argmax(g.logits)).toBe(argmax(c.logits));
      // the records count the keys visited: below dense, and the CPU's model (the selections may differ slightly)
      expect(g.flops).toBeLessThan(dense.flops);
      expect(Math.abs(g.flops - c.flops) / c.flops).toBeLessThan(0.1);
    }
  });

  test("passkey with block-sparse over DCA at 1024 / 2048 / 4096 (20 trials each)", async () => {
    const r = await runPasskey(gpu, {
      lengths: [1024, 2048, 4096], trials: 20, dca: true, sparse: "block-sparse", sparseOptions: { blocks: 4, local: 128, sink: 64 },
    });
    for (const b of r.byLength) console.log(`cuda block-sparse+dca passkey ${b.length}: ${b.correct}/${b.n}`);
    for (const b of r.byLength) expect(b.accuracy).toBeGreaterThanOrEqual(0.9);
  });
});
