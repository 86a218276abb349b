// Per-layer K/V error of the KV-cache and attention arms (engine/measure/kv-error.ts): the rebuilders against the
// formats' own bounds (q8: half a code step plus the fp16 scale's rounding, KIVI: half a step inside the quantized groups and bf16 in the residual
// window, Sage INT8 K: half a step of its 64-key block, e4m3 against its value grid), the order of the formats' errors
// (q8 < kivi4 < kivi2), and the quantization-error measurement on the CPU engine: kvCache and attention arms yield a
// per-layer kv table next to the attention output's error, stored in a valid profile.
import { describe, expect, test } from "bun:test";
import { e4m3Round, kiviNq, kvErr, kvError, rebuildKv } from "../../engine/measure/kv-error.ts";
import { recordQuantError } from "../../engine/measure/quant-error.ts";
import { Profile } from "../../engine/measure/profile.ts";
import { cpuLibraryBuilt, prompt } from "../reference/fixtures.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout();

function data(T: number, cols: number, seed = 1, off = 0): Float32Array {
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
  const bias = Array.from({ length: cols }, () => off * rnd());
  return Float32Array.from({ length: T * cols }, (_, i) => Math.fround(rnd() * 2 + bias[i % cols]));
}

describe("rebuilders", () => {
  test("e4m3 rounds to its grid: exact values stay, ties go to the even code, saturation at 448", () => {
    for (const v of [0, 1, 1.125, 448, -448, 2 ** -9, 0.875 * 2 ** -6, 240]) expect(e4m3Round(v)).toBe(v);
    expect(e4m3Round(1.0625)).toBe(1);        // tie between 1 and 1.125: even mantissa 0
    expect(e4m3Round(1.1875)).toBe(1.25);     // tie between 1.125 and 1.25: even mantissa 2
    expect(e4m3Round(500)).toBe(448);
    expect(e4m3Round(-1e6)).toBe(-448);
    expect(e4m3Round(2 ** -11)).toBe(0);      // below half the smallest subnormal
  });

  test("q8: every value within half a step of its 32-channel row block, plus the fp16 rounding of the scale", () => {
    const T = 40, nKV = 2, d = 64, x = data(T, nKV * d, 3);
    const y = rebuildKv(x, T, nKV, d, { kvCache: "q8", attention: "flash-bf16" }, true);
    for (let t = 0; t < T; t++)
      for (let b = 0; b < nKV * d; b += 32) {
        let amax = 0;
        for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(x[t * nKV * d + b + i]));
        for (let i = 0; i < 32; i++) expect(Math.abs(y[t * nKV * d + b + i] - x[t * nKV * d + b + i])).toBeLessThanOrEqual((amax / 127) * (0.5 + 127 * 2 ** -11) + 1e-6);
      }
  });

  test("kivi: quantized groups within half a step, the residual window in bf16; kivi2 worse than kivi4 worse than q8", () => {
    const T = 300, nKV = 1, d = 64, x = data(T, d, 5, 1);
    const nq = kiviNq(T);
    expect(nq).toBe(160);
    for (const key of [true, false]) {
      const e = (kv: string) => kvErr(x, rebuildKv(x, T, nKV, d, { kvCache: kv, attention: "flash-bf16" }, key)).sqnr_db;
      expect(e("q8")).toBeGreaterThan(e("kivi4"));
      expect(e("kivi4")).toBeGreaterThan(e("kivi2"));
      const y = rebuildKv(x, T, nKV, d, { kvCache: "kivi2", attention: "flash-bf16" }, key);
      for (let t = nq; t < T; t++) for (let c = 0; c < d; c++) expect(Math.abs(y[t * d + c] - x[t * d + c])).toBeLessThanOrEqual(Math.abs(x[t * d + c]) / 128);
      // inside the quantized part every value is within half a step of its group's range (plus fp16 rounding)
      for (let t = 0; t < nq; t++)
        for (let c = 0; c < d; c++) {
          let mn = Infinity, mx = -Infinity;
          for (let i = 0; i < 32; i++) {
            const v = key ? x[(Math.floor(t / 32) * 32 + i) * d + c] : x[t * d + Math.floor(c / 32) * 32 + i];
            mn = Math.min(mn, v); mx = Math.max(mx, v);
          }
          expect(Math.abs(y[t * d + c] - x[t * d + c])).toBeLessThanOrEqual(((mx - mn) / 3) * 0.51 + 0.01);
        }
    }
  });

  test("Sage: INT8 K after smoothing is better than q8 with a per-channel offset; fp8 V is worse than int8's bf16 V", () => {
    const T = 200, d = 64, x = data(T, d, 7, 8);  // large per-channel offsets: what smooth-K removes
    const arm = (a: string) => ({ kvCache: "bf16", attention: a });
    const k8 = kvErr(x, rebuildKv(x, T, 1, d, arm("sage-int8"), true));
    expect(k8.sqnr_db).toBeGreaterThan(30);
    const vi = kvErr(x, rebuildKv(x, T, 1, d, arm("sage-int8"), false)), vf = kvErr(x, rebuildKv(x, T, 1, d, arm("sage-fp8"), false));
    expect(vi.sqnr_db).toBeGreaterThan(vf.sqnr_db);
    expect(vf.sqnr_db).toBeGreaterThan(25);
    // a layer whose forms agree is left out; one that differs gets both arms' errors
    const r = kvError([x, x], [x, x], T, 1, d, [arm("flash-bf16"), arm("flash-bf16")], [arm("flash-bf16"), arm("sage-fp8")]);
    expect(r.map((l) => l.layer)).toEqual([1]);
    expect(r[0]).toMatchObject({ reference: "bf16", candidate: "sage-fp8 (bf16 cache)" });
    expect(r[0].k.candidate.sqnr_db).toBeLessThan(r[0].k.reference.sqnr_db);
  });
});

describe.skipIf(!cpuLibraryBuilt())("on the CPU engine", () => {
  test("kvCache and attention arms: a per-layer kv table beside the attention output's error, in a valid profile", async () => {
    const { openModel } = await import("../../engine/index.ts");
    const m = await openModel("default", { backend: "cpu", threads: 2 });
    try {
      const s = m.newSession({ maxBatch: 1, maxContext: 512 });
      const L = m.config.num_hidden_layers;
      const tokens = prompt(200, 9);
      const q = async (toggles: Record<string, string>) => {
        const p = await recordQuantError(m, s, {
          id: "kv", prompt: { tokens }, repeats: 1,
          reference: { label: "bf16", toggles: { kvCache: "bf16" } }, candidate: { label: JSON.stringify(toggles), toggles },
        });
        expect(Profile.safeParse(p).success).toBe(true);
        return p.quant_error![0];
      };
      const q8 = await q({ kvCache: "q8" }), k2 = await q({ kvCache: "kivi2" }), fp8 = await q({ kvCache: "bf16", attention: "sage-fp8" });
      for (const r of [q8, k2, fp8]) {
        expect(r.kv!.map((x) => x.layer)).toEqual(Array.from({ length: L }, (_, l) => l));
        // the attention output of every layer is compared too, and the K/V captures are not listed as hooks
        expect(r.layers.filter((x) => x.hook.endsWith("attn.hook_z")).length).toBe(L);
        expect(r.layers.some((x) => /hook_[kv]$/.test(x.hook))).toBe(false);
      }
      for (let l = 0; l < L; l++) {
        expect(q8.kv![l].candidate).toBe("q8");
        expect(q8.kv![l].k.candidate.sqnr_db).toBeGreaterThan(k2.kv![l].k.candidate.sqnr_db);
        expect(q8.kv![l].k.reference.sqnr_db).toBeGreaterThan(q8.kv![l].k.candidate.sqnr_db);  // bf16 beats q8
        expect(fp8.kv![l].candidate).toBe("sage-fp8 (bf16 cache)");
      }
    } finally {
      m.close();
    }
  });
});
