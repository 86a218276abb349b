// Toggle attention = sage-int8 | sage-fp8 on the CPU backend (cuda/src/opt/attention/sage_cpu.cpp): the registry
// offers both arms on the CPU; set on one layer it reaches exactly that layer (inputs of its attention and every
// earlier layer's captures bitwise unchanged, its attention output close to flash-bf16 but not equal), the op
// record names the arm that ran, and prefill plus decode run under it. A Sage arm that a quantized KV cache or DCA would replace is an error.
import { test, expect, describe, beforeAll, afterAll } from "bun:test";
import { openModel, type Model } from "../../engine/index.ts";
import { opNames } from "../../engine/catalog.ts";
import { tensorError } from "../../engine/measure/metrics.ts";
import type { Capture } from "../../engine/api.ts";
import { cpuLibraryBuilt, prompt } from "../reference/fixtures.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout();

describe.skipIf(!cpuLibraryBuilt())("attention = sage-* (CPU)", () => {
  let m: Model;
  beforeAll(async () => {
    m = (await openModel("default", { backend: "cpu", threads: 2 })) as Model;
  });
  afterAll(() => m?.close());

  const HOOKS = ["attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_z", "hook_resid_post"];

  // Prefill of 70 tokens then one decode step with `arm` at `layer` (flash-bf16 elsewhere): captures of the prefill
  // by name, and the attention kernel names of both steps by layer.
  function run(arm: string, layer: number) {
    const s = m.newSession({ maxContext: 128 });
    const L = m.config.num_hidden_layers;
    s.setCapture(Array.from({ length: L }, (_, l) => HOOKS.map((h) => `blocks.${l}.${h}`)).flat());
    s.setToggle("attention", arm, layer);
    s.setProfiling(true);
    const t = s.prefill(0, prompt(70, 3));
    const caps = new Map<string, Capture>(s.captures().map((c) => [c.name, c]));
    s.setCapture([]);
    s.decode([0], [t]);
    const r = s.takeRecords();
    const kernels: string[][] = Array.from({ length: L }, () => []);
    r.ops.op.forEach((o, i) => {
      if (opNames()[o] === "attention") kernels[r.ops.layer[i]].push(r.kernels[r.ops.kernel[i]]);
    });
    s.close();
    return { caps, kernels };
  }

  test("the CPU registry offers flash-bf16, sage-int8 and sage-fp8", () => {
    const att = m.toggleRegistry().find((d) => d.id === "attention")!;
    expect(att.perLayer).toBe(true);
    expect(att.backends.cpu).toEqual(["flash-bf16", "sage-int8", "sage-fp8"]);
  });

  for (const arm of ["sage-int8", "sage-fp8"]) {
    test(`${arm} on layer 2 reaches exactly layer 2`, () => {
      const ref = run("flash-bf16", -1), cand = run(arm, 2);
      const L = m.config.num_hidden_layers;
      for (let l = 0; l < L; l++) {
        expect(ref.kernels[l]).toEqual(["cpu.attention.native.kv_bf16", "cpu.attention.native.kv_bf16"]);
        expect(cand.kernels[l]).toEqual(l === 2 ? [`cpu.attention.${arm}.kv_bf16`, `cpu.attention.${arm}.kv_bf16`]
          : ["cpu.attention.native.kv_bf16", "cpu.attention.native.kv_bf16"]);
      }
      for (let l = 0; l < L; l++)
        for (const h of HOOKS) {
          const name = `blocks.${l}.${h}`;
          const a = ref.caps.get(name)!.data, b = cand.caps.get(name)!.data;
          // before layer 2's attention output nothing moved; from it on, everything did
          const upstream = l < 2 || (l === 2 && h !== "attn.hook_z" && h !== "hook_resid_post");
          if (upstream) expect(Buffer.from(b.buffer).equals(Buffer.from(a.buffer))).toBe(true);
          else expect(Buffer.from(b.buffer).equals(Buffer.from(a.buffer))).toBe(false);
        }
      const e = tensorError(ref.caps.get("blocks.2.attn.hook_z")!.data, cand.caps.get("blocks.2.attn.hook_z")!.data);
      expect(e.cosine).toBeGreaterThan(0.999);
      expect(e.rel_l1).toBeLessThan(0.06);
    });
  }

  test("a Sage arm with a quantized KV cache or with dca = on is refused per step, naming the layer and both toggles", () => {
    const attNames = (s: ReturnType<Model["newSession"]>) => {
      const r = s.takeRecords();
      return r.ops.op.flatMap((o, i) => (opNames()[o] === "attention" ? [r.kernels[r.ops.kernel[i]]] : []));
    };
    const s = m.newSession({ maxContext: 64 });
    try {
      s.setProfiling(true);
      // the order of setting does not matter: the combination is checked when a step runs
      s.setToggle("kvCache", "q8");
      s.setToggle("attention", "sage-int8", 1);
      expect(() => s.prefill(0, prompt(20, 5))).toThrow(/attention = sage-int8 on layer 1 reads a bf16 or f32 KV cache, but kvCache = q8/);
      s.setToggle("attention", "flash-bf16", 1);  // flash-bf16 with q8 runs the cache's own attention, named as such
      s.prefill(0, prompt(20, 5));
      for (const k of attNames(s)) expect(k).toMatch(/kvq|q8/);
      s.setToggle("kvCache", "bf16");
      s.setToggle("dca", "on", 3);
      s.setToggle("attention", "sage-fp8", 3);
      expect(() => s.prefill(0, prompt(20, 5))).toThrow(/attention = sage-fp8 on layer 3 cannot run with dca = on/);
      s.setToggle("dca", "on", 2);  // dca on another layer than the Sage arm: both run, each where it was set
      s.setToggle("dca", "off", 3);
      s.takeRecords();
      s.prefill(0, prompt(20, 5));
      const k = attNames(s);
      expect(k[2]).toContain("dca");
      expect(k[3]).toContain("sage-fp8");
    } finally {
      s.close();
    }
  });

  test("a Sage value for a bad layer is a clear error", () => {
    const s = m.newSession({ maxContext: 32 });
    expect(() => s.setToggle("attention", "sage-int8", 99)).toThrow(/layer 99/);
    expect(() => s.setToggle("attention", "sage-int4")).toThrow(/is not a value/);
    s.close();
  });
});
