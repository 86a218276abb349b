import { test, expect } from "bun:test";
import { tensorError, logitsError, perplexity, logSoftmax } from "../../engine/measure/metrics.ts";
import { checkToggles, parseRegistry, validateToggleSettings, parseToggleArg, toggleSettingsProblem } from "../../engine/toggles.ts";
import { percentile, benchPrompt, othersShare, modelLabel } from "../../engine/measure/bench-core.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

test("tensorError: identical, scaled and noisy inputs", () => {
  const a = new Float32Array([1, -2, 3, -4]);
  const same = tensorError(a, a);
  expect(same.cosine).toBeCloseTo(1, 12);
  expect(same.rel_l1).toBe(0);
  expect(same.rmse).toBe(0);
  expect(same.sqnr_db).toBe(Infinity);
  const b = new Float32Array([1.1, -2, 3, -4]);
  const e = tensorError(a, b);
  expect(e.max_abs).toBeCloseTo(0.1, 6);
  expect(e.rel_l1).toBeCloseTo(0.1 / 10, 6);
  expect(e.rmse).toBeCloseTo(Math.sqrt(0.01 / 4), 6);
  expect(e.sqnr_db).toBeCloseTo(10 * Math.log10(30 / 0.01), 3);
  expect(tensorError(a, a.map((x) => -x)).cosine).toBeCloseTo(-1, 12);
  expect(() => tensorError(a, new Float32Array(3))).toThrow(/lengths differ/);
});

test("logits metrics: KL, top-1, perplexity", () => {
  const r = new Float32Array([0, 1, 2, 3, 3, 2, 1, 0]);
  const same = logitsError(r, r, 4);
  expect(same.kl).toBeCloseTo(0, 12);
  expect(same.top1_agreement).toBe(1);
  const c = new Float32Array([0, 1, 3, 2, 3, 2, 1, 0]);
  const e = logitsError(r, c, 4);
  expect(e.top1_agreement).toBe(0.5);
  expect(e.kl).toBeGreaterThan(0);
  // uniform logits over V -> perplexity V
  expect(perplexity(new Float32Array(12), 4, [0, 1, 3])).toBeCloseTo(4, 10);
  const ls = logSoftmax([0, Math.log(3)]);
  expect(Math.exp(ls[1])).toBeCloseTo(0.75, 12);
});

const REG = JSON.stringify([
  { id: "gqa", name: "Grouped-query attention", type: "enum", values: ["native", "broadcast"], default: "native", perLayer: true, needsReset: false,
    backends: { cpu: ["native", "broadcast"], cuda: ["native"] }, spec: "QWEN-002", description: "x" },
  { id: "kvCache", name: "KV-cache type", type: "enum", values: ["bf16", "f32", "q8", "kivi4"], default: "bf16", perLayer: false, needsReset: true,
    backends: { cpu: ["bf16", "f32"], cuda: ["bf16", "q8"] }, spec: "QWEN-007", description: "y" },
]);

test("toggle registry and settings schema", () => {
  const reg = parseRegistry(REG);
  expect(reg.length).toBe(2);
  expect(() => parseRegistry("[{}]")).toThrow(/toggle registry: invalid/);
  expect(validateToggleSettings(reg, { gqa: "broadcast" }, { backend: "cpu" })).toEqual({ gqa: "broadcast" });
  expect(validateToggleSettings(reg, { gqa: ["native", "broadcast"] }, { nLayers: 2 })).toEqual({ gqa: ["native", "broadcast"] });
  // "not on this backend" (the other one has it) is told apart from "not implemented yet" (no backend has it)
  expect(() => validateToggleSettings(reg, { gqa: "broadcast" }, { backend: "cuda" }))
    .toThrow("toggle gqa (Grouped-query attention) = broadcast is not on the cuda backend (the cpu backend has it; cuda has: native)");
  expect(() => validateToggleSettings(reg, { kvCache: "kivi4" }, { backend: "cpu" }))
    .toThrow("toggle kvCache (KV-cache type) = kivi4 is not implemented yet (specified in QWEN-007; no backend implements it)");
  expect(() => validateToggleSettings(reg, { gqa: ["native", "broadcast"] }, { backend: "cuda", nLayers: 2 })).toThrow(/broadcast is not on the cuda backend/);
  expect(() => validateToggleSettings(reg, { gqa: "sideways" }, { backend: "cpu" })).toThrow(/"sideways" is not one of native, broadcast/);
  expect(() => validateToggleSettings(reg, { kvCache: ["f32"] })).toThrow(/kvCache/);
  expect(() => validateToggleSettings(reg, { nope: "x" })).toThrow(/known toggles: gqa, kvCache/);
  expect(parseToggleArg("gqa=broadcast,kvCache=f32")).toEqual({ gqa: "broadcast", kvCache: "f32" });
  expect(parseToggleArg("gqa=native/broadcast")).toEqual({ gqa: ["native", "broadcast"] });
  expect(() => parseToggleArg("gqa")).toThrow(/id=value/);
});

test("one toggle validator: the web's checkToggles and the CLI's validateToggleSettings give the same verdicts", () => {
  const reg = parseRegistry(REG);
  const cases: [unknown, RegExp | null][] = [
    [{ gqa: "broadcast" }, null],
    [{ gqa: ["native", "broadcast"] }, null],
    [{ nope: "x" }, /^unknown toggle "nope" \(known toggles: gqa, kvCache\)$/],
    [{ kvCache: ["f32", "f32"] }, /toggle "kvCache" is global, not a per-layer mask/],
    [{ gqa: ["native"] }, /toggle "gqa": per-layer mask needs 2 values, got 1/],
    [{ gqa: [] }, /per-layer mask needs 2 values, got 0/],
    [{ kvCache: "q8" }, /kvCache \(KV-cache type\) = q8 is not on the cpu backend \(the cuda backend has it/],
    [{ kvCache: "f64" }, /"f64" is not one of bf16, f32, q8, kivi4/],
    [{ ["__proto__"]: "x" }, /refused/],
    [JSON.parse('{"__proto__": "x"}'), /refused/],
    [{ gqa: "nat\u0000ive" }, /refused/],
  ];
  for (const [settings, want] of cases) {
    const web = checkToggles(reg, settings as never, 2, "cpu");
    const lib = toggleSettingsProblem(reg, settings, { backend: "cpu", nLayers: 2 });
    expect(web).toBe(lib);
    if (want) {
      expect(lib).toMatch(want);
      expect(() => validateToggleSettings(reg, settings, { backend: "cpu", nLayers: 2 })).toThrow(want);
    } else expect(lib).toBeNull();
  }
});

test("bench helpers", () => {
  expect(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90)).toBe(9);
  expect(percentile([1, 2, 3], 50)).toBe(2);
  const p = benchPrompt(100, 8256, 3);
  expect(p.length).toBe(100);
  expect(p.every((t) => t >= 10 && t < 8192)).toBe(true);
  expect(benchPrompt(100, 8256, 3)).toEqual(p);
});

test("bench contention share and labels", () => {
  // 2 CPUs x 1 s = 200 jiffies; 150 busy, of which this process used 1.0 CPU-s (100 jiffies) -> others 50/200
  const a = { t: 0, busyJ: 1000, totalJ: 5000, ownUs: 0 };
  expect(othersShare(a, { t: 1000, busyJ: 1150, totalJ: 5200, ownUs: 1_000_000 })).toBeCloseTo(0.25, 10);
  expect(othersShare(a, { t: 1000, busyJ: 1100, totalJ: 5200, ownUs: 1_000_000 })).toBe(0);
  expect(othersShare(a, { t: 10, busyJ: 1005, totalJ: 5010, ownUs: 0 })).toBeUndefined(); // too short to judge
  expect(othersShare(undefined, a)).toBeUndefined();
  expect(modelLabel("/x/y/qwen2.5-0.5b-synthetic-q8_0-s0.gguf")).toBe("qwen2.5-0.5b-synthetic-q8_0-s0");
  expect(modelLabel("/x/models/tiny-qwen2-brown/")).toBe("tiny-qwen2-brown");
  expect(modelLabel("default:tiny-qwen2-brown")).toBe("default:tiny-qwen2-brown");
});
