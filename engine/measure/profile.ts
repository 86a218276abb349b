// Profile: the one JSON document every measurement ends up in (docs/ARCHITECTURE.md §Measurement). Versioned, validated with zod
// on read and on write, written atomically. Op records are columnar to stay small.
import { z } from "zod";
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { readJsonFile } from "../io/fsafe.ts";
import { profilingModeNames } from "../catalog.ts";

const MAX_PROFILE_BYTES = 512 << 20;
import { dirname } from "node:path";

export const PROFILE_SCHEMA_VERSION = 1;

// Op names (a record's op id indexes them), the ops without model work and the profiling mode names come from the
// native library through engine/catalog.ts: opNames(), opName(id), nonModelOps(), profilingModeNames().

/** How a profile's op times were taken (qwen.h qw_profiling_mode): a mode name of the library's catalog. */
export const ProfilingMode = z.string().refine((m) => profilingModeNames().includes(m), {
  error: (i) => `profiling mode ${JSON.stringify(i.input)} is not one of ${profilingModeNames().join(", ")}`,
});
export type ProfilingMode = z.infer<typeof ProfilingMode>;

export const DeviceManifest = z.object({
  backend: z.enum(["cpu", "cuda"]),
  name: z.string(),
  sms: z.number().int().optional(),
  clock_mhz: z.number().optional(),
  mem_clock_mhz: z.number().optional(),
  memory_bytes: z.number().optional(),
  driver: z.string().optional(),
  runtime: z.string().optional(),
  cc: z.string().optional(),
  threads: z.number().int().optional(),
});
export type DeviceManifest = z.infer<typeof DeviceManifest>;

/** A toggle id as the native registry spells them (kvCache, sparsePrefill, …): never __proto__, constructor,
 *  NUL or another control character, whatever path it came in by (D8). */
export const TOGGLE_ID_RE = /^(?!__proto__$|constructor$|prototype$)[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
const ToggleId = z.string().regex(TOGGLE_ID_RE, "toggle id: a letter, then up to 63 of A-Z a-z 0-9 _ . - (not __proto__, constructor, prototype)");
const ToggleValue = z.string().max(64).regex(/^[^\x00-\x1f\x7f]*$/, "toggle value: no NUL or other control characters");
// zod's record silently drops an own "__proto__" key (JSON.parse makes one), so it is refused before the record.
const NoProtoKey = z.custom<Record<string, unknown>>(
  (v) => !!v && typeof v === "object" && !Array.isArray(v) && !Object.prototype.hasOwnProperty.call(v, "__proto__"),
  "toggles: an object of id → value (and __proto__ is not a toggle id)",
);
export const ToggleValues = NoProtoKey.pipe(z.record(ToggleId, z.union([ToggleValue, z.array(ToggleValue).max(1024)])));
export type ToggleValues = z.infer<typeof ToggleValues>;

export const Manifest = z.object({
  date: z.string(),                 // ISO 8601
  git_commit: z.string(),           // "unknown" outside a checkout
  engine_build: z.string(),         // qw_build_info() JSON as a string
  device: DeviceManifest,
  model: z.object({
    id: z.string(),                 // path or preset name
    hash: z.string(),               // sha256 of the first 16 MiB + size, or of the preset spec
    format: z.string(),             // "gguf" | "hf" | "synthetic"
    config: z.record(z.string(), z.unknown()),
    weight_types: z.record(z.string(), z.number()).optional(), // ggml type name -> tensor count
    weight_bytes: z.number().optional(),
    weights_output: z.string().optional(), // the lm_head's format when requantized at load (weightsLayers.output)
  }),
  toggles: ToggleValues,
  prompts: z.array(z.object({
    text: z.string().optional(),
    tokens: z.number().int(),
    seed: z.number().int().optional(),
  })).optional(),
  sampling: z.object({
    temperature: z.number(), top_k: z.number().int(), top_p: z.number(), seed: z.number().int(),
  }).optional(),
  command: z.string().optional(),   // how it was produced, to reproduce it
  label: z.string().optional(),     // arm name in an ablation
});
export type Manifest = z.infer<typeof Manifest>;

const Measured = z.array(z.number().finite().nonnegative().nullable());
/** Measured counters per op record (all arrays as long as the records; null: not measured). */
export const CounterColumns = z.object({
  dram_read: Measured,      // bytes
  dram_write: Measured,     // bytes
  l2_hits: Measured,        // L2 sector lookups that hit (a hit rate over many records: sum hits / sum lookups)
  l2_misses: Measured,      // L2 sector lookups that missed
  sm_pct: Measured,         // SM throughput, % of peak, weighted by kernel time
  tensor_pct: Measured,     // tensor pipe, % of peak, weighted by kernel time
  kernel_ns: Measured,      // the op's kernels' duration in one (profiled) pass
  kernels: Measured,        // kernel ranges attributed to the op
});
export type CounterColumns = z.infer<typeof CounterColumns>;
/** What a counters-mode run could measure on its GPU (the native readout's "collected" / "unavailable"). */
export const CountersMeta = z.object({ collected: z.array(z.string()), unavailable: z.array(z.string()) });
export type CountersMeta = z.infer<typeof CountersMeta>;

// Columnar op records: every array has the same length.
export const OpColumns = z.object({
  step: z.array(z.number().int()),
  phase: z.array(z.number().int()),     // 0 prefill, 1 decode
  layer: z.array(z.number().int()),     // -1 outside layers
  op: z.array(z.number().int()),        // op id: index into the catalog's ops (engine/catalog.ts opName)
  kernel: z.array(z.number().int()),    // index into kernels[]
  t_start_ns: z.array(z.number()),
  t_end_ns: z.array(z.number()),
  flops: z.array(z.number()),
  bytes: z.array(z.number()),
  n_tokens: z.array(z.number().int()),
  // kernels mode: ns a kernel overlapped the ones before it; its t_start_ns is after that overlap
  overlap_ns: z.array(z.number().int()).optional(),
  // tensor parallelism (model option parallel = tpN): the rank that ran the op; absent in older profiles = rank 0
  rank: z.array(z.number().int()).optional(),
  // profiling mode "counters" (CUDA, CUPTI range profiler): measured hardware counters per record, null where an
  // op has none (engine/measure/counters.ts joins them to the records)
  counters: CounterColumns.optional(),
}).refine((o) => !o.counters || Object.values(o.counters).every((c) => c.length === o.step.length), {
  error: "ops.counters: every counter column must have one entry per op record",
});
export type OpColumns = z.infer<typeof OpColumns>;

// A repeated measurement: every sample kept, summary derived (median, min, max).
export const Stat = z.object({
  samples: z.array(z.number()),
  median: z.number(),
  min: z.number(),
  max: z.number(),
  unit: z.string(),
});
export type Stat = z.infer<typeof Stat>;

/** One headline metric over the measured repetitions (summary.stats.<metric>). */
export const SummaryStatSchema = z.object({
  samples: z.array(z.number()),
  median: z.number(), min: z.number(), max: z.number(), p10: z.number(), p90: z.number(), n: z.number().int(),
});

export const TokenEvent = z.object({
  index: z.number().int(),
  token: z.number().int(),
  text: z.string(),
  t_ms: z.number(),                 // since the start of the run
  phase: z.enum(["prefill", "decode"]),
});

export const LayerError = z.object({
  hook: z.string(),                 // e.g. blocks.3.hook_resid_post
  layer: z.number().int(),
  // metrics over the positions where both arms are finite (all of them unless `nonfinite` says otherwise)
  cosine: z.number(),
  rel_l1: z.number(),
  rmse: z.number(),
  sqnr_db: z.number(),
  max_abs: z.number(),
  nonfinite: z.object({ reference: z.number().int(), candidate: z.number().int(), values: z.number().int() }).optional(),
});

const NumOrNull = z.number().nullable();
/** The pass a quantization-error measurement captures and times (engine/measure/quant-error.ts QuantSpec.phase). */
export const QuantPhase = z.enum(["prefill", "decode"]);
export type QuantPhase = z.infer<typeof QuantPhase>;
const KvErr = z.object({ sqnr_db: z.number(), cosine: z.number(), rel_l1: z.number() });
export const QuantError = z.object({
  reference_label: z.string(),
  candidate_label: z.string(),
  reference_model: z.string().optional(),   // set when the two arms ran different model files
  candidate_model: z.string().optional(),
  // The pass the captures come from: the prompt's prefill, or one decode step (the last prompt token decoded after
  // the others were prefilled; arms such as CUDA actQuant = int8 act only there). Absent: prefill (older profiles).
  phase: QuantPhase.optional(),
  layers: z.array(LayerError),
  logits: z.object({
    kl: z.number(), top1_agreement: z.number(), cosine: z.number(), max_abs: z.number(),
  }).optional(),
  perplexity: z.object({
    reference: NumOrNull, candidate: NumOrNull, delta: NumOrNull,
    text: z.string().optional(), tokens: z.number().int().optional(), ctx: z.number().int().optional(), score: z.string().optional(),
    reference_se: NumOrNull.optional(), candidate_se: NumOrNull.optional(),
    kl_mean: NumOrNull.optional(), kl_se: NumOrNull.optional(), kl_p99: NumOrNull.optional(), kl_max: NumOrNull.optional(),
    top1_agreement: NumOrNull.optional(), top_k: z.number().int().optional(),
    nonfinite_reference: z.number().int().optional(), nonfinite_candidate: z.number().int().optional(),
  }).optional(),
  // The first hook (in forward order) where an arm held NaN/Inf, and plain-language findings for the page.
  first_nonfinite: z.object({
    arm: z.enum(["reference", "candidate", "both"]), hook: z.string(), layer: z.number().int(), count: z.number().int(), total: z.number().int(),
  }).optional(),
  findings: z.array(z.string()).optional(),
  // The weights toggle (a load-time option) differing between the arms: per layer, the 7 projections of the
  // reference against the candidate's (engine/measure/weight-error.ts).
  weights: z.array(z.object({
    layer: z.number().int(), reference: z.string(), candidate: z.string(), sqnr_db: z.number(), cosine: z.number(), params: z.number().int(),
  })).optional(),
  // The arms differing in kvCache or attention: per layer, each arm's K and V as its attention reads them against
  // the fp32 K/V (engine/measure/kv-error.ts); the attention output's error is the layer's attn.hook_z row above.
  kv: z.array(z.object({
    layer: z.number().int(), reference: z.string(), candidate: z.string(),
    k: z.object({ reference: KvErr, candidate: KvErr }), v: z.object({ reference: KvErr, candidate: KvErr }),
  })).optional(),
});
export type QuantError = z.infer<typeof QuantError>;

export const BenchRow = z.object({
  test: z.string(),                 // "tg128 b1", "pp512", ...
  model: z.string(),
  weights: z.string(),              // bf16 | f16 | q8_0 | q4_k_m ...
  backend: z.string(),
  batch: z.number().int(),
  n_prompt: z.number().int(),
  n_gen: z.number().int(),
  tokens_per_s: Stat,
  roofline_pct: z.number().optional(), // % of the bandwidth roofline (decode) or compute roofline (prefill)
  system: z.string().default("qwen-workbench"), // or a peer: "transformers-eager", "torch.compile", "llama.cpp"
  extra: z.record(z.string(), z.unknown()).optional(),
});
export type BenchRow = z.infer<typeof BenchRow>;

// Does the profile describe what users get? The per-step sum check (recorded op + gap time against the wall
// time of the step's engine call) and, when measured, each mode's overhead against profiling off.
export const SumCheck = z.object({
  mode: ProfilingMode.optional(),  // when a profile checks several modes (bench)
  phase: z.enum(["prefill", "decode"]),
  steps: z.number().int(),
  calls: z.number().int().optional(), // engine calls the steps ran in (compared per call; absent in older profiles: one per step)
  wall_ms: z.number(),        // median per step (over calls: a call's figures / its steps): the call as the caller timed it
  ops_ms: z.number(),         // median per step: model ops (kernels)
  gaps_ms: z.number(),        // median per step: gap records (nothing of ours ran)
  other_ms: z.number(),       // median per step: copies and the pool wake-up
  unrecorded_ms: z.number(),  // median per step: wall - all records (outside the backend's step: FFI, front)
  diff_pct: z.object({ median: z.number(), min: z.number(), max: z.number() }), // |wall - records| / wall
});
export type SumCheck = z.infer<typeof SumCheck>;
export const Fidelity = z.object({
  mode: ProfilingMode,
  sum_check: z.array(SumCheck),
  overhead_pct: z.record(z.string(), Stat).optional(), // mode -> slowdown of decode vs off, % (same run)
  steps_per_sync: z.number().int().min(2).optional(),  // decode steps per engine call (absent: 1)
  notes: z.array(z.string()).optional(),
});
export type Fidelity = z.infer<typeof Fidelity>;

// Host work around the engine, on the clock of the op records (CLOCK_MONOTONIC ns): tokenization, each engine
// call (FFI; `step` = the profile step it ran, the correlation id shared with that step's op records) and the
// emission of each token event (SSE fan-out in the web server).
export const HostSpan = z.object({
  kind: z.enum(["tokenize", "ffi", "emit"]),
  prompt: z.number().int(),
  step: z.number().int().optional(),
  t_start_ns: z.number(),
  t_end_ns: z.number(),
});
export type HostSpan = z.infer<typeof HostSpan>;

export const Profile = z.object({
  schema: z.literal("qwen-workbench/profile"),
  version: z.literal(PROFILE_SCHEMA_VERSION),
  id: z.string(),                   // file stem, unique
  kind: z.enum(["run", "bench", "ablation", "calibration", "quant-error"]),
  manifest: Manifest,
  summary: z.object({
    prefill_tokens: z.number().int().optional(),
    decode_tokens: z.number().int().optional(),
    ttft_ms: z.number().optional(),
    tpot_ms: z.object({ median: z.number(), p90: z.number(), min: z.number(), max: z.number() }).optional(),
    prefill_tok_s: z.number().optional(),
    decode_tok_s: z.number().optional(),
    profiling_overhead_pct: z.number().optional(),
    steps_per_sync: z.number().int().min(1).optional(),  // decode steps per engine call of the run (record.ts)
    // Measured repetitions and warm-up passes behind the headline values above (which are the medians over the
    // repetitions); stats keeps every repetition's value per metric (engine/measure/stats.ts).
    repeats: z.number().int().optional(),
    warmup: z.number().int().optional(),
    stats: z.record(z.string(), SummaryStatSchema).optional(),
  }).passthrough(),
  fidelity: Fidelity.optional(),
  host_spans: z.array(HostSpan).optional(),
  kernels: z.array(z.string()),     // kernel variant names, indexed by OpColumns.kernel
  ops: OpColumns.optional(),
  counters_meta: CountersMeta.optional(), // profiling mode "counters": the metrics collected and those not available
  tokens: z.array(TokenEvent).optional(),
  output_text: z.string().optional(),
  bench: z.array(BenchRow).optional(),
  quant_error: z.array(QuantError).optional(),
  ceilings: z.record(z.string(), z.unknown()).optional(), // device ceilings used for the roofline
  notes: z.array(z.string()).optional(),
  partial: z.string().optional(),   // set when the run was cut short (e.g. "server shutdown (SIGTERM)"): not a full measurement
});
export type Profile = z.infer<typeof Profile>;

export function statOf(samples: number[], unit: string): Stat {
  if (samples.length === 0) throw new Error("statOf: no samples");
  const s = [...samples].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { samples, median, min: s[0], max: s[s.length - 1], unit };
}

/** Validates and writes a profile atomically (temp file + rename). Returns the path. */
export function writeProfile(path: string, profile: Profile): string {
  const checked = Profile.parse(profile);
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.${Date.now()}.tmp`;
  writeFileSync(tmp, JSON.stringify(checked));
  renameSync(tmp, path);
  return path;
}

/** Reads and validates a profile; the error names the file and the first schema problem. */
export function readProfile(path: string): Profile {
  let raw: unknown;
  try {
    raw = readJsonFile(path, MAX_PROFILE_BYTES); // a regular file only: a FIFO would block the thread (D2)
  } catch (e) {
    throw new Error(`profile ${path}: not readable JSON (${(e as Error).message.replace(`${path}: `, "")})`);
  }
  const r = Profile.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new Error(`profile ${path}: invalid at ${issue.path.join(".") || "<root>"}: ${issue.message}`);
  }
  return r.data;
}
