// engine/spec/sampling.ts — the engine's sampling distribution (cuda/src/front/sampling.hpp) as explicit
// probabilities, for speculative rejection sampling, which needs p(x) and q(x) and not only a draw.
//
// For settings (temperature T > 0, top_k, top_p) and a logits row, the engine draws by inverse CDF from
//   candidates = non-NaN logits ordered by (logit desc, id asc); top_k > 0 keeps the first top_k;
//   w_i = exp((l_i - max) / T) in double; top_p < 1 keeps the shortest prefix with sum w >= top_p * total;
//   P(i) = w_i / (sum of the kept w).
// dist() returns exactly that P as a dense Float64Array over the vocabulary (0 outside the kept set). T <= 0
// (greedy) is the point mass on the argmax, lowest id on ties, as the engine's argmax_lowest.
import { Xoshiro128 } from "../synth/synthetic.ts";

export interface SamplingSettings {
  temperature: number; // <= 0: greedy
  topK: number;        // <= 0: off
  topP: number;        // 1: off
}

/** argmax over row [off, off + vocab) of `logits`, NaN never wins, lowest id on ties (argmax_lowest). */
export function argmaxRow(logits: Float32Array, off: number, vocab: number): number {
  let best = -1, bv = 0;
  for (let i = 0; i < vocab; i++) {
    const v = logits[off + i];
    if (Number.isNaN(v)) continue;
    if (best < 0 || v > bv) { best = i; bv = v; }
  }
  return best < 0 ? 0 : best;
}

/** The engine's sampling distribution of one logits row (see the file comment). */
export function dist(logits: Float32Array, off: number, vocab: number, s: SamplingSettings): Float64Array {
  const p = new Float64Array(vocab);
  if (!(s.temperature > 0)) {
    p[argmaxRow(logits, off, vocab)] = 1;
    return p;
  }
  let ids: number[] = [];
  for (let i = 0; i < vocab; i++) if (!Number.isNaN(logits[off + i])) ids.push(i);
  if (ids.length === 0) { p[0] = 1; return p; }
  const needOrder = (s.topK > 0 && s.topK < ids.length) || s.topP < 1;
  if (needOrder) {
    ids.sort((a, b) => (logits[off + b] - logits[off + a]) || (a - b));
    if (s.topK > 0 && s.topK < ids.length) ids = ids.slice(0, s.topK);
  }
  let m = -Infinity;
  for (const i of ids) m = Math.max(m, logits[off + i]);
  const T = Math.fround(s.temperature); // the engine holds temperature and top_p as float
  let total = 0;
  for (const i of ids) {
    const w = Math.exp((logits[off + i] - m) / T);
    p[i] = w;
    total += w;
  }
  let keep = ids.length, kept = total;
  if (s.topP < 1) {
    const thr = Math.fround(s.topP) * total;
    let acc = 0;
    for (let j = 0; j < ids.length; j++) {
      acc += p[ids[j]];
      if (acc >= thr) { keep = j + 1; break; }
    }
    kept = acc;
    for (let j = keep; j < ids.length; j++) p[ids[j]] = 0;
  }
  for (let j = 0; j < keep; j++) p[ids[j]] /= kept;
  return p;
}

/** Inverse-CDF draw (ids ascending) from weights w (need not sum to 1; sum must be > 0), u in (0, 1]. */
export function drawFrom(w: Float64Array, u: number): number {
  let total = 0;
  for (let i = 0; i < w.length; i++) total += w[i];
  const target = u * total;
  let acc = 0, last = 0;
  for (let i = 0; i < w.length; i++) {
    if (w[i] <= 0) continue;
    acc += w[i];
    last = i;
    if (acc >= target) return i;
  }
  return last; // rounding left the target just above the sum
}

/**
 * The residual distribution after a rejected draft token: norm(max(0, p - q)). When p <= q everywhere up to
 * rounding (then a rejection has probability ~0), p itself.
 */
export function residual(p: Float64Array, q: Float64Array): Float64Array {
  const r = new Float64Array(p.length);
  let sum = 0;
  for (let i = 0; i < p.length; i++) {
    const d = p[i] - q[i];
    if (d > 0) { r[i] = d; sum += d; }
  }
  return sum > 1e-12 ? r : p;
}

/** The seeded uniform stream of a speculative generation: one xoshiro128** per (seed), never reused. */
export class Uniforms {
  private readonly x: Xoshiro128;
  constructor(seed: number) {
    this.x = new Xoshiro128(seed >>> 0, Math.floor(seed / 4294967296) + 0x5bec);
  }
  /** Uniform in (0, 1]. */
  next(): number {
    return this.x.nextUnit();
  }
}
