// Shared helpers for the engine tests (test/engine/*.test.ts): the tiny synthetic model in memory, its fp64
// reference twin, and comparison utilities. The reference gets the same fp32 weight values (converted to
// float64) under HF names; nothing else is shared with the engine.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Qwen2Reference, type RefWeights } from "./qwen2-ref.ts";
import { synthSpec, tensorList, generateTensor, type SynthSpec } from "../../engine/synth/synthetic.ts";
import type { QwenConfig } from "../../engine/api.ts";

export const ROOT = join(import.meta.dir, "..", "..");

/** Whether libqwen_cpu.so is built (the engine tests need it; `npm test` builds it at install). */
export function cpuLibraryBuilt(): boolean {
  const dir = process.env.QW_LIB_DIR ?? join(ROOT, "cuda", "build");
  return existsSync(join(dir, "libqwen_cpu.so"));
}

/**
 * The tiny synthetic spec used by the reference tests. std 0.08 / bias std 0.1 (instead of HF's 0.02) so
 * attention is far from uniform and RoPE / GQA / causal-mask mistakes move the logits visibly.
 */
export function tinyTestSpec(over: Partial<QwenConfig> = {}, seed = 7): SynthSpec {
  return synthSpec("tiny", { seed, std: 0.08, biasStd: 0.1, config: { max_position_embeddings: 512, ...over } });
}

/** The fp64 reference of a synthetic spec (same fp32 values, HF names, HF [out, in] layout). */
export function referenceFor(spec: SynthSpec): Qwen2Reference {
  const w: RefWeights = new Map();
  for (const t of tensorList(spec.config)) {
    const v = generateTensor(spec, t);
    w.set(t.hfName, { shape: [...t.ne].reverse(), data: Float64Array.from(v) });
  }
  return new Qwen2Reference(spec.config, w);
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`maxAbsDiff: lengths ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = d; // NaN propagates as the max
  }
  return m;
}

/** Deterministic prompt ids in [lo, hi). */
export function prompt(n: number, seed: number, lo = 0, hi = 8192): number[] {
  const out: number[] = [];
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out.push(lo + (x % (hi - lo)));
  }
  return out;
}
