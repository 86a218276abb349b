// Block-sparse prefill on CUDA (src/opt/sparse_prefill/block_sparse_kernels.cu, compile-checked only until this runs)
// against the CPU reference (block_sparse_cpu.cpp, itself checked in test_sparse_prefill.cpp and
// test/engine/sparse.test.ts), on the passkey model: every block = the dense CUDA logits (up to the kernel's fp32
// order), small budgets close to the CPU's block-sparse logits with the same argmax, with and without DCA; the
// attention records count the keys visited; passkey retrieval with block-sparse over DCA at 1024 / 2048 / 4096 tokens.
// Skips without a GPU.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { openModel, type Model } from "../../engine/index.ts";
import type { SparseOptions } from "../../engine/api.ts";
import { opNames } from "../../engine/catalog.ts";
import { buildPasskeyPrompt, FillerStream, PASSKEY_MODEL_DIR, rngFor, runPasskey } from "../../engine/measure/passkey.ts";
import { argmax, noGpu, rel } from "./gpu.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout();

/** Last-position logits and the attention records' FLOPs of one prefill. */
function run(m: Model, tokens: number[], o: { sparse?: SparseOptions; dca?: boolean }) {
  const s = m.newSession({ maxContext: tokens.length + 8, ...(o.sparse ? { sparse: o.sparse } : {}) });
  try {
    if (o.dca) s.setToggle("dca", "on");
    if (o.sparse) s.setToggle("sparsePrefill", "block-sparse");
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

describe.skipIf(noGpu())("block-sparse prefill: CUDA vs CPU on tiny-qwen2-passkey", () => {
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
  const prompt = (length: number) => buildPasskeyPrompt(cpu.tokenizer, filler, length, rngFor(3, length)).tokens;

  test("every block: the dense CUDA logits; small budgets: close to the CPU's block-sparse logits, same argmax", () => {
    const full = { blocks: 1 << 20 };
    const small = { blocks: 2, local: 128, sink: 64 };
    for (const dca of [false, true]) {
      const t = prompt(dca ? 2000 : 500);
      const dense = run(gpu, t, { dca });
      expect(rel(run(gpu, t, { dca, sparse: full }).logits, dense.logits)).toBeLessThan(2e-2);
      const g = run(gpu, t, { dca, sparse: small }), c = run(cpu, t, { dca, sparse: small });
      const e = rel(g.logits, c.logits);
      console.log(`block-sparse ${dca ? "+dca " : ""}CUDA vs CPU: rel max |d logits| ${e.toExponential(2)}; attention FLOPs ${g.flops.toExponential(3)} (CPU ${c.flops.toExponential(3)}, dense ${dense.flops.toExponential(3)})`);
      expect(e).toBeLessThan(5e-2);
      expect(argmax(g.logits)).toBe(argmax(c.logits));
      // the records count the keys visited: below dense, and the same model as the CPU's (selections may differ slightly)
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
