// The `weights` model option (engine/formats/requant.ts, cuda/src/opt/weights/requant.cpp) on the CPU engine:
// logits of q8 / q4 / bf16 / per-layer-mixed models against the fp64 reference forward (test/reference) run
// on the same weights requantized by the TypeScript port (tolerance 1e-4 as in reference-forward.test.ts:
// both sides see identical weight values, only fp32 accumulation differs); the TS port's error bounds;
// the option's errors on every surface (openModel, the session toggle, the CLI form); the output matrix
// (weightsLayers.output) on an untied model: the reference on the same weights, a bounded move from the as-loaded
// logits, the native type in the model info and the op records, and the refusal on a tied model.
import { test, expect, describe, beforeAll, afterAll } from "bun:test";
import { openSyntheticInMemory, type Model } from "../../engine/index.ts";
import { generateTensor, tensorList, type SynthSpec } from "../../engine/synth/synthetic.ts";
import {
  checkWeightsOption, layerFormats, nativeWeightsConfig, optionFromToggle, outputFormat, parseWeightsArg, requantize, sqnr,
  tensorFormat, weightsLabel, withOutput, type WeightsOption,
} from "../../engine/formats/requant.ts";
import { opNames } from "../../engine/catalog.ts";
import { weightLabel } from "../../engine/measure/bench-core.ts";
import type { EngineModel } from "../../engine/api.ts";
import { Qwen2Reference, type RefWeights } from "../reference/qwen2-ref.ts";
import { cpuLibraryBuilt, maxAbsDiff, prompt, tinyTestSpec } from "../reference/fixtures.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const TOL = 1e-4;
const spec = tinyTestSpec();

/** The fp64 reference of a tiny spec with every projection (and the output) requantized as the option says. */
function requantizedReference(opt: WeightsOption, sp: SynthSpec = spec): Qwen2Reference {
  const w: RefWeights = new Map();
  for (const t of tensorList(sp.config)) {
    const v = requantize(generateTensor(sp, t), t.ne[1] ?? 1, t.ne[0], tensorFormat(opt, t.name, sp.config.num_hidden_layers), t.name);
    w.set(t.hfName, { shape: [...t.ne].reverse(), data: Float64Array.from(v) });
  }
  return new Qwen2Reference(sp.config, w);
}

describe("requantization (TypeScript port)", () => {
  test("q8 / q4 stay within half a step of every group; bf16 rounds; as-loaded is the identity", () => {
    const rows = 3, cols = 256, w = new Float32Array(rows * cols);
    for (let i = 0; i < w.length; i++) w[i] = Math.fround(Math.sin(i * 1.7) * 0.05 * (i % 37 === 0 ? 30 : 1));
    for (let i = 0; i < 128; i++) w[i] = 0; // an all-zero group
    for (const fmt of ["q8", "q4"] as const) {
      const y = requantize(w, rows, cols, fmt);
      for (let g = 0; g < rows * cols; g += 128) {
        let lo = 0, hi = 0;
        for (let e = g; e < g + 128; e++) { lo = Math.min(lo, w[e]); hi = Math.max(hi, w[e]); }
        const step = fmt === "q8" ? Math.max(-lo, hi) / 127 : (hi - lo) / 15;
        for (let e = g; e < g + 128; e++) expect(Math.abs(w[e] - y[e])).toBeLessThanOrEqual(step * 0.5 * (1 + 1e-4));
      }
      expect(y.subarray(0, 128).every((x) => x === 0)).toBe(true);
      const { sqnrDb, cos } = sqnr(w, y);
      expect(sqnrDb).toBeGreaterThan(fmt === "q8" ? 30 : 10);
      expect(cos).toBeGreaterThan(0.9);
    }
    expect(requantize(w, rows, cols, "as-loaded")).toBe(w);
    const b = requantize(Float32Array.of(1 + 2 ** -8, 1 + 3 * 2 ** -8), 1, 2, "bf16");
    expect([...b]).toEqual([1, 1 + 2 ** -6]); // ties to even
    expect(() => requantize(new Float32Array(2 * 192), 2, 192, "q4", "blk.0.attn_q.weight")).toThrow(/blk\.0\.attn_q\.weight: weights = q4 needs ne0 \(input features, 192\) to be a multiple of the group size 128/);
  });

  test("option errors say what was wrong; labels and toggle round trips", () => {
    expect(() => checkWeightsOption({ weights: "q5" }, 4)).toThrow(/"q5" is not a weight format \(accepted: as-loaded, bf16, q8, q4\)/);
    expect(() => checkWeightsOption({ weightsLayers: { "4": "bf16" } }, 4)).toThrow(/layer 4 is not a layer of this model \(0\.\.3\)/);
    expect(() => checkWeightsOption({ weightsLayers: { "-1": "bf16" } }, 4)).toThrow(/"-1" is not a layer index/);
    expect(() => checkWeightsOption({ weight: "q4" }, 4)).toThrow(/weight/);
    expect(() => parseWeightsArg("q4,1=int3")).toThrow(/layer "1": "int3" is not a weight format/);
    expect(parseWeightsArg("q4,0=bf16,3=bf16")).toEqual({ weights: "q4", weightsLayers: { "0": "bf16", "3": "bf16" } });
    expect(weightsLabel({ weights: "q4", weightsLayers: { "0": "bf16", "3": "bf16" } })).toBe("q4 (0,3: bf16)");
    expect(optionFromToggle(["q4", "bf16", "q4", "q4"])).toEqual({ weights: "q4", weightsLayers: { "1": "bf16" } });
    expect(optionFromToggle("as-loaded")).toEqual({});
  });

  test("the output key: parsed, labelled, kept apart from the layers, refused when malformed", () => {
    expect(parseWeightsArg("q4,output=q8")).toEqual({ weights: "q4", weightsLayers: { output: "q8" } });
    expect(parseWeightsArg("output=q8")).toEqual({ weightsLayers: { output: "q8" } });
    expect(weightsLabel({ weights: "q4", weightsLayers: { output: "q8" } })).toBe("q4,output=q8");
    expect(weightsLabel({ weightsLayers: { output: "q8" } })).toBe("output=q8");
    expect(weightsLabel({ weights: "q4", weightsLayers: { "0": "bf16", output: "q8" } })).toBe("q4 (0: bf16),output=q8");
    for (const l of ["q4,output=q8", "output=q8"]) expect(weightsLabel(parseWeightsArg(l))).toBe(l); // pastes back into --weights
    expect(() => parseWeightsArg("q4,output=q3")).toThrow(/--weights q4,output=q3: output: "q3" is not a weight format/);
    expect(() => parseWeightsArg("q4,lm_head=q8")).toThrow(/"lm_head" is not a layer index \(0, 1, 2, \.\.\.\) or "output" \(the lm_head\)/);
    expect(() => checkWeightsOption({ weightsLayers: { output: "int3" } }, 4)).toThrow(/weightsLayers\.output: "int3" is not a weight format/);
    expect(checkWeightsOption({ weights: "q8", weightsLayers: { output: "q4" } }, 4)).toEqual({ weights: "q8", weightsLayers: { output: "q4" } });
    expect(() => checkWeightsOption({ weightsLayers: { "4": "bf16" } }, 4)).toThrow(/nor "output"/);
    // not a layer: the per-layer formats and the toggle ignore it; the native config passes it as weights_layers
    expect(layerFormats({ weights: "q4", weightsLayers: { output: "q8" } }, 2)).toEqual(["q4", "q4"]);
    expect(nativeWeightsConfig({ weights: "q4", weightsLayers: { output: "q8" } })).toEqual({ weights: "q4", weights_layers: { output: "q8" } });
    expect(outputFormat({})).toBe("as-loaded");
    expect(outputFormat({ weightsLayers: { "0": "q8", output: "bf16" } })).toBe("bf16");
    expect(tensorFormat({ weights: "q4", weightsLayers: { output: "q8" } }, "output.weight", 4)).toBe("q8");
    expect(tensorFormat({ weights: "q4", weightsLayers: { output: "q8" } }, "blk.3.ffn_up.weight", 4)).toBe("q4");
    expect(tensorFormat({ weights: "q4", weightsLayers: { output: "q8" } }, "token_embd.weight", 4)).toBe("as-loaded");
    // a reload for another toggle value keeps the output; as-loaded removes the key
    expect(withOutput(optionFromToggle(["q8", "bf16"]), "q4")).toEqual({ weights: "q8", weightsLayers: { "1": "bf16", output: "q4" } });
    expect(withOutput({ weights: "q4", weightsLayers: { output: "q8" } }, "as-loaded")).toEqual({ weights: "q4" });
    expect(withOutput({}, undefined)).toEqual({});
    // bench rows (engine/measure/bench-core.ts): the file's types, then what the option made of them
    const row = (weights: WeightsOption) => weightLabel({ weightTypes: { f32: 3, bf16: 10 }, weights } as unknown as EngineModel);
    expect(row({ weightsLayers: { output: "q8" } })).toBe("bf16→output=q8");
    expect(row({ weights: "q4", weightsLayers: { output: "q8" } })).toBe("bf16→q4,output=q8");
    expect(row({})).toBe("bf16");
  });
});

describe.skipIf(!cpuLibraryBuilt())("CPU engine with requantized weights vs the fp64 reference", () => {
  const arms: { name: string; opt: WeightsOption }[] = [
    { name: "q8", opt: { weights: "q8" } },
    { name: "q4", opt: { weights: "q4" } },
    { name: "bf16", opt: { weights: "bf16" } },
    { name: "q4, layers 0 and 3 bf16, layer 1 q8", opt: { weights: "q4", weightsLayers: { "0": "bf16", "3": "bf16", "1": "q8" } } },
  ];
  for (const arm of arms) {
    describe(arm.name, () => {
      let m: Model;
      beforeAll(async () => {
        m = await openSyntheticInMemory(spec, "f32", { backend: "cpu", threads: 2, ...arm.opt });
      });
      afterAll(() => m?.close());

      test("prefill (every position) and 6 decode steps match the reference on the same requantized weights", () => {
        const ref = requantizedReference(arm.opt), plain = requantizedReference({});
        const s = m.newSession({ maxBatch: 1, maxContext: 64 });
        s.setToggle("kvCache", "f32");
        s.setLogitsMode(2);
        const vocab = spec.config.vocab_size;
        const p = prompt(11, 5, 0, vocab);
        const rs = ref.newSequence();
        let tok = s.prefill(0, p);
        const L = s.logits();
        const R = ref.forward(rs, p), P = plain.forward(plain.newSequence(), p);
        let worst = 0, moved = 0;
        for (let i = 0; i < p.length; i++) {
          worst = Math.max(worst, maxAbsDiff(L.data.subarray(i * vocab, (i + 1) * vocab), R.logits[i]));
          moved = Math.max(moved, maxAbsDiff(P.logits[i], R.logits[i]));
        }
        expect(worst).toBeLessThanOrEqual(TOL);
        expect(moved).toBeGreaterThan(100 * TOL); // the requantization is visible: a skipped one would fail above
        for (let step = 0; step < 6; step++) {
          const [next] = s.decode([0], [tok]);
          const r = ref.forward(rs, [tok]);
          expect(maxAbsDiff(s.logits().data, r.logits[0])).toBeLessThanOrEqual(TOL);
          tok = next;
        }
        s.close();
      });

      test("the session toggle reports the option per layer and refuses to change it", () => {
        const s = m.newSession({ maxBatch: 1, maxContext: 16 });
        const want = layerFormats(arm.opt, spec.config.num_hidden_layers);
        const got = s.toggles().weights;
        expect(Array.isArray(got) ? got : want.map(() => got)).toEqual(want);
        expect(optionFromToggle(got)).toEqual(optionFromToggle(want));
        expect(m.weights).toEqual(arm.opt);
        expect(() => s.setToggle("weights", want[0] === "q8" ? "q4" : "q8")).toThrow(/chosen when the model loads.*reopen the model with the option weights = q/);
        expect(() => s.setToggle("weights", "q4", 9)).toThrow(/layer/);
        s.setToggle("weights", want[2], 2); // the value it has: accepted
        s.close();
      });
    });
  }

  test("openModel refuses a bad option before loading anything", async () => {
    await expect(openSyntheticInMemory(spec, "f32", { backend: "cpu", weights: "q5" as "q4" })).rejects.toThrow(/"q5" is not a weight format/);
    await expect(openSyntheticInMemory(spec, "f32", { backend: "cpu", weights: "q4", weightsLayers: { "7": "bf16" } })).rejects.toThrow(/layer 7 is not a layer of this model \(0\.\.3\)/);
  });
});

describe.skipIf(!cpuLibraryBuilt())("the output matrix (weightsLayers.output) on the CPU engine", () => {
  const untied = tinyTestSpec({ tie_word_embeddings: false });
  const H = untied.config.hidden_size, V = untied.config.vocab_size;
  const p = prompt(11, 5, 0, V);
  const next = 17; // a fixed decode token: both runs see the same hidden states (the lm_head does not feed back)
  let plain: Model, q8: Model;
  beforeAll(async () => {
    plain = await openSyntheticInMemory(untied, "f32", { backend: "cpu", threads: 2 });
    q8 = await openSyntheticInMemory(untied, "f32", { backend: "cpu", threads: 2, weightsLayers: { output: "q8" } });
  });
  afterAll(() => { plain?.close(); q8?.close(); });

  /** Every prefill row's logits, then one decode step's, with op records (events mode). */
  function run(m: Model) {
    const s = m.newSession({ maxBatch: 1, maxContext: 64 });
    s.setToggle("kvCache", "f32");
    s.setLogitsMode(2);
    s.setProfiling("events");
    s.prefill(0, p);
    const pre = Float32Array.from(s.logits().data);
    s.decode([0], [next]);
    const dec = Float32Array.from(s.logits().data);
    const rec = s.takeRecords();
    const toggles = s.toggles();
    s.close();
    return { pre, dec, rec, toggles };
  }

  test("logits = the fp64 reference on the same weights, and within the q8 error bound of the as-loaded run", () => {
    const a = run(plain), b = run(q8);
    const ref = requantizedReference({ weightsLayers: { output: "q8" } }, untied);
    const rs = ref.newSequence();
    const R = ref.forward(rs, p), Rd = ref.forward(rs, [next]);
    let worst = 0;
    for (let i = 0; i < p.length; i++) worst = Math.max(worst, maxAbsDiff(b.pre.subarray(i * V, (i + 1) * V), R.logits[i]));
    worst = Math.max(worst, maxAbsDiff(b.dec, Rd.logits[0]));
    expect(worst).toBeLessThanOrEqual(TOL);
    // Bound: logit v moves by h . (w_v - w_hat_v) <= |h| |w_v - w_hat_v| (Cauchy-Schwarz), h the final-normed state,
    // |h| <= sqrt(H) (RMSNorm with unit weights: the synthetic norms are 1); w_hat from the TS port (bit-exact).
    const t = tensorList(untied.config).find((x) => x.name === "output.weight")!;
    const w = generateTensor(untied, t), wq = requantize(w, V, H, "q8", t.name);
    let rowErr = 0;
    for (let v = 0; v < V; v++) {
      let e2 = 0;
      for (let i = v * H; i < (v + 1) * H; i++) e2 += (w[i] - wq[i]) ** 2;
      rowErr = Math.max(rowErr, Math.sqrt(e2));
    }
    const bound = Math.sqrt(H) * rowErr + 2 * TOL;
    const moved = Math.max(maxAbsDiff(a.pre, b.pre), maxAbsDiff(a.dec, b.dec));
    expect(moved).toBeLessThanOrEqual(bound);
    expect(moved).toBeGreaterThan(100 * TOL); // visible: an output left as loaded would fail here
  });

  test("the model info, the op records and the labels say the output is w8; the layers' toggle is unchanged", () => {
    const types = new Map(q8.nativeTensors().map((t) => [t.name, t.native]));
    expect(types.get("output.weight")).toBe("w8");
    expect(types.get("token_embd.weight")).toBe("f32"); // the embedding stays as loaded
    expect(types.get("blk.0.attn_q.weight")).toBe("f32");
    expect(new Map(plain.nativeTensors().map((t) => [t.name, t.native])).get("output.weight")).toBe("f32");
    const a = run(plain), b = run(q8);
    const lm = (r: typeof a) => r.rec.ops.op.flatMap((o, i) => (opNames()[o] === "lm_head" ? [i] : []));
    expect(lm(b).length).toBe(2); // the prefill's and the decode step's
    for (const i of lm(b)) expect(b.rec.kernels[b.rec.ops.kernel[i]]).toMatch(/w8g128/);
    for (const i of lm(a)) expect(a.rec.kernels[a.rec.ops.kernel[i]]).toMatch(/f32/);
    // the cost model reads the native type: about a quarter of the f32 bytes (1 + 8/128 bytes a weight against 4)
    const bytes = (r: typeof a) => r.rec.ops.bytes[lm(r)[1]];
    expect(bytes(b) / bytes(a)).toBeLessThan(0.3);
    expect(b.toggles.weights).toBe("as-loaded"); // the per-layer toggle: the layers only
    expect(q8.weights).toEqual({ weightsLayers: { output: "q8" } });
    expect(weightsLabel(q8.weights)).toBe("output=q8");
    expect(q8.manifest().model.weights_output).toBe("q8");
    expect(plain.manifest().model.weights_output).toBeUndefined();
  });

  test("q4 output with per-layer formats matches the reference on the same weights", async () => {
    const opt: WeightsOption = { weights: "q8", weightsLayers: { "1": "bf16", output: "q4" } };
    const m = await openSyntheticInMemory(untied, "f32", { backend: "cpu", threads: 2, ...opt });
    try {
      expect(new Map(m.nativeTensors().map((t) => [t.name, t.native])).get("output.weight")).toBe("w4");
      const r = run(m), ref = requantizedReference(opt, untied);
      const R = ref.forward(ref.newSequence(), p);
      for (let i = 0; i < p.length; i++) expect(maxAbsDiff(r.pre.subarray(i * V, (i + 1) * V), R.logits[i])).toBeLessThanOrEqual(TOL);
    } finally {
      m.close();
    }
  });

  test("a tied model refuses a requantized output before loading anything, and says why and what to do", async () => {
    expect(spec.config.tie_word_embeddings).toBe(true);
    await expect(openSyntheticInMemory(spec, "f32", { backend: "cpu", weightsLayers: { output: "q8" } }))
      .rejects.toThrow(/ties its lm_head to the token embedding.*change the embeddings too; drop the "output" key/);
    const m = await openSyntheticInMemory(spec, "f32", { backend: "cpu", weightsLayers: { output: "as-loaded" } });
    m.close(); // as-loaded is what it is anyway: accepted
  });
});
