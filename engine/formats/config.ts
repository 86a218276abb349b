// QwenConfig from a Hugging Face config.json or from GGUF metadata (qwen2.* keys), validated with zod.
// Messages name the source and the field: "config.json: num_attention_heads (14) must divide hidden_size (900)".
import { z } from "zod";
import type { QwenConfig } from "../api.ts";
import { gv, GGUF_VALUE, type GgufFile, type GgufKV } from "./gguf.ts";

export type { QwenConfig };

const posInt = z.number().int().positive();

/** Schema of the normalized config (engine/api.ts QwenConfig). */
// Upper bounds far above any Qwen2 checkpoint (72B: 80 layers, 8192 hidden, 29568 ffn, 152064 vocab), so that
// a corrupt config fails here instead of making a loader build a million-entry tensor table.
export const QwenConfigSchema = z.object({
  vocab_size: posInt.max(1 << 24),
  hidden_size: posInt.max(1 << 17),
  intermediate_size: posInt.max(1 << 20),
  num_hidden_layers: posInt.max(1024),
  num_attention_heads: posInt.max(1024),
  num_key_value_heads: posInt.max(1024),
  head_dim: posInt.max(4096),
  max_position_embeddings: posInt.max(1 << 26),
  rope_theta: z.number().positive().finite(),
  rms_norm_eps: z.number().positive().finite(),
  tie_word_embeddings: z.boolean(),
  bos_token_id: z.number().int().nonnegative().optional(),
  eos_token_id: z.union([z.number().int().nonnegative(), z.array(z.number().int().nonnegative())]).optional(),
});

function issues(e: z.ZodError, what: string): Error {
  const parts = e.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`);
  return new Error(`${what}: ${parts.join("; ")}`);
}

/** Validates a normalized config (sizes, divisibility, head_dim even). Throws naming the source `what`. */
export function validateQwenConfig(c: unknown, what = "config"): QwenConfig {
  const r = QwenConfigSchema.safeParse(c);
  if (!r.success) throw issues(r.error, what);
  const k = r.data;
  if (k.num_attention_heads % k.num_key_value_heads !== 0) {
    throw new Error(`${what}: num_key_value_heads (${k.num_key_value_heads}) must divide num_attention_heads (${k.num_attention_heads})`);
  }
  if (k.head_dim % 2 !== 0) throw new Error(`${what}: head_dim (${k.head_dim}) must be even (RoPE rotates pairs)`);
  const eos = k.eos_token_id;
  for (const [name, id] of [["bos_token_id", k.bos_token_id], ...[eos].flat().map((e) => ["eos_token_id", e] as const)] as const) {
    if (id !== undefined && id >= k.vocab_size) throw new Error(`${what}: ${name} (${id}) is outside the vocabulary (${k.vocab_size})`);
  }
  return k;
}

// ------------------------------------------------------------------------------------------------------
// Hugging Face config.json
// ------------------------------------------------------------------------------------------------------

const HfConfigSchema = z.looseObject({
  model_type: z.string().optional(),
  architectures: z.array(z.string()).nullish(),
  vocab_size: posInt,
  hidden_size: posInt,
  intermediate_size: posInt,
  num_hidden_layers: posInt,
  num_attention_heads: posInt,
  num_key_value_heads: posInt.nullish(),
  head_dim: posInt.nullish(),
  max_position_embeddings: posInt.optional(),
  rope_theta: z.number().positive().finite().nullish(),
  rope_parameters: z.looseObject({ rope_theta: z.number().positive().finite().nullish(), rope_type: z.string().nullish() }).nullish(),
  rope_scaling: z.looseObject({ type: z.string().nullish(), rope_type: z.string().nullish() }).nullish(),
  rms_norm_eps: z.number().positive().finite().optional(),
  tie_word_embeddings: z.boolean().optional(),
  use_sliding_window: z.boolean().nullish(),
  hidden_act: z.string().optional(),
  bos_token_id: z.number().int().nonnegative().nullish(),
  eos_token_id: z.union([z.number().int().nonnegative(), z.array(z.number().int().nonnegative())]).nullish(),
});

export interface ConfigResult {
  config: QwenConfig;
  /** Settings accepted but not modelled by the engine (e.g. rope_scaling), for the caller to show. */
  warnings: string[];
}

/** Qwen2 defaults of transformers' Qwen2Config where a checkpoint omits a field. */
const HF_DEFAULTS = { max_position_embeddings: 32768, rope_theta: 10000, rms_norm_eps: 1e-6, tie_word_embeddings: false };

/**
 * Normalizes a parsed config.json. Accepts the legacy top-level `rope_theta` and the transformers-5
 * `rope_parameters.rope_theta`; head_dim defaults to hidden/heads, num_key_value_heads to heads.
 */
export function configFromHf(json: unknown, what = "config.json"): ConfigResult {
  if (!json || typeof json !== "object" || Array.isArray(json)) throw new Error(`${what}: not a JSON object`);
  const raw = json as Record<string, unknown>;
  const mt = raw.model_type;
  const archs = Array.isArray(raw.architectures) ? (raw.architectures as unknown[]) : [];
  if (mt !== undefined && mt !== "qwen2") throw new Error(`${what}: model_type is '${String(mt)}', expected 'qwen2'`);
  if (mt === undefined && !archs.includes("Qwen2ForCausalLM")) {
    throw new Error(`${what}: no model_type and architectures is ${JSON.stringify(archs)}, expected 'qwen2' / Qwen2ForCausalLM`);
  }
  const r = HfConfigSchema.safeParse(json);
  if (!r.success) throw issues(r.error, what);
  const h = r.data;
  const warnings: string[] = [];
  const heads = h.num_attention_heads;
  let headDim = h.head_dim ?? undefined;
  if (headDim === undefined) {
    if (h.hidden_size % heads !== 0) throw new Error(`${what}: num_attention_heads (${heads}) must divide hidden_size (${h.hidden_size})`);
    headDim = h.hidden_size / heads;
  }
  const top = h.rope_theta ?? undefined;
  const nested = h.rope_parameters?.rope_theta ?? undefined;
  if (top !== undefined && nested !== undefined && top !== nested) {
    throw new Error(`${what}: rope_theta (${top}) and rope_parameters.rope_theta (${nested}) disagree`);
  }
  const ropeType = h.rope_parameters?.rope_type ?? h.rope_scaling?.rope_type ?? h.rope_scaling?.type ?? "default";
  if (ropeType !== "default") warnings.push(`${what}: rope type '${ropeType}' is not modelled; plain RoPE is used`);
  if (h.use_sliding_window) warnings.push(`${what}: use_sliding_window is true; the engine uses full attention`);
  if (h.hidden_act !== undefined && h.hidden_act !== "silu") throw new Error(`${what}: hidden_act is '${h.hidden_act}', expected 'silu'`);
  const config: QwenConfig = {
    vocab_size: h.vocab_size,
    hidden_size: h.hidden_size,
    intermediate_size: h.intermediate_size,
    num_hidden_layers: h.num_hidden_layers,
    num_attention_heads: heads,
    num_key_value_heads: h.num_key_value_heads ?? heads,
    head_dim: headDim,
    max_position_embeddings: h.max_position_embeddings ?? HF_DEFAULTS.max_position_embeddings,
    rope_theta: top ?? nested ?? HF_DEFAULTS.rope_theta,
    rms_norm_eps: h.rms_norm_eps ?? HF_DEFAULTS.rms_norm_eps,
    tie_word_embeddings: h.tie_word_embeddings ?? HF_DEFAULTS.tie_word_embeddings,
  };
  if (h.bos_token_id != null) config.bos_token_id = h.bos_token_id;
  if (h.eos_token_id != null) config.eos_token_id = h.eos_token_id;
  return { config: validateQwenConfig(config, what), warnings };
}

// ------------------------------------------------------------------------------------------------------
// GGUF metadata
// ------------------------------------------------------------------------------------------------------

/** The shortest decimal that rounds to the same float32 (1e-6 stored as F32 reads back as 1e-6). */
export function shortestF32(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const f = Math.fround(x);
  for (let p = 1; p <= 9; p++) {
    const y = Number(f.toPrecision(p));
    if (Math.fround(y) === f) return y;
  }
  return f;
}

/**
 * QwenConfig from a GGUF file's metadata. vocab_size comes from qwen2.vocab_size, else token_embd.weight ne1,
 * else the tokenizer's token count; tie_word_embeddings is true when there is no output.weight.
 */
export function configFromGguf(g: GgufFile, what = "GGUF"): ConfigResult {
  const arch = g.get("general.architecture");
  if (arch === undefined) throw new Error(`${what}: general.architecture is missing, expected 'qwen2'`);
  if (arch !== "qwen2") throw new Error(`${what}: general.architecture is '${String(arch)}', expected 'qwen2'`);
  const num = (key: string, required: boolean, f32 = false): number | undefined => {
    const kv = g.metadata.get(key);
    if (kv === undefined) {
      if (required) throw new Error(`${what}: metadata key ${key} is missing`);
      return undefined;
    }
    if (typeof kv.value !== "number") throw new Error(`${what}: metadata ${key} must be a number, found ${typeof kv.value === "object" ? "an array" : typeof kv.value}`);
    return f32 && kv.type === GGUF_VALUE.F32 ? shortestF32(kv.value) : kv.value;
  };
  const hidden = num("qwen2.embedding_length", true)!;
  const heads = num("qwen2.attention.head_count", true)!;
  const layers = num("qwen2.block_count", true)!;
  const ff = num("qwen2.feed_forward_length", true)!;
  const emb = g.tensor("token_embd.weight");
  const toks = g.metadata.get("tokenizer.ggml.tokens");
  const vocab = num("qwen2.vocab_size", false) ?? (emb && emb.ne.length >= 2 ? emb.ne[1] : undefined)
    ?? (toks && typeof toks.value === "object" ? toks.value.items.length : undefined);
  if (vocab === undefined) throw new Error(`${what}: cannot tell vocab_size (no qwen2.vocab_size, token_embd.weight or tokenizer.ggml.tokens)`);
  let headDim = num("qwen2.attention.key_length", false);
  if (headDim === undefined) {
    if (!(heads > 0) || hidden % heads !== 0) throw new Error(`${what}: qwen2.attention.head_count (${heads}) must divide qwen2.embedding_length (${hidden})`);
    headDim = hidden / heads;
  }
  const warnings: string[] = [];
  const scaling = g.get("qwen2.rope.scaling.type");
  if (scaling !== undefined && scaling !== "none") warnings.push(`${what}: rope scaling '${String(scaling)}' is not modelled; plain RoPE is used`);
  const config: Record<string, unknown> = {
    vocab_size: vocab,
    hidden_size: hidden,
    intermediate_size: ff,
    num_hidden_layers: layers,
    num_attention_heads: heads,
    num_key_value_heads: num("qwen2.attention.head_count_kv", false) ?? heads,
    head_dim: headDim,
    max_position_embeddings: num("qwen2.context_length", false) ?? HF_DEFAULTS.max_position_embeddings,
    rope_theta: num("qwen2.rope.freq_base", false, true) ?? HF_DEFAULTS.rope_theta,
    rms_norm_eps: num("qwen2.attention.layer_norm_rms_epsilon", false, true) ?? HF_DEFAULTS.rms_norm_eps,
    tie_word_embeddings: g.tensor("output.weight") === undefined,
  };
  const bos = num("tokenizer.ggml.bos_token_id", false);
  const eos = num("tokenizer.ggml.eos_token_id", false);
  if (bos !== undefined) config.bos_token_id = bos;
  if (eos !== undefined) config.eos_token_id = eos;
  return { config: validateQwenConfig(config, what), warnings };
}

/** The qwen2.* metadata llama.cpp expects for a config (types as llama.cpp writes them). */
export function ggufMetadataForConfig(c: QwenConfig, name = "qwen2"): [string, GgufKV][] {
  const out: [string, GgufKV][] = [
    ["general.architecture", gv.str("qwen2")],
    ["general.name", gv.str(name)],
    ["qwen2.block_count", gv.u32(c.num_hidden_layers)],
    ["qwen2.context_length", gv.u32(c.max_position_embeddings)],
    ["qwen2.embedding_length", gv.u32(c.hidden_size)],
    ["qwen2.feed_forward_length", gv.u32(c.intermediate_size)],
    ["qwen2.attention.head_count", gv.u32(c.num_attention_heads)],
    ["qwen2.attention.head_count_kv", gv.u32(c.num_key_value_heads)],
    ["qwen2.rope.freq_base", gv.f32(c.rope_theta)],
    ["qwen2.attention.layer_norm_rms_epsilon", gv.f32(c.rms_norm_eps)],
  ];
  if (c.head_dim * c.num_attention_heads !== c.hidden_size) {
    out.push(["qwen2.attention.key_length", gv.u32(c.head_dim)], ["qwen2.attention.value_length", gv.u32(c.head_dim)]);
  }
  if (c.bos_token_id !== undefined) out.push(["tokenizer.ggml.bos_token_id", gv.u32(c.bos_token_id)]);
  const eos = Array.isArray(c.eos_token_id) ? c.eos_token_id[0] : c.eos_token_id;
  if (eos !== undefined) out.push(["tokenizer.ggml.eos_token_id", gv.u32(eos)]);
  return out;
}

/** A transformers config.json (Qwen2ForCausalLM) for a config, e.g. to export dequantized weights for PyTorch. */
export function hfConfigForQwenConfig(c: QwenConfig, torchDtype: "float32" | "float16" | "bfloat16" = "bfloat16"): Record<string, unknown> {
  return {
    architectures: ["Qwen2ForCausalLM"], model_type: "qwen2", hidden_act: "silu", attention_dropout: 0.0,
    vocab_size: c.vocab_size, hidden_size: c.hidden_size, intermediate_size: c.intermediate_size,
    num_hidden_layers: c.num_hidden_layers, num_attention_heads: c.num_attention_heads, num_key_value_heads: c.num_key_value_heads,
    ...(c.head_dim * c.num_attention_heads !== c.hidden_size ? { head_dim: c.head_dim } : {}),
    max_position_embeddings: c.max_position_embeddings, rope_theta: c.rope_theta, rms_norm_eps: c.rms_norm_eps,
    tie_word_embeddings: c.tie_word_embeddings, use_sliding_window: false, sliding_window: null,
    max_window_layers: c.num_hidden_layers, torch_dtype: torchDtype, use_cache: true,
    ...(c.bos_token_id !== undefined ? { bos_token_id: c.bos_token_id } : {}),
    ...(c.eos_token_id !== undefined ? { eos_token_id: c.eos_token_id } : {}),
  };
}
