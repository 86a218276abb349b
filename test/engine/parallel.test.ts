// The `parallel` model option (tensor parallelism, engine/formats/parallel.ts) on the CPU backend, whose tp2 / tp4 are
// an emulation of the ranks (cuda/src/opt/parallel/tp_cpu.hpp): logits equal tp1 within fp32 reduction-order noise (5e-6, f32 KV cache)
// and greedy tokens are identical; the option is refused with the reason where a model cannot be split.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { openModel, openSyntheticInMemory, type Model } from "../../engine/index.ts";
import { cpuLibraryBuilt, prompt, tinyTestSpec } from "../reference/fixtures.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

function run(m: Model, ids: number[], n: number): { prefill: Float32Array; tokens: number[] } {
  const s = m.newSession({ maxBatch: 1, maxContext: 256 });
  try {
    s.setSampling(0, { temperature: 0 });
    s.setToggle("kvCache", "f32"); // with bf16 K/V, reduction-order noise flips bf16 roundings (~1e-5 each on the logits)
    s.setLogitsMode(2);
    const tokens = [s.prefill(0, ids)];
    const prefill = s.logits().data.slice();
    s.setLogitsMode(0);
    while (tokens.length < n) tokens.push(s.decode([0], [tokens[tokens.length - 1]])[0]);
    return { prefill, tokens };
  } finally {
    s.close();
  }
}
// max |a - b| / max(1, max |b|)
function relErr(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 1, e = 0;
  for (let i = 0; i < b.length; i++) {
    m = Math.max(m, Math.abs(b[i]));
    e = Math.max(e, Math.abs(a[i] - b[i]));
  }
  return e / m;
}

describe.skipIf(!cpuLibraryBuilt())("parallel option (CPU emulation of the ranks)", () => {
  const cases = [
    { name: "tiny preset (4 / 2 heads)", spec: tinyTestSpec(), tp: "tp2" as const },
    { name: "8 / 4 heads", spec: tinyTestSpec({ num_attention_heads: 8, num_key_value_heads: 4, head_dim: 32 }), tp: "tp4" as const },
  ];
  const ids = prompt(24, 3);
  for (const c of cases) {
    test(`${c.name}: ${c.tp} equals tp1 (logits within 5e-6, greedy tokens identical)`, async () => {
      const one = await openSyntheticInMemory(c.spec, "f32", { backend: "cpu", threads: 2 });
      const many = await openSyntheticInMemory(c.spec, "f32", { backend: "cpu", threads: 2, parallel: c.tp });
      try {
        const a = run(one, ids, 12), b = run(many, ids, 12);
        const e = relErr(b.prefill, a.prefill);
        console.log(`[parallel] ${c.name} ${c.tp} vs tp1: prefill logits rel err ${e.toExponential(2)}`);
        expect(e).toBeLessThan(5e-6); // fp32 sums in another order; measured 8.7e-7 (tp2) and 6.8e-7 (tp4) on this machine
        expect(e).toBeGreaterThanOrEqual(0);
        expect(b.tokens).toEqual(a.tokens);
      } finally {
        one.close();
        many.close();
      }
    });
  }

  let m: Model;
  beforeAll(async () => { m = await openSyntheticInMemory(tinyTestSpec(), "f32", { backend: "cpu", threads: 1, parallel: "tp2" }); });
  afterAll(() => m?.close());
  test("sessions report the option and refuse to change it", () => {
    expect(m.parallel).toBe("tp2"); // bench rows show it in the backend column ("cpu tp2")
    const s = m.newSession({ maxBatch: 1, maxContext: 64 });
    try {
      expect(s.toggles().parallel).toBe("tp2");
      expect(() => s.setToggle("parallel", "tp1")).toThrow(/chosen when the model loads.*this model: tp2/);
      expect(s.toggles().parallel).toBe("tp2");
    } finally {
      s.close();
    }
  });

  test("a model that cannot be split is refused with the reason", async () => {
    // the embedded model has 1 KV head: no split (KV heads are not replicated)
    await expect(openModel("default", { backend: "cpu", threads: 1, parallel: "tp2" })).rejects.toThrow(/1 KV heads.*splits as tp1/);
    // tiny preset: 2 KV heads, so tp4 names tp1, tp2
    await expect(openSyntheticInMemory(tinyTestSpec(), "f32", { backend: "cpu", parallel: "tp4" })).rejects.toThrow(/2 KV heads.*tp1, tp2/);
    await expect(openSyntheticInMemory(tinyTestSpec(), "f32", { backend: "cpu", parallel: "tp3" as never })).rejects.toThrow(/tp1, tp2, tp4, tp8/);
  });
});
