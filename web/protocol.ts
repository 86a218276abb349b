// The typed message protocol between the server (WorkerHost) and the engine worker (engine-worker.ts).
// Every message is validated with zod on arrival, in both directions.
import { z } from "zod";
import { PromptSpec, SamplingSpec } from "../engine/measure/record.ts";
import { ProfilingMode, QuantPhase, ToggleValues } from "../engine/measure/profile.ts";
import { WeightsOptionSchema } from "../engine/formats/requant.ts";
import { SparseOptionsSchema } from "../engine/sparse.ts";

export const RunSpecSchema = z.object({
  id: z.string().min(1).max(200),
  prompts: z.array(PromptSpec).min(1),
  maxTokens: z.number().int().min(1).max(8192),
  sampling: SamplingSpec,
  toggles: ToggleValues,
  profiling: z.union([z.boolean(), ProfilingMode]),
  capture: z.array(z.string().max(200)).max(4096),
  label: z.string().max(200).optional(),
  command: z.string().max(2000).optional(),
  promptSetName: z.string().max(200).optional(),
  warmup: z.number().int().min(0).max(3).optional(),
  repeats: z.number().int().min(1).max(20).optional(),
  stepsPerSync: z.number().int().min(1).max(64).optional(),
  draft: z.object({ model: z.string().min(1).max(4096), k: z.number().int().min(1).max(64), root: z.string().max(4096).optional() }).optional(),
  sparse: SparseOptionsSchema.optional(),
  eagle: z.object({
    head: z.string().min(1).max(4096), depth: z.number().int().min(1).max(16), topK: z.number().int().min(1).max(16),
    budget: z.number().int().min(1).max(128), root: z.string().max(4096).optional(),
  }).optional(),
});

const ModelRef = z.string().min(1).max(4096);
const TextRef = z.union([z.literal("brown"), z.object({ text: z.string().min(1).max(2_000_000) }).strict()]);

export const QuantSpecSchema = z.object({
  id: z.string().min(1).max(200),
  prompt: PromptSpec,
  reference: z.object({ label: z.string().max(200), toggles: ToggleValues, model: ModelRef.optional() }),
  candidate: z.object({ label: z.string().max(200), toggles: ToggleValues, model: ModelRef.optional() }),
  hooks: z.array(z.string().max(200)).max(4096).optional(),
  repeats: z.number().int().min(1).max(20).optional(),
  phase: QuantPhase.optional(),           // absent: prefill (recordQuantError's default)
  perplexity: z.object({ text: TextRef, ctx: z.number().int().min(2).max(32768), maxTokens: z.number().int().min(2).optional() }).optional(),
  command: z.string().max(2000).optional(),
});

/** A perplexity measurement on the loaded model, optionally against a reference (toggle set and/or model). */
export const PerplexitySpecSchema = z.object({
  text: TextRef,
  ctx: z.number().int().min(2).max(32768),
  score: z.enum(["all", "half"]).optional(),
  phase: z.enum(["prefill", "decode"]).optional(),
  maxTokens: z.number().int().min(2).optional(),
  toggles: ToggleValues,
  label: z.string().max(200).optional(),
  reference: z.object({ model: ModelRef.optional(), toggles: ToggleValues.optional(), label: z.string().max(200).optional() }).optional(),
});
export type PerplexitySpec = z.infer<typeof PerplexitySpecSchema>;

/** A passkey run on the loaded model (engine/measure/passkey.ts runPasskey), DCA and sparse prefill options. */
export const PasskeySpecSchema = z.object({
  lengths: z.array(z.number().int().min(16).max(1 << 20)).min(1).max(32),
  trials: z.number().int().min(1).max(1000),
  seed: z.number().int().min(0).max(2 ** 31),
  buckets: z.number().int().min(1).max(20),
  dca: z.boolean(),
  dcaOptions: z.object({ chunk: z.number().int().min(2).optional(), local: z.number().int().min(0).optional() }).strict().optional(),
  sparse: z.enum(["vertical-slash", "block-sparse"]).optional(),
  sparseOptions: SparseOptionsSchema.optional(),
});
export type PasskeySpec = z.infer<typeof PasskeySpecSchema>;

export const LoadOptionsSchema = z.object({
  backend: z.enum(["auto", "cpu", "cuda"]),
  threads: z.number().int().min(0).max(1024).optional(),
  root: z.string().max(4096).optional(),
  parallel: z.string().max(16).optional(),  // the engine checks it against the registry when it opens the model
}).extend(WeightsOptionSchema.shape);

export const ToWorker = z.discriminatedUnion("t", [
  z.object({ t: z.literal("init"), engineModule: z.string(), env: z.record(z.string(), z.string()).optional() }),
  z.object({ t: z.literal("load"), id: z.string(), source: z.string(), opts: LoadOptionsSchema }),
  z.object({ t: z.literal("run"), id: z.string(), spec: RunSpecSchema }),
  z.object({ t: z.literal("quant"), id: z.string(), spec: QuantSpecSchema }),
  z.object({ t: z.literal("perplexity"), id: z.string(), spec: PerplexitySpecSchema }),
  z.object({ t: z.literal("passkey"), id: z.string(), spec: PasskeySpecSchema }),
  z.object({ t: z.literal("cancel"), id: z.string() }),
  z.object({ t: z.literal("catalog"), id: z.string() }),
]);
export type ToWorker = z.infer<typeof ToWorker>;

export const FromWorker = z.discriminatedUnion("t", [
  z.object({ t: z.literal("ready") }),
  z.object({ t: z.literal("init-error"), message: z.string() }),
  z.object({ t: z.literal("event"), id: z.string(), ev: z.object({ type: z.string() }).passthrough() }),
  z.object({ t: z.literal("result"), id: z.string(), value: z.unknown() }),
  z.object({ t: z.literal("error"), id: z.string(), message: z.string() }),
]);
export type FromWorker = z.infer<typeof FromWorker>;
