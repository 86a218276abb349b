// engine/spec/eagle-head.ts — loads an EAGLE-1/2 draft head in the checkpoint layout of SafeAILab's EAGLE
// repository (eagle/model/cnets1.py `Model`, as their Qwen2 heads ship it: config.json + the state dict, here
// as model.safetensors) for a given target, and writes that layout (tests, notebooks/peers/train_eagle.py).
//
// The head (cnets1.py Model.forward): x = fc(cat(embed_tokens(token), feature)); one Llama/Qwen2 decoder layer
// whose layer 0 has NO input_layernorm (index 0 skips it), then its output goes straight to the target's lm_head
// (no final norm). The feature is the target's last hidden state AFTER its final norm: EaModel takes
// `outputs[0]` of base_model.model (modeling_qwen2_kv.py Qwen2Model.forward ends with `self.norm`), which the
// engine exposes as the capture `ln_final.hook_normalized`. For draft nodes deeper in the tree the feature is
// the head's own output (its layer output, capture `blocks.0.hook_resid_post` of the head session).
//
// Tensor names (strict, as their load_state_dict(strict=True)): fc.weight [H, 2H], fc.bias [H] (config "bias",
// default true), embed_tokens.weight [V, H] (optional here: the target's embedding when absent),
// layers.0.self_attn.{q,k,v,o}_proj.weight (+ q/k/v .bias when config "qkv_bias"), layers.0.mlp.{gate,up,
// down}_proj.weight, layers.0.post_attention_layernorm.weight. head_dim = hidden_size / num_attention_heads.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import type { QwenConfig } from "../api.ts";
import { GGML_TYPE } from "../formats/gguf-types.ts";
import { HF_DTYPE_TO_GGML, openModelSource } from "../formats/modelfile.ts";
import { openSafetensorsDir, writeSafetensors, type SafetensorsWriteTensor } from "../formats/safetensors.ts";
import { loadNative, Model, type LoadedTensor } from "../index.ts";
import { outputFormat, withOutput } from "../formats/requant.ts";

/** The config.json of a SafeAILab EAGLE head (their EConfig, a Llama-style config); unknown keys are ignored. */
export const EagleConfigSchema = z.object({
  vocab_size: z.number().int().positive(),
  hidden_size: z.number().int().positive(),
  intermediate_size: z.number().int().positive(),
  num_hidden_layers: z.number().int().positive(),
  num_attention_heads: z.number().int().positive(),
  num_key_value_heads: z.number().int().positive().optional(),
  max_position_embeddings: z.number().int().positive(),
  rms_norm_eps: z.number().positive(),
  rope_theta: z.number().positive().optional(),
  bias: z.boolean().optional(),       // fc has a bias (their default: true)
  qkv_bias: z.boolean().optional(),   // q/k/v projections have biases (Qwen2 heads)
}).passthrough();
export type EagleConfig = z.infer<typeof EagleConfigSchema>;

/** What a head needs of its target. */
export interface EagleTarget {
  readonly id: string;
  readonly path: string;
  readonly config: QwenConfig;
  readonly engine: Model["engine"];
  readonly tokenizer: Model["tokenizer"];
  /** The target's weights option: its output format (weightsLayers.output) is the head's lm_head format too. */
  readonly weights?: { weightsLayers?: Record<string, string> };
}

/** SafeAILab names -> GGUF names of the head's native model, and their PyTorch shapes. */
function headTensors(c: EagleConfig, kv: number): { src: string; gguf: string; shape: number[]; optional?: "zeros" | "target" }[] {
  const H = c.hidden_size, F = c.intermediate_size, hd = H / c.num_attention_heads, Q = c.num_attention_heads * hd, KV = kv * hd;
  const qkvBias = c.qkv_bias === true ? undefined : "zeros" as const;
  return [
    { src: "embed_tokens.weight", gguf: "token_embd.weight", shape: [c.vocab_size, H], optional: "target" },
    { src: "fc.weight", gguf: "eagle.fc.weight", shape: [H, 2 * H] },
    { src: "fc.bias", gguf: "eagle.fc.bias", shape: [H], ...(c.bias === false ? { optional: "zeros" as const } : {}) },
    { src: "layers.0.self_attn.q_proj.weight", gguf: "blk.0.attn_q.weight", shape: [Q, H] },
    { src: "layers.0.self_attn.q_proj.bias", gguf: "blk.0.attn_q.bias", shape: [Q], ...(qkvBias ? { optional: qkvBias } : {}) },
    { src: "layers.0.self_attn.k_proj.weight", gguf: "blk.0.attn_k.weight", shape: [KV, H] },
    { src: "layers.0.self_attn.k_proj.bias", gguf: "blk.0.attn_k.bias", shape: [KV], ...(qkvBias ? { optional: qkvBias } : {}) },
    { src: "layers.0.self_attn.v_proj.weight", gguf: "blk.0.attn_v.weight", shape: [KV, H] },
    { src: "layers.0.self_attn.v_proj.bias", gguf: "blk.0.attn_v.bias", shape: [KV], ...(qkvBias ? { optional: qkvBias } : {}) },
    { src: "layers.0.self_attn.o_proj.weight", gguf: "blk.0.attn_output.weight", shape: [H, Q] },
    { src: "layers.0.post_attention_layernorm.weight", gguf: "blk.0.ffn_norm.weight", shape: [H] },
    { src: "layers.0.mlp.gate_proj.weight", gguf: "blk.0.ffn_gate.weight", shape: [F, H] },
    { src: "layers.0.mlp.up_proj.weight", gguf: "blk.0.ffn_up.weight", shape: [F, H] },
    { src: "layers.0.mlp.down_proj.weight", gguf: "blk.0.ffn_down.weight", shape: [H, F] },
  ];
}

/** Why this head config cannot draft for the target, or undefined. */
export function eagleIncompatibility(c: EagleConfig, t: QwenConfig): string | undefined {
  if (c.num_hidden_layers !== 1) return `the head has num_hidden_layers = ${c.num_hidden_layers}; EAGLE-1/2 heads (and this loader) have exactly 1`;
  if (c.hidden_size !== t.hidden_size) return `the head's hidden_size ${c.hidden_size} differs from the target's ${t.hidden_size}`;
  if (c.vocab_size !== t.vocab_size) return `the head's vocab_size ${c.vocab_size} differs from the target's ${t.vocab_size}`;
  if (c.hidden_size % c.num_attention_heads !== 0) return `hidden_size ${c.hidden_size} is not a multiple of num_attention_heads ${c.num_attention_heads}`;
  const kv = c.num_key_value_heads ?? c.num_attention_heads;
  if (c.num_attention_heads % kv !== 0) return `num_attention_heads ${c.num_attention_heads} is not a multiple of num_key_value_heads ${kv}`;
  return undefined;
}

/**
 * Opens the head in `dir` (config.json + model.safetensors, SafeAILab layout) for `target`, on the target's
 * engine. Throws an Error saying what does not match (names, shapes, sizes) and what to do.
 */
export async function openEagleHead(dir: string, target: EagleTarget, opts: { root?: string } = {}): Promise<Model> {
  const what = `EAGLE head ${dir}`;
  const cfgPath = join(dir, "config.json");
  if (!existsSync(cfgPath)) throw new Error(`${what}: no config.json (an EAGLE head directory holds config.json and model.safetensors)`);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(cfgPath, "utf8"));
  } catch (e) {
    throw new Error(`${what}: config.json is not JSON: ${(e as Error).message}`);
  }
  const pc = EagleConfigSchema.safeParse(raw);
  if (!pc.success) throw new Error(`${what}: config.json: ${pc.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  const c = pc.data;
  const why = eagleIncompatibility(c, target.config);
  if (why) throw new Error(`${what} cannot draft for ${target.id}: ${why}`);
  const kv = c.num_key_value_heads ?? c.num_attention_heads;
  const st = openSafetensorsDir(dir, opts.root);
  const specs = headTensors(c, kv);
  const known = new Set(specs.map((s) => s.src));
  const unknown = st.tensors.map((t) => t.name).filter((n) => !known.has(n));
  if (unknown.length > 0) {
    throw new Error(`${what}: tensors an EAGLE-1/2 Qwen2 head does not have: ${unknown.slice(0, 8).join(", ")}` +
      `${unknown.length > 8 ? ", …" : ""} (expected SafeAILab names: fc.weight, layers.0.self_attn.q_proj.weight, …)`);
  }
  // The target's output projection (its lm_head, or the tied embedding) and, when the head has none, its embedding.
  if (!existsSync(target.path)) throw new Error(`${what}: the target ${target.id} has no model file to read its lm_head from (open the target from a .gguf or HF directory)`);
  const tsrc = openModelSource(target.path);
  const tensor = (name: string) => {
    const t = tsrc.tensors.find((x) => x.name === name);
    if (!t) throw new Error(`${what}: the target ${target.id} has no ${name}`);
    return t;
  };
  const out = tensor(target.config.tie_word_embeddings ? "token_embd.weight" : "output.weight");
  const tensors: LoadedTensor[] = [];
  for (const s of specs) {
    const t = st.tensor(s.src);
    if (!t) {
      if (s.optional === "zeros") { tensors.push({ name: s.gguf, ggmlType: GGML_TYPE.F32, ne: [...s.shape].reverse(), data: new Uint8Array(4 * s.shape[0]) }); continue; }
      if (s.optional === "target") { const e = tensor("token_embd.weight"); tensors.push({ name: s.gguf, ggmlType: e.ggmlType, ne: e.ne, data: e.data }); continue; }
      throw new Error(`${what}: tensor ${s.src} is missing (shape [${s.shape.join(", ")}] for this config)`);
    }
    if (t.shape.join(",") !== s.shape.join(",")) {
      throw new Error(`${what}: ${s.src} has shape [${t.shape.join(", ")}], the config and target need [${s.shape.join(", ")}]`);
    }
    const ggmlType = HF_DTYPE_TO_GGML[t.dtype];
    if (ggmlType === undefined) throw new Error(`${what}: ${s.src} has dtype ${t.dtype}; supported: F32, F16, BF16`);
    tensors.push({ name: s.gguf, ggmlType, ne: [...t.shape].reverse(), get data() { return t.data; } });
  }
  tensors.push({ name: "output.weight", ggmlType: out.ggmlType, ne: out.ne, get data() { return out.data; } });
  const config: QwenConfig = {
    vocab_size: c.vocab_size, hidden_size: c.hidden_size, intermediate_size: c.intermediate_size, num_hidden_layers: 1,
    num_attention_heads: c.num_attention_heads, num_key_value_heads: kv, head_dim: c.hidden_size / c.num_attention_heads,
    max_position_embeddings: Math.max(c.max_position_embeddings, target.config.max_position_embeddings),
    rope_theta: c.rope_theta ?? target.config.rope_theta, rms_norm_eps: c.rms_norm_eps, tie_word_embeddings: false,
  };
  // The head reads the target's lm_head from the file as loaded: requantized as the target's was (weightsLayers
  // output), so that draft and target score tokens with the same matrix.
  const weights = withOutput({}, outputFormat(target.weights));
  const { native, weightBytes, weightTypes } = await loadNative(target.engine, config, tensors, tensors.length, undefined, undefined, weights, undefined, { eagle_head: true });
  return new Model({
    id: `eagle:${dir}`, format: "hf", config, engine: target.engine, native, tokenizer: target.tokenizer.inner,
    weightBytes, weightTypes, hash: "", path: dir, warnings: [], weights,
  });
}

/** Float32 PyTorch-order tensors of a head by SafeAILab name (what writeEagleHead writes). */
export type EagleTensors = Record<string, { shape: number[]; data: Float32Array }>;

/** Writes a head in the SafeAILab layout: dir/config.json and dir/model.safetensors (F32). */
export async function writeEagleHead(dir: string, config: EagleConfig, tensors: EagleTensors): Promise<void> {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "config.json"), JSON.stringify({ architectures: ["LlamaForCausalLM"], hidden_act: "silu", ...config }, null, 2) + "\n");
  const list: SafetensorsWriteTensor[] = Object.entries(tensors).map(([name, t]) => ({
    name, dtype: "F32", shape: t.shape, data: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength),
  }));
  await writeSafetensors(join(dir, "model.safetensors"), list, { format: "pt" });
}

/** The EAGLE config of a head for a Qwen2 target (1 layer, the target's widths). */
export function eagleConfigFor(t: QwenConfig): EagleConfig {
  return {
    vocab_size: t.vocab_size, hidden_size: t.hidden_size, intermediate_size: t.intermediate_size, num_hidden_layers: 1,
    num_attention_heads: t.num_attention_heads, num_key_value_heads: t.num_key_value_heads,
    max_position_embeddings: t.max_position_embeddings, rms_norm_eps: t.rms_norm_eps, rope_theta: t.rope_theta,
    bias: true, qkv_bias: true,
  };
}
