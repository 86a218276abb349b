// Quantization error between a reference configuration and a candidate one (docs/ARCHITECTURE.md §Measurement): the same replayed
// prompt runs under both arms with hooks captured; per hook cosine, relative L1, RMSE, SQNR and max abs;
// on the logits KL divergence and top-1 agreement; plus each layer's time under both, so the page can plot
// error against the latency each layer saved. Both arms always see identical inputs: phase prefill (the default)
// captures the prompt's prefill (1 generated token); phase decode captures ONE decode step (the prompt but its last
// token prefilled, then that token decoded), for arms that act only in decode (CUDA actQuant = int8 runs in the
// decode GEMVs, its prefill GEMMs stay exact: a prefill measurement would show no error and no time change).
// An arm is a toggle set on a model: the two arms may run different model files of the same shapes (e.g. the
// bf16 checkpoint against a Q8_0 GGUF of the same weights). Optionally both arms also score a text
// (engine/measure/perplexity-run.ts): perplexity of each, KL divergence and top-1 agreement over every position.
// NaN/Inf in a capture is a finding, not a failure: metrics cover the positions where both arms are finite,
// each hook counts its non-finite values, and the first hook (in forward order) that held any is reported.
import type { Capture, EngineModel, EngineSession } from "../api.ts";
import { PROFILE_SCHEMA_VERSION, Profile, type ToggleValues, type QuantError, type QuantPhase } from "./profile.ts";
import { latencyMatrix } from "./aggregate.ts";
import { hookName, hookOrder } from "../catalog.ts";
import { tensorError as metricsTensorError, logitsError as metricsLogitsError, type TensorError } from "./metrics.ts";
import { applyToggles, recordRun, type PromptSpec, type RunEvent, type SamplingSpec } from "./record.ts";
import { runPerplexity, textTokens, type TextSource } from "./perplexity-run.ts";
import { weightError, type LayerWeightError } from "./weight-error.ts";
import { kvError, type KvArm } from "./kv-error.ts";
import { optionFromToggle, sameWeights, WEIGHTS_TOGGLE } from "../formats/requant.ts";

/** Per-hook error metrics as stored in a quant-error profile (engine/measure/metrics.ts TensorError). */
export type LayerMetrics = TensorError;

/** engine/measure/metrics.ts tensorError in its JSON-safe form: SQNR capped at 300 dB (identical tensors), never Infinity. */
export function tensorError(ref: Float32Array, cand: Float32Array): LayerMetrics {
  return metricsTensorError(ref, cand, { jsonSafe: true });
}

/** Mean KL(ref ‖ cand) over rows of logits (nats), top-1 agreement, cosine and max abs (engine/measure/metrics.ts, JSON-safe). */
export function logitsError(ref: Float32Array, cand: Float32Array, vocab: number) {
  return metricsLogitsError(ref, cand, vocab, { jsonSafe: true });
}

/** Tokens each timing run generates in phase decode: the prefill's token, then 7 decode steps averaged per step. */
const DECODE_TIMED_TOKENS = 8;

export interface QuantArm { label: string; toggles: ToggleValues; model?: string }

export interface QuantSpec {
  id: string;
  prompt: PromptSpec;
  reference: QuantArm;
  candidate: QuantArm;
  hooks?: string[];          // default: blocks.{L}.hook_resid_post for every layer + hook_logits
  repeats?: number;          // timing repetitions per arm (median per layer), default 3
  /** Which pass is captured and timed (default prefill). decode: one decode step after the prompt but its last token
   *  (needs a prompt of 2 tokens or more); per-layer ms are then per decode step. The K/V error stays prefill-only. */
  phase?: QuantPhase;
  /** Also score a text under both arms: perplexity, KL divergence, top-1 agreement. */
  perplexity?: { text: "brown" | { text: string }; ctx: number; maxTokens?: number };
  command?: string;
}

/** Where an arm runs when it is not the caller's model and session. */
export interface ArmEnv { model: EngineModel; session: EngineSession }

export function defaultQuantHooks(nLayers: number): string[] {
  return [...Array.from({ length: nLayers }, (_, l) => hookName("hook_resid_post", l)), hookName("hook_logits")];
}

function layerOf(hook: string): number {
  const m = /^blocks\.(\d+)\./.exec(hook);
  return m ? Number(m[1]) : -1;
}


/** Whether two models can be compared hook by hook. */
export function sameShapes(a: EngineModel, b: EngineModel): string | null {
  const keys = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim"] as const;
  const diff = keys.filter((k) => a.config[k] !== b.config[k]);
  return diff.length ? `the two models differ in shape (${diff.map((k) => `${k} ${a.config[k]} vs ${b.config[k]}`).join(", ")}); compare models of the same shapes` : null;
}

function countNonFinite(x: Float32Array): number {
  let n = 0;
  for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i])) n++;
  return n;
}

/** The positions where both are finite (copies only when some are not). */
function finitePairs(a: Float32Array, b: Float32Array): [Float32Array, Float32Array] {
  const keep: number[] = [];
  for (let i = 0; i < a.length; i++) if (Number.isFinite(a[i]) && Number.isFinite(b[i])) keep.push(i);
  return [Float32Array.from(keep, (i) => a[i]), Float32Array.from(keep, (i) => b[i])];
}

/** Logits rows where both arms are finite everywhere. */
function finiteRows(a: Float32Array, b: Float32Array, vocab: number): [Float32Array, Float32Array, number] {
  const rows = Math.floor(a.length / vocab), ok: number[] = [];
  for (let r = 0; r < rows; r++) {
    let fine = true;
    for (let i = r * vocab; i < (r + 1) * vocab && fine; i++) fine = Number.isFinite(a[i]) && Number.isFinite(b[i]);
    if (fine) ok.push(r);
  }
  const pick = (x: Float32Array) => { const o = new Float32Array(ok.length * vocab); ok.forEach((r, j) => o.set(x.subarray(r * vocab, (r + 1) * vocab), j * vocab)); return o; };
  return [pick(a), pick(b), ok.length];
}

/** Per-hook metrics, logits metrics and non-finite findings from the two arms' captures. */
export function compareCaptures(refCaps: Capture[], candCaps: Capture[]): Pick<QuantError, "layers" | "logits" | "first_nonfinite" | "findings"> {
  const cand = new Map(candCaps.map((c) => [c.name, c]));
  const pairs = refCaps.filter((r) => cand.get(r.name)?.data.length === r.data.length).sort((x, y) => hookOrder(x.name) - hookOrder(y.name)); // forward order (catalog), for "which hook first went non-finite"
  const layers: QuantError["layers"] = [];
  let logits: QuantError["logits"];
  let first: QuantError["first_nonfinite"];
  const findings: string[] = [];
  for (const rc of pairs) {
    const cc = cand.get(rc.name)!;
    const nr = countNonFinite(rc.data), nc = countNonFinite(cc.data);
    if ((nr || nc) && !first) {
      const arm = nr && nc ? "both" : nr ? "reference" : "candidate";
      first = { arm, hook: rc.name, layer: layerOf(rc.name), count: Math.max(nr, nc), total: rc.data.length };
      findings.push(`non-finite values (NaN/Inf) first appear at ${rc.name} in the ${arm === "both" ? "reference and candidate" : arm} (${Math.max(nr, nc)} of ${rc.data.length} values); metrics below cover only positions where both arms are finite`);
    }
    if (rc.name === "hook_logits") {
      const [a, b, rows] = nr || nc ? finiteRows(rc.data, cc.data, rc.cols) : [rc.data, cc.data, rc.rows];
      if (rows > 0) logits = logitsError(a, b, rc.cols);
      else findings.push("no logits row is finite in both arms: no KL divergence or top-1 agreement");
      continue;
    }
    const [a, b] = nr || nc ? finitePairs(rc.data, cc.data) : [rc.data, cc.data];
    const m = tensorError(a, b);
    layers.push({ hook: rc.name, layer: layerOf(rc.name), ...m, ...(nr || nc ? { nonfinite: { reference: nr, candidate: nc, values: rc.data.length } } : {}) });
  }
  return { layers, ...(logits ? { logits } : {}), ...(first ? { first_nonfinite: first } : {}), ...(findings.length ? { findings } : {}) };
}

/** Per-layer weight error when the arms run the same model file with different `weights` (else undefined). */
function weightsOfArms(env: ArmEnv[], cmp: { findings?: string[] }): LayerWeightError[] | undefined {
  const path = (m: EngineModel) => (m as { path?: string }).path;
  const w = env.map((e) => e.session.toggles()[WEIGHTS_TOGGLE] ?? "as-loaded");
  if (sameWeights(w[0], w[1]) || !path(env[0].model) || path(env[0].model) !== path(env[1].model)) return undefined;
  try {
    return weightError(path(env[0].model)!, optionFromToggle(w[0]), optionFromToggle(w[1]));
  } catch (e) {
    (cmp.findings ??= []).push(`no per-layer weight error: ${(e as Error).message}`);
    return undefined;
  }
}

/** The kvCache value and each layer's attention value an arm ran with (its session's toggles after the run). */
function armKv(session: EngineSession, nL: number): KvArm[] {
  const t = session.toggles();
  const att = t.attention;
  return Array.from({ length: nL }, (_, l) => ({
    kvCache: String(t.kvCache ?? "bf16"), attention: String((Array.isArray(att) ? att[l] : att) ?? "flash-bf16"),
  }));
}

/** Per-layer K/V error of both arms from the reference arm's K/V captures (else a finding saying why not). */
function kvOfArms(model: EngineModel, kvCaps: Capture[], T: number, arms: KvArm[][], cmp: { findings?: string[] }) {
  const c = model.config, nL = c.num_hidden_layers, d = c.head_dim;
  const get = (h: string, l: number) => kvCaps.find((x) => x.name === hookName(h, l))?.data;
  const k = Array.from({ length: nL }, (_, l) => get("attn.hook_k", l)), v = Array.from({ length: nL }, (_, l) => get("attn.hook_v", l));
  if (k.some((x) => !x) || v.some((x) => !x) || arms.length < 2) {
    (cmp.findings ??= []).push("no per-layer K/V error: the engine returned no attn.hook_k / attn.hook_v captures");
    return undefined;
  }
  return kvError(k as Float32Array[], v as Float32Array[], T, c.num_key_value_heads, d, arms[0], arms[1]);
}

/** Phase decode: an arm's captures from ONE decode step, the same input for both arms (the prompt's tokens but the last
 *  prefilled, then the last decoded with the hooks set). The engine's captures hold the last step's values, so the
 *  hooks are set only after the prefill. The sequence and the capture list are reset afterwards. */
function decodeCaptures(env: ArmEnv, toggles: ToggleValues, tokens: number[], hooks: string[]): Capture[] {
  const { model, session: s } = env;
  applyToggles(model, s, toggles);
  s.setProfiling(false); // not timed here (the timing runs are): no op records to pile up
  s.setSampling(0, { temperature: 0 });
  s.reset(0);
  try {
    s.setCapture([]);
    s.prefill(0, tokens.slice(0, -1));
    s.setCapture(hooks);
    s.decode([0], [tokens[tokens.length - 1]]);
    return s.captures();
  } finally {
    s.reset(0);
    s.setCapture([]);
  }
}

function promptTokens(model: EngineModel, p: PromptSpec): number[] {
  if (p.tokens) return p.tokens;
  if (p.messages) return model.tokenizer.applyChatTemplate(p.messages);
  return model.tokenizer.encode(p.prompt ?? "");
}

export async function recordQuantError(model: EngineModel, session: EngineSession, spec: QuantSpec,
  o: {
    onEvent?: (ev: RunEvent | { type: "arm"; arm: string; repeat: number } | { type: "perplexity"; arm: string; window: number; windows: number; ppl: number | null }) => void;
    signal?: AbortSignal;
    /** Models other than `model` for either arm (same shapes). */
    reference?: ArmEnv; candidate?: ArmEnv;
  } = {}): Promise<Profile> {
  const env: ArmEnv[] = [o.reference ?? { model, session }, o.candidate ?? { model, session }];
  const shapeErr = sameShapes(env[0].model, env[1].model);
  if (shapeErr) throw new Error(shapeErr);
  const hooks = spec.hooks?.length ? spec.hooks : defaultQuantHooks(model.config.num_hidden_layers);
  const phase: QuantPhase = spec.phase ?? "prefill";
  const decode = phase === "decode";
  // Arms that differ in kvCache or attention also get the per-layer K/V error (engine/measure/kv-error.ts): the
  // reference arm's K/V captures (not compared as hooks) and every layer's attention output (compared). It reads
  // the prompt's K/V from a prefill, so phase decode leaves it out (a finding says so).
  const nLayers = model.config.num_hidden_layers;
  const armsDifferInKv = ["kvCache", "attention"].some((id) => JSON.stringify(spec.reference.toggles[id]) !== JSON.stringify(spec.candidate.toggles[id]));
  const kvDiff = armsDifferInKv && !decode;
  const kvHooks = kvDiff ? Array.from({ length: nLayers }, (_, l) => [hookName("attn.hook_k", l), hookName("attn.hook_v", l)]).flat().filter((h) => !hooks.includes(h)) : [];
  const zHooks = kvDiff ? Array.from({ length: nLayers }, (_, l) => hookName("attn.hook_z", l)).filter((h) => !hooks.includes(h)) : [];
  const kvArms: KvArm[][] = [];
  const repeats = Math.max(1, Math.min(20, spec.repeats ?? 3));
  const sampling: SamplingSpec = { temperature: 0, topK: 0, topP: 1, seed: 0 };
  const arms = [spec.reference, spec.candidate];
  // One tokenization (the candidate's tokenizer) so both arms see the same ids even across model files.
  const tokens = promptTokens(env[1].model, spec.prompt);
  if (!tokens.length) throw new Error("the prompt tokenized to no tokens");
  if (decode && tokens.length < 2) {
    throw new Error(`phase decode needs a prompt of at least 2 tokens (all but the last are prefilled, the last is the measured decode step); this one has ${tokens.length}: lengthen the prompt or measure phase prefill`);
  }
  // phase decode: timed over a few decode steps after the prompt but its last token (the captured step's position)
  const timed = decode ? { tokens: tokens.slice(0, -1), maxTokens: DECODE_TIMED_TOKENS } : { tokens, maxTokens: 1 };
  const caps: Capture[][] = [];
  const layerMs: number[][][] = [[], []]; // arm → repeat → per-layer ms (per prefill, or mean per decode step)
  const untimed: string[] = [];           // phase decode: arms whose timing runs stopped before any decode step
  let lastProfile: Profile | null = null;
  for (let a = 0; a < 2; a++) {
    if (decode) {
      if (o.signal?.aborted) throw new Error("cancelled");
      caps[a] = decodeCaptures(env[a], arms[a].toggles, tokens, hooks);
    }
    for (let r = 0; r < repeats; r++) {
      if (o.signal?.aborted) throw new Error("cancelled");
      o.onEvent?.({ type: "arm", arm: arms[a].label, repeat: r });
      const capture = !decode && r === 0;
      const res = await recordRun(env[a].model, env[a].session, {
        id: `${spec.id}-${a}`, prompts: [timed], maxTokens: timed.maxTokens, sampling,
        toggles: arms[a].toggles, profiling: true, capture: capture ? [...hooks, ...zHooks, ...kvHooks] : [], label: arms[a].label,
      }, { onEvent: o.onEvent, signal: o.signal, keepCaptures: capture });
      if (capture) {
        caps[a] = res.captures[0] ?? [];
        kvArms[a] = armKv(env[a].session, nLayers);
      }
      const lm = latencyMatrix(res.profile, phase); // decode: the mean per step
      if (decode && lm.steps === 0 && !untimed.includes(arms[a].label)) untimed.push(arms[a].label);
      const perLayer: number[] = [];
      lm.layers.forEach((l, i) => { if (l >= 0) perLayer[l] = lm.ms[i].reduce((x, y) => x + y, 0); });
      layerMs[a].push(perLayer);
      if (a === 1) lastProfile = res.profile;
    }
  }
  const isKv = (c: Capture) => kvHooks.includes(c.name);
  const cmp = compareCaptures((caps[0] ?? []).filter((c) => !isKv(c)), (caps[1] ?? []).filter((c) => !isKv(c)));
  const weights = weightsOfArms(env, cmp);
  const kv = kvDiff ? kvOfArms(model, (caps[0] ?? []).filter(isKv), tokens.length, kvArms, cmp) : undefined;
  let perplexity: QuantError["perplexity"];
  if (spec.perplexity) {
    const src: TextSource = spec.perplexity.text === "brown" ? { kind: "brown" } : { kind: "text", text: spec.perplexity.text.text };
    const { tokens: ptoks, name } = textTokens(env[1].model, src, spec.perplexity.maxTokens);
    const r = await runPerplexity({
      candidate: { ...env[1], toggles: spec.candidate.toggles, label: spec.candidate.label },
      reference: { run: { ...env[0], toggles: spec.reference.toggles, label: spec.reference.label } },
      tokens: ptoks, ctx: spec.perplexity.ctx, phase, signal: o.signal,
      onProgress: (p) => o.onEvent?.({ type: "perplexity", arm: p.arm, window: p.window, windows: p.windows, ppl: p.ppl }),
    });
    const rp = r.reference!, cp = r.candidate, k = cp.kl;
    perplexity = {
      reference: rp.ppl, candidate: cp.ppl, delta: rp.ppl !== null && cp.ppl !== null ? cp.ppl - rp.ppl : null,
      text: name, tokens: ptoks.length, ctx: cp.ctx, score: cp.score, reference_se: rp.ppl_se, candidate_se: cp.ppl_se,
      kl_mean: k?.mean ?? null, kl_se: k?.se ?? null, kl_p99: k?.p99 ?? null, kl_max: k?.max ?? null,
      top1_agreement: k?.top1_agreement ?? null, top_k: k?.top_k, nonfinite_reference: rp.nonfinite_rows, nonfinite_candidate: cp.nonfinite_rows,
    };
    for (const [arm, x] of [["reference", rp], ["candidate", cp]] as const) {
      if (x.nonfinite_rows) (cmp.findings ??= []).push(`perplexity text: ${x.nonfinite_rows} scored positions of the ${arm} had non-finite logits (first at token ${x.first_nonfinite_token})`);
    }
  }
  const median = (xs: number[]) => { const s = xs.filter((x) => x !== undefined).sort((a, b) => a - b); return s.length ? s[(s.length - 1) >> 1] : 0; };
  const nL = model.config.num_hidden_layers;
  const refMs = Array.from({ length: nL }, (_, l) => median(layerMs[0].map((r) => r[l])));
  const candMs = Array.from({ length: nL }, (_, l) => median(layerMs[1].map((r) => r[l])));
  if (decode && armsDifferInKv) (cmp.findings ??= []).push("the arms differ in kvCache or attention, but the per-layer K/V error is measured in phase prefill only: measure phase prefill for it (the decode step's per-layer errors do include the effect of the K/V the prefill cached)");
  for (const arm of untimed) (cmp.findings ??= []).push(`phase decode: the timing runs of ${arm} stopped (end of sequence) before any decode step, so its per-layer times are 0: use another prompt`);
  const notes: string[] = [...(cmp.findings ?? [])];
  if (!caps[0]?.length) notes.push("the engine returned no captures: no per-layer error (does this backend implement activation hooks?)");
  const base = lastProfile!;
  const models = env[0].model !== env[1].model ? { reference_model: spec.reference.model ?? env[0].model.id, candidate_model: spec.candidate.model ?? env[1].model.id } : {};
  const profile = {
    schema: "qwen-workbench/profile", version: PROFILE_SCHEMA_VERSION, id: spec.id, kind: "quant-error",
    manifest: { ...base.manifest, toggles: base.manifest.toggles, label: `${spec.candidate.label} vs ${spec.reference.label}`, command: spec.command },
    summary: {
      ...base.summary,
      reference_toggles: spec.reference.toggles, candidate_toggles: spec.candidate.toggles,
      layer_ms: { reference: refMs, candidate: candMs, unit: decode ? "ms per decode step (median)" : "ms per prefill (median)", repeats },
    },
    kernels: base.kernels, ops: base.ops, tokens: base.tokens,
    quant_error: [{ reference_label: spec.reference.label, candidate_label: spec.candidate.label, ...models, phase, ...cmp, ...(perplexity ? { perplexity } : {}), ...(weights ? { weights } : {}), ...(kv?.length ? { kv } : {}) }],
    ...(notes.length ? { notes } : {}),
  } satisfies Profile;
  // A schema failure names the field instead of dumping every issue (the measurement's numbers are in the task log).
  const r = Profile.safeParse(profile);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new Error(`quant-error profile: invalid value at ${i.path.join(".")}: ${i.message} (${r.error.issues.length} issue(s))`);
  }
  return r.data;
}
