// Quantization error between a reference configuration and a candidate one (DESIGN.md §6): the same replayed
// prompt runs under both toggle sets with hooks captured; per hook cosine, relative L1, RMSE, SQNR and max abs;
// on the logits KL divergence and top-1 agreement; plus each layer's time under both, so the page can plot
// error against the latency each layer saved. Prefill only (1 generated token): both arms see identical inputs.
import type { Capture, EngineModel, EngineSession } from "../api.ts";
import { PROFILE_SCHEMA_VERSION, Profile, type ToggleValues, type QuantError } from "../profile.ts";
import { latencyMatrix } from "./aggregate.ts";
import { tensorError as metricsTensorError, logitsError as metricsLogitsError, type TensorError } from "../metrics.ts";
import { recordRun, type PromptSpec, type RunEvent, type SamplingSpec } from "./record.ts";

/** Per-hook error metrics as stored in a quant-error profile (engine/metrics.ts TensorError). */
export type LayerMetrics = TensorError;

/** engine/metrics.ts tensorError in its JSON-safe form: SQNR capped at 300 dB (identical tensors), never Infinity. */
export function tensorError(ref: Float32Array, cand: Float32Array): LayerMetrics {
  return metricsTensorError(ref, cand, { jsonSafe: true });
}

/** Mean KL(ref ‖ cand) over rows of logits (nats), top-1 agreement, cosine and max abs (engine/metrics.ts, JSON-safe). */
export function logitsError(ref: Float32Array, cand: Float32Array, vocab: number) {
  return metricsLogitsError(ref, cand, vocab, { jsonSafe: true });
}

export interface QuantSpec {
  id: string;
  prompt: PromptSpec;
  reference: { label: string; toggles: ToggleValues };
  candidate: { label: string; toggles: ToggleValues };
  hooks?: string[];          // default: blocks.{L}.hook_resid_post for every layer + hook_logits
  repeats?: number;          // timing repetitions per arm (median per layer), default 3
  command?: string;
}

export function defaultQuantHooks(nLayers: number): string[] {
  return [...Array.from({ length: nLayers }, (_, l) => `blocks.${l}.hook_resid_post`), "hook_logits"];
}

function layerOf(hook: string): number {
  const m = /^blocks\.(\d+)\./.exec(hook);
  return m ? Number(m[1]) : -1;
}

export async function recordQuantError(model: EngineModel, session: EngineSession, spec: QuantSpec,
  o: { onEvent?: (ev: RunEvent | { type: "arm"; arm: string; repeat: number }) => void; signal?: AbortSignal } = {}): Promise<Profile> {
  const hooks = spec.hooks?.length ? spec.hooks : defaultQuantHooks(model.config.num_hidden_layers);
  const repeats = Math.max(1, Math.min(20, spec.repeats ?? 3));
  const sampling: SamplingSpec = { temperature: 0, topK: 0, topP: 1, seed: 0 };
  const arms = [spec.reference, spec.candidate];
  const caps: Capture[][] = [];
  const layerMs: number[][][] = [[], []]; // arm → repeat → per-layer ms (prefill)
  let lastProfile: Profile | null = null;
  for (let a = 0; a < 2; a++) {
    for (let r = 0; r < repeats; r++) {
      if (o.signal?.aborted) throw new Error("cancelled");
      o.onEvent?.({ type: "arm", arm: arms[a].label, repeat: r });
      const res = await recordRun(model, session, {
        id: `${spec.id}-${a}`, prompts: [{ ...spec.prompt, maxTokens: 1 }], maxTokens: 1, sampling,
        toggles: arms[a].toggles, profiling: true, capture: r === 0 ? hooks : [], label: arms[a].label,
      }, { onEvent: o.onEvent, signal: o.signal, keepCaptures: r === 0 });
      if (r === 0) caps[a] = res.captures[0] ?? [];
      const lm = latencyMatrix(res.profile, "prefill");
      const perLayer: number[] = [];
      lm.layers.forEach((l, i) => { if (l >= 0) perLayer[l] = lm.ms[i].reduce((x, y) => x + y, 0); });
      layerMs[a].push(perLayer);
      if (a === 1) lastProfile = res.profile;
    }
  }
  const byName = (cs: Capture[]) => new Map(cs.map((c) => [c.name, c]));
  const ref = byName(caps[0]), cand = byName(caps[1]);
  const layers: QuantError["layers"] = [];
  let logits: QuantError["logits"];
  for (const [name, rc] of ref) {
    const cc = cand.get(name);
    if (!cc || cc.data.length !== rc.data.length) continue;
    if (name === "hook_logits") { logits = logitsError(rc.data, cc.data, rc.cols); continue; }
    layers.push({ hook: name, layer: layerOf(name), ...tensorError(rc.data, cc.data) });
  }
  layers.sort((x, y) => x.layer - y.layer || x.hook.localeCompare(y.hook));
  const median = (xs: number[]) => { const s = xs.filter((x) => x !== undefined).sort((a, b) => a - b); return s.length ? s[(s.length - 1) >> 1] : 0; };
  const nL = model.config.num_hidden_layers;
  const refMs = Array.from({ length: nL }, (_, l) => median(layerMs[0].map((r) => r[l])));
  const candMs = Array.from({ length: nL }, (_, l) => median(layerMs[1].map((r) => r[l])));
  const notes: string[] = [];
  if (!caps[0]?.length) notes.push("the engine returned no captures: no per-layer error (does this backend implement activation hooks?)");
  const base = lastProfile!;
  return Profile.parse({
    schema: "qwen-workbench/profile", version: PROFILE_SCHEMA_VERSION, id: spec.id, kind: "quant-error",
    manifest: { ...base.manifest, toggles: base.manifest.toggles, label: `${spec.candidate.label} vs ${spec.reference.label}`, command: spec.command },
    summary: {
      ...base.summary,
      reference_toggles: spec.reference.toggles, candidate_toggles: spec.candidate.toggles,
      layer_ms: { reference: refMs, candidate: candMs, unit: "ms per prefill (median)", repeats },
    },
    kernels: base.kernels, ops: base.ops, tokens: base.tokens,
    quant_error: [{ reference_label: spec.reference.label, candidate_label: spec.candidate.label, layers, ...(logits ? { logits } : {}) }],
    ...(notes.length ? { notes } : {}),
  } satisfies Profile);
}
