// Quantization error on the CPU engine: the embedded bf16 checkpoint against a Q8_0 GGUF of the same weights
// (written by `convert`), perplexity / KL on the Brown text, and a model whose layer 2 overflows to Inf/NaN:
// reported as a finding (first hook that went non-finite), never a schema failure. Phase decode: the same two files
// compared on ONE decode step (the last prompt token after the others were prefilled) and timed per decode step.
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
import { latencyMatrix } from "../../engine/measure/aggregate.ts";
import type { Capture, EngineSession } from "../../engine/api.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const dir = mkdtempSync(join(tmpdir(), "qw-quant-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// The embedded model as a Q8_0 GGUF (written by `convert` once per file): weights that differ from the bf16
// checkpoint's on any CPU, in prefill and in decode alike.
let q8File: Promise<string> | undefined;
function q8Gguf(): Promise<string> {
  return (q8File ??= (async () => {
    const path = join(dir, "tiny-q8_0.gguf");
    const w = await convertModel("default", path, "q8_0");
    expect(new Set(Object.values(w.types))).toEqual(new Set(["Q8_0", "F32"]));
    return path;
  })());
}

/** Every captures() answer of a session, kept (recordQuantError reads them only through the session). */
function spyCaptures(s: EngineSession): Capture[][] {
  const seen: Capture[][] = [];
  const real = s.captures.bind(s);
  s.captures = () => { const c = real(); seen.push(c); return c; };
  return seen;
}

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
    const q8path = await q8Gguf();
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

  test("phase decode: bf16 vs Q8_0 on one decode step (one row per hook), timed per decode step", async () => {
    const { openModel } = await import("../../engine/index.ts");
    const q8path = await q8Gguf();
    const bf16 = await openModel("default", { backend: "cpu", threads: 2 });
    const q8 = await openModel(q8path, { backend: "cpu", threads: 2 });
    try {
      const text = "The jury said it did find that the court had been fair";
      const tokens = bf16.tokenizer.encode(text);
      const rs = bf16.newSession({ maxBatch: 1 }), cs = q8.newSession({ maxBatch: 1 });
      const refSeen = spyCaptures(rs), candSeen = spyCaptures(cs);
      const spec = {
        id: "q8-vs-bf16-decode", prompt: { prompt: text }, repeats: 1,
        reference: { label: "bf16", toggles: {} }, candidate: { label: "q8_0", toggles: {}, model: q8path },
      };
      const p = await recordQuantError(bf16, rs, { ...spec, phase: "decode" }, { candidate: { model: q8, session: cs } });
      Profile.parse(p);
      const q = p.quant_error![0];
      expect(q.phase).toBe("decode");
      // each arm's captures were read once (the decode step; the timing runs capture nothing): one row per hook
      for (const seen of [refSeen, candSeen]) {
        expect(seen.length).toBe(1);
        expect(seen[0].map((c) => c.name)).toEqual([0, 1, 2, 3].map((l) => `blocks.${l}.hook_resid_post`).concat("hook_logits"));
        for (const c of seen[0]) expect(c.rows).toBe(1);
      }
      expect(q.layers.length).toBe(4);
      for (const l of q.layers) {
        expect(l.nonfinite).toBeUndefined();
        expect(1 - l.cosine).toBeGreaterThan(0);
        expect(l.rel_l1).toBeGreaterThan(0);
        expect(Number.isFinite(l.sqnr_db)).toBe(true);
        expect(l.sqnr_db).toBeLessThan(80); // different weights: never "identical"
      }
      expect(q.logits!.kl).toBeGreaterThan(0);
      expect(Number.isFinite(q.logits!.kl)).toBe(true);
      // per-layer time of a decode step, both arms, from a profile whose op records are decode steps
      const lm = p.summary.layer_ms as { reference: number[]; candidate: number[]; unit: string };
      expect(lm.unit).toBe("ms per decode step (median)");
      for (const arm of [lm.reference, lm.candidate]) {
        expect(arm.length).toBe(4);
        for (const ms of arm) expect(ms).toBeGreaterThan(0);
      }
      expect(latencyMatrix(p, "decode").steps).toBeGreaterThan(0);
      expect(p.notes ?? []).toEqual([]); // nothing to report: no K/V arms, no perplexity, every arm timed
      // The decode step is the last prompt token's position: the reference's logits row is the prefill capture's last
      // row (same weights, GEMV against GEMM: close, not bitwise).
      const pre = await recordQuantError(bf16, rs, spec, { candidate: { model: q8, session: cs } });
      expect(pre.quant_error![0].phase).toBe("prefill");
      expect(pre.summary.layer_ms).toMatchObject({ unit: "ms per prefill (median)" });
      const preLogits = refSeen[1].find((c) => c.name === "hook_logits")!, decLogits = refSeen[0].find((c) => c.name === "hook_logits")!;
      expect(preLogits.rows).toBe(tokens.length);
      const last = preLogits.data.subarray((tokens.length - 1) * preLogits.cols);
      let dot = 0, na = 0, nb = 0;
      for (let i = 0; i < last.length; i++) { dot += last[i] * decLogits.data[i]; na += last[i] ** 2; nb += decLogits.data[i] ** 2; }
      expect(dot / Math.sqrt(na * nb)).toBeGreaterThan(0.999);
    } finally { bf16.close(); q8.close(); }
  });

  test("phase decode: arms differing in kvCache get no K/V table but a finding; perplexity is flagged as prefill", async () => {
    const { openModel } = await import("../../engine/index.ts");
    const m = await openModel("default", { backend: "cpu", threads: 2 });
    try {
      const s = m.newSession({ maxBatch: 1 });
      const p = await recordQuantError(m, s, {
        id: "kv-decode", prompt: { prompt: "The jury said it did find that the court had been fair" }, repeats: 1, phase: "decode",
        reference: { label: "bf16", toggles: { kvCache: "bf16" } }, candidate: { label: "q8", toggles: { kvCache: "q8" } },
        perplexity: { text: { text: "The jury said it did find that the court had been fair to all." }, ctx: 64 },
      });
      const q = p.quant_error![0];
      expect(q.kv).toBeUndefined();
      expect(q.layers.some((l) => l.hook.endsWith("attn.hook_z"))).toBe(false);
      // the decode step attends over the K/V the prefill cached in q8: its error shows at every layer
      for (const l of q.layers) expect(l.rel_l1).toBeGreaterThan(0);
      expect(q.findings!.join(" ")).toMatch(/K\/V error is measured in phase prefill only/);
      // the text is scored in the same phase (one decode step per token): both arms finite, and q8 K/V moves it
      expect(q.perplexity!.reference).toBeGreaterThan(1);
      expect(q.perplexity!.candidate).toBeGreaterThan(1);
      expect(q.perplexity!.candidate).not.toBe(q.perplexity!.reference);
    } finally { m.close(); }
  });

  test("phase decode with a one-token prompt is refused, saying what to do", async () => {
    const { openModel } = await import("../../engine/index.ts");
    const m = await openModel("default", { backend: "cpu", threads: 2 });
    try {
      const tok = m.tokenizer.encode("The")[0];
      await expect(recordQuantError(m, m.newSession({ maxBatch: 1 }), {
        id: "one", prompt: { tokens: [tok] }, phase: "decode",
        reference: { label: "bf16", toggles: {} }, candidate: { label: "q8", toggles: { kvCache: "q8" } },
      })).rejects.toThrow(/phase decode needs a prompt of at least 2 tokens .*this one has 1: lengthen the prompt or measure phase prefill/);
    } finally { m.close(); }
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
