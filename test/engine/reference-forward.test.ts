// (a) The CPU engine against the independent fp64 reference (test/reference/qwen2-ref.ts) on the tiny synthetic
// model, f32 weights and f32 KV cache: logits of every prefill position and of each of 20 decode steps,
// batch 1 and batch 3 with different prompt lengths. Tolerance: max |Δlogit| ≤ 1e-4 (logits are O(1–10);
// fp32 accumulation over H = 256 / F = 768 gives 5e-6..9e-6 in practice).
// (f) The GQA "broadcast" arm computes the same function as "native" (≤ 1e-5).
// Also: q8_0 and q4_k_m (Q4_K + Q6_K) GGUF files against the reference on the TS-dequantized weights (≤ 1e-4).
import { test, expect, describe, beforeAll, afterAll } from "bun:test";
import { openSyntheticInMemory, type Model } from "../../engine/index.ts";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openModel } from "../../engine/index.ts";
import { openModelSource, ggufToHfName } from "../../engine/formats/modelfile.ts";
import { dequantize } from "../../engine/formats/quant.ts";
import { writeSyntheticGguf } from "../../engine/synth/synthetic.ts";
import { argmax, Qwen2Reference, type RefWeights } from "../reference/qwen2-ref.ts";
import { cpuLibraryBuilt, maxAbsDiff, prompt, referenceFor, tinyTestSpec } from "../reference/fixtures.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const TOL = 1e-4;
const DECODE_STEPS = 20;

describe.skipIf(!cpuLibraryBuilt())("engine vs fp64 reference (tiny synthetic, f32)", () => {
  // Two configs: the tiny preset (4 q heads / 2 KV heads, tied) and an untied one with 6 q heads / 2 KV heads
  // and head_dim 32 (group size 3, head_dim*heads != hidden) so GQA grouping and the lm_head path are covered.
  const variants = [
    { name: "tiny (4q/2kv, tied)", spec: tinyTestSpec() },
    { name: "untied 6q/2kv d32", spec: tinyTestSpec({ num_attention_heads: 6, num_key_value_heads: 2, head_dim: 32, tie_word_embeddings: false, vocab_size: 1000 }, 11) },
  ];
  for (const v of variants) {
    describe(v.name, () => {
      let m: Model;
      beforeAll(async () => {
        m = await openSyntheticInMemory(v.spec, "f32", { backend: "cpu", threads: 2 });
      });
      afterAll(() => m?.close());

      test("batch 1: prefill (every position) and 20 decode steps", () => {
        const ref = referenceFor(v.spec);
        const s = m.newSession({ maxBatch: 1, maxContext: 64 });
        s.setToggle("kvCache", "f32");
        s.setLogitsMode(2);
        const vocab = v.spec.config.vocab_size;
        const p = prompt(13, 3, 0, vocab);
        const rs = ref.newSequence();
        let tok = s.prefill(0, p);
        const L = s.logits();
        expect(L.rows).toBe(p.length);
        expect(L.vocab).toBe(vocab);
        const R = ref.forward(rs, p);
        let worst = 0;
        for (let i = 0; i < p.length; i++) worst = Math.max(worst, maxAbsDiff(L.data.subarray(i * vocab, (i + 1) * vocab), R.logits[i]));
        expect(worst).toBeLessThanOrEqual(TOL);
        expect(tok).toBe(argmax(L.data.subarray((p.length - 1) * vocab)));
        for (let step = 0; step < DECODE_STEPS; step++) {
          const [next] = s.decode([0], [tok]);
          const l = s.logits();
          expect(l.rows).toBe(1);
          const r = ref.forward(rs, [tok]).logits[0];
          const d = maxAbsDiff(l.data, r);
          worst = Math.max(worst, d);
          expect(d).toBeLessThanOrEqual(TOL);
          expect(next).toBe(argmax(l.data));
          tok = next;
        }
        expect(s.seqLen(0)).toBe(p.length + DECODE_STEPS);
        s.close();
        console.log(`  ${v.name}: batch 1 worst |Δlogit| = ${worst.toExponential(2)}`);
      });

      test("batch 3 with prompt lengths 5, 17, 1: prefill then 20 batched decode steps", () => {
        const ref = referenceFor(v.spec);
        const vocab = v.spec.config.vocab_size;
        const s = m.newSession({ maxBatch: 3, maxContext: 64 });
        s.setToggle("kvCache", "f32");
        s.setLogitsMode(1);
        const lens = [5, 17, 1];
        const rseq = lens.map(() => ref.newSequence());
        const toks: number[] = [];
        let worst = 0;
        lens.forEach((n, i) => {
          const p = prompt(n, 10 + i, 0, vocab);
          toks.push(s.prefill(i, p));
          const l = s.logits();
          expect(l.rows).toBe(1);
          const r = ref.forward(rseq[i], p).logits[n - 1];
          worst = Math.max(worst, maxAbsDiff(l.data, r));
        });
        // decode in a permuted order of sequence ids to check row <-> sequence mapping
        const order = [2, 0, 1];
        for (let step = 0; step < DECODE_STEPS; step++) {
          const next = s.decode(order, order.map((q) => toks[q]));
          const l = s.logits();
          expect(l.rows).toBe(3);
          order.forEach((q, row) => {
            const r = ref.forward(rseq[q], [toks[q]]).logits[0];
            const d = maxAbsDiff(l.data.subarray(row * vocab, (row + 1) * vocab), r);
            worst = Math.max(worst, d);
            expect(next[row]).toBe(argmax(l.data.subarray(row * vocab, (row + 1) * vocab)));
            toks[q] = next[row];
          });
        }
        expect(worst).toBeLessThanOrEqual(TOL);
        lens.forEach((n, i) => expect(s.seqLen(i)).toBe(n + DECODE_STEPS));
        s.close();
        console.log(`  ${v.name}: batch 3 worst |Δlogit| = ${worst.toExponential(2)}`);
      });

      test("(f) gqa=broadcast computes the same logits as gqa=native", () => {
        const vocab = v.spec.config.vocab_size;
        const run = (gqa: string) => {
          const s = m.newSession({ maxBatch: 2, maxContext: 64 });
          s.setToggle("kvCache", "f32");
          s.setToggle("gqa", gqa);
          s.setLogitsMode(1);
          const out: Float32Array[] = [];
          let a = s.prefill(0, prompt(9, 21, 0, vocab));
          out.push(s.logits().data.slice());
          let b = s.prefill(1, prompt(4, 22, 0, vocab));
          out.push(s.logits().data.slice());
          for (let i = 0; i < 8; i++) {
            [a, b] = s.decode([0, 1], [a, b]);
            out.push(s.logits().data.slice());
          }
          s.close();
          return out;
        };
        const native = run("native");
        const broadcast = run("broadcast");
        let worst = 0;
        native.forEach((x, i) => (worst = Math.max(worst, maxAbsDiff(x, broadcast[i]))));
        expect(worst).toBeLessThanOrEqual(1e-5);
      });

      test("per-layer toggle: gqa broadcast on layer 1 only", () => {
        const s = m.newSession({ maxBatch: 1, maxContext: 32 });
        s.setToggle("gqa", "broadcast", 1);
        const t = s.toggles();
        expect(Array.isArray(t.gqa)).toBe(true);
        expect((t.gqa as string[])[1]).toBe("broadcast");
        expect((t.gqa as string[])[0]).toBe("native");
        s.close();
      });
    });
  }
});

// Quantized weights end to end: a tiny synthetic GGUF written as q8_0 and as the q4_k_m mix (Q4_K, Q6_K) is loaded
// by the engine; the fp64 reference runs on the same weights dequantized in TypeScript (engine/formats/quant.ts). Because
// the engine's GGUF -> native conversion is exact, the logits must agree to fp32 accuracy (1e-4), not merely to
// quantization accuracy.

describe.skipIf(!cpuLibraryBuilt())("quantized GGUF: engine vs fp64 reference on the dequantized weights", () => {
  for (const type of ["q8_0", "q4_k_m"] as const) {
    test(type, async () => {
      const dir = mkdtempSync(join(tmpdir(), "qw-q-"));
      try {
        const spec = tinyTestSpec({}, 5);
        const path = join(dir, `tiny-${type}.gguf`);
        await writeSyntheticGguf(spec, type, path);
        const src = openModelSource(path);
        const types = new Set(Object.keys(src.weightTypes));
        if (type === "q4_k_m") {
          expect(types.has("Q4_K")).toBe(true);
          expect(types.has("Q6_K")).toBe(true);
        } else expect(types.has("Q8_0")).toBe(true);
        const w: RefWeights = new Map();
        for (const t of src.tensors) {
          w.set(ggufToHfName(t.name)!, { shape: [...t.ne].reverse(), data: Float64Array.from(dequantize(t.ggmlType, t.data)) });
        }
        const ref = new Qwen2Reference(spec.config, w);
        const m = await openModel(path, { backend: "cpu", threads: 2 });
        const s = m.newSession({ maxContext: 64 });
        s.setToggle("kvCache", "f32");
        s.setLogitsMode(2);
        const V = spec.config.vocab_size;
        const p = prompt(9, 4, 0, V);
        const rs = ref.newSequence();
        let tok = s.prefill(0, p);
        const L = s.logits();
        const R = ref.forward(rs, p);
        let worst = 0;
        for (let i = 0; i < p.length; i++) worst = Math.max(worst, maxAbsDiff(L.data.subarray(i * V, (i + 1) * V), R.logits[i]));
        for (let step = 0; step < 8; step++) {
          const fed = tok;
          [tok] = s.decode([0], [fed]);
          worst = Math.max(worst, maxAbsDiff(s.logits().data, ref.forward(rs, [fed]).logits[0]));
        }
        m.close();
        console.log(`  ${type}: worst |Δlogit| = ${worst.toExponential(2)} (types ${[...types].join(", ")})`);
        expect(worst).toBeLessThanOrEqual(TOL);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
