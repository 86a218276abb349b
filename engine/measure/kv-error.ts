// K/V error of the KV-cache and attention arms, per layer (issue 11: the quantization-error page shows per-layer K/V
// error next to the attention-output error and the time each layer saved). Each arm's keys and values are rebuilt
// as that arm's attention reads them, from the fp32 K/V the reference arm captured (attn.hook_k / hook_v, after
// RoPE: what the cache stores), and compared with those fp32 values:
//   kvCache f32 = exact; bf16 = round to nearest even; q8 = int8 per 32 channels of a row with an fp16 scale
//   (cuda/src/opt/kvcache/kv_format.hpp q8_quant_row); kivi4 / kivi2 = keys per channel over groups of 32 tokens,
//   values per token over groups of 32 channels, asymmetric with fp16 scale / zero, positions >= nq(T) in bf16
//   (what decode after the prompt reads: kivi_nq); the Sage arms (their layer, over a bf16 / f32 cache) = K
//   smoothed by its mean over the T keys, INT8 per 64-key block, and V in bf16 (sage-int8) or smoothed per channel
//   and scaled to e4m3 (sage-fp8) (cuda/src/opt/attention/sage_ref.hpp). The arithmetic follows those files in
//   fp32 (Math.fround); rounding-tie differences of a few codes do not move these statistics.
import { bf16ToF32, f32ToBf16, roundF16 } from "../formats/quant.ts";
import { SQNR_CAP_DB } from "./metrics.ts";

export interface KvErr { sqnr_db: number; cosine: number; rel_l1: number }
export interface LayerKvError {
  layer: number;
  reference: string;   // the arm's K/V form on this layer, e.g. "bf16", "q8", "kivi2", "sage-fp8 (bf16 cache)"
  candidate: string;
  k: { reference: KvErr; candidate: KvErr };
  v: { reference: KvErr; candidate: KvErr };
}
/** What one arm runs on a layer: the session-wide kvCache value and that layer's attention value. */
export interface KvArm { kvCache: string; attention: string }

const f = Math.fround;
const bf16 = (x: number) => bf16ToF32(f32ToBf16(x));

/** e4m3 (OCP E4M3FN) round to nearest even, saturating at +-448 (sage_ref.hpp e4m3_encode). */
export function e4m3Round(x: number): number {
  if (Number.isNaN(x)) return x;
  const a = Math.abs(x);
  if (a >= 448) return Math.sign(x) * 448;
  if (a === 0) return x;
  const e = Math.max(Math.floor(Math.log2(a)), -6);
  const q = 2 ** (e - 3);               // spacing in this binade (subnormals: 2^-9)
  let m = a / q;
  const fl = Math.floor(m), fr = m - fl;
  m = fr > 0.5 || (fr === 0.5 && fl % 2 === 1) ? fl + 1 : fl;
  return Math.sign(x) * Math.min(448, m * q);
}
const roundAway = (x: number) => Math.sign(x) * Math.round(Math.abs(x));  // C roundf
const rintEven = (x: number) => { const fl = Math.floor(x), fr = x - fl; return fr > 0.5 || (fr === 0.5 && fl % 2 !== 0) ? fl + 1 : fl; };

export const kiviNq = (len: number) => (len <= 128 ? 0 : Math.floor((len - 128) / 32) * 32);

// One kv head's stream: x[t * ld + off + c], t < T, c < d. Writes the arm's rebuilt values into out (same layout).
type Stream = { x: Float32Array; T: number; d: number; ld: number; off: number };
const at = (s: Stream, t: number, c: number) => s.x[t * s.ld + s.off + c];

function q8(s: Stream, out: Float32Array) {
  for (let t = 0; t < s.T; t++)
    for (let b = 0; b < s.d; b += 32) {
      let amax = 0;
      for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(at(s, t, b + i)));
      const dq = f(amax / 127), id = dq !== 0 ? f(1 / dq) : 0, sc = roundF16(dq);
      for (let i = 0; i < 32; i++) out[t * s.ld + s.off + b + i] = f(roundAway(f(at(s, t, b + i) * id)) * sc);
    }
}
function kiviGroup(vals: number[], bits: number): number[] {
  let mn = vals[0], mx = vals[0];
  for (const v of vals) { mn = Math.min(mn, v); mx = Math.max(mx, v); }
  const sc = roundF16(f((mx - mn) / ((1 << bits) - 1))), z = roundF16(mn), hi = (1 << bits) - 1;
  return vals.map((v) => (sc > 0 ? f(Math.min(hi, Math.max(0, rintEven(f(f(v - z) / sc)))) * sc + z) : z));
}
function kivi(s: Stream, out: Float32Array, bits: number, key: boolean) {
  const nq = kiviNq(s.T);
  for (let t = nq; t < s.T; t++) for (let c = 0; c < s.d; c++) out[t * s.ld + s.off + c] = bf16(at(s, t, c));
  for (let t0 = 0; t0 < nq; t0 += 32) {
    if (key) {
      for (let c = 0; c < s.d; c++) {
        const g = kiviGroup(Array.from({ length: 32 }, (_, i) => at(s, t0 + i, c)), bits);
        g.forEach((v, i) => (out[(t0 + i) * s.ld + s.off + c] = v));
      }
    } else {
      for (let t = t0; t < t0 + 32; t++)
        for (let c0 = 0; c0 < s.d; c0 += 32) {
          const g = kiviGroup(Array.from({ length: 32 }, (_, i) => at(s, t, c0 + i)), bits);
          g.forEach((v, i) => (out[t * s.ld + s.off + c0 + i] = v));
        }
    }
  }
}
// Sage K: smooth by the mean over T keys, INT8 per 64-key block of all d channels, K' = code * scale + mean.
function sageK(s: Stream, out: Float32Array) {
  const mean = Array.from({ length: s.d }, (_, c) => { let a = 0; for (let t = 0; t < s.T; t++) a += at(s, t, c); return f(a / s.T); });
  for (let t0 = 0; t0 < s.T; t0 += 64) {
    const t1 = Math.min(s.T, t0 + 64);
    let mx = 0;
    for (let t = t0; t < t1; t++) for (let c = 0; c < s.d; c++) mx = Math.max(mx, Math.abs(f(at(s, t, c) - mean[c])));
    const inv = mx > 0 ? f(127 / mx) : 0, sc = f(mx / 127);
    for (let t = t0; t < t1; t++)
      for (let c = 0; c < s.d; c++) {
        const q = Math.max(-127, Math.min(127, rintEven(f(f(at(s, t, c) - mean[c]) * inv))));
        out[t * s.ld + s.off + c] = f(f(q * sc) + mean[c]);
      }
  }
}
// Sage V: bf16 (int8 arm); fp8 arm: per channel V~ = V - mean, e4m3(V~ * 448 / max|V~|) * max|V~| / 448 + mean.
function sageV(s: Stream, out: Float32Array, fp8: boolean) {
  for (let c = 0; c < s.d; c++) {
    if (!fp8) { for (let t = 0; t < s.T; t++) out[t * s.ld + s.off + c] = bf16(at(s, t, c)); continue; }
    let a = 0;
    for (let t = 0; t < s.T; t++) a += at(s, t, c);
    const mu = f(a / s.T);
    let mx = 0;
    for (let t = 0; t < s.T; t++) mx = Math.max(mx, Math.abs(f(at(s, t, c) - mu)));
    const inv = mx > 0 ? f(448 / mx) : 0, vs = f(mx / 448);
    for (let t = 0; t < s.T; t++) out[t * s.ld + s.off + c] = f(f(e4m3Round(f(f(at(s, t, c) - mu) * inv)) * vs) + mu);
  }
}

/** The K (key = true) or V form one arm's attention reads on a layer, rebuilt from the fp32 values x [T, nKV * d]. */
export function rebuildKv(x: Float32Array, T: number, nKV: number, d: number, arm: KvArm, key: boolean): Float32Array {
  const out = new Float32Array(x.length);
  const sage = arm.attention.startsWith("sage-") && (arm.kvCache === "bf16" || arm.kvCache === "f32");
  for (let h = 0; h < nKV; h++) {
    // the cache's own rounding first (the Sage arms read what the bf16 / f32 cache holds)
    const src = arm.kvCache === "bf16" && sage ? x.map(bf16) : x;
    const s: Stream = { x: src, T, d, ld: nKV * d, off: h * d };
    if (sage) key ? sageK(s, out) : sageV(s, out, arm.attention === "sage-fp8");
    else if (arm.kvCache === "q8") q8(s, out);
    else if (arm.kvCache === "kivi4" || arm.kvCache === "kivi2") kivi(s, out, arm.kvCache === "kivi4" ? 4 : 2, key);
    else if (arm.kvCache === "bf16") for (let t = 0; t < T; t++) for (let c = 0; c < d; c++) out[t * s.ld + s.off + c] = bf16(at(s, t, c));
    else for (let t = 0; t < T; t++) for (let c = 0; c < d; c++) out[t * s.ld + s.off + c] = at(s, t, c);
  }
  return out;
}

export function kvErr(ref: Float32Array, c: Float32Array): KvErr {
  let rr = 0, cc = 0, dot = 0, se = 0, l1 = 0, l1r = 0;
  for (let i = 0; i < ref.length; i++) {
    const e = c[i] - ref[i];
    rr += ref[i] * ref[i]; cc += c[i] * c[i]; dot += ref[i] * c[i]; se += e * e; l1 += Math.abs(e); l1r += Math.abs(ref[i]);
  }
  return {
    sqnr_db: se === 0 ? SQNR_CAP_DB : Math.min(SQNR_CAP_DB, 10 * Math.log10(rr / se)),
    cosine: rr === 0 && cc === 0 ? 1 : dot / (Math.sqrt(rr * cc) || Number.MIN_VALUE),
    rel_l1: l1r === 0 ? 0 : l1 / l1r,
  };
}

export const kvForm = (a: KvArm) =>
  a.attention.startsWith("sage-") && (a.kvCache === "bf16" || a.kvCache === "f32") ? `${a.attention} (${a.kvCache} cache)` : a.kvCache;

/**
 * Per layer where the arms' K/V forms differ: each arm's K and V error against the fp32 K/V (k, v: the reference
 * arm's captures of that layer, [T, nKV * d]).
 */
export function kvError(k: Float32Array[], v: Float32Array[], T: number, nKV: number, d: number, ref: KvArm[], cand: KvArm[]): LayerKvError[] {
  const out: LayerKvError[] = [];
  for (let l = 0; l < k.length; l++) {
    if (kvForm(ref[l]) === kvForm(cand[l])) continue;
    const e = (x: Float32Array, key: boolean) => ({
      reference: kvErr(x, rebuildKv(x, T, nKV, d, ref[l], key)), candidate: kvErr(x, rebuildKv(x, T, nKV, d, cand[l], key)),
    });
    out.push({ layer: l, reference: kvForm(ref[l]), candidate: kvForm(cand[l]), k: e(k[l], true), v: e(v[l], false) });
  }
  return out;
}
