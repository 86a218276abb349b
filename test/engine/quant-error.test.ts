// Quantization error on the CPU engine: the embedded bf16 checkpoint against a Q8_0 GGUF of the same weights
// (written by `convert`), perplexity / KL on the Brown text, and a model whose layer 2 overflows to Inf/NaN:
// reported as a finding (first hook that went non-finite), never a schema failure.
import { test, expect, describe, afterAll } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cpuLibraryBuilt, ROOT } from "../reference/fixtures.ts";
import { compareCaptures, recordQuantError, sameShapes } from "../../engine/measure/quant-error.ts";
import { convertModel, tokenizerGgufMetadata } from "../../engine/formats/convert.ts";
import { convertToGguf, openModelSource } from "../../engine/formats/modelfile.ts";
import { GGML_TYPE } from "../../engine/formats/gguf.ts";
import { Profile } from "../../engine/measure/profile.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const dir = mkdtempSync(join(tmpdir(), "qw-quant-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("compareCaptures: metrics over finite positions, first non-finite hook in forward order", () => {
  const cap = (name: string, vals: number[]) => ({ name, rows: 1, cols: vals.length, data: Float32Array.from(vals) });
  const ref = [cap("blocks.1.hook_resid_post", [1, 2, 3, 4]), cap("blocks.1.hook_resid_mid", [1, 2, 3, 4]), cap("blocks.0.hook_resid_post", [1, 1, 1, 1]), cap("hook_logits", [0, 1, 2, 3])];
  const cand = [cap("blocks.1.hook_resid_post", [1, NaN, 3, 4]), cap("blocks.1.hook_resid_mid", [1, 2, Infinity, 4.1]), cap("blocks.0.hook_resid_post", [1, 1, 1, 1.01]), cap("hook_logits", [0, 1, NaN, 3])];
  const r = compareCaptures(ref, cand);
  expect(r.layers.map((l) => l.hook)).toEqual(["blocks.0.hook_resid_post", "blocks.1.hook_resid_mid", "blocks.1.hook_resid_post"]);
  expect(r.first_nonfinite).toEqual({ arm: "candidate", hook: "blocks.1.hook_resid_mid", layer: 1, count: 1, total: 4 });
  expect(r.layers[1].nonfinite).toEqual({ reference: 0, candidate: 1, values: 4 });
  expect(r.layers[1].max_abs).toBeCloseTo(0.1, 5); // over the 3 finite positions
  expect(r.layers[0].nonfinite).toBeUndefined();
  expect(r.logits).toBeUndefined(); // the one logits row is not finite
  expect(r.findings!.join(" ")).toMatch(/no logits row is finite/);
  // the whole record is valid JSON for the profile schema
  expect(() => JSON.parse(JSON.stringify(r))).not.toThrow();
});

describe.skipIf(!cpuLibraryBuilt())("on the CPU engine", () => {
  test("bf16 checkpoint vs its Q8_0 GGUF: per-layer error, logits KL, perplexity and KL on Brown", async () => {
    const { openModel } = await import("../../engine/index.ts");
    const q8path = join(dir, "tiny-q8_0.gguf");
    const w = await convertModel("default", q8path, "q8_0");
    expect(new Set(Object.values(w.types))).toEqual(new Set(["Q8_0", "F32"]));
    const bf16 = await openModel("default", { backend: "cpu", threads: 2 });
    const q8 = await openModel(q8path, { backend: "cpu", threads: 2 });
    try {
      expect(q8.tokenizer.encode("The jury said")).toEqual(bf16.tokenizer.encode("The jury said"));
      const s = bf16.newSession({ maxBatch: 1 });
      const p = await recordQuantError(bf16, s, {
        id: "q8-vs-bf16", prompt: { prompt: "The jury said it did find that the court had been fair" }, repeats: 1,
        reference: { label: "bf16", toggles: {} }, candidate: { label: "q8_0", toggles: {}, model: q8path },
        perplexity: { text: "brown", ctx: 128, maxTokens: 640 },
      }, { candidate: { model: q8, session: q8.newSession({ maxBatch: 1 }) } });
      Profile.parse(p);
      const q = p.quant_error![0];
      expect(q.candidate_model).toBe(q8path);
      expect(q.layers.length).toBe(4);
      for (const l of q.layers) {
        expect(l.sqnr_db).toBeGreaterThan(15);
        expect(l.sqnr_db).toBeLessThan(80); // different weights: never "identical"
      }
      expect(q.logits!.kl).toBeGreaterThan(0);
      expect(q.logits!.kl).toBeLessThan(0.05);
      const pp = q.perplexity!;
      expect(pp.tokens).toBe(640);
      expect(pp.reference!).toBeGreaterThan(20);
      expect(Math.abs(pp.delta!) / pp.reference!).toBeLessThan(0.05);
      expect(pp.kl_mean!).toBeGreaterThan(0);
      expect(pp.top1_agreement!).toBeGreaterThan(0.9);
      expect(q.first_nonfinite).toBeUndefined();
    } finally { bf16.close(); q8.close(); }
  });

  test("a layer that overflows to Inf/NaN: a finding naming blocks.2.hook_resid_post, the profile still valid", async () => {
    const { openModel } = await import("../../engine/index.ts");
    const src = openModelSource(join(ROOT, "models/tiny-qwen2-brown"));
    const bad = "blk.2.ffn_down.weight";
    const t = src.tensors.find((x) => x.name === bad)!;
    const n = t.ne[0] * t.ne[1];
    const huge = new Uint8Array(new Float32Array(n).fill(3e38).buffer);
    const poisoned = { ...src, tensors: src.tensors.map((x) => (x.name === bad ? { ...x, ggmlType: GGML_TYPE.F32, nbytes: huge.length, data: huge } : x)) };
    const path = join(dir, "poisoned.gguf");
    await convertToGguf(poisoned, path, { scheme: "bf16", metadata: tokenizerGgufMetadata(src) });
    const good = await openModel("default", { backend: "cpu", threads: 2 });
    const broken = await openModel(path, { backend: "cpu", threads: 2 });
    try {
      expect(sameShapes(good, broken)).toBeNull();
      const p = await recordQuantError(good, good.newSession({ maxBatch: 1 }), {
        id: "poisoned", prompt: { prompt: "The jury said" }, repeats: 1,
        reference: { label: "good", toggles: {} }, candidate: { label: "poisoned", toggles: {}, model: path },
        perplexity: { text: { text: "The jury said it did find that the court had been fair to all." }, ctx: 64 },
      }, { candidate: { model: broken, session: broken.newSession({ maxBatch: 1 }) } });
      const q = p.quant_error![0];
      expect(q.first_nonfinite).toMatchObject({ arm: "candidate", hook: "blocks.2.hook_resid_post", layer: 2 });
      expect(q.layers[1].nonfinite).toBeUndefined();
      expect(q.layers[2].nonfinite!.candidate).toBeGreaterThan(0);
      expect(q.perplexity!.nonfinite_candidate).toBeGreaterThan(0);
      expect(p.notes!.join(" ")).toMatch(/non-finite values \(NaN\/Inf\) first appear at blocks\.2\.hook_resid_post in the candidate/);
    } finally { good.close(); broken.close(); }
  });

  test("models of different shapes are refused with a message naming the difference", async () => {
    const { openModel } = await import("../../engine/index.ts");
    const a = await openModel("default", { backend: "cpu", threads: 2 });
    const b = await openModel("synthetic:tiny", { backend: "cpu", threads: 2 });
    try {
      const msg = sameShapes(a, b);
      if (msg === null) throw new Error("synthetic:tiny unexpectedly has the embedded model's shapes");
      expect(msg).toMatch(/differ in shape/);
      await expect(recordQuantError(a, a.newSession(), {
        id: "x", prompt: { prompt: "x" }, reference: { label: "a", toggles: {} }, candidate: { label: "b", toggles: {} },
      }, { candidate: { model: b, session: b.newSession() } })).rejects.toThrow(/differ in shape/);
    } finally { a.close(); b.close(); }
  });
});
