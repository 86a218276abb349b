// Quantization error between a reference configuration and a candidate one (DESIGN.md §6): the same replayed
// prompt runs under both toggle sets with hooks captured; per hook cosine, relative L1, RMSE, SQNR and max abs;
// on the logits KL divergence and top-1 agreement; plus each layer's time under both, so the page can plot
// error against the latency each layer saved. Prefill only (1 generated token): both arms see identical inputs.
import type { Capture, EngineModel, EngineSession } from "../api.ts";
import { PROFILE_SCHEMA_VERSION, Profile, type ToggleValues, type QuantError } from "../profile.ts";
import { latencyMatrix } from "./aggregate.ts";
import { recordRun, type PromptSpec, type RunEvent, type SamplingSpec } from "./record.ts";

export interface LayerMetrics { cosine: number; rel_l1: number; rmse: number; sqnr_db: number; max_abs: number }

const SQNR_CAP_DB = 300; // identical tensors: report 300 dB instead of +Infinity (JSON has no Infinity)

export function tensorError(ref: Float32Array, cand: Float32Array): LayerMetrics {
  if (ref.length !== cand.length) throw new Error(`tensorError: length ${ref.length} vs ${cand.length}`);
  let dot = 0, na = 0, nb = 0, l1 = 0, l1ref = 0, se = 0, mx = 0;
  for (let i = 0; i < ref.length; i++) {
    const a = ref[i], b = cand[i], d = a - b;
    dot += a * b; na += a * a; nb += b * b; l1 += Math.abs(d); l1ref += Math.abs(a); se += d * d;
    if (Math.abs(d) > mx) mx = Math.abs(d);
  }
  const cosine = na > 0 && nb > 0 ? dot / Math.sqrt(na * nb) : (na === nb ? 1 : 0);
  const sqnr = se === 0 ? SQNR_CAP_DB : Math.min(SQNR_CAP_DB, 10 * Math.log10(na / se));
  return { cosine, rel_l1: l1ref > 0 ? l1 / l1ref : l1, rmse: Math.sqrt(se / Math.max(1, ref.length)), sqnr_db: sqnr, max_abs: mx };
}

/** Mean KL(ref ‖ cand) over rows of logits (nats), top-1 agreement, cosine and max abs. */
export function logitsError(ref: Float32Array, cand: Float32Array, vocab: number) {
  const rows = Math.floor(ref.length / vocab);
  let kl = 0, agree = 0;
  for (let r = 0; r < rows; r++) {
    const o = r * vocab;
    let ma = -Infinity, mb = -Infinity, ia = 0, ib = 0;
    for (let i = 0; i < vocab; i++) {
      if (ref[o + i] > ma) { ma = ref[o + i]; ia = i; }
      if (cand[o + i] > mb) { mb = cand[o + i]; ib = i; }
    }
    let za = 0, zb = 0;
    for (let i = 0; i < vocab; i++) { za += Math.exp(ref[o + i] - ma); zb += Math.exp(cand[o + i] - mb); }
    const lza = Math.log(za), lzb = Math.log(zb);
    let k = 0;
    for (let i = 0; i < vocab; i++) {
      const la = ref[o + i] - ma - lza, lb = cand[o + i] - mb - lzb;
      k += Math.exp(la) * (la - lb);
    }
    kl += Math.max(0, k);
    if (ia === ib) agree++;
  }
  const e = tensorError(ref, cand);
  return { kl: rows ? kl / rows : 0, top1_agreement: rows ? agree / rows : 1, cosine: e.cosine, max_abs: e.max_abs };
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
