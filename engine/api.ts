// The engine's public TypeScript API: what web/ and notebooks/ use. engine/index.ts implements it.
// Keep this file free of implementation so both sides can be built against it.
import type { TileNative, TileStatus } from "./tuning.ts";
import type { CountersMeta, OpColumns, DeviceManifest, ProfilingMode, ToggleValues } from "./measure/profile.ts";

export type BackendChoice = "auto" | "cpu" | "cuda";

/** One entry of the toggle registry (exported by the native engine as JSON, validated with zod). */
export interface ToggleDef {
  id: string;
  name: string;          // human name, e.g. "Grouped-query attention"
  type: "enum";
  values: string[];
  default: string;
  perLayer: boolean;
  needsReset: boolean;
  backends: { cpu: string[]; cuda: string[] };
  spec: string;          // e.g. "QWEN-002" or "baseline"
  description: string;
  cost: { ops: string[]; how: string }[]; // ops whose analytic cost the values change, and how (may be empty)
}

export interface Progress {
  stage: string;         // "read" | "convert" | "upload" | "finalize" | "synthesize" | ...
  done: number;
  total: number;
  message?: string;
}

export interface OpenOptions {
  backend?: BackendChoice;
  threads?: number;                         // CPU threads; 0 = all
  onProgress?: (p: Progress) => void;
  /** Cancels the load (or the synthesis of a synthetic model) between tensors; it then rejects "load cancelled". */
  signal?: AbortSignal;
  /** Confinement root (the server's model root): every file the source opens must resolve inside it. */
  root?: string;
  /** Weight format of the 7 projections per layer, applied at load (engine/formats/requant.ts); default as-loaded. */
  weights?: "as-loaded" | "bf16" | "q8" | "q4";
  /** Per-layer overrides of `weights`: {"0": "bf16", "27": "bf16"}; key "output" requantizes the output matrix
   *  (lm_head), which `weights` alone leaves as loaded: {"output": "q8"} (refused on tied models, whose lm_head is
   *  the embedding). */
  weightsLayers?: Record<string, "as-loaded" | "bf16" | "q8" | "q4">;
  /** Tensor parallelism, applied at load (engine/formats/parallel.ts): tp1 (default) | tp2 | tp4 | tp8. The CPU
   *  backend runs tp2..tp8 as an emulation of the ranks (the reference); CUDA puts rank r on device `device` + r
   *  (compile-checked only, never run: README, "Tensor parallelism"). */
  parallel?: "tp1" | "tp2" | "tp4" | "tp8";
}

/** Qwen2 config, normalized (engine/formats/config.ts validates with zod). */
export interface QwenConfig {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  max_position_embeddings: number;
  rope_theta: number;
  rms_norm_eps: number;
  tie_word_embeddings: boolean;
  bos_token_id?: number;
  eos_token_id?: number | number[];
  /** The trained context when max_position_embeddings is larger (top level, or from dual_chunk_attention_config /
   *  rope_scaling): the default Dual Chunk Attention chunk when the config has no dual_chunk_attention_config. */
  original_max_position_embeddings?: number;
  /** Qwen2.5-1M style Dual Chunk Attention parameters (toggle "dca"; engine/measure/passkey.ts dcaParams). */
  dual_chunk_attention_config?: { chunk_size?: number; local_size?: number };
}

/** Dual Chunk Attention parameters of a session (toggle "dca"): chunk size and local window, in tokens. */
export interface DcaOptions {
  chunk?: number;
  local?: number;
}

/** The pattern values of toggle "sparsePrefill" (off aside). */
export type SparseMode = "vertical-slash" | "block-sparse";

/** Budgets of sparse prefill (toggle "sparsePrefill"; cuda/src/opt/sparse_prefill/sparse_budget.hpp SparseBudget),
 *  fixed per session. vertical-slash: lines beyond the `sink` first columns and the `local` nearest diagonals;
 *  block-sparse: `blocks` key blocks (64 positions) per query block beyond the first ceil(sink / 64) and the
 *  ceil(local / 64) nearest. stats: also run dense attention and measure recall / output error per layer and head
 *  (slower). */
export interface SparseOptions {
  vertical?: number;
  slash?: number;
  blocks?: number;
  local?: number;
  sink?: number;
  stats?: boolean;
}

/** One query head of one layer over the latest prompt's prefill (qw_session_info_json "sparsePrefill"): keys
 *  visited / dense keys, and with stats the mean recall of dense attention mass, rel L2 and cosine of z. */
export interface SparseHeadInfo { rows: number; density: number; recall?: number; relL2?: number; cosine?: number }
export interface SparseInfo {
  vertical: number; slash: number; local: number; sink: number; lastQ: number; stats: boolean;
  /** Block-sparse: key blocks per query block beyond the forced ones, and the block size (positions). */
  blocks: number; blockSize: number;
  /** Prefill steps of the latest prompt that ran sparse (0: nothing measured; layers is then empty). */
  steps: number;
  layers: { layer: number; heads: SparseHeadInfo[] }[];
}

export interface SamplingOptions {
  temperature?: number;  // 0 = greedy (default)
  topK?: number;         // 0 = off
  topP?: number;         // 1 = off
  seed?: number;
}

export interface GenerateOptions extends SamplingOptions {
  prompt?: string;                  // plain text (tokenized without special tokens) ...
  messages?: { role: string; content: string }[]; // ... or chat messages through the model's chat template
  tokens?: number[];                // ... or token ids
  maxTokens?: number;               // default 64
  stop?: number[];                  // extra stop token ids (EOS of the model always stops)
  seq?: number;                     // sequence slot (default 0); the slot is reset first
  signal?: AbortSignal;             // cancels between steps
  /** Decode steps per engine call (default 1): with N > 1 the engine runs N steps back to back and returns their
   *  tokens at once (decodeSteps; on CUDA the tokens stay on the GPU between them), which hides the host's turnaround
   *  between steps. Same tokens as N = 1. A stop token inside a call cuts the sequence back (truncate); token events
   *  come in bursts of N, each with the call's time / N. */
  stepsPerSync?: number;
}

/** Events of a streaming generation, in order: one "prefill", then "token"s, then one "done". */
export type GenerateEvent =
  | { type: "prefill"; promptTokens: number; ms: number }
  | { type: "token"; index: number; token: number; text: string; ms: number; phase: "prefill" | "decode" }
  | { type: "done"; reason: "stop" | "length" | "cancelled"; tokens: number[]; text: string;
      ttftMs: number; tpotMs: number[]; prefillTokS: number; decodeTokS: number;
      /** Host spans, CLOCK_MONOTONIC ns (the clock of the engine's op records): tokenization, and each engine
       *  call (the prefill, then every decode) in order. */
      tokenizeNs?: [number, number]; callsNs?: [number, number][];
      /** Steps each engine call of callsNs ran (stepsPerSync > 1: a decode call runs several); absent: one each. */
      callSteps?: number[] };

export interface Capture {
  name: string;          // expanded hook name, e.g. blocks.3.hook_resid_post
  rows: number;
  cols: number;
  data: Float32Array;    // copied out of the engine
}

/** What a session's KV cache holds (qw_session_info_json). */
export interface KvInfo {
  kvCache: string;            // the cache type (toggle kvCache)
  kvBytesPerToken: number;    // K+V of one token of one sequence, all layers (quantized steady state)
  kvBytes: number;            // allocated for the whole session
  kvResidualTokens: number;   // kivi: newest tokens kept in bf16 (at least); else 0
  kvMaxRollback: number;      // tokens below its longest length (since reset) a sequence can always be cut back to exactly (truncate refuses deeper cuts); -1 = any
}

export interface EngineSession {
  readonly maxBatch: number;
  readonly maxContext: number;
  readonly maxPrefill?: number;                      // tokens one prefill call takes (default maxContext)
  setToggle(id: string, value: string, layer?: number): void; // layer -1 / undefined = all layers
  toggles(): ToggleValues;
  /** KV-cache type and memory (optional: test doubles may leave it out). */
  kvInfo?(): KvInfo;
  /** Sparse prefill budgets and what the latest prompt's prefill measured (toggle "sparsePrefill"). */
  sparseInfo?(): SparseInfo;
  /** Toggle tile: the native tuning calls (engine/tuning.ts) and where tile = auto's table came from. */
  tiles?(): TileNative;
  tileStatus?(): TileStatus | null;
  /** "kernels" | "events" | "counters" | "off"; true = the low-overhead mode ("kernels", or "events" where it cannot
   *  run). "counters" (CUDA + CUPTI only) measures hardware counters per op; other backends refuse it. */
  setProfiling(mode: ProfilingMode | boolean): void;
  /** The engine clock in ns: the time line of op records (host work timed with it lines up with kernels). */
  clockNs(): number;
  /** The mode the session is in now. */
  readonly profilingMode: ProfilingMode;
  setCapture(hooks: string[]): void;                 // [] = off
  setLogitsMode(mode: 0 | 1 | 2): void;
  setSampling(seq: number, s: SamplingOptions): void;
  reset(seq?: number): void;                         // undefined = all
  seqLen(seq: number): number;
  /** Shortens `seq` to its first newLen tokens (0 <= newLen <= seqLen): speculative decoding's rollback. */
  truncate(seq: number, newLen: number): void;
  /** Appends tokens to `seq`, returns the sampled next token. */
  prefill(seq: number, tokens: number[]): number;
  /**
   * Tree prefill (speculative = eagle; qwen.h qw_session_prefill_tree): appends nodes first.. of a tree given by
   * parents (first + tokens.length entries, -1 = a root; null = causal), with feature rows ([tokens.length ×
   * hidden]) for an EAGLE head model. Returns the sampled next token. Optional: test doubles may leave it out.
   */
  prefillTree?(seq: number, tokens: number[], parents: number[] | null, first: number, features: Float32Array | null): number;
  /** Keeps positions base + keep[i] at base + i (the accepted path of a verified tree); length = base + keep.length. */
  kvCompact?(seq: number, base: number, keep: number[]): void;
  /** One batched decode step, returns the next token of each sequence. */
  decode(seqIds: number[], tokens: number[]): number[];
  /**
   * nSteps decode steps in one call (qwen.h qw_session_decode_steps): step 0 takes `tokens`, step j > 0 the tokens
   * step j - 1 sampled; returns nSteps rows of one token per sequence. The same tokens as nSteps decode calls.
   * Optional: test doubles may leave it out (callers then loop over decode).
   */
  decodeSteps?(seqIds: number[], tokens: number[], nSteps: number): number[][];
  /**
   * A draft's chain verified as one decode step (qwen.h qw_session_decode_chain): tokens become decode rows of `seq`
   * at its next positions; returns the token after each. Throws QwenError code QW_ERR_UNSUPPORTED where the toggles
   * do not allow it (the caller verifies with prefill). Optional: test doubles may leave it out.
   */
  decodeChain?(seq: number, tokens: number[]): number[];
  logits(): { rows: number; vocab: number; data: Float32Array };
  /**
   * The k most likely tokens of every logits row of the last step with their log-softmax values, descending (ties:
   * the lower id), computed in the engine (qwen.h qw_session_read_topk): what EAGLE drafting and greedy tree
   * verification need, without copying rows × vocab floats. Optional: test doubles may leave it out.
   */
  topK?(k: number): { rows: number; k: number; ids: Int32Array; logps: Float64Array };
  /**
   * The greedy token of every logits row of the last step (topK(1)'s ids, -1 for a row of NaN only), without the
   * softmax pass over the row that the log-probabilities cost. Optional: test doubles may leave it out.
   */
  argmax?(): Int32Array;
  captures(): Capture[];
  /** Drains the op records accumulated since the last call (profiling mode). */
  /** In profiling mode "counters" the records carry measured counters (ops.counters) and countersMeta says which
   *  metrics the GPU offered. */
  takeRecords(): { ops: OpColumns; kernels: string[]; dropped: number; countersMeta?: CountersMeta };
  generate(opts: GenerateOptions): AsyncGenerator<GenerateEvent>;
  close(): void;
}

export interface EngineModel {
  readonly id: string;
  readonly format: "gguf" | "hf" | "synthetic";
  readonly config: QwenConfig;
  readonly backend: "cpu" | "cuda";
  readonly device: DeviceManifest;
  readonly buildInfo: string;
  readonly weightBytes: number;
  readonly weightTypes: Record<string, number>;
  /** The weights option it was loaded with ({} = as-loaded; weightsLayers.output: the lm_head's; engine/formats/requant.ts). */
  readonly weights?: { weights?: string; weightsLayers?: Record<string, string> };
  /** The parallel option it was loaded with (undefined = tp1; engine/formats/parallel.ts). */
  readonly parallel?: string;
  readonly hash: string;
  readonly tokenizer: {
    encode(text: string, opts?: { addSpecial?: boolean }): number[];
    decode(ids: number[]): string;
    applyChatTemplate(messages: { role: string; content: string }[]): number[];
    readonly eosIds: number[];
  };
  toggleRegistry(): ToggleDef[];
  /** Profiling mode names, from the library (qw_profiling_mode_name): "off", "events", "kernels". */
  profilingModes(): string[];
  newSession(opts?: { maxBatch?: number; maxContext?: number; maxPrefill?: number; dca?: DcaOptions; sparse?: SparseOptions }): EngineSession;
  /** CUDA: device memory in use now, device-wide (cudaMemGetInfo), for a notebook to diff around a step; CPU: undefined. */
  deviceMemoryUsed?(): number | undefined;
  close(): void;
}

/**
 * Opens a model: a .gguf file, a Hugging Face directory (config.json + safetensors + tokenizer.json),
 * "default" (the embedded models/tiny-qwen2-brown), or a synthetic preset "synthetic:tiny|0.5b|1.5b|7b"
 * (optionally ":q8_0" / ":q4_k" / ":f16" / ":bf16" suffix, generated in memory or cached under models/synthetic).
 */
export type OpenModel = (source: string, opts?: OpenOptions) => Promise<EngineModel>;
