// Vertical-slash sparse prefill on CUDA (src/opt/sparse_prefill/sparse_kernels.cu, compile-checked only until this
// runs) against the CPU reference (sparse_prefill_cpu.cpp, itself checked in test_sparse_prefill.cpp and
// test/engine/sparse.test.ts), on the passkey model: full budgets = the dense CUDA logits (up to the sparse kernel's
// fp32 order), small budgets close to the CPU's sparse logits with the same argmax, with and without DCA, and passkey
// retrieval with sparse prefill over DCA at 1024 / 2048 / 4096 tokens. Skips without a GPU.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { openModel, type Model } from "../../engine/index.ts";
import type { SparseOptions } from "../../engine/api.ts";
import { buildPasskeyPrompt, FillerStream, PASSKEY_MODEL_DIR, rngFor, runPasskey } from "../../engine/measure/passkey.ts";
import { argmax, noGpu, rel } from "./gpu.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout();

function lastLogits(m: Model, tokens: number[], o: { sparse?: SparseOptions; dca?: boolean }): Float32Array {
  const s = m.newSession({ maxContext: tokens.length + 8, ...(o.sparse ? { sparse: o.sparse } : {}) });
  try {
    if (o.dca) s.setToggle("dca", "on");
    if (o.sparse) s.setToggle("sparsePrefill", "vertical-slash");
    s.setLogitsMode(1);
    s.prefill(0, tokens);
    return s.logits().data.slice();
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
});
