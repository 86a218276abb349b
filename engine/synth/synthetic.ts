// engine/synth/synthetic.ts — deterministic seeded random Qwen2 models with the real Qwen2.5 shapes.
//
// Every tensor is generated on its own from (seed, tensor name), so a writer can stream one tensor at a time
// (a 7B model never needs more than its largest tensor in memory) and any tensor can be regenerated
// independently (tests, the fp64 reference). Large tensors are generated in row chunks whose RNG states are
// jumped ahead (Xoshiro128.jump), so writers encode chunks of many tensors at once on a pool of Bun Workers
// (engine/synth/pool.ts; QW_SYNTH_WORKERS, default min(cores - 1, 12)) with the bytes of the sequential path.
// Weights ~ N(0, std²) with std 0.02 (HF init), norms = 1, biases ~ N(0, biasStd²) (0.02). Real timings,
// meaningless text.
//
// Presets (kernel-brief §1.1):
//   tiny  hidden 256, 4 layers, 4 q heads x 64, 2 KV heads, inter 768, vocab 8256, tied, the tiny BPE tokenizer
//         of models/tiny-qwen2-brown (ids 0..8191 are Qwen's, ChatML specials at 8192..8194).
//         Choice: 2 KV heads rather than the trained tiny model's 1, because with 1 KV head every query head
//         reads KV head 0 and a wrong GQA mapping (h % nKV instead of h / (nH/nKV)) would go unnoticed.
//   0.5b  896 / 24 / 14 q / 2 kv / 64 / 4864 / 151936, tied
//   1.5b  1536 / 28 / 12 q / 2 kv / 128 / 8960 / 151936, tied
//   7b    3584 / 28 / 28 q / 4 kv / 128 / 18944 / 152064, untied
// The three real-shape presets embed the full Qwen2/2.5 tokenizer (models/qwen-tokenizer).
import { existsSync, mkdirSync, readFileSync, writeFileSync, copyFileSync, renameSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Progress, QwenConfig } from "../api.ts";
import { ggufMetadataForConfig } from "../formats/config.ts";
import { GGML, REPO_ROOT } from "../constants.ts";
import { gv, inferKV, writeGguf, ggmlTensorBytes, type GgufKV, type GgufWriteTensor } from "../formats/gguf.ts";
import { writeSafetensors, writeSafetensorsSharded, type SafetensorsWriteTensor } from "../formats/safetensors.ts";
import { quantize } from "../formats/quant.ts";
import { OrderedEncoder, SynthPool, synthWorkerCount, type ScheduledTensor } from "./pool.ts";
import { PRESET_NAMES, SYNTH_TYPES, type PresetName, type SynthSpec, type SynthTensor, type SynthType } from "./types.ts";
import { loadQwenTokenizer, loadTokenizerDir, type QwenTokenizer } from "../text/tokenizer.ts";

export { PRESET_NAMES, SYNTH_TYPES };
export type { PresetName, SynthSpec, SynthTensor, SynthType, TensorKind } from "./types.ts";

const BASE = { rope_theta: 1e6, rms_norm_eps: 1e-6, bos_token_id: 151643, eos_token_id: 151643 };

export const PRESETS: Record<PresetName, QwenConfig> = {
  tiny: {
    ...BASE, vocab_size: 8256, hidden_size: 256, intermediate_size: 768, num_hidden_layers: 4, num_attention_heads: 4,
    num_key_value_heads: 2, head_dim: 64, max_position_embeddings: 4096, tie_word_embeddings: true,
    bos_token_id: 8192, eos_token_id: 8192,
  },
  "0.5b": {
    ...BASE, vocab_size: 151936, hidden_size: 896, intermediate_size: 4864, num_hidden_layers: 24, num_attention_heads: 14,
    num_key_value_heads: 2, head_dim: 64, max_position_embeddings: 32768, tie_word_embeddings: true,
  },
  "1.5b": {
    ...BASE, vocab_size: 151936, hidden_size: 1536, intermediate_size: 8960, num_hidden_layers: 28, num_attention_heads: 12,
    num_key_value_heads: 2, head_dim: 128, max_position_embeddings: 32768, tie_word_embeddings: true,
  },
  "7b": {
    ...BASE, vocab_size: 152064, hidden_size: 3584, intermediate_size: 18944, num_hidden_layers: 28, num_attention_heads: 28,
    num_key_value_heads: 4, head_dim: 128, max_position_embeddings: 32768, tie_word_embeddings: false,
  },
  // The shapes tensor parallelism is for (issue 18): bf16 weights of 65 GB / 145 GB, more than one GPU holds at 72B.
  "32b": {
    ...BASE, vocab_size: 152064, hidden_size: 5120, intermediate_size: 27648, num_hidden_layers: 64, num_attention_heads: 40,
    num_key_value_heads: 8, head_dim: 128, max_position_embeddings: 32768, tie_word_embeddings: false,
  },
  "72b": {
    ...BASE, vocab_size: 152064, hidden_size: 8192, intermediate_size: 29568, num_hidden_layers: 80, num_attention_heads: 64,
    num_key_value_heads: 8, head_dim: 128, max_position_embeddings: 32768, tie_word_embeddings: false,
  },
};

export function isPreset(s: string): s is PresetName {
  return (PRESET_NAMES as readonly string[]).includes(s);
}

export function synthSpec(preset: PresetName | "custom", opts: { seed?: number; std?: number; biasStd?: number; config?: Partial<QwenConfig> } = {}): SynthSpec {
  const base = preset === "custom" ? PRESETS.tiny : PRESETS[preset];
  const config = { ...base, ...(opts.config ?? {}) };
  return {
    preset, config, seed: opts.seed ?? 0, std: opts.std ?? 0.02, biasStd: opts.biasStd ?? 0.02,
    tokenizer: config.vocab_size >= 151643 ? "qwen" : "tiny",
  };
}

// ------------------------------------------------------------------------------------------------
// Tensor list
// ------------------------------------------------------------------------------------------------

export function tensorList(cfg: QwenConfig): SynthTensor[] {
  const H = cfg.hidden_size, d = cfg.head_dim, q = cfg.num_attention_heads * d, kv = cfg.num_key_value_heads * d;
  const F = cfg.intermediate_size, V = cfg.vocab_size;
  const out: SynthTensor[] = [{ name: "token_embd.weight", hfName: "model.embed_tokens.weight", ne: [H, V], kind: "embed", layer: -1 }];
  for (let L = 0; L < cfg.num_hidden_layers; L++) {
    const b = `blk.${L}.`, h = `model.layers.${L}.`;
    out.push(
      { name: b + "attn_norm.weight", hfName: h + "input_layernorm.weight", ne: [H], kind: "norm", layer: L },
      { name: b + "attn_q.weight", hfName: h + "self_attn.q_proj.weight", ne: [H, q], kind: "weight", layer: L },
      { name: b + "attn_q.bias", hfName: h + "self_attn.q_proj.bias", ne: [q], kind: "bias", layer: L },
      { name: b + "attn_k.weight", hfName: h + "self_attn.k_proj.weight", ne: [H, kv], kind: "weight", layer: L },
      { name: b + "attn_k.bias", hfName: h + "self_attn.k_proj.bias", ne: [kv], kind: "bias", layer: L },
      { name: b + "attn_v.weight", hfName: h + "self_attn.v_proj.weight", ne: [H, kv], kind: "weight", layer: L },
      { name: b + "attn_v.bias", hfName: h + "self_attn.v_proj.bias", ne: [kv], kind: "bias", layer: L },
      { name: b + "attn_output.weight", hfName: h + "self_attn.o_proj.weight", ne: [q, H], kind: "weight", layer: L },
      { name: b + "ffn_norm.weight", hfName: h + "post_attention_layernorm.weight", ne: [H], kind: "norm", layer: L },
      { name: b + "ffn_gate.weight", hfName: h + "mlp.gate_proj.weight", ne: [H, F], kind: "weight", layer: L },
      { name: b + "ffn_up.weight", hfName: h + "mlp.up_proj.weight", ne: [H, F], kind: "weight", layer: L },
      { name: b + "ffn_down.weight", hfName: h + "mlp.down_proj.weight", ne: [F, H], kind: "weight", layer: L },
    );
  }
  out.push({ name: "output_norm.weight", hfName: "model.norm.weight", ne: [H], kind: "norm", layer: -1 });
  if (!cfg.tie_word_embeddings) out.push({ name: "output.weight", hfName: "lm_head.weight", ne: [H, V], kind: "weight", layer: -1 });
  return out;
}

export function numel(ne: readonly number[]): number {
  return ne.reduce((a, b) => a * b, 1);
}

export function paramCount(cfg: QwenConfig): number {
  return tensorList(cfg).reduce((s, t) => s + numel(t.ne), 0);
}

// ------------------------------------------------------------------------------------------------
// PRNG: xoshiro128** seeded through splitmix32 from (seed, FNV-1a(name)); Box–Muller for normals.
// ------------------------------------------------------------------------------------------------
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export class Xoshiro128 {
  private a: number; private b: number; private c: number; private d: number;
  constructor(seed: number, stream = 0) {
    let x = (seed ^ Math.imul(stream, 0x9e3779b9)) >>> 0;
    const sm = () => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = sm(); this.b = sm(); this.c = sm(); this.d = sm();
    if ((this.a | this.b | this.c | this.d) === 0) this.a = 1;
  }
  /** Next uint32. */
  nextU32(): number {
    const r = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a; this.d ^= this.b; this.b ^= this.c; this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return r;
  }
  /** Uniform in (0, 1]. */
  nextUnit(): number {
    return (this.nextU32() + 1) / 4294967296;
  }
  /** Fills `out` with N(0, std²) (Box–Muller; consumes 2 draws per pair of values, and 2 for an odd last one). */
  fillNormal(out: Float32Array, std: number): void {
    // nextU32 / nextUnit inlined with the state in locals (the same arithmetic, so the same values: the
    // transcendental calls dominate what is left). Draws are unsigned as in nextU32 (>>> 0).
    let a = this.a | 0, b = this.b | 0, c = this.c | 0, d = this.d | 0;
    const n = out.length;
    const TWO_PI = 2 * Math.PI; // = the (2 * Math.PI) * u of the original expression
    let i = 0;
    for (; i + 1 < n; i += 2) {
      let x = Math.imul(b, 5);
      const u1 = Math.imul((x << 7) | (x >>> 25), 9) >>> 0;
      let t = b << 9;
      c ^= a; d ^= b; b ^= c; a ^= d; c ^= t; d = (d << 11) | (d >>> 21);
      x = Math.imul(b, 5);
      const u2 = Math.imul((x << 7) | (x >>> 25), 9) >>> 0;
      t = b << 9;
      c ^= a; d ^= b; b ^= c; a ^= d; c ^= t; d = (d << 11) | (d >>> 21);
      const r = std * Math.sqrt(-2 * Math.log((u1 + 1) / 4294967296));
      const th = TWO_PI * ((u2 + 1) / 4294967296);
      out[i] = r * Math.cos(th);
      out[i + 1] = r * Math.sin(th);
    }
    this.a = a >>> 0; this.b = b >>> 0; this.c = c >>> 0; this.d = d >>> 0;
    if (i < n) out[i] = std * Math.sqrt(-2 * Math.log(this.nextUnit())) * Math.cos(2 * Math.PI * this.nextUnit());
  }
  /** The state as four uint32 (a, b, c, d). */
  state(): [number, number, number, number] {
    return [this.a >>> 0, this.b >>> 0, this.c >>> 0, this.d >>> 0];
  }
  /**
   * Advances the generator by `steps` draws (nextU32 calls) in O(log steps): the xoshiro transition is linear
   * over GF(2), so it is a 128x128 bit matrix M, and jumping is M^steps = product of cached M^(2^k). This lets
   * any row chunk of a tensor start from its own state, so chunks can be generated in parallel with exactly the
   * values of one sequential stream.
   */
  jump(steps: number): this {
    if (!Number.isSafeInteger(steps) || steps < 0) throw new Error(`Xoshiro128.jump: steps must be a non-negative safe integer, got ${steps}`);
    const v = new Uint32Array([this.a, this.b, this.c, this.d]);
    const tmp = new Uint32Array(4);
    for (let k = 0; steps > 0; k++, steps = Math.floor(steps / 2)) {
      if (steps % 2 === 1) {
        matVec(jumpPower(k), v, tmp);
        v.set(tmp);
      }
    }
    this.a = v[0]; this.b = v[1]; this.c = v[2]; this.d = v[3];
    return this;
  }
}

/** One xoshiro128 state transition (the state update of nextU32) in place on 4 uint32 words. */
function stepState(s: Uint32Array): void {
  let a = s[0] | 0, b = s[1] | 0, c = s[2] | 0, d = s[3] | 0;
  const t = b << 9;
  c ^= a; d ^= b; b ^= c; a ^= d; c ^= t; d = (d << 11) | (d >>> 21);
  s[0] = a; s[1] = b; s[2] = c; s[3] = d;
}

/** out = M·v over GF(2); M is 128 columns of 4 words (column j = image of state bit j: word j>>5, bit j&31). */
function matVec(m: Uint32Array, v: Uint32Array, out: Uint32Array): void {
  let r0 = 0, r1 = 0, r2 = 0, r3 = 0;
  for (let w = 0; w < 4; w++) {
    const word = v[w];
    for (let bit = 0; bit < 32; bit++) {
      if ((word >>> bit) & 1) {
        const c = (w * 32 + bit) * 4;
        r0 ^= m[c]; r1 ^= m[c + 1]; r2 ^= m[c + 2]; r3 ^= m[c + 3];
      }
    }
  }
  out[0] = r0; out[1] = r1; out[2] = r2; out[3] = r3;
}

const JUMP_POWERS: Uint32Array[] = [];
/** The transition matrix raised to 2^k (computed on first use by repeated squaring, then cached). */
function jumpPower(k: number): Uint32Array {
  if (JUMP_POWERS.length === 0) {
    const m = new Uint32Array(512), s = new Uint32Array(4);
    for (let j = 0; j < 128; j++) {
      s.fill(0);
      s[j >> 5] = (1 << (j & 31)) >>> 0;
      stepState(s);
      m.set(s, 4 * j);
    }
    JUMP_POWERS.push(m);
  }
  while (JUMP_POWERS.length <= k) {
    const prev = JUMP_POWERS[JUMP_POWERS.length - 1];
    const next = new Uint32Array(512), tmp = new Uint32Array(4);
    for (let j = 0; j < 128; j++) {
      matVec(prev, prev.subarray(4 * j, 4 * j + 4), tmp); // column j of M² = M·(M e_j)
      next.set(tmp, 4 * j);
    }
    JUMP_POWERS.push(next);
  }
  return JUMP_POWERS[k];
}
function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** The fp32 values of one synthetic tensor (deterministic in spec.seed and the tensor's GGUF name). */
export function generateTensor(spec: SynthSpec, t: SynthTensor): Float32Array {
  const out = new Float32Array(numel(t.ne));
  if (t.kind === "norm") {
    out.fill(1);
    return out;
  }
  const rng = new Xoshiro128(spec.seed >>> 0, fnv1a(t.name));
  rng.fillNormal(out, t.kind === "bias" ? spec.biasStd : spec.std);
  return out;
}

// ------------------------------------------------------------------------------------------------
// Type plan (which GGML type each tensor gets)
// ------------------------------------------------------------------------------------------------
const QK_K = 256;
/** llama.cpp's use_more_bits(i, n): the first and last eighth of the layers and every third in between. */
function useMoreBits(i: number, n: number): boolean {
  return i < n / 8 || i >= (7 * n) / 8 || (i - Math.floor(n / 8)) % 3 === 2;
}

/**
 * GGML type for a tensor under a synthetic type. Norms and biases stay F32 (as in llama.cpp files).
 * q4_k_m follows llama.cpp's Q4_K_M rules in simplified form: output (or token_embd when tied) Q6_K,
 * attn_v and ffn_down Q6_K on use_more_bits layers else Q4_K, the rest Q4_K; a K-quant on a tensor whose
 * ne0 is not a multiple of 256 falls back (Q4_K -> Q5_0, Q6_K -> Q8_0), as llama.cpp does for 0.5B (H = 896).
 */
export function planType(type: SynthType, t: SynthTensor, cfg: QwenConfig): number {
  if (t.kind === "norm" || t.kind === "bias") return GGML.F32;
  switch (type) {
    case "f32": return GGML.F32;
    case "f16": return GGML.F16;
    case "bf16": return GGML.BF16;
    case "q8_0": return GGML.Q8_0;
    case "q4_k_m": {
      let ty: number = GGML.Q4_K;
      const isOutput = t.name === "output.weight" || (cfg.tie_word_embeddings && t.name === "token_embd.weight");
      if (isOutput) ty = GGML.Q6_K;
      else if (/attn_v\.weight$|ffn_down\.weight$/.test(t.name) && useMoreBits(t.layer, cfg.num_hidden_layers)) ty = GGML.Q6_K;
      if (t.ne[0] % QK_K !== 0) ty = ty === GGML.Q6_K ? GGML.Q8_0 : GGML.Q5_0;
      return ty;
    }
  }
}

/** llama.cpp general.file_type (LLAMA_FTYPE_*) for a synthetic type. */
export function fileType(type: SynthType): number {
  return { f32: 0, f16: 1, q8_0: 7, q4_k_m: 15, bf16: 32 }[type];
}

// ------------------------------------------------------------------------------------------------
// Plain conversions used by the in-memory path (f32 -> f16 / bf16 bytes, round to nearest even).
// ------------------------------------------------------------------------------------------------
const cvF32 = new Float32Array(1);
const cvU32 = new Uint32Array(cvF32.buffer);
export function f32ToBf16Bits(x: number): number {
  cvF32[0] = x;
  const u = cvU32[0];
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff; // NaN stays NaN
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}
export function f32ToF16Bits(x: number): number {
  cvF32[0] = x;
  const u = cvU32[0];
  const sign = (u >>> 16) & 0x8000;
  const e = (u >>> 23) & 0xff;
  let m = u & 0x7fffff;
  if (e === 0xff) return sign | 0x7c00 | (m ? 0x200 : 0);
  let exp = e - 127 + 15;
  if (exp >= 0x1f) return sign | 0x7c00;
  if (exp <= 0) {
    if (exp < -10) return sign;
    m |= 0x800000;
    const shift = 14 - exp;
    let half = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (exp << 10) | (m >>> 13);
  const rem = m & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}

/** Encodes fp32 values as F32 / F16 / BF16 bytes. */
export function encodeFloat(data: Float32Array, ggmlType: number): Uint8Array {
  if (ggmlType === GGML.F32) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const out = new Uint16Array(data.length);
  if (ggmlType === GGML.BF16) {
    // f32ToBf16Bits inlined on the bits
    const u = new Uint32Array(data.buffer, data.byteOffset, data.length);
    for (let i = 0; i < u.length; i++) {
      const b = u[i];
      out[i] = (b & 0x7fffffff) > 0x7f800000 ? ((b >>> 16) | 0x40) & 0xffff : ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
    }
    return new Uint8Array(out.buffer);
  }
  if (ggmlType !== GGML.F16) throw new Error(`encodeFloat: type ${ggmlType} is not a float type`);
  for (let i = 0; i < data.length; i++) out[i] = f32ToF16Bits(data[i]);
  return new Uint8Array(out.buffer);
}

/** Yields the tensors of a synthetic model one at a time as (name, type, ne, bytes) for float types. */
export function* floatTensors(spec: SynthSpec, type: "f32" | "f16" | "bf16"): Generator<{ t: SynthTensor; ggmlType: number; values: Float32Array; bytes: Uint8Array }> {
  for (const t of tensorList(spec.config)) {
    const values = generateTensor(spec, t);
    const ggmlType = planType(type, t, spec.config);
    yield { t, ggmlType, values, bytes: encodeFloat(values, ggmlType) };
  }
}

// ------------------------------------------------------------------------------------------------
// Streaming encoders: a tensor is generated and encoded in row chunks, so the peak memory of a writer is the
// encoded tensor plus one chunk (the 7B bf16 embedding: 1.1 GB, not 2.2 GB of fp32 first).
// ------------------------------------------------------------------------------------------------
const CHUNK_ELEMS = 1 << 22;

/** The bytes of tensor `t` in `ggmlType` (deterministic; identical to encoding generateTensor's output). */
export async function encodeTensor(spec: SynthSpec, t: SynthTensor, ggmlType: number): Promise<Uint8Array> {
  const n = numel(t.ne);
  const ne0 = t.ne[0];
  const nbytes = ggmlTensorBytes(ggmlType, t.ne);
  if (t.kind === "norm" || n <= CHUNK_ELEMS) {
    await new Promise<void>((res) => setImmediate(res));
    return encodeValues(generateTensor(spec, t), ggmlType, ne0);
  }
  const out = new Uint8Array(nbytes);
  const rows = n / ne0;
  const rowBytes = nbytes / rows;
  const rowsPerChunk = Math.max(1, Math.floor(CHUNK_ELEMS / ne0));
  const rng = new Xoshiro128(spec.seed >>> 0, fnv1a(t.name));
  const std = t.kind === "bias" ? spec.biasStd : spec.std;
  const buf = new Float32Array(rowsPerChunk * ne0);
  for (let r = 0; r < rows; r += rowsPerChunk) {
    const nr = Math.min(rowsPerChunk, rows - r);
    const v = nr === rowsPerChunk ? buf : buf.subarray(0, nr * ne0);
    rng.fillNormal(v, std);
    out.set(encodeValues(v, ggmlType, ne0), r * rowBytes);
    await new Promise<void>((res) => setImmediate(res)); // let signals (Ctrl-C) and progress output through
  }
  return out;
}

function encodeValues(values: Float32Array, ggmlType: number, ne0: number): Uint8Array {
  if (ggmlType === GGML.F32 || ggmlType === GGML.F16 || ggmlType === GGML.BF16) {
    const b = encodeFloat(values, ggmlType);
    return ggmlType === GGML.F32 ? new Uint8Array(b) : b; // F32: copy (values is a reused buffer)
  }
  if (values.length % ne0 !== 0) throw new Error(`synthetic: ${values.length} values are not whole rows of ${ne0}`);
  return quantize(ggmlType, values);
}

/** Rows that encodeTensor generates (and encodes) at a time for rows of ne0 values. */
function rowsPerChunk(ne0: number): number {
  return Math.max(1, Math.floor(CHUNK_ELEMS / ne0));
}

/**
 * The row ranges encodeTensor produces one after another (one range for a tensor of at most CHUNK_ELEMS values
 * and for norms). Each can be encoded on its own, in any order or thread, by encodeTensorRows.
 */
export function tensorChunks(t: SynthTensor): { row0: number; rows: number }[] {
  const n = numel(t.ne), ne0 = t.ne[0];
  const rows = n / ne0;
  if (t.kind === "norm" || n <= CHUNK_ELEMS) return [{ row0: 0, rows }];
  const rpc = rowsPerChunk(ne0);
  const out: { row0: number; rows: number }[] = [];
  for (let r = 0; r < rows; r += rpc) out.push({ row0: r, rows: Math.min(rpc, rows - r) });
  return out;
}

/**
 * The bytes of rows [row0, row0 + rows) of tensor `t` in `ggmlType`, for one range of tensorChunks(t): equal to
 * that slice of encodeTensor's output. The chunk's RNG state is the tensor's stream jumped ahead past the draws of
 * the chunks before it (fillNormal draws n + (n & 1) values for n values; every earlier chunk is full).
 */
export function encodeTensorRows(spec: SynthSpec, t: SynthTensor, ggmlType: number, row0: number, rows: number): Uint8Array {
  const n = numel(t.ne), ne0 = t.ne[0];
  const total = n / ne0;
  if (t.kind === "norm" || n <= CHUNK_ELEMS) {
    if (row0 !== 0 || rows !== total) throw new Error(`synthetic: ${t.name} is encoded whole (rows 0..${total}), not rows ${row0}..${row0 + rows}`);
    const v = generateTensor(spec, t);
    return ggmlType === GGML.F32 ? new Uint8Array(v.buffer) : encodeValues(v, ggmlType, ne0);
  }
  const rpc = rowsPerChunk(ne0);
  if (row0 % rpc !== 0 || rows !== Math.min(rpc, total - row0)) {
    throw new Error(`synthetic: rows ${row0}..${row0 + rows} of ${t.name} are not one of its ${rpc}-row chunks`);
  }
  const per = rpc * ne0;
  const rng = new Xoshiro128(spec.seed >>> 0, fnv1a(t.name)).jump((row0 / rpc) * (per + (per & 1)));
  const std = t.kind === "bias" ? spec.biasStd : spec.std;
  if (ggmlType === GGML.F32) {
    const v = new Float32Array(rows * ne0); // its buffer is the result
    rng.fillNormal(v, std);
    return new Uint8Array(v.buffer);
  }
  // other types encode into new bytes: the values go to a scratch buffer reused across calls (a worker runs many)
  if (!rowScratch || rowScratch.length < rows * ne0) rowScratch = new Float32Array(rows * ne0);
  const v = rowScratch.subarray(0, rows * ne0);
  rng.fillNormal(v, std);
  return encodeValues(v, ggmlType, ne0);
}
let rowScratch: Float32Array | null = null;

/** Below this many values a default (auto) writer stays sequential. */
const SMALL_MODEL_ELEMS = 32 << 20;
/** Default bound on the bytes of tensors encoded ahead of the writer. */
const MAX_IN_FLIGHT_BYTES = 4e9;

/**
 * Producers of the encoded tensors `items` for a streaming writer that asks for them in order: with one worker
 * the sequential in-process encodeTensor, else an OrderedEncoder over a SynthPool of `workers` Bun Workers (same
 * bytes). Always call close() when done (it terminates the workers; a no-op for the sequential path).
 */
export function tensorProducers(
  spec: SynthSpec, items: { t: SynthTensor; ggmlType: number }[], opts: { workers?: number; maxInFlightBytes?: number } = {},
): { data: (i: number) => Promise<Uint8Array>; workers: number; close: () => void } {
  let workers = opts.workers;
  if (workers === undefined) {
    workers = synthWorkerCount();
    // Starting workers costs a few hundred ms: not worth it for a small model unless QW_SYNTH_WORKERS asks.
    const small = items.reduce((s, it) => s + numel(it.t.ne), 0) < SMALL_MODEL_ELEMS;
    if (small && (process.env.QW_SYNTH_WORKERS ?? "").trim() === "") workers = 1;
  }
  if (!Number.isInteger(workers) || workers < 1) throw new Error(`synthetic: workers must be a positive integer, got ${workers}`);
  if (workers === 1) return { data: (i) => encodeTensor(spec, items[i].t, items[i].ggmlType), workers, close: () => {} };
  const sched: ScheduledTensor[] = items.map(({ t, ggmlType }) => {
    const nbytes = ggmlTensorBytes(ggmlType, t.ne);
    const rowBytes = nbytes / (numel(t.ne) / t.ne[0]);
    return {
      nbytes,
      jobs: tensorChunks(t).map(({ row0, rows }) => ({ job: { spec, t, ggmlType, row0, rows }, offset: row0 * rowBytes, nbytes: rows * rowBytes })),
    };
  });
  const enc = new OrderedEncoder(new SynthPool(workers), sched, opts.maxInFlightBytes ?? MAX_IN_FLIGHT_BYTES);
  return { data: (i) => enc.get(i), workers, close: () => enc.close() };
}

// ------------------------------------------------------------------------------------------------
// Tokenizer + writers
// ------------------------------------------------------------------------------------------------
export const MODELS_DIR = join(REPO_ROOT, "models");
const TINY_TOKENIZER_DIR = join(MODELS_DIR, "tiny-qwen2-brown");

/** The tokenizer that goes with a synthetic spec. */
export function syntheticTokenizer(spec: SynthSpec): QwenTokenizer {
  return spec.tokenizer === "tiny" ? loadTokenizerDir(TINY_TOKENIZER_DIR) : loadQwenTokenizer();
}

export interface WriteOptions {
  onProgress?: (p: Progress) => void;
  /** Stops between tensors and while a tensor is produced; the temp file is removed and the call rejects. */
  signal?: AbortSignal;
  /**
   * Encoder threads: 1 = sequential in this thread; more = a pool of Bun Workers (engine/synth/pool.ts), same
   * bytes. Default: QW_SYNTH_WORKERS, else min(cores - 1, 12).
   */
  workers?: number;
  /** Model name written into general.name / the HF config. */
  name?: string;
}

function modelName(spec: SynthSpec, type: SynthType): string {
  return `qwen2.5-${spec.preset}-synthetic-${type}-s${spec.seed}`;
}

/**
 * Writes a synthetic model as GGUF (llama.cpp-loadable: general.architecture qwen2, all qwen2.* keys, the
 * tokenizer with tokenizer.ggml.pre = qwen2). Tensors are produced one at a time while the file streams out.
 */
export async function writeSyntheticGguf(spec: SynthSpec, type: SynthType, path: string, opts: WriteOptions = {}): Promise<{ bytes: number; path: string }> {
  const cfg = spec.config;
  const tensors = tensorList(cfg);
  const types = tensors.map((t) => planType(type, t, cfg));
  const tok = syntheticTokenizer(spec);
  const meta: [string, GgufKV][] = [...ggufMetadataForConfig(cfg, opts.name ?? modelName(spec, type))];
  meta.push(["general.file_type", gv.u32(fileType(type))]);
  meta.push(["general.quantization_version", gv.u32(2)]);
  meta.push(["general.description", gv.str(`synthetic random weights (seed ${spec.seed}, std ${spec.std}); qwen-workbench engine/synthetic.ts`)]);
  const bos = cfg.bos_token_id, eos = Array.isArray(cfg.eos_token_id) ? cfg.eos_token_id[0] : cfg.eos_token_id;
  const have = new Set(meta.map(([k]) => k));
  for (const [k, v] of Object.entries(tok.toGgufMetadata({ vocabSize: cfg.vocab_size, bosId: bos, eosId: eos }))) {
    if (have.has(k)) continue; // bos/eos already written from the config (same values)
    meta.push([k, k.endsWith("_token_id") ? gv.u32(v as number) : inferKV(v, k)]);
  }
  const total = tensors.length;
  opts.onProgress?.({ stage: "synthesize", done: 0, total, message: path });
  mkdirSync(dirname(path), { recursive: true });
  const prod = tensorProducers(spec, tensors.map((t, i) => ({ t, ggmlType: types[i] })), { workers: opts.workers });
  try {
    const wt: GgufWriteTensor[] = tensors.map((t, i) => ({ name: t.name, type: types[i], ne: t.ne, data: () => prod.data(i) }));
    const r = await writeGguf(path, { metadata: meta, tensors: wt }, {
      onProgress: (done, tot, name) => opts.onProgress?.({ stage: "synthesize", done, total: tot, message: name }),
      signal: opts.signal,
    });
    return { bytes: r.bytes, path };
  } finally {
    prod.close();
  }
}

const HF_DTYPE: Record<number, string> = { [GGML.F32]: "F32", [GGML.F16]: "F16", [GGML.BF16]: "BF16" };

/**
 * Writes a synthetic model as a Hugging Face directory: config.json, generation_config.json, tokenizer.json,
 * tokenizer_config.json and model.safetensors (sharded as model-0000i-of-0000n.safetensors + index above
 * `shardBytes`, default 4 GB). Float types only (HF checkpoints hold no GGML block types).
 */
export async function writeSyntheticHf(spec: SynthSpec, type: SynthType, dir: string, opts: WriteOptions & { shardBytes?: number } = {}): Promise<{ bytes: number; dir: string; shards: number }> {
  if (type !== "f32" && type !== "f16" && type !== "bf16") throw new Error(`HF format holds float weights only (f32, f16, bf16), not ${type}; use --format gguf`);
  const cfg = spec.config;
  const tensors = tensorList(cfg);
  mkdirSync(dir, { recursive: true });
  const torchDtype = { f32: "float32", f16: "float16", bf16: "bfloat16" }[type];
  const config = {
    architectures: ["Qwen2ForCausalLM"], model_type: "qwen2", hidden_act: "silu", attention_dropout: 0.0,
    vocab_size: cfg.vocab_size, hidden_size: cfg.hidden_size, intermediate_size: cfg.intermediate_size,
    num_hidden_layers: cfg.num_hidden_layers, num_attention_heads: cfg.num_attention_heads, num_key_value_heads: cfg.num_key_value_heads,
    ...(cfg.head_dim * cfg.num_attention_heads !== cfg.hidden_size ? { head_dim: cfg.head_dim } : {}),
    max_position_embeddings: cfg.max_position_embeddings, rope_theta: cfg.rope_theta, rms_norm_eps: cfg.rms_norm_eps,
    tie_word_embeddings: cfg.tie_word_embeddings, use_sliding_window: false, sliding_window: null, max_window_layers: cfg.num_hidden_layers,
    bos_token_id: cfg.bos_token_id, eos_token_id: cfg.eos_token_id, torch_dtype: torchDtype, use_cache: true,
    initializer_range: spec.std, _name_or_path: opts.name ?? modelName(spec, type),
  };
  writeFileSync(join(dir, "config.json"), JSON.stringify(config, null, 2) + "\n");
  writeFileSync(join(dir, "generation_config.json"), JSON.stringify({ bos_token_id: cfg.bos_token_id, eos_token_id: cfg.eos_token_id }, null, 2) + "\n");
  // Tokenizer files: copied (the full Qwen tokenizer is stored gzipped in the repo; HF wants plain JSON).
  const tokDir = spec.tokenizer === "tiny" ? TINY_TOKENIZER_DIR : join(MODELS_DIR, "qwen-tokenizer");
  const tj = join(tokDir, "tokenizer.json");
  if (existsSync(tj)) copyFileSync(tj, join(dir, "tokenizer.json"));
  else writeFileSync(join(dir, "tokenizer.json"), Bun.gunzipSync(readFileSync(tj + ".gz") as Uint8Array<ArrayBuffer>));
  copyFileSync(join(tokDir, "tokenizer_config.json"), join(dir, "tokenizer_config.json"));

  const ggmlType = { f32: GGML.F32, f16: GGML.F16, bf16: GGML.BF16 }[type];
  let done = 0;
  const total = tensors.length;
  const ty = ggmlType; // HF keeps one dtype for all tensors (norms and biases included)
  const prod = tensorProducers(spec, tensors.map((t) => ({ t, ggmlType: ty })), { workers: opts.workers });
  const st: SafetensorsWriteTensor[] = tensors.map((t, i) => ({
    name: t.hfName, dtype: HF_DTYPE[ty], shape: [...t.ne].reverse(),
    data: async () => {
      const b = await prod.data(i);
      opts.onProgress?.({ stage: "synthesize", done: ++done, total, message: t.hfName });
      return b;
    },
  }));
  const bytes = st.reduce((s, t) => s + numel(t.shape) * (type === "f32" ? 4 : 2), 0);
  const shardBytes = opts.shardBytes ?? 4e9;
  opts.onProgress?.({ stage: "synthesize", done: 0, total, message: dir });
  const meta = { format: "pt" };
  try {
    if (bytes > shardBytes) {
      const r = await writeSafetensorsSharded(dir, st, { maxShardBytes: shardBytes, metadata: meta });
      return { bytes, dir, shards: r.shards.length };
    }
    await writeSafetensors(join(dir, "model.safetensors"), st, meta);
    return { bytes, dir, shards: 1 };
  } finally {
    prod.close();
  }
}

/** Writes atomically-renamed small JSON (used by the CLI for synth manifests). */
export function writeJsonAtomic(path: string, v: unknown): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(v, null, 2) + "\n");
  renameSync(tmp, path);
}
