// Shared helpers for the format tests: a seeded PRNG, tiny configs, and builders for GGUF / HF test models.
import * as fs from "node:fs";
import * as os from "node:os";
import * as nodePath from "node:path";
import type { QwenConfig } from "../../../engine/api.ts";
import { ggufMetadataForConfig } from "../../../engine/formats/config.ts";
import { encodeGguf, GGML_TYPE, ggmlTensorBytes, gv, GGUF_VALUE, type GgufKV } from "../../../engine/formats/gguf.ts";
import { tensorTable } from "../../../engine/formats/modelfile.ts";
import { mulberry32 } from "../../../engine/measure/passkey.ts";
import { encodeSafetensors, writeSafetensorsSharded, type SafetensorsWriteTensor } from "../../../engine/formats/safetensors.ts";

/** mulberry32 (the passkey harness's generator): a small deterministic PRNG, uniform in [0, 1). */
export const rng = mulberry32;

export function randomBytes(r: () => number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (r() * 256) | 0;
  return b;
}

/** Standard normal samples (Box–Muller). */
export function gaussian(r: () => number, n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = Math.max(r(), 1e-12), v = r();
    const m = Math.sqrt(-2 * Math.log(u)) * scale;
    out[i] = m * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = m * Math.sin(2 * Math.PI * v);
  }
  return out;
}

export function tinyConfig(over: Partial<QwenConfig> = {}): QwenConfig {
  return {
    vocab_size: 96, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4,
    num_key_value_heads: 2, head_dim: 16, max_position_embeddings: 256, rope_theta: 1e6, rms_norm_eps: 1e-6,
    tie_word_embeddings: true, ...over,
  };
}

export function tmpDir(prefix = "qw-formats-"): string {
  return fs.mkdtempSync(nodePath.join(os.tmpdir(), prefix));
}

/** A GGUF file for `c` with F32 tensors (random bytes) — optionally without/replacing some tensors. */
export function tinyGguf(
  c: QwenConfig,
  opts: { seed?: number; type?: number; drop?: string[]; ne?: Record<string, number[]>; extraMeta?: [string, GgufKV][]; arch?: string } = {},
): Uint8Array {
  const r = rng(opts.seed ?? 1);
  const meta = ggufMetadataForConfig(c, "tiny").map(([k, v]): [string, GgufKV] => k === "general.architecture" && opts.arch ? [k, gv.str(opts.arch)] : [k, v]);
  meta.push(["tokenizer.ggml.model", gv.str("gpt2")], ["tokenizer.ggml.tokens", gv.array(GGUF_VALUE.STRING, Array.from({ length: c.vocab_size }, (_, i) => `t${i}`))]);
  meta.push(...(opts.extraMeta ?? []));
  const tensors = tensorTable(c)
    .filter((s) => !opts.drop?.includes(s.name))
    .map((s) => {
      const ne = opts.ne?.[s.name] ?? s.ne;
      const type = ne.length === 1 ? GGML_TYPE.F32 : (opts.type ?? GGML_TYPE.F32);
      return { name: s.name, type, ne, data: randomBytes(r, ggmlTensorBytes(type, ne)) };
    });
  return encodeGguf({ metadata: meta, tensors });
}

/** An HF directory for `c` (bf16 random weights), single file or sharded. */
export async function tinyHfDir(
  c: QwenConfig,
  opts: { seed?: number; dtype?: string; sharded?: number; drop?: string[]; shape?: Record<string, number[]>; configOver?: Record<string, unknown>; dir?: string } = {},
): Promise<string> {
  const dir = opts.dir ?? tmpDir();
  const r = rng(opts.seed ?? 2);
  const dtype = opts.dtype ?? "BF16";
  const es = dtype === "F32" ? 4 : dtype === "I8" ? 1 : 2;
  const tensors: SafetensorsWriteTensor[] = tensorTable(c)
    .filter((s) => !opts.drop?.includes(s.hfName))
    .map((s) => {
      const shape = opts.shape?.[s.hfName] ?? [...s.ne].reverse();
      return { name: s.hfName, dtype, shape, data: randomBytes(r, shape.reduce((a, b) => a * b, es)) };
    });
  const cfg = {
    architectures: ["Qwen2ForCausalLM"], model_type: "qwen2", ...c, rope_theta: undefined,
    rope_parameters: { rope_theta: c.rope_theta, rope_type: "default" }, ...opts.configOver,
  };
  fs.writeFileSync(nodePath.join(dir, "config.json"), JSON.stringify(cfg));
  if (opts.sharded) await writeSafetensorsSharded(dir, tensors, { maxShardBytes: opts.sharded, metadata: { format: "pt" } });
  else fs.writeFileSync(nodePath.join(dir, "model.safetensors"), encodeSafetensors(tensors, { format: "pt" }));
  return dir;
}
