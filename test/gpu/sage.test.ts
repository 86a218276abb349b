// SageAttention prefill on CUDA (cuda/src/opt/attention/sage.cu) end to end on the embedded model, next to the CPU
// reference arms (sage_ref.hpp): the registry offers both arms on cuda; with every layer in the arm, the CUDA arm's
// attention output is about as far from CUDA flash-bf16 as the CPU arm is from CPU flash-bf16; each layer alone in
// the arm meets the bars (cosine >= 0.999, relative L1 <= 0.03); one layer's toggle reaches that layer only (kernel names by layer, upstream
// captures bitwise unchanged); chunked prefill against the cache and decode after it run and agree with one prefill;
// a quantized KV cache with a Sage arm is refused per step. The kernels were written without a GPU: this file is
// their first end-to-end check (see README). Skips without a GPU.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { openModel, type Model } from "../../engine/index.ts";
import { opNames } from "../../engine/catalog.ts";
import { tensorError } from "../../engine/measure/metrics.ts";
import { textTokens } from "../../engine/measure/perplexity-run.ts";
import type { Capture } from "../../engine/api.ts";
import { launcher, noGpu } from "./gpu.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout();

const ARMS = ["sage-int8", "sage-fp8"];

describe.skipIf(noGpu())("attention = sage-* on CUDA vs the CPU reference arms", () => {
  let cpu: Model, gpu: Model;
  let tokens: number[];
  beforeAll(async () => {
    cpu = (await openModel("default", { backend: "cpu" })) as Model;
    gpu = (await openModel("default", { backend: "cuda" })) as Model;
    tokens = textTokens(cpu, { kind: "brown" }, 512).tokens;
  });
  afterAll(() => {
    cpu?.close();
    gpu?.close();
  });

  // One prefill of `toks` (in pieces of `piece`) under `arm` (all layers, or the per-layer array): hook_z and
  // resid_post captures of the last piece, attention kernel names by layer, last-position logits.
  function run(m: Model, arm: string | string[], toks: number[], piece = toks.length) {
    const L = m.config.num_hidden_layers;
    const s = m.newSession({ maxContext: toks.length + 8 });
    try {
      if (Array.isArray(arm)) arm.forEach((a, l) => s.setToggle("attention", a, l));
      else s.setToggle("attention", arm);
      s.setLogitsMode(1);
      s.setProfiling(true);
      for (let i = 0; i < toks.length; i += piece) {
        if (i + piece >= toks.length)
          s.setCapture(Array.from({ length: L }, (_, l) => [`blocks.${l}.attn.hook_z`, `blocks.${l}.hook_resid_post`]).flat());
        s.prefill(0, toks.slice(i, Math.min(toks.length, i + piece)));
      }
      const caps = new Map<string, Capture>(s.captures().map((c) => [c.name, c]));
      const logits = s.logits().data.slice();
      const r = s.takeRecords();
      const kernels: string[][] = Array.from({ length: L }, () => []);
      r.ops.op.forEach((o, i) => {
        if (opNames()[o] === "attention") kernels[r.ops.layer[i]].push(launcher(r.kernels[r.ops.kernel[i]]));
      });
      return { caps, kernels: kernels.map((k) => [...new Set(k)]), logits };
    } finally {
      s.close();
    }
  }
  const z = (r: ReturnType<typeof run>, l: number) => r.caps.get(`blocks.${l}.attn.hook_z`)!.data;

  test("the registry offers both Sage arms on cuda", () => {
    const att = gpu.toggleRegistry().find((d) => d.id === "attention")!;
    expect(att.backends.cuda).toEqual(["flash-bf16", "sage-int8", "sage-fp8"]);
  });

  for (const arm of ARMS) {
    test(`${arm}: every layer in the arm, CUDA about as far from CUDA flash-bf16 as the CPU arm from CPU flash-bf16`, () => {
      const gRef = run(gpu, "flash-bf16", tokens), gArm = run(gpu, arm, tokens);
      const cRef = run(cpu, "flash-bf16", tokens), cArm = run(cpu, arm, tokens);
      const L = gpu.config.num_hidden_layers;
      for (let l = 0; l < L; l++) {
        expect(gArm.kernels[l]).toEqual([`attn_prefill_${arm.replace("-", "_")}`]);
        const eg = tensorError(z(gRef, l), z(gArm, l)), ec = tensorError(z(cRef, l), z(cArm, l));
        console.log(`[sage] ${arm} layer ${l}, all layers: cuda cos ${eg.cosine.toFixed(6)} relL1 ${eg.rel_l1.toFixed(4)} · ` +
          `cpu cos ${ec.cosine.toFixed(6)} relL1 ${ec.rel_l1.toFixed(4)}`);
        expect(eg.cosine).toBeGreaterThanOrEqual(0.999);
        expect(eg.rel_l1).toBeLessThan(1.5 * ec.rel_l1 + 0.005);
        // and the CUDA arm stays near the CPU arm it reproduces (bf16 activations on CUDA, fp32 on the CPU)
        expect(tensorError(z(cArm, l), z(gArm, l)).cosine).toBeGreaterThan(0.998);
      }
    });

    // The issue's bars per layer, on that layer's own error: only layer l in the arm (its inputs are flash-bf16's; with
    // every layer in sage-fp8 the CPU reference itself drifts past 0.03 by layer 2, see README Measured)
    test(`${arm}: each layer alone meets cosine >= 0.999 and rel L1 <= 0.03`, () => {
      const L = gpu.config.num_hidden_layers;
      const ref = run(gpu, "flash-bf16", tokens);
      for (let l = 0; l < L; l++) {
        const one = run(gpu, Array.from({ length: L }, (_, i) => (i === l ? arm : "flash-bf16")), tokens);
        const e = tensorError(z(ref, l), z(one, l));
        console.log(`[sage] ${arm} layer ${l} alone: cuda cos ${e.cosine.toFixed(6)} relL1 ${e.rel_l1.toFixed(4)} max abs ${e.max_abs.toExponential(2)}`);
        expect(e.cosine).toBeGreaterThanOrEqual(0.999);
        expect(e.rel_l1).toBeLessThanOrEqual(0.03);
      }
    });
  }

  test("sage-int8 on layer 2 reaches exactly layer 2", () => {
    const L = gpu.config.num_hidden_layers;
    const arms = Array.from({ length: L }, (_, l) => (l === 2 ? "sage-int8" : "flash-bf16"));
    const ref = run(gpu, "flash-bf16", tokens.slice(0, 200)), one = run(gpu, arms, tokens.slice(0, 200));
    for (let l = 0; l < L; l++) {
      expect(one.kernels[l]).toEqual([l === 2 ? "attn_prefill_sage_int8" : ref.kernels[l][0]]);
      const same = Buffer.from(z(one, l).buffer).equals(Buffer.from(z(ref, l).buffer));
      expect(same).toBe(l < 2);
    }
  });

  for (const arm of ARMS)
    test(`${arm}: chunked prefill (3 x 100 against the cache) agrees with one prefill of 300`, () => {
      const t = tokens.slice(0, 300);
      const one = run(gpu, arm, t), chunked = run(gpu, arm, t, 100);
      let d = 0, r = 0;
      for (let i = 0; i < one.logits.length; i++) {
        d = Math.max(d, Math.abs(one.logits[i] - chunked.logits[i]));
        r = Math.max(r, Math.abs(one.logits[i]));
      }
      // the chunks re-smooth K over a different key set and re-block Q: equal up to the arm's quantization noise
      expect(d / r).toBeLessThan(0.05);
      const argmax = (a: Float32Array) => a.reduce((b, x, i) => (x > a[b] ? i : b), 0);
      expect(argmax(chunked.logits)).toBe(argmax(one.logits));
    });

  test("decode after a Sage prefill runs (the bf16 split-KV kernel) and a quantized KV cache is refused", () => {
    const s = gpu.newSession({ maxContext: 64 });
    try {
      s.setToggle("attention", "sage-fp8");
      const t = s.prefill(0, tokens.slice(0, 40));
      expect(() => s.decode([0], [t])).not.toThrow();
      s.setToggle("kvCache", "q8");
      expect(() => s.prefill(0, tokens.slice(0, 8))).toThrow(/attention = sage-fp8 on layer 0 .*kvCache = q8/);
    } finally {
      s.close();
    }
  });
});
