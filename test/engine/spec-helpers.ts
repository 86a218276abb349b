// Helpers of the speculative decoding tests (test/engine/speculative.test.ts, test/gpu/speculative.test.ts).
import { brownDocuments } from "../../engine/text/brown.ts";
import type { QwenConfig } from "../../engine/api.ts";
import type { EagleTensors } from "../../engine/spec/eagle-head.ts";
import { Xoshiro128 } from "../../engine/synth/synthetic.ts";

/** Brown validation prompts: the first `words` words of a document (varied documents and lengths). */
export function brownPrompts(n: number): string[] {
  const docs = brownDocuments("validation");
  return Array.from({ length: n }, (_, i) => {
    const d = docs[(i * 7) % docs.length].text.split(/\s+/);
    const start = (i * 37) % Math.max(1, d.length - 80);
    return d.slice(start, start + 3 + ((i * 11) % 60)).join(" ");
  });
}

/** Exact softmax at temperature 1 (float64), independent of engine/spec/sampling.ts. */
export function softmax(row: Float32Array): Float64Array {
  let m = -Infinity;
  for (const v of row) m = Math.max(m, v);
  const p = new Float64Array(row.length);
  let s = 0;
  for (let i = 0; i < row.length; i++) { p[i] = Math.exp(row[i] - m); s += p[i]; }
  for (let i = 0; i < row.length; i++) p[i] /= s;
  return p;
}

/**
 * Pearson's chi-square of observed counts against expected probabilities: cells with an expected count >= 5
 * each, the rest pooled into one cell (when its expected count is >= 5). Returns the statistic and the
 * degrees of freedom.
 */
export function chiSquare(counts: Map<string, number>, expected: Map<string, number>, n: number): { chi2: number; df: number } {
  let chi2 = 0, df = -1, restE = 0, restO = 0;
  const seen = new Set<string>();
  for (const [cell, p] of expected) {
    const e = p * n, o = counts.get(cell) ?? 0;
    seen.add(cell);
    if (e >= 5) { chi2 += (o - e) ** 2 / e; df++; } else { restE += e; restO += o; }
  }
  for (const [cell, o] of counts) if (!seen.has(cell)) restO += o;
  restE = Math.max(0, n - [...expected.values()].reduce((a, p) => a + (p * n >= 5 ? p * n : 0), 0));
  if (restE >= 5) { chi2 += (restO - restE) ** 2 / restE; df++; } else if (restO > 0 && restE < 1e-9) chi2 = Infinity;
  return { chi2, df };
}

/**
 * The chi-square critical value at significance 1e-3 (Wilson–Hilferty: accurate to a few % for df >= 3). The
 * draws are seeded, so each test is deterministic; 1e-3 is the chance a correct sampler would have failed with
 * an unlucky seed. The negative controls below land orders of magnitude above it.
 */
export function critical(df: number): number {
  const z = 3.0902; // the 0.999 normal quantile
  const a = 2 / (9 * df);
  return df * (1 - a + z * Math.sqrt(a)) ** 3;
}

/** A randomly initialized EAGLE head for a Qwen2 target, SafeAILab tensor names, PyTorch shapes. */
export function randomHead(c: QwenConfig, seed: number): EagleTensors {
  const rng = new Xoshiro128(seed, 0xea61e);
  const H = c.hidden_size, F = c.intermediate_size, hd = H / c.num_attention_heads, Q = c.num_attention_heads * hd, KV = c.num_key_value_heads * hd;
  const t = (shape: number[], std: number) => {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) data[i] = (rng.nextUnit() * 2 - 1) * std * Math.sqrt(3);
    return { shape, data };
  };
  const ones = (n: number) => ({ shape: [n], data: new Float32Array(n).fill(1) });
  return {
    "fc.weight": t([H, 2 * H], 0.05), "fc.bias": t([H], 0.02),
    "layers.0.self_attn.q_proj.weight": t([Q, H], 0.05), "layers.0.self_attn.q_proj.bias": t([Q], 0.02),
    "layers.0.self_attn.k_proj.weight": t([KV, H], 0.05), "layers.0.self_attn.k_proj.bias": t([KV], 0.02),
    "layers.0.self_attn.v_proj.weight": t([KV, H], 0.05), "layers.0.self_attn.v_proj.bias": t([KV], 0.02),
    "layers.0.self_attn.o_proj.weight": t([H, Q], 0.05),
    "layers.0.post_attention_layernorm.weight": ones(H),
    "layers.0.mlp.gate_proj.weight": t([F, H], 0.05), "layers.0.mlp.up_proj.weight": t([F, H], 0.05),
    "layers.0.mlp.down_proj.weight": t([H, F], 0.05),
  };
}
