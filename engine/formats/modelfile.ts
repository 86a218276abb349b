// Opens a model source — a .gguf file or a Hugging Face directory (config.json + model.safetensors or a
// sharded index) — into one shape the engine loads from: a validated config, the tensors under their GGUF
// names with ggml types and ggml-order shapes, zero-copy data views, and where the tokenizer comes from.
// Everything is checked here (architecture, every required tensor, shapes, types) so that the native engine
// only ever sees a consistent model, and the user sees every problem named at once.
import * as fs from "node:fs";
import * as nodePath from "node:path";
import type { QwenConfig } from "../api.ts";
import { configFromGguf, configFromHf, ggufMetadataForConfig, hfConfigForQwenConfig } from "./config.ts";
import {
  GGML_TYPE, ggmlTensorBytes, ggmlTypeName, ggmlTypeSize, ggufPlain, ggufValueTypeName, gv, isKnownGgmlType, isSupportedGgmlType,
  openGguf, writeGguf, type GgufFile, type GgufKV,
} from "./gguf.ts";
import { chooseQuantType, dequantize, quantize, type QuantScheme } from "./quant.ts";
import { openSafetensorsDir, SUPPORTED_SAFETENSORS_DTYPES, writeSafetensors, writeSafetensorsSharded } from "./safetensors.ts";
import { openRegular, readJsonFile, realInside } from "../io/fsafe.ts";

// ------------------------------------------------------------------------------------------------------
// Tensor table and names
// ------------------------------------------------------------------------------------------------------

export interface TensorSpec {
  name: string;
  /** ggml order: ne0 is the contiguous (input) dimension. */
  ne: number[];
  /** The Hugging Face name of the same tensor. */
  hfName: string;
  /** Layer index, or -1 for token_embd / output_norm / output. */
  layer: number;
  /** What it is: a matrix (GEMV/GEMM weight, incl. the embedding), a norm weight or a bias. */
  kind: "matrix" | "norm" | "bias";
}

const LAYER_TENSORS: [gguf: string, hf: string, ne: (c: QwenConfig) => number[]][] = [
  ["attn_norm.weight", "input_layernorm.weight", (c) => [c.hidden_size]],
  ["attn_q.weight", "self_attn.q_proj.weight", (c) => [c.hidden_size, c.num_attention_heads * c.head_dim]],
  ["attn_q.bias", "self_attn.q_proj.bias", (c) => [c.num_attention_heads * c.head_dim]],
  ["attn_k.weight", "self_attn.k_proj.weight", (c) => [c.hidden_size, c.num_key_value_heads * c.head_dim]],
  ["attn_k.bias", "self_attn.k_proj.bias", (c) => [c.num_key_value_heads * c.head_dim]],
  ["attn_v.weight", "self_attn.v_proj.weight", (c) => [c.hidden_size, c.num_key_value_heads * c.head_dim]],
  ["attn_v.bias", "self_attn.v_proj.bias", (c) => [c.num_key_value_heads * c.head_dim]],
  ["attn_output.weight", "self_attn.o_proj.weight", (c) => [c.num_attention_heads * c.head_dim, c.hidden_size]],
  ["ffn_norm.weight", "post_attention_layernorm.weight", (c) => [c.hidden_size]],
  ["ffn_gate.weight", "mlp.gate_proj.weight", (c) => [c.hidden_size, c.intermediate_size]],
  ["ffn_up.weight", "mlp.up_proj.weight", (c) => [c.hidden_size, c.intermediate_size]],
  ["ffn_down.weight", "mlp.down_proj.weight", (c) => [c.intermediate_size, c.hidden_size]],
];

/**
 * Every tensor a Qwen2 model with this config needs, in load order, GGUF names and ggml shapes.
 * Tied models (tie_word_embeddings) have no output.weight.
 */
export function tensorTable(c: QwenConfig): TensorSpec[] {
  const t: TensorSpec[] = [{ name: "token_embd.weight", hfName: "model.embed_tokens.weight", ne: [c.hidden_size, c.vocab_size], layer: -1, kind: "matrix" }];
  for (let i = 0; i < c.num_hidden_layers; i++) {
    for (const [g, h, ne] of LAYER_TENSORS) {
      const kind = g.endsWith(".bias") ? "bias" : g.includes("norm") ? "norm" : "matrix";
      t.push({ name: `blk.${i}.${g}`, hfName: `model.layers.${i}.${h}`, ne: ne(c), layer: i, kind });
    }
  }
  t.push({ name: "output_norm.weight", hfName: "model.norm.weight", ne: [c.hidden_size], layer: -1, kind: "norm" });
  if (!c.tie_word_embeddings) t.push({ name: "output.weight", hfName: "lm_head.weight", ne: [c.hidden_size, c.vocab_size], layer: -1, kind: "matrix" });
  return t;
}

const HF_TOP: Record<string, string> = {
  "model.embed_tokens.weight": "token_embd.weight",
  "model.norm.weight": "output_norm.weight",
  "lm_head.weight": "output.weight",
};
const HF_LAYER = new Map(LAYER_TENSORS.map(([g, h]) => [h, g]));
const GGUF_LAYER = new Map(LAYER_TENSORS.map(([g, h]) => [g, h]));

/** model.layers.3.self_attn.q_proj.weight → blk.3.attn_q.weight; undefined for names Qwen2 does not use. */
export function hfToGgufName(hf: string): string | undefined {
  if (HF_TOP[hf]) return HF_TOP[hf];
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(hf);
  if (!m) return undefined;
  const g = HF_LAYER.get(m[2]);
  return g && `blk.${Number(m[1])}.${g}`;
}

/** blk.3.attn_q.weight → model.layers.3.self_attn.q_proj.weight. */
export function ggufToHfName(name: string): string | undefined {
  for (const [h, g] of Object.entries(HF_TOP)) if (g === name) return h;
  const m = /^blk\.(\d+)\.(.+)$/.exec(name);
  if (!m) return undefined;
  const h = GGUF_LAYER.get(m[2]);
  return h && `model.layers.${Number(m[1])}.${h}`;
}

export const HF_DTYPE_TO_GGML: Record<string, number> = { F32: GGML_TYPE.F32, F16: GGML_TYPE.F16, BF16: GGML_TYPE.BF16 };

// ------------------------------------------------------------------------------------------------------
// Validation
// ------------------------------------------------------------------------------------------------------

export interface TensorLike {
  name: string;
  ggmlType: number;
  ne: readonly number[];
  /** Name in the source file, for messages (the HF name for safetensors). */
  sourceName?: string;
}

/** ggml shapes are equal when they agree after dropping trailing 1s (ggml pads ne with 1 up to 4 dims). */
const trimOnes = (a: readonly number[]) => { let n = a.length; while (n > 1 && a[n - 1] === 1) n--; return a.slice(0, n); };
const sameShape = (a: readonly number[], b: readonly number[]) => {
  const x = trimOnes(a), y = trimOnes(b);
  return x.length === y.length && x.every((v, i) => v === y[i]);
};

/**
 * Checks tensors against the config's table: all present, right shapes, supported types. Throws one Error
 * listing every problem. Returns the names of tensors that the model does not use (callers drop them).
 */
export function validateTensors(c: QwenConfig, tensors: readonly TensorLike[], what: string): { unused: string[] } {
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const problems: string[] = [];
  const table = tensorTable(c);
  const wanted = new Set(table.map((s) => s.name));
  for (const s of table) {
    const t = byName.get(s.name);
    if (!t) {
      problems.push(`missing tensor ${s.name} (HF ${s.hfName}), expected shape [${s.ne.join(", ")}]`);
      continue;
    }
    const src = t.sourceName && t.sourceName !== t.name ? ` (${t.sourceName})` : "";
    if (!sameShape(t.ne, s.ne)) {
      problems.push(`tensor ${s.name}${src} has shape [${t.ne.join(", ")}], expected [${s.ne.join(", ")}] (ggml order)`);
    }
    if (!isSupportedGgmlType(t.ggmlType)) {
      problems.push(`unsupported type ${ggmlTypeName(t.ggmlType)} in tensor ${s.name}${src}`);
    } else if (t.ne[0] % ggmlTypeSize(t.ggmlType).blockSize !== 0) {
      problems.push(`tensor ${s.name}${src}: ne0 ${t.ne[0]} is not a multiple of the ${ggmlTypeName(t.ggmlType)} block size`);
    }
  }
  if (problems.length > 0) {
    const head = problems.length === 1 ? "" : `${problems.length} problems: `;
    const shown = problems.slice(0, 20).join("; ") + (problems.length > 20 ? `; … and ${problems.length - 20} more` : "");
    throw new Error(`${what}: ${head}${shown}`);
  }
  return { unused: tensors.filter((t) => !wanted.has(t.name)).map((t) => t.sourceName ?? t.name) };
}

// ------------------------------------------------------------------------------------------------------
// Opening a source
// ------------------------------------------------------------------------------------------------------

export interface ModelTensor {
  /** GGUF name (blk.N.attn_q.weight ...). */
  name: string;
  /** Name in the source file (HF name for safetensors). */
  sourceName: string;
  ggmlType: number;
  /** ggml order. */
  ne: number[];
  nbytes: number;
  /** The bytes in GGUF layout for ggmlType: a view of the mapped file, not a copy. */
  readonly data: Uint8Array;
}

export type TokenizerSource =
  | { kind: "gguf"; metadata: Map<string, GgufKV> }
  | { kind: "hf"; dir: string; tokenizerJson: string; tokenizerConfig?: string }
  | { kind: "none"; reason: string };

export interface ModelSource {
  format: "gguf" | "hf";
  /** The file or directory that was opened. */
  path: string;
  config: QwenConfig;
  /** The model's tensors in tensorTable order (tensors the model does not use are dropped, see warnings). */
  tensors: ModelTensor[];
  tokenizer: TokenizerSource;
  /** GGUF metadata (plain values; arrays over 64 items as { array: elemTypeName, length }) or the safetensors __metadata__ plus config.json. */
  metadata: Record<string, unknown>;
  warnings: string[];
  weightBytes: number;
  /** Tensor count per ggml type name, e.g. { Q4_K: 96, F32: 121 }. */
  weightTypes: Record<string, number>;
  /** The parsed GGUF file (format "gguf" only). */
  gguf?: GgufFile;
}

function summarizeGgufMetadata(g: GgufFile): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, kv] of g.metadata) {
    if (typeof kv.value === "object" && kv.value.items.length > 64) {
      out[k] = { array: ggufValueTypeName(kv.value.elemType), length: kv.value.items.length };
    } else {
      out[k] = ggufPlain(kv.value);
    }
  }
  return out;
}

function finish(
  format: ModelSource["format"], path: string, config: QwenConfig, all: ModelTensor[], tokenizer: TokenizerSource,
  metadata: Record<string, unknown>, warnings: string[], what: string, gguf?: GgufFile,
): ModelSource {
  const { unused } = validateTensors(config, all, what);
  if (unused.length > 0) warnings.push(`${what}: ignoring ${unused.length} tensor(s) Qwen2 does not use: ${unused.slice(0, 10).join(", ")}${unused.length > 10 ? ", …" : ""}`);
  const byName = new Map(all.map((t) => [t.name, t]));
  // in the table's order, with the table's number of dims (a [H, 1] norm becomes [H])
  const tensors = tensorTable(config).map((s) => {
    const t = byName.get(s.name)!;
    if (t.ne.length === s.ne.length) return t;
    const ne = [...s.ne];
    return { name: t.name, sourceName: t.sourceName, ggmlType: t.ggmlType, ne, nbytes: t.nbytes, get data() { return t.data; } };
  });
  const weightTypes: Record<string, number> = {};
  let weightBytes = 0;
  for (const t of tensors) {
    weightBytes += t.nbytes;
    const n = ggmlTypeName(t.ggmlType);
    weightTypes[n] = (weightTypes[n] ?? 0) + 1;
  }
  return { format, path, config, tensors, tokenizer, metadata, warnings, weightBytes, weightTypes, gguf };
}

/** Opens a GGUF file and validates it as a Qwen2 model. */
export function openGgufModel(path: string): ModelSource {
  const g = openGguf(path);
  const what = `GGUF ${path}`;
  const { config, warnings } = configFromGguf(g, what);
  const all: ModelTensor[] = g.tensors.map((t) => ({
    name: t.name, sourceName: t.name, ggmlType: t.type, ne: t.ne, nbytes: t.nbytes,
    get data() { return t.data; },
  }));
  const hasTok = g.metadata.has("tokenizer.ggml.tokens");
  const tokenizer: TokenizerSource = hasTok
    ? { kind: "gguf", metadata: g.metadata }
    : { kind: "none", reason: `${what} has no tokenizer.ggml.tokens` };
  return finish("gguf", path, config, all, tokenizer, summarizeGgufMetadata(g), warnings, what, g);
}

/** Where a source may read from: with `root`, every file it opens (HF members included) must resolve inside it. */
export interface SourceOptions { root?: string }

const MAX_CONFIG_BYTES = 16 << 20;

/**
 * Opens a Hugging Face directory (config.json + model.safetensors or sharded index + tokenizer.json). With
 * `root` (the server's model root), each member's real path must stay inside it: a config.json symlinked
 * elsewhere is refused unread. Error messages never quote a file's content.
 */
export function openHfModel(dir: string, opts: SourceOptions = {}): ModelSource {
  const what = `HF ${dir}`;
  const cfgPath = nodePath.join(dir, "config.json");
  if (!fs.existsSync(cfgPath)) throw new Error(`${what}: no config.json`);
  const inRoot = (p: string) => (opts.root === undefined ? p : realInside(opts.root, p, p));
  const json = readJsonFile(inRoot(cfgPath), MAX_CONFIG_BYTES, cfgPath);
  const { config, warnings } = configFromHf(json, cfgPath);
  const st = openSafetensorsDir(dir, opts.root);
  const all: ModelTensor[] = [];
  const unsupported: string[] = [];
  const unknownNames: string[] = [];
  for (const t of st.tensors) {
    const name = hfToGgufName(t.name);
    if (!name) { unknownNames.push(t.name); continue; }
    if (name === "output.weight" && config.tie_word_embeddings) {
      warnings.push(`${what}: tie_word_embeddings is true; ignoring lm_head.weight`);
      continue;
    }
    const ggmlType = HF_DTYPE_TO_GGML[t.dtype];
    if (ggmlType === undefined) {
      unsupported.push(`tensor ${t.name} has dtype ${t.dtype}; supported: ${SUPPORTED_SAFETENSORS_DTYPES.join(", ")}`);
      continue;
    }
    all.push({
      name, sourceName: t.name, ggmlType, ne: [...t.shape].reverse(), nbytes: t.nbytes,
      get data() { return t.data; },
    });
  }
  if (unsupported.length > 0) throw new Error(`${what}: ${unsupported.slice(0, 10).join("; ")}`);
  if (unknownNames.length > 0) {
    warnings.push(`${what}: ignoring ${unknownNames.length} tensor(s) Qwen2 does not use: ${unknownNames.slice(0, 10).join(", ")}${unknownNames.length > 10 ? ", …" : ""}`);
  }
  const tj = nodePath.join(dir, "tokenizer.json");
  const tc = nodePath.join(dir, "tokenizer_config.json");
  const tokenizer: TokenizerSource = fs.existsSync(tj)
    ? { kind: "hf", dir, tokenizerJson: inRoot(tj), tokenizerConfig: fs.existsSync(tc) ? inRoot(tc) : undefined }
    : { kind: "none", reason: `${what} has no tokenizer.json` };
  const metadata: Record<string, unknown> = { ...st.metadata, config: json };
  return finish("hf", dir, config, all, tokenizer, metadata, warnings, what);
}

/**
 * Opens a model source: a .gguf file (or any file starting with the GGUF magic), an HF directory, or a file
 * inside an HF directory (config.json, model.safetensors, the index).
 */
export function openModelSource(source: string, opts: SourceOptions = {}): ModelSource {
  let st: fs.Stats;
  try {
    st = fs.statSync(source);
  } catch {
    throw new Error(`model source '${source}' does not exist`);
  }
  if (st.isDirectory()) {
    if (fs.existsSync(nodePath.join(source, "config.json"))) return openHfModel(source, opts);
    const ggufs = fs.readdirSync(source).filter((f) => f.endsWith(".gguf"));
    if (ggufs.length === 1) return openGgufModel(opts.root === undefined ? nodePath.join(source, ggufs[0]) : realInside(opts.root, nodePath.join(source, ggufs[0])));
    throw new Error(`model source '${source}': a directory needs config.json (HF) or exactly one .gguf file (found ${ggufs.length})`);
  }
  if (source.endsWith(".gguf") || isGgufFile(source)) return openGgufModel(opts.root === undefined ? source : realInside(opts.root, source));
  const base = nodePath.basename(source);
  if (base === "config.json" || base.endsWith(".safetensors") || base.endsWith(".safetensors.index.json")) {
    return openHfModel(nodePath.dirname(source), opts);
  }
  throw new Error(`model source '${source}': not a GGUF file (no GGUF magic) and not part of an HF directory`);
}

function isGgufFile(path: string): boolean {
  const fd = openRegular(path).fd; // a FIFO or device is refused, never read
  try {
    const b = new Uint8Array(4);
    const n = fs.readSync(fd, b, 0, 4, 0);
    return n === 4 && b[0] === 0x47 && b[1] === 0x47 && b[2] === 0x55 && b[3] === 0x46;
  } finally {
    fs.closeSync(fd);
  }
}

/** Bytes a tensor of this type and ggml shape takes (re-exported for loaders). */
export function tensorBytes(type: number, ne: readonly number[]): number {
  if (!isKnownGgmlType(type)) throw new Error(`unknown ggml type ${type}`);
  return ggmlTensorBytes(type, ne);
}

// ------------------------------------------------------------------------------------------------------
// Conversion
// ------------------------------------------------------------------------------------------------------

/** llama.cpp's general.file_type (llama_ftype) for each scheme. */
const FILE_TYPE: Record<QuantScheme, number> = { f32: 0, f16: 1, q4_0: 2, q8_0: 7, q4_k: 14, q4_k_m: 15, q6_k: 18, bf16: 32 };

/** A tensor's values as fp32 (dequantized with the reference formulas). */
export function tensorF32(t: Pick<ModelTensor, "ggmlType" | "data">): Float32Array {
  return dequantize(t.ggmlType, t.data);
}

export interface ConvertOptions {
  scheme: QuantScheme;
  /** general.name */
  name?: string;
  /** Extra metadata (e.g. tokenizer.* keys for an HF source); wins over derived keys of the same name. */
  metadata?: [string, GgufKV][];
  onProgress?: (done: number, total: number, tensor: string) => void;
}

/**
 * The same model with each tensor converted to the type `scheme` gives it (chooseQuantType), lazily: a
 * tensor's data is converted when first read (and not kept), so a loader that hands tensors over one at a
 * time never holds more than one converted tensor. Tensors already of the target type are passed through.
 */
export function retypeModel(src: ModelSource, scheme: QuantScheme): ModelSource {
  const c = src.config;
  const tensors: ModelTensor[] = src.tensors.map((t) => {
    const type = chooseQuantType(t.name, t.ne, scheme, { nLayers: c.num_hidden_layers, tied: c.tie_word_embeddings });
    if (type === t.ggmlType) return t;
    return {
      name: t.name, sourceName: t.sourceName, ggmlType: type, ne: t.ne, nbytes: ggmlTensorBytes(type, t.ne),
      get data() { return quantize(type, dequantize(t.ggmlType, t.data)); },
    };
  });
  const weightTypes: Record<string, number> = {};
  for (const t of tensors) weightTypes[ggmlTypeName(t.ggmlType)] = (weightTypes[ggmlTypeName(t.ggmlType)] ?? 0) + 1;
  return { ...src, tensors, weightTypes, weightBytes: tensors.reduce((a, t) => a + t.nbytes, 0) };
}

/**
 * Writes a model source as a GGUF file llama.cpp can load, converting each tensor to the type `scheme` gives
 * it (chooseQuantType; tensors already of that type are copied as is). Streams tensor by tensor. A GGUF
 * source keeps its tokenizer.* metadata. Returns the byte size and the type chosen for each tensor.
 */
export async function convertToGguf(src: ModelSource, path: string, opts: ConvertOptions): Promise<{ bytes: number; types: Record<string, string> }> {
  const c = src.config;
  const meta = new Map<string, GgufKV>(ggufMetadataForConfig(c, opts.name ?? nodePath.basename(src.path)));
  meta.set("general.file_type", gv.u32(FILE_TYPE[opts.scheme]));
  meta.set("general.quantization_version", gv.u32(2));
  if (src.gguf) for (const [k, v] of src.gguf.metadata) if (k.startsWith("tokenizer.")) meta.set(k, v);
  for (const [k, v] of opts.metadata ?? []) meta.set(k, v);
  const types: Record<string, string> = {};
  const tensors = retypeModel(src, opts.scheme).tensors.map((t) => {
    types[t.name] = ggmlTypeName(t.ggmlType);
    return { name: t.name, type: t.ggmlType, ne: t.ne, data: () => t.data };
  });
  const { bytes } = await writeGguf(path, { metadata: meta, tensors }, { onProgress: opts.onProgress });
  return { bytes, types };
}

const ST_DTYPE = { F32: GGML_TYPE.F32, F16: GGML_TYPE.F16, BF16: GGML_TYPE.BF16 } as const;
const TORCH_DTYPE = { F32: "float32", F16: "float16", BF16: "bfloat16" } as const;

/**
 * Writes a model source as a Hugging Face directory (config.json + model.safetensors, sharded above
 * `maxShardBytes`) with every tensor dequantized to `dtype` — e.g. a Q4_K_M GGUF as the exact weights it
 * represents, for PyTorch side-by-side runs. Copies tokenizer.json / tokenizer_config.json from an HF source;
 * a GGUF source's tokenizer is not converted (`tokenizer: false`).
 */
export async function convertToSafetensors(
  src: ModelSource, dir: string, opts: { dtype: "F32" | "F16" | "BF16"; maxShardBytes?: number },
): Promise<{ bytes: number; shards: number; tokenizer: boolean }> {
  const target = ST_DTYPE[opts.dtype];
  fs.mkdirSync(dir, { recursive: true });
  const tensors = src.tensors.map((t) => {
    const spec = { name: ggufToHfName(t.name) ?? t.name, dtype: opts.dtype, shape: [...t.ne].reverse() };
    return { ...spec, data: t.ggmlType === target ? () => t.data : () => quantize(target, dequantize(t.ggmlType, t.data)) };
  });
  let bytes = 0, shards = 1;
  const total = tensors.reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1) * (opts.dtype === "F32" ? 4 : 2), 0);
  if (opts.maxShardBytes && total > opts.maxShardBytes) {
    const r = await writeSafetensorsSharded(dir, tensors, { maxShardBytes: opts.maxShardBytes, metadata: { format: "pt" } });
    bytes = r.totalSize;
    shards = r.shards.length;
  } else {
    bytes = (await writeSafetensors(nodePath.join(dir, "model.safetensors"), tensors, { format: "pt" })).bytes;
  }
  fs.writeFileSync(nodePath.join(dir, "config.json"), JSON.stringify(hfConfigForQwenConfig(src.config, TORCH_DTYPE[opts.dtype]), null, 2) + "\n");
  let tokenizer = false;
  if (src.tokenizer.kind === "hf") {
    const copy = (from: string, name: string) => {
      const to = nodePath.join(dir, name);
      if (nodePath.resolve(from) !== nodePath.resolve(to)) fs.copyFileSync(from, to);
    };
    copy(src.tokenizer.tokenizerJson, "tokenizer.json");
    if (src.tokenizer.tokenizerConfig) copy(src.tokenizer.tokenizerConfig, "tokenizer_config.json");
    tokenizer = true;
  }
  return { bytes, shards, tokenizer };
}
