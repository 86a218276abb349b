// The `weights` model option (engine/formats/requant.ts, cuda/src/opt/weights/requant.cpp) on the CPU engine:
// logits of q8 / q4 / bf16 / per-layer-mixed models against the fp64 reference forward (test/reference) run
// on the same weights requantized by the TypeScript port (tolerance 1e-4 as in reference-forward.test.ts:
// both sides see identical weight values, only fp32 accumulation differs); the TS port's error bounds;
// the option's errors on every surface (openModel, the session toggle, the CLI form).
import { test, expect, describe, beforeAll, afterAll } from "bun:test";
import { openSyntheticInMemory, type Model } from "../../engine/index.ts";
import { generateTensor, tensorList } from "../../engine/synth/synthetic.ts";
import {
  checkWeightsOption, layerFormats, optionFromToggle, parseWeightsArg, projectionOf, requantize, sqnr, weightsLabel,
  type WeightsOption,
} from "../../engine/formats/requant.ts";
import { Qwen2Reference, type RefWeights } from "../reference/qwen2-ref.ts";
import { cpuLibraryBuilt, maxAbsDiff, prompt, tinyTestSpec } from "../reference/fixtures.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const TOL = 1e-4;
const spec = tinyTestSpec();

/** The fp64 reference of the tiny spec with every projection requantized as the option says. */
function requantizedReference(opt: WeightsOption): Qwen2Reference {
  const formats = layerFormats(opt, spec.config.num_hidden_layers);
  const w: RefWeights = new Map();
  for (const t of tensorList(spec.config)) {
    let v = generateTensor(spec, t);
    const p = projectionOf(t.name);
    if (p) v = requantize(v, t.ne[1], t.ne[0], formats[p.layer], t.name);
    w.set(t.hfName, { shape: [...t.ne].reverse(), data: Float64Array.from(v) });
  }
  return new Qwen2Reference(spec.config, w);
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
