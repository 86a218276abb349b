// Dual Chunk Attention on CUDA (src/opt/dca/dca_kernels.cu) against the CPU reference (src/opt/dca/dca_cpu.cpp, itself
// checked against explicit position tables in cuda/src/opt/dca/test_dca.cpp), on the passkey model
// (models/tiny-qwen2-passkey: trained at 512 tokens, chunk 512 / local 64): last-position logits after a
// prefill past several chunks, the same after chunked prefill + decode (graphs on and off), DCA = plain attention
// up to the chunk, and passkey retrieval at 1024 / 2048 / 4096 tokens. Skips without a GPU.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { openModel, type Model } from "../../engine/index.ts";
import { buildPasskeyPrompt, FillerStream, PASSKEY_MODEL_DIR, rngFor, runPasskey } from "../../engine/measure/passkey.ts";
import { argmax, noGpu, rel } from "./gpu.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout();

// Last-position logits: prefill `pre` tokens in pieces of `piece`, then decode the rest one by one.
function lastLogits(m: Model, tokens: number[], o: { dca: boolean; pre?: number; piece?: number; graphs?: boolean }): Float32Array {
  const s = m.newSession({ maxContext: tokens.length + 8 });
  try {
    if (o.dca) s.setToggle("dca", "on");
    if (o.graphs === false && m.backend === "cuda") s.setToggle("graphs", "off");
    s.setLogitsMode(1);
    const pre = o.pre ?? tokens.length, piece = o.piece ?? pre;
    for (let i = 0; i < pre; i += piece) s.prefill(0, tokens.slice(i, Math.min(pre, i + piece)));
    for (let i = pre; i < tokens.length; i++) s.decode([0], [tokens[i]]);
    return s.logits().data.slice();
  } finally {
    s.close();
  }
}

describe.skipIf(noGpu())("DCA: CUDA vs CPU on tiny-qwen2-passkey", () => {
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
  const prompt = (length: number, seed = 1) =>
    buildPasskeyPrompt(cpu.tokenizer, filler, length, rngFor(seed, length)).tokens;

  test("the registry lists dca = on for cuda", () => {
    expect(gpu.toggleRegistry().find((t) => t.id === "dca")!.backends.cuda).toContain("on");
  });

  test("prefill past several chunks: CUDA logits close to the CPU's (bf16 activations vs fp32), same argmax", () => {
    for (const length of [1000, 2500]) {
      const t = prompt(length);
      const g = lastLogits(gpu, t, { dca: true }), c = lastLogits(cpu, t, { dca: true });
      const e = rel(g, c);
      console.log(`[cuda dca] ${length} tokens: max |dlogit| / max |logit| = ${e.toExponential(2)}`);
      expect(e).toBeLessThan(3e-2);
      expect(argmax(g)).toBe(argmax(c));
    }
  });

  test("chunked prefill + decode across chunk boundaries (graphs on and off) agree with one prefill", () => {
    const t = prompt(1000, 2);
    const once = lastLogits(gpu, t, { dca: true });
    for (const graphs of [true, false]) {
      const e = rel(lastLogits(gpu, t, { dca: true, pre: 880, piece: 224, graphs }), once);
      console.log(`[cuda dca] prefill 4 x 224 + decode 120, graphs ${graphs ? "on" : "off"}: rel diff ${e.toExponential(2)}`);
      expect(e).toBeLessThan(3e-2);
    }
    // and against the CPU doing the same
    expect(rel(lastLogits(gpu, t, { dca: true, pre: 880, piece: 224 }), lastLogits(cpu, t, { dca: true, pre: 880, piece: 224 }))).toBeLessThan(3e-2);
  });

  test("up to the chunk DCA is plain attention on CUDA too; past it, it is not", () => {
    const t = prompt(500, 3);
    expect(rel(lastLogits(gpu, t, { dca: true }), lastLogits(gpu, t, { dca: false }))).toBeLessThan(3e-2);
    const u = prompt(1500, 3);
    expect(rel(lastLogits(gpu, u, { dca: true }), lastLogits(gpu, u, { dca: false }))).toBeGreaterThan(5e-2);
  });

  test("passkey retrieval with DCA on CUDA at 1024 / 2048 / 4096 tokens (50 trials each; target >= 95 %)", async () => {
    const r = await runPasskey(gpu, { lengths: [1024, 2048, 4096], trials: 50, seed: 0, dca: true });
    for (const b of r.byLength) console.log(`[cuda dca] passkey ${b.length}: ${(100 * b.accuracy).toFixed(0)} % (${b.correct}/${b.n})`);
    for (const b of r.byLength) expect(b.accuracy).toBeGreaterThanOrEqual(0.95);
  });
});
