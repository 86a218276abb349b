// engine/index.ts — openModel (engine/api.ts OpenModel): resolves a source (GGUF file, HF directory, "default",
// "synthetic:<preset>[:type]"), builds the tokenizer, hands the weights to the native engine tensor by tensor
// straight from the mapped file (progress reported), finalizes, and returns an EngineModel whose sessions
// stream tokens. Also: profile manifest helpers.
import { createHash } from "node:crypto";
import { closeSync, existsSync, openSync, readSync, readdirSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { z } from "zod";
import type { BackendChoice, DcaOptions, SparseOptions, EngineModel, EngineSession, OpenModel, OpenOptions, Progress, QwenConfig, ToggleDef } from "./api.ts";
import { getEngine, GGML, REPO_ROOT, type NativeEngine, type NativeModel } from "./ffi.ts";
import { ggmlTypeName } from "./formats/gguf.ts";
import { openModelSource, type ModelSource } from "./formats/modelfile.ts";
import type { DeviceManifest, Manifest } from "./measure/profile.ts";
import { modelManifest, type ManifestExtra } from "./measure/manifest.ts";
import { Session, type SessionHost } from "./session.ts";
import { sparseSessionOptions } from "./sparse.ts";
import {
  floatTensors, isPreset, PRESETS, synthSpec, syntheticTokenizer, SYNTH_TYPES, writeSyntheticGguf,
  type PresetName, type SynthSpec, type SynthType,
} from "./synth/synthetic.ts";
import { QwenTokenizer } from "./text/tokenizer.ts";
import { syntheticDir } from "./io/tempfiles.ts";
import { catalogOf } from "./catalog.ts";
import { checkWeightsOption, nativeWeightsConfig, type WeightsOption } from "./formats/requant.ts";
import { checkParallelOption, nativeParallelConfig } from "./formats/parallel.ts";

export type { EngineModel, EngineSession, OpenOptions, Progress, QwenConfig, ToggleDef, BackendChoice, DcaOptions } from "./api.ts";
export { QwenError } from "./ffi.ts";
export { SessionError } from "./session.ts";

export const MODELS_DIR = join(REPO_ROOT, "models");
export const DEFAULT_MODEL_DIR = join(MODELS_DIR, "tiny-qwen2-brown");
/** Where synthetic models are cached (QW_SYNTHETIC_DIR overrides: tests, read-only checkouts). */
export const SYNTHETIC_DIR = syntheticDir();

/** A parsed "synthetic:<preset>[:<type>][:s<seed>]" source. */
export interface SyntheticSource {
  preset: PresetName;
  type: SynthType;
  seed: number;
}

/** Parses "synthetic:tiny", "synthetic:0.5b:q8_0", "synthetic:7b:q4_k_m:s3" (also without "synthetic:" prefix). */
export function parseSyntheticSource(source: string): SyntheticSource | undefined {
  const parts = source.split(":");
  if (parts[0] === "synthetic") parts.shift();
  else if (!isPreset(parts[0] ?? "")) return undefined;
  const preset = parts.shift() ?? "";
  if (!isPreset(preset)) {
    throw new Error(`unknown synthetic preset '${preset}'; presets: tiny, 0.5b, 1.5b, 7b (e.g. synthetic:0.5b:q8_0)`);
  }
  let type: SynthType = preset === "tiny" ? "f32" : "bf16";
  let seed = 0;
  for (const p of parts) {
    const t = p.toLowerCase() === "q4_k" ? "q4_k_m" : p.toLowerCase();
    if ((SYNTH_TYPES as readonly string[]).includes(t)) type = t as SynthType;
    else if (/^s\d+$/.test(p)) seed = Number(p.slice(1));
    else throw new Error(`synthetic source '${source}': '${p}' is neither a type (${SYNTH_TYPES.join(", ")}) nor a seed (s<N>)`);
  }
  return { preset: preset as PresetName, type, seed };
}

/** Where a synthetic model is cached as GGUF. */
export function syntheticGgufPath(s: SyntheticSource): string {
  return join(SYNTHETIC_DIR, `qwen2.5-${s.preset}-synthetic-${s.type}-s${s.seed}.gguf`);
}

// ------------------------------------------------------------------------------------------------
// Manifest helpers
// ------------------------------------------------------------------------------------------------
export { gitCommit } from "./measure/manifest.ts";

/** sha256 of the first 16 MiB of a file plus its size (cheap and stable for multi-GB files). */
export function fileHash(path: string): string {
  const h = createHash("sha256");
  const st = statSync(path);
  const fd = openSync(path, "r");
  try {
    const n = Math.min(st.size, 16 << 20);
    const buf = Buffer.alloc(n);
    readSync(fd, buf, 0, n, 0);
    h.update(buf);
  } finally {
    closeSync(fd);
  }
  h.update(`size=${st.size}`);
  return "sha256:" + h.digest("hex");
}

function sourceHash(src: ModelSource): string {
  if (src.format === "gguf") return fileHash(src.path);
  const h = createHash("sha256");
  for (const f of readdirSync(src.path).filter((f) => f.endsWith(".safetensors") || f === "config.json").sort()) {
    h.update(f);
    h.update(fileHash(join(src.path, f)));
  }
  return "sha256:" + h.digest("hex");
}

function deviceManifest(engine: NativeEngine, backend: "cpu" | "cuda"): DeviceManifest {
  let info: Record<string, unknown> = {};
  try {
    info = JSON.parse(engine.infoJson());
  } catch {
    /* the device name below falls back */
  }
  const d: DeviceManifest = { backend, name: typeof info.name === "string" ? info.name : backend };
  for (const k of ["sms", "threads"] as const) if (typeof info[k] === "number") d[k] = Math.round(info[k] as number);
  for (const k of ["clock_mhz", "mem_clock_mhz", "memory_bytes"] as const) if (typeof info[k] === "number") d[k] = info[k] as number;
  for (const k of ["driver", "runtime", "cc"] as const) if (info[k] !== undefined) d[k] = String(info[k]);
  return d;
}

// ------------------------------------------------------------------------------------------------
// The model
// ------------------------------------------------------------------------------------------------
export interface LoadedTensor {
  name: string;
  ggmlType: number;
  ne: number[];
  /** Bytes in GGUF layout; read only during the load call. */
  data: Uint8Array;
}

/** One tensor of qw_model_info_json: its name, the GGUF type it was handed over as, and its native layout (f32, f16,
 *  bf16, w8, w4: after the weights option), shape and bytes. */
const NativeTensorsSchema = z.object({
  tensors: z.array(z.object({ name: z.string(), ggml_type: z.string(), native: z.string(), ne: z.array(z.number()), bytes: z.number() })),
}).passthrough();
export type NativeTensorInfo = z.infer<typeof NativeTensorsSchema>["tensors"][number];

export class Model implements EngineModel {
  readonly id: string;
  readonly format: "gguf" | "hf" | "synthetic";
  readonly config: QwenConfig;
  readonly backend: "cpu" | "cuda";
  readonly device: DeviceManifest;
  readonly buildInfo: string;
  readonly weightBytes: number;
  readonly weightTypes: Record<string, number>;
  readonly hash: string;
  readonly tokenizer: EngineModel["tokenizer"] & { readonly inner: QwenTokenizer };
  /** Where the weights came from (file, directory, or the synthetic spec). */
  readonly path: string;
  readonly warnings: string[];
  readonly engine: NativeEngine;
  /** The weights option the model was loaded with (its session toggle `weights` reports it per layer). */
  readonly weights: WeightsOption;
  /** The parallel option it was loaded with (undefined = tp1; its session toggle `parallel` reports it). */
  readonly parallel?: string;
  private native: NativeModel;
  private sessions = new Set<Session>();

  constructor(init: {
    id: string; format: Model["format"]; config: QwenConfig; engine: NativeEngine; native: NativeModel; tokenizer: QwenTokenizer;
    weightBytes: number; weightTypes: Record<string, number>; hash: string; path: string; warnings: string[];
    weights?: WeightsOption; parallel?: string;
  }) {
    this.weights = init.weights ?? {};
    this.parallel = init.parallel;
    this.id = init.id;
    this.format = init.format;
    this.config = init.config;
    this.engine = init.engine;
    this.native = init.native;
    this.backend = init.engine.lib.backend;
    this.device = deviceManifest(init.engine, this.backend);
    this.buildInfo = init.engine.lib.buildInfo();
    this.weightBytes = init.weightBytes;
    this.weightTypes = init.weightTypes;
    this.hash = init.hash;
    this.path = init.path;
    this.warnings = init.warnings;
    const tok = init.tokenizer;
    const cfgEos = init.config.eos_token_id;
    const eosIds = [...new Set([...tok.eosIds, ...(cfgEos === undefined ? [] : Array.isArray(cfgEos) ? cfgEos : [cfgEos])])]
      .filter((i) => i >= 0 && i < init.config.vocab_size);
    this.tokenizer = {
      inner: tok,
      encode: (text, opts) => tok.encode(text, { addSpecial: opts?.addSpecial ?? false }),
      decode: (ids) => tok.decode(ids),
      applyChatTemplate: (messages) => tok.applyChatTemplate(messages),
      eosIds,
    };
  }

  get closed(): boolean {
    return this.native.closed;
  }

  /** Bytes the engine holds for the weights in its native layouts (8/4-bit codes + group scales/offsets). */
  nativeWeightBytes(): number {
    const info = z.object({ weight_bytes: z.number() }).passthrough().parse(JSON.parse(this.native.infoJson()));
    return info.weight_bytes;
  }

  /** Every tensor as the engine holds it (qw_model_info_json "tensors"): the type it was handed over as and its native
   *  layout after the weights option (e.g. output.weight bf16 -> w8 with weightsLayers {output: "q8"}). */
  nativeTensors(): NativeTensorInfo[] {
    return NativeTensorsSchema.parse(JSON.parse(this.native.infoJson())).tensors;
  }

  deviceMemoryUsed(): number | undefined {
    try {
      const v = (JSON.parse(this.engine.infoJson()) as Record<string, unknown>).memory_used_bytes;
      return typeof v === "number" ? v : undefined;
    } catch {
      return undefined;
    }
  }

  profilingModes(): string[] {
    return catalogOf(this.engine.lib).profilingModes.map((m) => m.name);
  }

  toggleRegistry(): ToggleDef[] {
    return catalogOf(this.engine.lib).toggles;
  }

  newSession(opts: { maxBatch?: number; maxContext?: number; maxPrefill?: number; dca?: DcaOptions; sparse?: SparseOptions } = {}): EngineSession & Session {
    const maxBatch = opts.maxBatch ?? 1;
    const maxContext = opts.maxContext ?? Math.min(4096, this.config.max_position_embeddings);
    const maxPrefill = opts.maxPrefill ?? maxContext;
    for (const [k, v] of Object.entries({ maxBatch, maxContext, maxPrefill })) {
      if (!Number.isInteger(v) || v < 1) throw new Error(`newSession: ${k} must be a positive integer, got ${String(v)}`);
    }
    for (const [k, v] of Object.entries(opts.dca ?? {})) {
      if (v !== undefined && (!Number.isInteger(v) || v < (k === "local" ? 0 : 1))) throw new Error(`newSession: dca.${k} must be an integer >= ${k === "local" ? 0 : 1}, got ${String(v)}`);
    }
    const ns = this.native.createSession({
      max_batch: maxBatch, max_context: maxContext, max_prefill: maxPrefill,
      ...(opts.dca?.chunk !== undefined ? { dca_chunk_size: opts.dca.chunk } : {}),
      ...(opts.dca?.local !== undefined ? { dca_local_size: opts.dca.local } : {}),
      ...sparseSessionOptions(opts.sparse),
    });
    const tok = this.tokenizer.inner;
    const host: SessionHost = {
      vocabSize: this.config.vocab_size,
      numLayers: this.config.num_hidden_layers,
      hiddenSize: this.config.hidden_size,
      eosIds: this.tokenizer.eosIds,
      encode: (t) => tok.encode(t, { addSpecial: false }),
      chat: (m) => tok.applyChatTemplate(m),
      decoder: () => tok.decoder(),
      decode: (ids) => tok.decode(ids),
      onClose: (s) => this.sessions.delete(s),
    };
    const s = new Session(ns, host, { maxBatch, maxContext, maxPrefill });
    this.sessions.add(s);
    return s;
  }

  /** The manifest block of a profile for this model and (optionally) a session's toggles. */
  manifest(extra: ManifestExtra = {}): Manifest {
    return modelManifest(this, extra);
  }

  close(): void {
    for (const s of [...this.sessions]) s.close();
    this.native.destroy();
  }
}

/** The JSON config qw_model_create takes. */
function nativeConfig(c: QwenConfig): Record<string, unknown> {
  return {
    vocab_size: c.vocab_size, hidden_size: c.hidden_size, intermediate_size: c.intermediate_size,
    num_hidden_layers: c.num_hidden_layers, num_attention_heads: c.num_attention_heads,
    num_key_value_heads: c.num_key_value_heads, head_dim: c.head_dim, max_position_embeddings: c.max_position_embeddings,
    rope_theta: c.rope_theta, rms_norm_eps: c.rms_norm_eps, tie_word_embeddings: c.tie_word_embeddings,
    ...(c.original_max_position_embeddings !== undefined ? { original_max_position_embeddings: c.original_max_position_embeddings } : {}),
    ...(c.dual_chunk_attention_config ? { dual_chunk_attention_config: c.dual_chunk_attention_config } : {}),
  };
}

/**
 * Creates a native model from any tensor stream (files, synthetic generators, tests) and finalizes it.
 * Tensors are handed over one at a time; progress is reported per tensor and the event loop gets a turn
 * every ~100 ms so a progress bar can render.
 */
export async function loadNative(
  engine: NativeEngine, config: QwenConfig, tensors: Iterable<LoadedTensor>, total: number, onProgress?: (p: Progress) => void,
  signal?: AbortSignal, weights?: WeightsOption, parallel?: string, extraConfig: Record<string, unknown> = {},
): Promise<{ native: NativeModel; weightBytes: number; weightTypes: Record<string, number> }> {
  const native = engine.createModel({
    ...nativeConfig(config), ...nativeWeightsConfig(weights), ...nativeParallelConfig(parallel), ...extraConfig,
  });
  let ok = false;
  try {
    let done = 0, weightBytes = 0, last = performance.now(), lastYield = last;
    const weightTypes: Record<string, number> = {};
    onProgress?.({ stage: "load", done: 0, total });
    for (const t of tensors) {
      // A cancel arrives as a message, so the loop yields at least every ~100 ms below and checks here (D7).
      if (signal?.aborted) throw new Error("load cancelled");
      if (signal && performance.now() - lastYield > 100) { await new Promise<void>((r) => setImmediate(r)); lastYield = performance.now(); }
      native.loadTensor(t.name, t.ggmlType, t.ne, t.data);
      done++;
      weightBytes += t.data.byteLength;
      const tn = ggmlTypeName(t.ggmlType);
      weightTypes[tn] = (weightTypes[tn] ?? 0) + 1;
      if (onProgress && (performance.now() - last > 100 || done === total)) {
        onProgress({ stage: "load", done, total, message: t.name });
        await new Promise<void>((r) => setImmediate(r));
        last = performance.now();
      }
    }
    if (signal?.aborted) throw new Error("load cancelled");
    onProgress?.({ stage: "finalize", done: 0, total: 1 });
    native.finalize();
    onProgress?.({ stage: "finalize", done: 1, total: 1 });
    ok = true;
    return { native, weightBytes, weightTypes };
  } finally {
    if (!ok) native.destroy();
  }
}

/**
 * Whether the engine would load `config` split `parallel` ways, asked without any weights: qw_model_create checks the
 * sharding plan (and, on CUDA, the ranks' devices) before a tensor arrives. Returns the engine's refusal message, or
 * null when it accepts (the empty model is destroyed at once). For the scaling notebook and `bench --tp`: a refused
 * split is skipped before a synthetic checkpoint is written or a byte is loaded.
 */
export function parallelRefusal(config: QwenConfig, parallel: string, opts: { backend?: BackendChoice; threads?: number } = {}): string | null {
  const engine = getEngine(opts.backend ?? "auto", { threads: opts.threads });
  try {
    engine.createModel({ ...nativeConfig(config), ...nativeParallelConfig(checkParallelOption(parallel)) }).destroy();
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

function tokenizerFor(src: ModelSource): QwenTokenizer {
  const t = src.tokenizer;
  if (t.kind === "gguf") {
    const plain = new Map<string, unknown>();
    for (const [k, kv] of t.metadata) {
      if (!k.startsWith("tokenizer.")) continue;
      const v = kv.value;
      plain.set(k, typeof v === "object" ? (Array.isArray(v.items) ? v.items : Array.from(v.items as ArrayLike<number>)) : v);
    }
    return QwenTokenizer.fromGgufMetadata(plain);
  }
  if (t.kind === "hf") return QwenTokenizer.fromTokenizerJson(t.tokenizerJson, t.tokenizerConfig);
  throw new Error(`${src.path}: no tokenizer (${t.reason}); the workbench needs one to turn text into tokens`);
}

/** Opens a synthetic model straight from the generator (float types only; no file). */
export async function openSyntheticInMemory(spec: SynthSpec, type: "f32" | "f16" | "bf16", opts: OpenOptions & { id?: string } = {}): Promise<Model> {
  const engine = getEngine(opts.backend ?? "auto", { threads: opts.threads });
  const weights = checkWeightsOption({ weights: opts.weights, weightsLayers: opts.weightsLayers }, spec.config.num_hidden_layers);
  const tensors = (function* () {
    for (const x of floatTensors(spec, type)) yield { name: x.t.name, ggmlType: x.ggmlType, ne: x.t.ne, data: x.bytes };
  })();
  const total = 2 + spec.config.num_hidden_layers * 12 + (spec.config.tie_word_embeddings ? 0 : 1);
  const parallel = checkParallelOption(opts.parallel);
  const { native, weightBytes, weightTypes } = await loadNative(engine, spec.config, tensors, total, opts.onProgress, opts.signal, weights, parallel);
  const h = createHash("sha256").update(JSON.stringify({ spec, type })).digest("hex");
  return new Model({
    id: opts.id ?? `synthetic:${spec.preset}:${type}:s${spec.seed}`, format: "synthetic", config: spec.config, engine, native,
    tokenizer: syntheticTokenizer(spec), weightBytes, weightTypes, hash: "sha256:" + h, path: `synthetic:${spec.preset}`, warnings: [],
    weights, parallel,
  });
}

async function openSource(src: ModelSource, id: string, format: Model["format"], opts: OpenOptions): Promise<Model> {
  const tokenizer = tokenizerFor(src);
  const engine = getEngine(opts.backend ?? "auto", { threads: opts.threads });
  const weights = checkWeightsOption({ weights: opts.weights, weightsLayers: opts.weightsLayers }, src.config.num_hidden_layers);
  const tensors = src.tensors.map((t) => ({ name: t.name, ggmlType: t.ggmlType, ne: t.ne, get data() { return t.data; } }));
  const parallel = checkParallelOption(opts.parallel);
  const { native, weightBytes, weightTypes } = await loadNative(engine, src.config, tensors, tensors.length, opts.onProgress, opts.signal, weights, parallel);
  return new Model({
    id, format, config: src.config, engine, native, tokenizer, weightBytes, weightTypes, hash: sourceHash(src),
    path: src.path, warnings: src.warnings, weights, parallel,
  });
}

/**
 * Opens a model (engine/api.ts OpenModel): a .gguf file, an HF directory, "default" (models/tiny-qwen2-brown),
 * or "synthetic:<preset>[:<type>][:s<seed>]". Synthetic float models of the tiny preset are generated in
 * memory; other synthetic models are written once to models/synthetic/*.gguf and opened from there.
 */
export const openModel: OpenModel = async (source: string, opts: OpenOptions = {}) => {
  if (typeof source !== "string" || source.trim() === "") throw new Error("openModel: give a model (a .gguf file, an HF directory, 'default' or 'synthetic:<preset>')");
  if (source === "default") {
    if (!existsSync(join(DEFAULT_MODEL_DIR, "config.json"))) throw new Error(`the embedded default model is missing (${DEFAULT_MODEL_DIR})`);
    return openSource(openModelSource(DEFAULT_MODEL_DIR, { root: DEFAULT_MODEL_DIR }), "default:tiny-qwen2-brown", "hf", opts);
  }
  const syn = existsSync(source) ? undefined : parseSyntheticSource(source);
  if (syn) {
    const spec = synthSpec(syn.preset, { seed: syn.seed });
    const id = `synthetic:${syn.preset}:${syn.type}:s${syn.seed}`;
    if (syn.preset === "tiny" && (syn.type === "f32" || syn.type === "f16" || syn.type === "bf16")) {
      return openSyntheticInMemory(spec, syn.type, { ...opts, id });
    }
    const path = syntheticGgufPath(syn);
    if (!existsSync(path)) {
      try {
        await writeSyntheticGguf(spec, syn.type, path, { onProgress: opts.onProgress, signal: opts.signal });
      } catch (e) {
        if (opts.signal?.aborted) throw new Error("load cancelled (synthesis stopped; no partial file kept)");
        throw e;
      }
    }
    const m = await openSource(openModelSource(path), id, "synthetic", opts);
    return m;
  }
  const p = resolve(source);
  if (!existsSync(p)) {
    throw new Error(`model '${source}' not found: give a .gguf file, an HF directory, 'default', or a preset (synthetic:tiny|0.5b|1.5b|7b[:f16|bf16|q8_0|q4_k_m])`);
  }
  const src = openModelSource(p, { root: opts.root });
  return openSource(src, p, src.format, opts);
};

export { PRESETS, GGML };
