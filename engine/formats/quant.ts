// Reference dequantization for the GGML types this project loads, fp16/bf16 conversion, and quantizers that
// produce valid Q8_0 / Q4_0 / Q5_0 / Q4_K / Q5_K / Q6_K blocks from fp32.
//
// Dequantization follows ggml-quants.c `dequantize_row_*` (shared/research/kernel-brief.md §2.2-2.3) and is
// bit-exact with the C code in fp32: every product there is exact in fp32 (an fp16 scale has 11 significant
// bits, the integer factors at most 13 bits together), and the one subtraction of Q4_K/Q5_K (d1*q - m1) is
// rounded once with Math.fround, which equals the fp32 subtraction because a double holds ≥ 2·24+2 bits.
//
// The quantizers pick scales by min/max per sub-block (not llama.cpp's iterative search); they produce
// valid blocks whose dequantization is accurate (see test/engine/formats/quant.test.ts for the error bounds).
// All loops work on typed arrays with no per-element allocation.
import { GGML_TYPE, ggmlTypeName, ggmlTypeSize } from "./gguf.ts";

// ------------------------------------------------------------------------------------------------------
// fp16 / bf16
// ------------------------------------------------------------------------------------------------------

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

let F16_TABLE: Float32Array | undefined;
/** All 65536 fp16 values as fp32 (exact). */
export function f16Table(): Float32Array {
  if (F16_TABLE) return F16_TABLE;
  const t = new Float32Array(65536);
  const u = new Uint32Array(t.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) {
      t[h] = (mant * 2 ** -24) * (sign ? -1 : 1); // zero and subnormals, exact
      if (mant === 0) u[h] = sign;
    } else if (exp === 0x1f) {
      u[h] = sign | 0x7f800000 | (mant << 13);
    } else {
      u[h] = sign | ((exp - 15 + 127) << 23) | (mant << 13);
    }
  }
  return (F16_TABLE = t);
}

export function f16ToF32(h: number): number {
  return f16Table()[h & 0xffff];
}

/** fp32 → fp16 bits, round to nearest even, with subnormals, ±inf on overflow, NaN kept (quiet). */
export function f32ToF16(x: number): number {
  f32buf[0] = x;
  const b = u32buf[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 112; // rebias 127 → 15
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++; // a carry into the exponent is correct (up to inf)
  return sign | h;
}

/** Rounds x to the nearest fp16 value (as a number). */
export function roundF16(x: number): number {
  return f16ToF32(f32ToF16(x));
}

export function bf16ToF32(h: number): number {
  u32buf[0] = (h & 0xffff) << 16;
  return f32buf[0];
}

/** fp32 → bf16 bits, round to nearest even; NaN stays NaN (quiet). */
export function f32ToBf16(x: number): number {
  f32buf[0] = x;
  const b = u32buf[0];
  if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0) return ((b >>> 16) | 0x40) & 0xffff;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

export function f32ArrayToF16(src: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32ToF16(src[i]);
  return out;
}

export function f32ArrayToBf16(src: Float32Array): Uint16Array {
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const b = u[i];
    out[i] = (b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0
      ? (b >>> 16) | 0x40
      : (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return out;
}

// ------------------------------------------------------------------------------------------------------
// Dequantization
// ------------------------------------------------------------------------------------------------------

/** Number of elements `bytes` holds for `type` (bytes must be a whole number of blocks). */
export function elementCount(type: number, nbytes: number): number {
  const { blockSize, typeSize } = ggmlTypeSize(type);
  if (nbytes % typeSize !== 0) throw new Error(`${ggmlTypeName(type)}: ${nbytes} bytes is not a whole number of ${typeSize}-byte blocks`);
  return (nbytes / typeSize) * blockSize;
}

/** View of little-endian data as an aligned typed array (copies only when unaligned). */
function aligned<T>(b: Uint8Array, size: number, Ctor: new (buf: ArrayBuffer, off: number, len: number) => T): T {
  if (b.byteOffset % size === 0) return new Ctor(b.buffer as ArrayBuffer, b.byteOffset, b.length / size);
  const c = b.slice();
  return new Ctor(c.buffer, 0, c.length / size);
}

/**
 * Dequantizes `bytes` of type `type` to fp32 (ggml reference semantics). `out` may be given (length ≥ n).
 * Supports F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K.
 */
export function dequantize(type: number, bytes: Uint8Array, out?: Float32Array): Float32Array {
  const n = elementCount(type, bytes.length);
  const y = out ?? new Float32Array(n);
  if (y.length < n) throw new Error(`dequantize: output holds ${y.length} values, need ${n}`);
  const b = bytes;
  const H = f16Table();
  const h16 = (p: number) => H[b[p] | (b[p + 1] << 8)];
  switch (type) {
    case GGML_TYPE.F32: y.set(aligned(b, 4, Float32Array)); return y;
    case GGML_TYPE.F16: { const s = aligned(b, 2, Uint16Array); for (let i = 0; i < n; i++) y[i] = H[s[i]]; return y; }
    case GGML_TYPE.BF16: {
      const s = aligned(b, 2, Uint16Array);
      const u = new Uint32Array(y.buffer, y.byteOffset, n);
      for (let i = 0; i < n; i++) u[i] = s[i] << 16;
      return y;
    }
    case GGML_TYPE.Q8_0:
      for (let i = 0, p = 0; i < n; i += 32, p += 34) {
        const d = h16(p);
        for (let j = 0; j < 32; j++) y[i + j] = d * ((b[p + 2 + j] << 24) >> 24);
      }
      return y;
    case GGML_TYPE.Q4_0:
      for (let i = 0, p = 0; i < n; i += 32, p += 18) {
        const d = h16(p);
        for (let j = 0; j < 16; j++) {
          const q = b[p + 2 + j];
          y[i + j] = ((q & 0xf) - 8) * d;
          y[i + j + 16] = ((q >> 4) - 8) * d;
        }
      }
      return y;
    case GGML_TYPE.Q5_0:
      for (let i = 0, p = 0; i < n; i += 32, p += 22) {
        const d = h16(p);
        const qh = (b[p + 2] | (b[p + 3] << 8) | (b[p + 4] << 16) | (b[p + 5] << 24)) >>> 0;
        for (let j = 0; j < 16; j++) {
          const q = b[p + 6 + j];
          const xh0 = ((qh >>> j) << 4) & 0x10;
          const xh1 = (qh >>> (j + 12)) & 0x10;
          y[i + j] = (((q & 0xf) | xh0) - 16) * d;
          y[i + j + 16] = (((q >> 4) | xh1) - 16) * d;
        }
      }
      return y;
    case GGML_TYPE.Q4_K:
    case GGML_TYPE.Q5_K: {
      const q5 = type === GGML_TYPE.Q5_K;
      const bs = q5 ? 176 : 144;
      const dk = new Float32Array(8), mk = new Float32Array(8);
      for (let i = 0, p = 0; i < n; i += 256, p += bs) {
        const d = h16(p), dmin = h16(p + 2);
        const qhp = p + 16;
        let ql = p + (q5 ? 48 : 16);
        for (let j = 0; j < 8; j++) {
          const s = p + 4;
          const sc = j < 4 ? b[s + j] & 63 : (b[s + j + 4] & 0xf) | ((b[s + j - 4] >> 6) << 4);
          const m = j < 4 ? b[s + j + 4] & 63 : (b[s + j + 4] >> 4) | ((b[s + j] >> 6) << 4);
          dk[j] = d * sc; // exact in fp32
          mk[j] = dmin * m;
        }
        for (let c = 0; c < 4; c++) {
          const d1 = dk[2 * c], m1 = mk[2 * c], d2 = dk[2 * c + 1], m2 = mk[2 * c + 1];
          const u1 = 1 << (2 * c), u2 = 2 << (2 * c);
          const o = i + 64 * c;
          for (let l = 0; l < 32; l++) {
            const q = b[ql + l];
            let lo = q & 0xf, hi = q >> 4;
            if (q5) {
              const h = b[qhp + l];
              if (h & u1) lo += 16;
              if (h & u2) hi += 16;
            }
            y[o + l] = Math.fround(d1 * lo - m1);
            y[o + 32 + l] = Math.fround(d2 * hi - m2);
          }
          ql += 32;
        }
      }
      return y;
    }
    case GGML_TYPE.Q6_K: {
      const ds = new Float32Array(16);
      for (let i = 0, p = 0; i < n; i += 256, p += 210) {
        const d = h16(p + 208);
        for (let k = 0; k < 16; k++) ds[k] = d * ((b[p + 192 + k] << 24) >> 24); // exact in fp32
        for (let half = 0; half < 2; half++) {
          const ql = p + 64 * half, qh = p + 128 + 32 * half, sc = 8 * half, o = i + 128 * half;
          for (let l = 0; l < 32; l++) {
            const is = sc + (l >> 4);
            const a = b[ql + l], c = b[ql + l + 32], h = b[qh + l];
            y[o + l] = ds[is] * (((a & 0xf) | ((h & 3) << 4)) - 32);
            y[o + l + 32] = ds[is + 2] * (((c & 0xf) | (((h >> 2) & 3) << 4)) - 32);
            y[o + l + 64] = ds[is + 4] * (((a >> 4) | (((h >> 4) & 3) << 4)) - 32);
            y[o + l + 96] = ds[is + 6] * (((c >> 4) | (((h >> 6) & 3) << 4)) - 32);
          }
        }
      }
      return y;
    }
  }
  throw new Error(`dequantize: unsupported type ${ggmlTypeName(type)}`);
}

// ------------------------------------------------------------------------------------------------------
// Quantization
// ------------------------------------------------------------------------------------------------------

const F16_MAX = 65504;
/** fp16 bits of a non-negative scale, clamped to the finite range. */
const scaleBits = (d: number) => f32ToF16(Math.min(d, F16_MAX));

/** Quantizes fp32 values into blocks of `type` (F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K). */
export function quantize(type: number, src: Float32Array): Uint8Array {
  const { blockSize, typeSize } = ggmlTypeSize(type);
  const n = src.length;
  if (n % blockSize !== 0) throw new Error(`quantize ${ggmlTypeName(type)}: ${n} values is not a multiple of the block size ${blockSize}`);
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(src[i])) throw new Error(`quantize ${ggmlTypeName(type)}: value ${src[i]} at index ${i} is not finite`);
  }
  const out = new Uint8Array((n / blockSize) * typeSize);
  switch (type) {
    case GGML_TYPE.F32: out.set(new Uint8Array(src.buffer, src.byteOffset, n * 4)); return out;
    case GGML_TYPE.F16: { const h = f32ArrayToF16(src); out.set(new Uint8Array(h.buffer)); return out; }
    case GGML_TYPE.BF16: { const h = f32ArrayToBf16(src); out.set(new Uint8Array(h.buffer)); return out; }
    case GGML_TYPE.Q8_0: quantQ8_0(src, out); return out;
    case GGML_TYPE.Q4_0: quantQx_0(src, out, 4); return out;
    case GGML_TYPE.Q5_0: quantQx_0(src, out, 5); return out;
    case GGML_TYPE.Q4_K: quantQxK(src, out, 4); return out;
    case GGML_TYPE.Q5_K: quantQxK(src, out, 5); return out;
    case GGML_TYPE.Q6_K: quantQ6K(src, out); return out;
  }
  throw new Error(`quantize: unsupported type ${ggmlTypeName(type)}`);
}

function putF16(out: Uint8Array, p: number, h: number) {
  out[p] = h & 0xff;
  out[p + 1] = h >> 8;
}

function quantQ8_0(x: Float32Array, out: Uint8Array) {
  const H = f16Table();
  const n = x.length;
  for (let i = 0, p = 0; i < n; i += 32, p += 34) {
    let amax = 0;
    for (let j = i; j < i + 32; j++) { const a = Math.abs(x[j]); if (a > amax) amax = a; }
    const dh = scaleBits(amax / 127);
    const d = H[dh];
    const id = d > 0 ? 1 / d : 0;
    putF16(out, p, dh);
    for (let j = 0; j < 32; j++) {
      // = Math.round(v) clamped to ±127 (see roundClamp), inlined
      const v = x[i + j] * id;
      let q: number;
      if (v >= 127) q = 127;
      else if (v <= -127) q = -127;
      else { const k = v | 0, f = v - k; q = k + +(f >= 0.5) - +(f < -0.5); }
      out[p + 2 + j] = q & 0xff;
    }
  }
}

/**
 * Math.round(v) (ties toward +inf) clamped to [-lim, lim], for finite v, without calling Math.round (slow in
 * JavaScriptCore). Exact: out of range clamps first (Math.round would land on or beyond ±lim too), and in range
 * v - trunc(v) is exact in a double.
 */
function roundClamp(v: number, lim: number): number {
  if (v >= lim) return lim;
  if (v <= -lim) return -lim;
  const k = v | 0;
  const f = v - k;
  return k + +(f >= 0.5) - +(f < -0.5); // booleans as 0/1: no unpredictable branch
}

/** Q4_0 (bits 4, levels -8..7) and Q5_0 (bits 5, levels -16..15): d = (signed max) / -2^(bits-1). */
function quantQx_0(x: Float32Array, out: Uint8Array, bits: 4 | 5) {
  const H = f16Table();
  const bs = bits === 4 ? 18 : 22;
  const half = 1 << (bits - 1), top = (1 << bits) - 1;
  const qs = bits === 4 ? 2 : 6;
  for (let i = 0, p = 0; i < x.length; i += 32, p += bs) {
    let amax = 0, max = 0;
    for (let j = 0; j < 32; j++) { const v = x[i + j]; if (Math.abs(v) > amax) { amax = Math.abs(v); max = v; } }
    const dh = max === 0 ? 0 : f32ToF16(Math.max(-F16_MAX, Math.min(F16_MAX, max / -half)));
    const d = H[dh];
    const id = d !== 0 ? 1 / d : 0;
    putF16(out, p, dh);
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      // = Math.floor(w) clamped to [0, top], without Math.floor (slow in JavaScriptCore): w|0 is floor(w) for w ≥ 0
      const wa = x[i + j] * id + half + 0.5, wc = x[i + j + 16] * id + half + 0.5;
      const a = wa < 0 ? 0 : wa >= top ? top : wa | 0, c = wc < 0 ? 0 : wc >= top ? top : wc | 0;
      out[p + qs + j] = (a & 0xf) | ((c & 0xf) << 4);
      if (bits === 5) qh |= ((a >> 4) << j) | ((c >> 4) << (j + 16));
    }
    if (bits === 5) {
      out[p + 2] = qh & 0xff; out[p + 3] = (qh >>> 8) & 0xff; out[p + 4] = (qh >>> 16) & 0xff; out[p + 5] = (qh >>> 24) & 0xff;
    }
  }
}

/** Q4_K / Q5_K: 8 sub-blocks of 32 with a 6-bit scale and 6-bit min each; y = d·sc·q − dmin·m. */
function quantQxK(x: Float32Array, out: Uint8Array, bits: 4 | 5) {
  const H = f16Table();
  const bs = bits === 4 ? 144 : 176;
  const qsOff = bits === 4 ? 16 : 48;
  const levels = (1 << bits) - 1;
  const scale = new Float64Array(8), mins = new Float64Array(8);
  const ls = new Uint8Array(8), lm = new Uint8Array(8);
  const q = new Uint8Array(256), qa = new Uint8Array(32), qb = new Uint8Array(32);
  for (let i = 0, p = 0; i < x.length; i += 256, p += bs) {
    let maxScale = 0, maxMin = 0;
    for (let j = 0; j < 8; j++) {
      let mn = 0, mx = -Infinity;
      for (let l = 0; l < 32; l++) { const v = x[i + 32 * j + l]; if (v < mn) mn = v; if (v > mx) mx = v; }
      scale[j] = (mx - mn) / levels;
      mins[j] = -mn;
      if (scale[j] > maxScale) maxScale = scale[j];
      if (mins[j] > maxMin) maxMin = mins[j];
    }
    const dh = scaleBits(maxScale / 63), mh = scaleBits(maxMin / 63);
    const D = H[dh], DM = H[mh];
    for (let j = 0; j < 8; j++) {
      // round the min up so that the smallest value stays representable (q ≥ 0 without clipping)
      lm[j] = DM > 0 ? Math.min(63, Math.ceil(mins[j] / DM - 1e-9)) : 0;
      const m1 = Math.fround(DM * lm[j]);
      // the scale: floor or ceil of the ideal one, whichever reconstructs the sub-block better
      const ideal = D > 0 ? scale[j] / D : 0;
      const ca = Math.min(63, Math.floor(ideal)), cb = Math.min(63, ca + 1);
      const da = Math.fround(D * ca), db = Math.fround(D * cb);
      const ia = da > 0 ? 1 / da : 0, ib = db > 0 ? 1 / db : 0;
      const base = i + 32 * j;
      let ea = 0, eb = 0;
      for (let l = 0; l < 32; l++) {
        const xv = x[base + l], xm = xv + m1;
        let va = (xm * ia + 0.5) | 0, vb = (xm * ib + 0.5) | 0;
        va = va < 0 ? 0 : va > levels ? levels : va;
        vb = vb < 0 ? 0 : vb > levels ? levels : vb;
        qa[l] = va; qb[l] = vb;
        const e1 = da * va - xm, e2 = db * vb - xm;
        ea += e1 * e1; eb += e2 * e2;
      }
      const useB = eb < ea;
      ls[j] = useB ? cb : ca;
      const src = useB ? qb : qa;
      for (let l = 0, o = 32 * j; l < 32; l++) q[o + l] = src[l];
    }
    putF16(out, p, dh);
    putF16(out, p + 2, mh);
    const s = p + 4;
    for (let k = 0; k < 12; k++) out[s + k] = 0;
    for (let j = 0; j < 4; j++) { out[s + j] = ls[j]; out[s + j + 4] = lm[j]; }
    for (let j = 4; j < 8; j++) {
      out[s + j + 4] = (ls[j] & 0xf) | ((lm[j] & 0xf) << 4);
      out[s + j - 4] |= (ls[j] >> 4) << 6;
      out[s + j] |= (lm[j] >> 4) << 6;
    }
    if (bits === 5) for (let l = 0; l < 32; l++) out[p + 16 + l] = 0;
    for (let c = 0; c < 4; c++) {
      for (let l = 0; l < 32; l++) {
        const lo = q[64 * c + l], hi = q[64 * c + 32 + l];
        out[p + qsOff + 32 * c + l] = (lo & 0xf) | ((hi & 0xf) << 4);
        if (bits === 5) out[p + 16 + l] |= ((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1));
      }
    }
  }
}

/** Q6_K: 16 sub-blocks of 16 with signed 8-bit scales; y = d·sc·(q − 32), q in 0..63. */
function quantQ6K(x: Float32Array, out: Uint8Array) {
  const H = f16Table();
  const sub = new Float64Array(16);
  const scs = new Int8Array(16);
  const q = new Uint8Array(256);
  for (let i = 0, p = 0; i < x.length; i += 256, p += 210) {
    let maxAbsScale = 0;
    for (let j = 0; j < 16; j++) {
      // the value of largest magnitude maps to -32 (the level without a +32 twin), as in llama.cpp
      let amax = 0, max = 0;
      for (let l = 0; l < 16; l++) { const v = x[i + 16 * j + l]; if (Math.abs(v) > amax) { amax = Math.abs(v); max = v; } }
      sub[j] = max / -32;
      if (amax / 32 > maxAbsScale) maxAbsScale = amax / 32;
    }
    const dh = scaleBits(maxAbsScale / 127);
    const d = H[dh];
    for (let j = 0; j < 16; j++) {
      let s = d > 0 ? Math.round(sub[j] / d) : 0;
      s = s > 127 ? 127 : s < -128 ? -128 : s;
      scs[j] = s;
      const dj = Math.fround(d * s);
      const id = dj !== 0 ? 1 / dj : 0;
      for (let l = 0; l < 16; l++) {
        // = Math.round(v) + 32 clamped to [0, 63] (see roundClamp), inlined
        const v = x[i + 16 * j + l] * id;
        let r: number;
        if (v >= 31) r = 31;
        else if (v <= -32) r = -32;
        else { const k = v | 0, f = v - k; r = k + +(f >= 0.5) - +(f < -0.5); }
        q[16 * j + l] = r + 32;
      }
    }
    for (let half = 0; half < 2; half++) {
      const ql = p + 64 * half, qh = p + 128 + 32 * half, o = 128 * half;
      for (let l = 0; l < 32; l++) {
        const q1 = q[o + l], q2 = q[o + l + 32], q3 = q[o + l + 64], q4 = q[o + l + 96];
        out[ql + l] = (q1 & 0xf) | ((q3 & 0xf) << 4);
        out[ql + l + 32] = (q2 & 0xf) | ((q4 & 0xf) << 4);
        out[qh + l] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
      }
    }
    for (let j = 0; j < 16; j++) out[p + 192 + j] = scs[j] & 0xff;
    putF16(out, p + 208, dh);
  }
}

// ------------------------------------------------------------------------------------------------------
// Type choice (a llama.cpp-like Q4_K_M mix)
// ------------------------------------------------------------------------------------------------------

export type QuantScheme = "f32" | "f16" | "bf16" | "q8_0" | "q4_0" | "q4_k" | "q4_k_m" | "q6_k";

/** The type llama.cpp substitutes when a K-quant does not fit a row (ne0 % 256 ≠ 0, e.g. 896 in 0.5B). */
function fallback(type: number, ne0: number): number {
  const { blockSize } = ggmlTypeSize(type);
  if (ne0 % blockSize === 0) return type;
  if (type === GGML_TYPE.Q4_K) return ne0 % 32 === 0 ? GGML_TYPE.Q5_0 : GGML_TYPE.F16;
  if (type === GGML_TYPE.Q5_K || type === GGML_TYPE.Q6_K) return ne0 % 32 === 0 ? GGML_TYPE.Q8_0 : GGML_TYPE.F16;
  return GGML_TYPE.F16;
}

/**
 * The ggml type a tensor gets under a scheme. 1-D tensors (norms, biases) stay F32. "q4_k_m" follows
 * llama.cpp's Q4_K_M: Q6_K for output.weight (and token_embd.weight when it doubles as the tied output) and for
 * attn_v / ffn_down in the layers llama.cpp gives more bits, Q4_K elsewhere; K-quants that do not fit a row
 * fall back like llama.cpp (Q4_K → Q5_0, Q6_K → Q8_0).
 */
export function chooseQuantType(
  name: string, ne: readonly number[], scheme: QuantScheme, opts: { nLayers?: number; tied?: boolean } = {},
): number {
  if (ne.length < 2 || scheme === "f32") return GGML_TYPE.F32;
  const ne0 = ne[0];
  let t: number;
  switch (scheme) {
    case "f16": return GGML_TYPE.F16;
    case "bf16": return GGML_TYPE.BF16;
    case "q8_0": t = GGML_TYPE.Q8_0; break;
    case "q4_0": t = GGML_TYPE.Q4_0; break;
    case "q6_k": t = GGML_TYPE.Q6_K; break;
    case "q4_k": t = GGML_TYPE.Q4_K; break;
    case "q4_k_m": {
      t = GGML_TYPE.Q4_K;
      const m = /^blk\.(\d+)\.(attn_v|ffn_down)\.weight$/.exec(name);
      const n = opts.nLayers ?? 0;
      if (name === "output.weight" || (name === "token_embd.weight" && opts.tied)) t = GGML_TYPE.Q6_K;
      else if (m && n > 0) {
        const i = Number(m[1]);
        // llama.cpp's use_more_bits, with its integer divisions
        const n8 = Math.floor(n / 8);
        const moreBits = i < n8 || i >= Math.floor((7 * n) / 8) || (i - n8) % 3 === 2;
        if (moreBits) t = GGML_TYPE.Q6_K;
      }
      break;
    }
    default: throw new Error(`unknown quantization scheme '${scheme as string}'`);
  }
  return fallback(t, ne0);
}

/** Error statistics of an approximation `b` of `a` (for tests and the quantization-error views). */
export function errorStats(a: Float32Array, b: Float32Array): { rmse: number; relRmse: number; maxAbs: number; cos: number } {
  let se = 0, sa = 0, sb = 0, dot = 0, maxAbs = 0;
  for (let i = 0; i < a.length; i++) {
    const e = a[i] - b[i];
    se += e * e; sa += a[i] * a[i]; sb += b[i] * b[i]; dot += a[i] * b[i];
    if (Math.abs(e) > maxAbs) maxAbs = Math.abs(e);
  }
  const n = Math.max(1, a.length);
  return { rmse: Math.sqrt(se / n), relRmse: Math.sqrt(se / Math.max(sa, 1e-300)), maxAbs, cos: dot / Math.sqrt(Math.max(sa * sb, 1e-300)) };
}
