// Dequantization is checked bit-for-bit against an independent, deliberately plain implementation of the
// ggml reference formulas (kernel-brief §2.3) written here with DataView and Math.pow; quantizers are checked
// for valid blocks and bounded reconstruction error.
import { describe, expect, test } from "bun:test";
import { GGML_TYPE, ggmlTypeName, ggmlTypeSize } from "../../../engine/formats/gguf.ts";
import {
  bf16ToF32, chooseQuantType, dequantize, errorStats, f16ToF32, f32ArrayToBf16, f32ArrayToF16, f32ToBf16, f32ToF16,
  quantize,
} from "../../../engine/formats/quant.ts";
import { gaussian, randomBytes, rng } from "./helpers.ts";
import { generousTimeout } from "../../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

// ---------------------------------------------------------------------------------------------- reference
function refHalf(dv: DataView, p: number): number {
  const h = dv.getUint16(p, true);
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, m = h & 1023;
  if (e === 0) return s * m * Math.pow(2, -24);
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * Math.pow(2, e - 15);
}
const f = Math.fround;

function refGetScaleMinK4(j: number, q: (k: number) => number): [number, number] {
  if (j < 4) return [q(j) & 63, q(j + 4) & 63];
  return [(q(j + 4) & 0xf) | ((q(j - 4) >> 6) << 4), (q(j + 4) >> 4) | ((q(j) >> 6) << 4)];
}

function refDequant(type: number, bytes: Uint8Array): number[] {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const { typeSize } = ggmlTypeSize(type);
  const y: number[] = [];
  for (let p = 0; p < bytes.length; p += typeSize) {
    const u8 = (k: number) => dv.getUint8(p + k);
    const i8 = (k: number) => dv.getInt8(p + k);
    switch (type) {
      case GGML_TYPE.Q8_0: {
        const d = refHalf(dv, p);
        for (let j = 0; j < 32; j++) y.push(f(d * i8(2 + j)));
        break;
      }
      case GGML_TYPE.Q4_0: {
        const d = refHalf(dv, p), out = new Array(32);
        for (let j = 0; j < 16; j++) { out[j] = f(((u8(2 + j) & 0xf) - 8) * d); out[j + 16] = f(((u8(2 + j) >> 4) - 8) * d); }
        y.push(...out);
        break;
      }
      case GGML_TYPE.Q5_0: {
        const d = refHalf(dv, p), qh = dv.getUint32(p + 2, true), out = new Array(32);
        for (let j = 0; j < 16; j++) {
          const bit0 = Math.floor(qh / Math.pow(2, j)) % 2, bit1 = Math.floor(qh / Math.pow(2, j + 16)) % 2;
          out[j] = f(((u8(6 + j) & 0xf) + 16 * bit0 - 16) * d);
          out[j + 16] = f(((u8(6 + j) >> 4) + 16 * bit1 - 16) * d);
        }
        y.push(...out);
        break;
      }
      case GGML_TYPE.Q4_K:
      case GGML_TYPE.Q5_K: {
        const five = type === GGML_TYPE.Q5_K;
        const d = refHalf(dv, p), mn = refHalf(dv, p + 2);
        const sc = (k: number) => u8(4 + k);
        const qs = (k: number) => u8((five ? 48 : 16) + k), qh = (k: number) => u8(16 + k);
        const out = new Array(256);
        for (let c = 0; c < 4; c++) {
          const [s1, m1i] = refGetScaleMinK4(2 * c, sc), [s2, m2i] = refGetScaleMinK4(2 * c + 1, sc);
          const d1 = f(d * s1), m1 = f(mn * m1i), d2 = f(d * s2), m2 = f(mn * m2i);
          for (let l = 0; l < 32; l++) {
            const lo = (qs(32 * c + l) & 0xf) + (five && qh(l) & (1 << (2 * c)) ? 16 : 0);
            const hi = (qs(32 * c + l) >> 4) + (five && qh(l) & (2 << (2 * c)) ? 16 : 0);
            out[64 * c + l] = f(f(d1 * lo) - m1);
            out[64 * c + 32 + l] = f(f(d2 * hi) - m2);
          }
        }
        y.push(...out);
        break;
      }
      case GGML_TYPE.Q6_K: {
        const d = refHalf(dv, p + 208), out = new Array(256);
        for (let n = 0; n < 2; n++) {
          const ql = (k: number) => u8(64 * n + k), qh = (k: number) => u8(128 + 32 * n + k), sc = (k: number) => i8(192 + 8 * n + k);
          for (let l = 0; l < 32; l++) {
            const is = Math.floor(l / 16);
            const q1 = ((ql(l) & 0xf) | (((qh(l) >> 0) & 3) << 4)) - 32;
            const q2 = ((ql(l + 32) & 0xf) | (((qh(l) >> 2) & 3) << 4)) - 32;
            const q3 = ((ql(l) >> 4) | (((qh(l) >> 4) & 3) << 4)) - 32;
            const q4 = ((ql(l + 32) >> 4) | (((qh(l) >> 6) & 3) << 4)) - 32;
            out[128 * n + l] = f(f(d * sc(is + 0)) * q1);
            out[128 * n + l + 32] = f(f(d * sc(is + 2)) * q2);
            out[128 * n + l + 64] = f(f(d * sc(is + 4)) * q3);
            out[128 * n + l + 96] = f(f(d * sc(is + 6)) * q4);
          }
        }
        y.push(...out);
        break;
      }
      default: throw new Error(`no reference for ${ggmlTypeName(type)}`);
    }
  }
  return y;
}

/** Random blocks whose fp16 scale fields are finite (exponent < 31); everything else random. */
function randomBlocks(type: number, nBlocks: number, seed: number): Uint8Array {
  const r = rng(seed);
  const { typeSize } = ggmlTypeSize(type);
  const b = randomBytes(r, nBlocks * typeSize);
  const halfAt = type === GGML_TYPE.Q6_K ? [208] : type === GGML_TYPE.Q4_K || type === GGML_TYPE.Q5_K ? [0, 2] : [0];
  for (let k = 0; k < nBlocks; k++) {
    for (const h of halfAt) {
      const p = k * typeSize + h + 1;
      b[p] = (b[p] & 0x83) | (Math.floor(r() * 20) << 2); // exponent 0..19: finite, includes subnormals
    }
  }
  return b;
}

const QTYPES = [GGML_TYPE.Q8_0, GGML_TYPE.Q4_0, GGML_TYPE.Q5_0, GGML_TYPE.Q4_K, GGML_TYPE.Q5_K, GGML_TYPE.Q6_K];

function bitsEqual(a: Float32Array, b: number[]): void {
  expect(a.length).toBe(b.length);
  const ub = new Uint32Array(Float32Array.from(b).buffer), ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  let bad = -1;
  for (let i = 0; i < a.length; i++) if (ua[i] !== ub[i]) { bad = i; break; }
  if (bad >= 0) throw new Error(`element ${bad}: got ${a[bad]}, reference ${b[bad]}`);
}

describe("dequantization equals the reference formulas bit for bit", () => {
  for (const type of QTYPES) {
    test(`${ggmlTypeName(type)}: 64 random blocks`, () => {
      const blocks = randomBlocks(type, 64, 100 + type);
      bitsEqual(dequantize(type, blocks), refDequant(type, blocks));
      // an unaligned view gives the same result
      const shifted = new Uint8Array(blocks.length + 1);
      shifted.set(blocks, 1);
      bitsEqual(dequantize(type, shifted.subarray(1)), refDequant(type, blocks));
    });
  }

  test("Q4_K/Q5_K: the j>=4 scale path uses q[j]>>6 for the min (not q[j-4])", () => {
    for (const type of [GGML_TYPE.Q4_K, GGML_TYPE.Q5_K]) {
      const { typeSize } = ggmlTypeSize(type);
      const b = new Uint8Array(typeSize);
      new DataView(b.buffer).setUint16(0, 0x3c00, true); // d = 1
      new DataView(b.buffer).setUint16(2, 0x3c00, true); // dmin = 1
      // sub-block 4: scale = (s[8]&15) | (s[0]>>6)<<4 = 5 | 1<<4 = 21; min = (s[8]>>4) | (s[4]>>6)<<4 = 2 | 3<<4 = 50
      b[4 + 0] = 0x40; b[4 + 4] = 0xc0; b[4 + 8] = 0x25;
      const y = dequantize(type, b);
      // elements 128..159 are sub-block 4 (chunk 2, low nibbles), all q = 0 → y = -min
      expect(y[128]).toBe(-50);
      for (let l = 0; l < 32; l++) b[(type === GGML_TYPE.Q5_K ? 48 : 16) + 64 + l] = 0x03; // q = 3 in sub-block 4
      expect(dequantize(type, b)[130]).toBe(21 * 3 - 50);
      bitsEqual(dequantize(type, b), refDequant(type, b));
    }
  });

  test("Q6_K with negative scales (and -128)", () => {
    const b = randomBlocks(GGML_TYPE.Q6_K, 4, 7);
    for (let k = 0; k < 4; k++) for (let j = 0; j < 16; j++) b[k * 210 + 192 + j] = j % 2 ? 0x80 : 0xfe; // -128, -2
    const y = dequantize(GGML_TYPE.Q6_K, b);
    bitsEqual(y, refDequant(GGML_TYPE.Q6_K, b));
    const d = f16ToF32(b[208] | (b[209] << 8));
    const q0 = ((b[0] & 0xf) | ((b[128] & 3) << 4)) - 32;
    expect(y[0]).toBe(Math.fround(d * -2 * q0));
  });

  test("F32 / F16 / BF16 pass through exactly", () => {
    const r = rng(5);
    const x = gaussian(r, 1024);
    expect(dequantize(GGML_TYPE.F32, new Uint8Array(x.buffer))).toEqual(x);
    const h = f32ArrayToF16(x);
    const yh = dequantize(GGML_TYPE.F16, new Uint8Array(h.buffer));
    for (let i = 0; i < x.length; i++) expect(yh[i]).toBe(f16ToF32(h[i]));
    const bf = f32ArrayToBf16(x);
    const yb = dequantize(GGML_TYPE.BF16, new Uint8Array(bf.buffer));
    for (let i = 0; i < x.length; i++) expect(yb[i]).toBe(bf16ToF32(bf[i]));
  });

  test("errors: partial blocks, unsupported types", () => {
    expect(() => dequantize(GGML_TYPE.Q4_K, new Uint8Array(145))).toThrow(/not a whole number of 144-byte blocks/);
    expect(() => dequantize(GGML_TYPE.Q4_1, new Uint8Array(20))).toThrow(/unsupported type Q4_1/);
    expect(() => quantize(GGML_TYPE.Q4_K, new Float32Array(255))).toThrow(/not a multiple of the block size 256/);
    expect(() => quantize(GGML_TYPE.Q8_0, new Float32Array(32).fill(NaN))).toThrow(/not finite/);
  });
});

describe("fp16 / bf16 conversion", () => {
  const F16 = (globalThis as unknown as { Float16Array: new (n: number) => ArrayLike<number> & { buffer: ArrayBuffer; [i: number]: number } }).Float16Array;

  test("f16: every half round-trips; f32 → f16 equals the platform's RNE (Float16Array) on 200k values", () => {
    for (let h = 0; h < 65536; h++) {
      const v = f16ToF32(h);
      if (Number.isNaN(v)) expect(Number.isNaN(f16ToF32(f32ToF16(v)))).toBe(true);
      else expect(f32ToF16(v)).toBe(h);
    }
    const r = rng(9);
    const oracle = new F16(1);
    const bits = new Uint16Array(oracle.buffer);
    const fb = new Float32Array(1), ub = new Uint32Array(fb.buffer);
    for (let i = 0; i < 200000; i++) {
      // random fp32 bit patterns concentrated around the fp16 range, incl. subnormals, ties and overflow
      ub[0] = ((r() * 2) | 0) << 31 | (((r() * 50) | 0) + 96) << 23 | ((r() * 0x800000) | 0);
      if (i % 4 === 0) ub[0] = (ub[0] & ~0x1fff) | 0x1000; // exact ties at normal precision
      const x = fb[0];
      oracle[0] = x;
      if (f32ToF16(x) !== bits[0]) throw new Error(`f32ToF16(${x}) = ${f32ToF16(x)}, oracle ${bits[0]}`);
    }
  });

  test("f16 specials", () => {
    expect(f32ToF16(65504)).toBe(0x7bff);
    expect(f32ToF16(65519.99)).toBe(0x7bff);
    expect(f32ToF16(65520)).toBe(0x7c00); // tie to even → inf
    expect(f32ToF16(-Infinity)).toBe(0xfc00);
    expect(f32ToF16(2 ** -24)).toBe(1);
    expect(f32ToF16(2 ** -25)).toBe(0); // tie → even (0)
    expect(f32ToF16(Math.fround(2 ** -25 * 1.0001))).toBe(1);
    expect(f32ToF16(3 * 2 ** -25)).toBe(2); // tie between 1 and 2 → even
    expect(f32ToF16(-0)).toBe(0x8000);
    expect(f32ToF16(NaN) & 0x7c00).toBe(0x7c00);
    expect(f32ToF16(NaN) & 0x3ff).not.toBe(0);
    expect(f16ToF32(0x3c00)).toBe(1);
    expect(f16ToF32(0xc000)).toBe(-2);
    expect(f16ToF32(0x0001)).toBe(2 ** -24);
    expect(f16ToF32(0x7c00)).toBe(Infinity);
  });

  test("bf16: round to nearest even against an exact reference", () => {
    const r = rng(11);
    const fb = new Float32Array(1), ub = new Uint32Array(fb.buffer);
    const asF = (bits: number) => { ub[0] = bits >>> 0; return fb[0]; };
    for (let i = 0; i < 100000; i++) {
      ub[0] = (r() * 2 ** 32) >>> 0;
      if (i % 3 === 0) ub[0] = (ub[0] & 0xffff0000) | 0x8000; // ties
      const bits = ub[0];
      const x = fb[0];
      if (Number.isNaN(x)) { expect(Number.isNaN(bf16ToF32(f32ToBf16(x)))).toBe(true); continue; }
      const lo = bits & 0xffff0000, hi = (lo + 0x10000) >>> 0;
      const a = asF(lo), b = (hi & 0x7fffffff) === 0x7f800000 ? Math.sign(x) * 2 ** 128 : asF(hi); // past the max: the virtual next value
      const da = Math.abs(x - a), db = Math.abs(b - x);
      let want = da < db ? lo : db < da ? hi : ((lo >>> 16) & 1) === 0 ? lo : hi;
      if ((bits & 0x7f800000) === 0x7f800000) want = lo; // ±inf stays
      expect(f32ToBf16(x)).toBe(want >>> 16);
    }
    expect(f32ToBf16(1)).toBe(0x3f80);
    expect(bf16ToF32(0x3f80)).toBe(1);
    expect(f32ToBf16(3.4e38)).toBe(0x7f80); // rounds past the max → inf, like torch
    const nb = f32ArrayToBf16(Float32Array.from([NaN, 1, -2.5]));
    expect(Number.isNaN(bf16ToF32(nb[0]))).toBe(true);
    expect([nb[1], nb[2]]).toEqual([0x3f80, f32ToBf16(-2.5)]);
  });
});

describe("quantizers make valid, accurate blocks", () => {
  const bounds: Record<number, number> = {
    [GGML_TYPE.Q8_0]: 0.008, [GGML_TYPE.Q4_0]: 0.1, [GGML_TYPE.Q5_0]: 0.05,
    [GGML_TYPE.Q4_K]: 0.09, [GGML_TYPE.Q5_K]: 0.045, [GGML_TYPE.Q6_K]: 0.022,
  };
  for (const type of QTYPES) {
    test(`${ggmlTypeName(type)}: gaussian, outliers, constants, zeros`, () => {
      const r = rng(20 + type);
      const x = gaussian(r, 256 * 64, 0.02);
      const q = quantize(type, x);
      expect(q.length).toBe((x.length / ggmlTypeSize(type).blockSize) * ggmlTypeSize(type).typeSize);
      const y = dequantize(type, q);
      bitsEqual(y, refDequant(type, q)); // what we write is read the reference way
      const s = errorStats(x, y);
      expect(s.relRmse).toBeLessThan(bounds[type]);
      expect(s.cos).toBeGreaterThan(0.995);
      // heavy outliers, a constant block, an all-zero block, a positive-only block, huge and tiny magnitudes
      const z = gaussian(r, 256 * 6, 1);
      for (let i = 0; i < 256; i += 37) z[i] *= 50;
      z.fill(0.75, 256, 512);
      z.fill(0, 512, 768);
      for (let i = 768; i < 1024; i++) z[i] = Math.abs(z[i]) + 3;
      for (let i = 1024; i < 1280; i++) z[i] *= 1e4;
      for (let i = 1280; i < 1536; i++) z[i] *= 1e-3; // (much smaller blocks lose precision: the fp16 scale underflows, as in ggml)
      const w = dequantize(type, quantize(type, z));
      for (let i = 0; i < w.length; i++) expect(Number.isFinite(w[i])).toBe(true);
      for (let i = 512; i < 768; i++) expect(w[i]).toBe(0);
      for (const [a, b] of [[0, 256], [256, 512], [768, 1024], [1024, 1280], [1280, 1536]]) {
        const e = errorStats(z.subarray(a, b), w.subarray(a, b));
        expect(e.relRmse).toBeLessThan(bounds[type] * 2.5);
      }
    });
  }

  test("F16/BF16/F32 quantize = conversion", () => {
    const x = gaussian(rng(3), 64);
    expect(new Uint16Array(quantize(GGML_TYPE.F16, x).buffer)).toEqual(f32ArrayToF16(x));
    expect(new Uint16Array(quantize(GGML_TYPE.BF16, x).buffer)).toEqual(f32ArrayToBf16(x));
    expect(new Float32Array(quantize(GGML_TYPE.F32, x).buffer)).toEqual(x);
  });

  test("Q4_K_M type choice with the 896 fallback", () => {
    const n = 24;
    expect(chooseQuantType("blk.0.attn_norm.weight", [896], "q4_k_m")).toBe(GGML_TYPE.F32);
    expect(chooseQuantType("blk.5.attn_q.weight", [896, 896], "q4_k_m", { nLayers: n })).toBe(GGML_TYPE.Q5_0);
    expect(chooseQuantType("blk.5.attn_q.weight", [1536, 1536], "q4_k_m", { nLayers: n })).toBe(GGML_TYPE.Q4_K);
    expect(chooseQuantType("blk.0.ffn_down.weight", [4864, 896], "q4_k_m", { nLayers: n })).toBe(GGML_TYPE.Q6_K);
    expect(chooseQuantType("blk.4.ffn_down.weight", [4864, 896], "q4_k_m", { nLayers: n })).toBe(GGML_TYPE.Q4_K);
    expect(chooseQuantType("blk.0.attn_v.weight", [896, 128], "q4_k_m", { nLayers: n })).toBe(GGML_TYPE.Q8_0);
    expect(chooseQuantType("token_embd.weight", [896, 151936], "q4_k_m", { nLayers: n, tied: true })).toBe(GGML_TYPE.Q8_0);
    expect(chooseQuantType("output.weight", [3584, 152064], "q4_k_m")).toBe(GGML_TYPE.Q6_K);
    // 28 layers (1.5B/7B): use_more_bits = i < 3 || i >= 24 || (i - 3) % 3 == 2 (integer divisions)
    const more = Array.from({ length: 28 }, (_, i) => chooseQuantType(`blk.${i}.ffn_down.weight`, [18944, 3584], "q4_k_m", { nLayers: 28 }) === GGML_TYPE.Q6_K);
    expect(more.flatMap((m, i) => (m ? [i] : []))).toEqual([0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 24, 25, 26, 27]);
    expect(chooseQuantType("blk.0.attn_q.weight", [100, 100], "q8_0")).toBe(GGML_TYPE.F16);
    expect(chooseQuantType("blk.0.attn_q.weight", [896, 896], "bf16")).toBe(GGML_TYPE.BF16);
  });
});
