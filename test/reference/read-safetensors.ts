// A minimal, independent safetensors reader for the fp64 reference (F32 / F16 / BF16 -> Float64Array).
// Deliberately not engine/formats/safetensors.ts: the reference must not share code with what it checks.
import { readFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import type { RefConfig, RefWeights } from "./qwen2-ref.ts";

function f16(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

export function readSafetensorsF64(path: string): RefWeights {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8")) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const base = 8 + n;
  const out: RefWeights = new Map();
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  for (const [name, info] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const [a, b] = info.data_offsets;
    const bytes = buf.subarray(base + a, base + b);
    const count = info.shape.reduce((x, y) => x * y, 1);
    const data = new Float64Array(count);
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < count; i++) {
      switch (info.dtype) {
        case "F32": data[i] = dv.getFloat32(4 * i, true); break;
        case "F16": data[i] = f16(dv.getUint16(2 * i, true)); break;
        case "BF16": u32[0] = dv.getUint16(2 * i, true) << 16; data[i] = f32[0]; break;
        default: throw new Error(`reference reader: dtype ${info.dtype} of ${name} not supported`);
      }
    }
    out.set(name, { shape: info.shape, data });
  }
  return out;
}

/** Reads an HF directory's config.json (accepts rope_theta at top level or in rope_parameters) and weights. */
export function readHfDirF64(dir: string): { config: RefConfig; weights: RefWeights } {
  const raw = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
  const config: RefConfig = {
    vocab_size: raw.vocab_size,
    hidden_size: raw.hidden_size,
    intermediate_size: raw.intermediate_size,
    num_hidden_layers: raw.num_hidden_layers,
    num_attention_heads: raw.num_attention_heads,
    num_key_value_heads: raw.num_key_value_heads ?? raw.num_attention_heads,
    head_dim: raw.head_dim,
    rope_theta: raw.rope_theta ?? raw.rope_parameters?.rope_theta ?? 10000,
    rms_norm_eps: raw.rms_norm_eps,
    tie_word_embeddings: raw.tie_word_embeddings ?? false,
  };
  const file = join(dir, "model.safetensors");
  if (!existsSync(file)) throw new Error(`reference reader: ${file} missing (sharded files not supported here)`);
  return { config, weights: readSafetensorsF64(file) };
}
