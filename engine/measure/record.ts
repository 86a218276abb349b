// Recording runs into profiles: the one function the web worker and the notebooks both call to run a prompt
// (or a prompt set) under given toggles and sampling, stream its tokens and per-layer metrics, and get back a
// validated Profile. Replays are deterministic: every toggle of the registry is set explicitly (unspecified
// ones to their default), each prompt runs in a freshly reset sequence with its own seed.
import type { EngineModel, EngineSession, Capture, GenerateEvent, SparseOptions, ToggleDef } from "../api.ts";
import {
  PROFILE_SCHEMA_VERSION, Profile, type CountersMeta, type HostSpan, type OpColumns, type ProfilingMode, type ToggleValues,
} from "./profile.ts";
import { stepTimes, sumCheck } from "./fidelity.ts";
import { appendCounters, emptyCounterColumns } from "./counters.ts";
import { z } from "zod";
import { modelManifest } from "./manifest.ts";
import { machineMark, othersShare } from "./bench-core.ts";
import { mergeResults, type PassMeasure, type RecordResult } from "./passes.ts";
import { quantile } from "./stats.ts";
import { opName } from "../catalog.ts";
import { WEIGHTS_TOGGLE } from "../formats/requant.ts";
import { sparseSummary } from "../sparse.ts";
import { PARALLEL_TOGGLE } from "../formats/parallel.ts";
import { speculativeGenerate, TOGGLE_VALUES_NEEDING_INPUT, type SpecDoneEvent, type SpecHost, type SpecSession } from "../spec/draft.ts";
import { mergeTraces, summarizeSpec, type SpecTrace } from "../spec/stats.ts";
import { eagleGenerate } from "../spec/eagle.ts";
import type { TreeParams } from "../spec/eagle-tree.ts";

export const SamplingSpec = z.object({
  temperature: z.number().min(0).max(10).default(0),
  topK: z.number().int().min(0).max(100000).default(0),
  topP: z.number().gt(0).max(1).default(1),
  seed: z.number().int().min(0).max(2 ** 31 - 1).default(0),
}).strict();
export type SamplingSpec = z.infer<typeof SamplingSpec>;

export const PromptSpec = z.object({
  prompt: z.string().max(200_000).optional(),
  messages: z.array(z.object({ role: z.string().max(32), content: z.string().max(200_000) }).strict()).max(256).optional(),
  tokens: z.array(z.number().int().min(0)).max(200_000).optional(),
  seed: z.number().int().min(0).max(2 ** 31 - 1).optional(),
  maxTokens: z.number().int().min(1).max(8192).optional(),
  sampling: SamplingSpec.partial().optional(),
}).strict().refine((p) => [p.prompt, p.messages, p.tokens].filter((x) => x !== undefined).length === 1,
  { message: "each prompt needs exactly one of prompt, messages or tokens" });
export type PromptSpec = z.infer<typeof PromptSpec>;

/** A saved prompt set (JSON, or JSONL with one PromptSpec per line). */
export const PromptSet = z.object({
  name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, "name: 1–64 of A-Z a-z 0-9 . _ -"),
  description: z.string().max(2000).optional(),
  prompts: z.array(PromptSpec).min(1).max(1000),
  sampling: SamplingSpec.partial().optional(),
  maxTokens: z.number().int().min(1).max(8192).optional(),
}).strict();
export type PromptSet = z.infer<typeof PromptSet>;

/** Parses a prompt set from JSON (an object or an array of prompts) or JSONL text. */
export function parsePromptSet(text: string, name: string): PromptSet {
  const t = text.trim();
  let raw: unknown;
  let whole: unknown;
  try { whole = JSON.parse(t); } catch { whole = undefined; }
  // One JSON document: a set object ({prompts: [...]}), an array of prompts, or — a one-line JSONL file — a
  // single prompt object (D8). Anything else is JSONL, one prompt per line.
  if (Array.isArray(whole)) raw = { name, prompts: whole };
  else if (whole && typeof whole === "object") raw = "prompts" in whole ? whole : { name, prompts: [whole] };
  else raw = { name, prompts: t.split(/\r?\n/).filter((l) => l.trim()).map((l, i) => {
    try { return JSON.parse(l); } catch { throw new Error(`prompt set line ${i + 1}: not JSON`); }
  }) };
  if (raw && typeof raw === "object" && !Array.isArray(raw) && !(raw as { name?: unknown }).name) (raw as { name: string }).name = name;
  return PromptSet.parse(raw);
}

export interface RunSpec {
  id: string;
  prompts: PromptSpec[];
  maxTokens: number;
  sampling: SamplingSpec;
  toggles: ToggleValues;
  profiling: ProfilingMode | boolean; // true: the low-overhead mode (kernels; events where CUPTI is missing)
  capture: string[];
  label?: string;
  command?: string;
  promptSetName?: string;
  /** Unrecorded passes over the prompt set before the measured ones (default 0; web runs and ablations use 1). */
  warmup?: number;
  /** Measured passes over the prompt set (default 1); the summary is the median over them. */
  repeats?: number;
  /** Speculative decoding with this draft model (toggle speculative = draft) and k draft tokens per step. */
  draft?: { model: string; k: number; root?: string };
  /** Sparse prefill budgets (toggle sparsePrefill): the run gets its own session with them (engine/sparse.ts). */
  sparse?: SparseOptions;
  /** Speculative decoding with this EAGLE head directory (toggle speculative = eagle) and its EAGLE-2 tree. */
  eagle?: { head: string; depth: number; topK: number; budget: number; root?: string };
  /** Decode steps per engine call of plain decoding (default DEFAULT_STEPS_PER_SYNC; 1 = one synchronization per
   *  token). Profiled or not alike, so the profiling on / off arms of an ablation compare the same execution. */
  stepsPerSync?: number;
}

/** Steps per engine call of a recorded run: on CUDA the queued steps hide the host's launch work, which under CUPTI is
 * most of what kernels mode costs a small model (H100, seventh run: 0.5B kernels-mode overhead 6.8 % at 1, 0.35 % at
 * 8), and token events come in bursts of 8 (a few ms on a GPU). */
export const DEFAULT_STEPS_PER_SYNC = 8;

/** Least time between two reads of the records during a prompt (the live step events come this often at most). */
const DRAIN_MS = 100;

export type RunEvent =
  | { type: "start"; prompts: number; model: string; toggles: ToggleValues }
  | { type: "prefill"; prompt: number; promptTokens: number; ms: number }
  | { type: "token"; prompt: number; index: number; token: number; text: string; ms: number; phase: "prefill" | "decode" }
  | { type: "step"; prompt: number; step: number; phase: "prefill" | "decode"; ms: number; layers: { layer: number; ms: number }[]; ops: Record<string, number> }
  | { type: "prompt-done"; prompt: number; reason: string; text: string; ttftMs: number; tokens: number }
  | { type: "repeat"; repeat: number; repeats: number; warmup: boolean };

export interface RecordOptions {
  onEvent?: (ev: RunEvent) => void;
  signal?: AbortSignal;
  /** Yield to the event loop between steps so cancel messages and streams get through (default true). */
  yieldToLoop?: boolean;
  keepCaptures?: boolean;
  /** Speculative decoding (engine/spec/): with a draft model generations go through speculativeGenerate, with an
   *  EAGLE head (`tree` given, `draft` = the head session) through eagleGenerate. */
  speculative?: { draft: EngineSession; host: SpecHost; k: number; label: string; tree?: TreeParams };
}

// PassMeasure and RecordResult live with the code that merges passes (passes.ts), so passes.ts needs nothing
// from this file (no import cycle).
export type { PassMeasure, RecordResult } from "./passes.ts";


export function newProfileId(prefix = "run"): string {
  const d = new Date().toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
  return `${prefix}-${d}-${Math.random().toString(36).slice(2, 8)}`;
}

// The one toggle validator is engine/toggles.ts; re-exported for the web routes that import it from here.
export { checkToggles } from "../toggles.ts";

/** The value a toggle takes when a run does not name it: its default, or (when the backend does not implement
 *  the default, e.g. graphs=on on the CPU) the first value the backend implements. */
export function effectiveDefault(def: ToggleDef, backend: "cpu" | "cuda"): string | null {
  const impl = def.backends[backend];
  if (!impl || impl.includes(def.default)) return def.default;
  return impl[0] ?? null;
}

/** Sets every registry toggle: the given value or the effective default (so a replay never inherits state).
 *  Toggles already at the wanted value are left alone (some, like weights, re-convert on change). */
export function applyToggles(model: EngineModel, s: EngineSession, toggles: ToggleValues): void {
  const n = model.config.num_hidden_layers;
  const cur = s.toggles();
  const same = (a: unknown, b: unknown) => {
    if (Array.isArray(a) && !Array.isArray(b)) return a.every((x) => x === b);
    if (!Array.isArray(a) && Array.isArray(b)) return b.every((x) => x === a);
    return JSON.stringify(a) === JSON.stringify(b);
  };
  for (const def of model.toggleRegistry()) {
    // weights and parallel are model options (engine/formats/requant.ts, parallel.ts): unnamed, they stay as loaded.
    if ((def.id === WEIGHTS_TOGGLE || def.id === PARALLEL_TOGGLE) && toggles[def.id] === undefined) continue;
    const v = toggles[def.id] ?? effectiveDefault(def, model.backend);
    if (v === null || same(v, cur[def.id])) continue;
    if (Array.isArray(v)) v.forEach((x, l) => { if (l < n) s.setToggle(def.id, x, l); });
    else s.setToggle(def.id, v);
  }
}

const yieldLoop = () => new Promise<void>((r) => setImmediate(r));

function emptyCols(): OpColumns {
  return { step: [], phase: [], layer: [], op: [], kernel: [], t_start_ns: [], t_end_ns: [], flops: [], bytes: [], n_tokens: [], overlap_ns: [], rank: [] };
}

function captureStats(c: Capture) {
  let ss = 0, mx = 0;
  for (const v of c.data) { ss += v * v; const a = Math.abs(v); if (a > mx) mx = a; }
  return { name: c.name, rows: c.rows, cols: c.cols, rms: Math.sqrt(ss / Math.max(1, c.data.length)), max_abs: mx };
}

/**
 * Runs `spec` on `session` and returns the profile: spec.warmup unrecorded passes (no events but a "repeat"
 * one), then spec.repeats measured passes; the first measured pass streams its events, later ones announce
 * themselves with "repeat". The summary is the median over the measured passes (mergeResults). Errors propagate
 * (the caller marks the run failed).
 */
export async function recordRun(model: EngineModel, session: EngineSession, spec: RunSpec, o: RecordOptions = {}): Promise<RecordResult> {
  const warmup = Math.max(0, spec.warmup ?? 0), repeats = Math.max(1, spec.repeats ?? 1);
  const emit = o.onEvent ?? (() => {});
  for (let w = 0; w < warmup; w++) {
    emit({ type: "repeat", repeat: w, repeats: warmup, warmup: true });
    const r = await recordPass(model, session, spec, { ...o, onEvent: undefined, keepCaptures: false });
    if (r.cancelled) {
      const m = mergeResults([r], { warmup: 0 });
      m.profile.notes = [...(m.profile.notes ?? []), "cancelled during the warm-up: these numbers come from the unfinished warm-up pass"];
      return m;
    }
  }
  const passes: RecordResult[] = [];
  for (let r = 0; r < repeats; r++) {
    if (repeats > 1) emit({ type: "repeat", repeat: r, repeats, warmup: false });
    const res = await recordPass(model, session, spec, r === 0 ? o : { ...o, onEvent: undefined });
    // A pass cut short by a cancel only counts when no pass finished (the partial profile is still saved).
    if (!res.cancelled || !passes.length) passes.push(res);
    if (res.cancelled) {
      passes[0] = { ...passes[0], cancelled: true };
      if (r > 0) {
        const note = `cancelled during repetition ${r + 1} of ${repeats}: the summary covers the ${r} finished one(s)`;
        passes[0] = { ...passes[0], profile: { ...passes[0].profile, notes: [...(passes[0].profile.notes ?? []), note] } };
      }
      break;
    }
  }
  return mergeResults(passes, { warmup });
}

/** One pass over the prompt set (what recordRun repeats). */
async function recordPass(model: EngineModel, session: EngineSession, spec: RunSpec, o: RecordOptions): Promise<RecordResult> {
  const emit = o.onEvent ?? (() => {});
  const doYield = o.yieldToLoop ?? true;
  applyToggles(model, session, spec.toggles);
  for (const [id, n] of Object.entries(TOGGLE_VALUES_NEEDING_INPUT)) {
    const v = spec.toggles[id];
    if (typeof v === "string" && n.values.includes(v) && !(id === "speculative" && o.speculative)) throw new Error(`toggle ${id} = ${v} needs ${n.needs}`);
  }
  session.setProfiling(spec.profiling);
  session.setCapture(spec.capture);
  const toggles = session.toggles();
  emit({ type: "start", prompts: spec.prompts.length, model: model.id, toggles });
  const cols = emptyCols();
  const kernels: string[] = [];
  const tokenEvents: Profile["tokens"] = [];
  const t0 = performance.now();
  const mark0 = machineMark();
  let stepBase = 0, dropped = 0;
  let countersMeta: CountersMeta | undefined;  // profiling mode counters: what the GPU could measure
  const ttfts: number[] = [], tpots: number[] = [];
  let prefillTokens = 0, decodeTokens = 0, prefillMs = 0, decodeMs = 0;
  const texts: string[] = [], allTokens: number[][] = [], captures: Capture[][] = [], captureSummary: unknown[] = [];
  const promptsManifest: NonNullable<Profile["manifest"]["prompts"]> = [];
  let cancelled = false;
  let promptSteps: number[] = [];             // profile step ids of the current prompt, in order
  const stepWalls = new Map<number, number>(); // profile step id -> wall ms of its engine call (÷ its steps)
  const stepCalls = new Map<number, number>(); // profile step id -> the step that opened its engine call
  const hostSpans: HostSpan[] = [];
  const specTraces: SpecTrace[] = [];
  if (spec.profiling) session.takeRecords(); // drop anything left from before
  // speculative arms decode through their own loops, one target step per call
  const stepsPerSync = o.speculative ? 1 : spec.stepsPerSync ?? DEFAULT_STEPS_PER_SYNC;
  let lastDrain = performance.now();

  const drain = (prompt: number) => {
    lastDrain = performance.now();
    if (!spec.profiling) return;
    const r = session.takeRecords();
    const before = stepBase;
    dropped += r.dropped;
    if (r.countersMeta) countersMeta = r.countersMeta;
    const kmap = r.kernels.map((k) => { let i = kernels.indexOf(k); if (i < 0) { kernels.push(k); i = kernels.length - 1; } return i; });
    const stepMap = new Map<string, number>();
    const perStep = new Map<number, { phase: "prefill" | "decode"; ms: number; layers: Map<number, number>; ops: Record<string, number> }>();
    for (let i = 0; i < r.ops.step.length; i++) {
      const key = `${r.ops.phase[i]}:${r.ops.step[i]}`;
      let gs = stepMap.get(key);
      if (gs === undefined) { gs = stepBase++; stepMap.set(key, gs); }
      cols.step.push(gs); cols.phase.push(r.ops.phase[i]); cols.layer.push(r.ops.layer[i]); cols.op.push(r.ops.op[i]);
      cols.kernel.push(kmap[r.ops.kernel[i]] ?? 0); cols.t_start_ns.push(r.ops.t_start_ns[i]); cols.t_end_ns.push(r.ops.t_end_ns[i]);
      cols.flops.push(r.ops.flops[i]); cols.bytes.push(r.ops.bytes[i]); cols.n_tokens.push(r.ops.n_tokens[i]);
      cols.overlap_ns!.push(r.ops.overlap_ns?.[i] ?? 0);
      cols.rank!.push(r.ops.rank?.[i] ?? 0);
      if (r.ops.counters) appendCounters(cols.counters ??= emptyCounterColumns(cols.step.length - 1), r.ops.counters, i, i + 1);
      else if (cols.counters) appendCounters(cols.counters, undefined, i, i + 1);
      // tensor parallelism: every rank runs the same ops in step (the collectives wait for the slowest), so the step
      // summaries count rank 0's records only; the columns keep every rank's
      if ((r.ops.rank?.[i] ?? 0) !== 0) continue;
      const ms = (r.ops.t_end_ns[i] - r.ops.t_start_ns[i]) / 1e6;
      let st = perStep.get(gs);
      if (!st) perStep.set(gs, (st = { phase: r.ops.phase[i] === 0 ? "prefill" : "decode", ms: 0, layers: new Map(), ops: {} }));
      st.ms += ms;
      st.layers.set(r.ops.layer[i], (st.layers.get(r.ops.layer[i]) ?? 0) + ms);
      const op = opName(r.ops.op[i]);
      st.ops[op] = (st.ops[op] ?? 0) + ms;
    }
    for (let s = before; s < stepBase; s++) promptSteps.push(s);
    for (const [step, st] of perStep) emit({
      type: "step", prompt, step, phase: st.phase, ms: st.ms,
      layers: [...st.layers].sort((a, b) => a[0] - b[0]).map(([layer, ms]) => ({ layer, ms })), ops: st.ops,
    });
  };

  for (let pi = 0; pi < spec.prompts.length; pi++) {
    const p = spec.prompts[pi];
    const samp = { ...spec.sampling, ...(p.sampling ?? {}) };
    const seed = p.seed ?? samp.seed;
    const maxTokens = p.maxTokens ?? spec.maxTokens;
    const runT0 = performance.now();
    promptSteps = [];
    let promptTokens = 0;
    const toks: number[] = [];
    let text = "";
    let done: Extract<GenerateEvent, { type: "done" }> | null = null;
    const gopts = {
      prompt: p.prompt, messages: p.messages, tokens: p.tokens, maxTokens, seq: 0, signal: o.signal,
      temperature: samp.temperature, topK: samp.topK, topP: samp.topP, seed, stepsPerSync,
    };
    const sp = o.speculative;
    const gen = sp?.tree ? eagleGenerate(session as SpecSession, sp.draft, sp.host, { ...gopts, tree: sp.tree })
      : sp ? speculativeGenerate(session as SpecSession, sp.draft, sp.host, { ...gopts, k: sp.k }) : session.generate(gopts);
    for await (const ev of gen) {
      if (ev.type === "prefill") {
        promptTokens = ev.promptTokens;
        emit({ type: "prefill", prompt: pi, promptTokens: ev.promptTokens, ms: ev.ms });
      } else if (ev.type === "token") {
        toks.push(ev.token);
        tokenEvents.push({ index: ev.index, token: ev.token, text: ev.text, t_ms: performance.now() - runT0, phase: ev.phase });
        const e0 = session.clockNs();
        emit({ type: "token", prompt: pi, index: ev.index, token: ev.token, text: ev.text, ms: ev.ms, phase: ev.phase });
        if (spec.profiling) hostSpans.push({ kind: "emit", prompt: pi, t_start_ns: e0, t_end_ns: session.clockNs() });
      } else if (ev.type === "done") {
        text = ev.text;
        done = ev;
      }
      // the records are read at most every DRAIN_MS (and after the prompt): on CUDA each read flushes CUPTI's
      // buffers, work that lands on the steps around it
      if (performance.now() - lastDrain >= DRAIN_MS) drain(pi);
      if (doYield) await yieldLoop();
    }
    drain(pi);
    if (!done) throw new Error("engine generate() ended without a done event");
    if (done.reason === "cancelled") cancelled = true;
    // steps were numbered in the order they ran: the prefill, then one per decode call
    // speculative: one target step per verify pass, whatever the tokens it emitted
    const spt = "speculative" in done ? (done as SpecDoneEvent).speculative : undefined;
    if (spt) specTraces.push(spt);
    [done.ttftMs, ...(spt ? spt.verifyMs : done.tpotMs)].forEach((ms, i) => { if (i < promptSteps.length) stepWalls.set(promptSteps[i], ms); });
    if (done.tokenizeNs) hostSpans.push({ kind: "tokenize", prompt: pi, t_start_ns: done.tokenizeNs[0], t_end_ns: done.tokenizeNs[1] });
    // a call that ran several decode steps is attributed to its first
    let firstStep = 0;
    (done.callsNs ?? []).forEach(([a, b], i) => {
      hostSpans.push({ kind: "ffi", prompt: pi, ...(firstStep < promptSteps.length ? { step: promptSteps[firstStep] } : {}), t_start_ns: a, t_end_ns: b });
      const n = done!.callSteps?.[i] ?? 1;
      for (let j = firstStep; j < Math.min(firstStep + n, promptSteps.length); j++) stepCalls.set(promptSteps[j], promptSteps[firstStep]);
      firstStep += n;
    });
    texts.push(text);
    allTokens.push(toks);
    ttfts.push(done.ttftMs);
    tpots.push(...done.tpotMs);
    prefillTokens += promptTokens;
    decodeTokens += Math.max(0, toks.length - 1);
    if (done.prefillTokS > 0) prefillMs += (promptTokens / done.prefillTokS) * 1000;
    decodeMs += done.tpotMs.reduce((a, b) => a + b, 0);
    promptsManifest.push({ text: p.prompt ?? (p.messages ? JSON.stringify(p.messages) : undefined), tokens: promptTokens, seed });
    if (spec.capture.length) {
      const caps = session.captures();
      captureSummary.push({ prompt: pi, hooks: caps.map(captureStats) });
      captures.push(o.keepCaptures ? caps : []);
    } else captures.push([]);
    emit({ type: "prompt-done", prompt: pi, reason: done.reason, text, ttftMs: done.ttftMs, tokens: toks.length });
    if (cancelled || o.signal?.aborted) { cancelled = true; break; }
  }

  const others = othersShare(mark0, machineMark());
  const sortedTpot = [...tpots].sort((a, b) => a - b);
  const sortedTtft = [...ttfts].sort((a, b) => a - b);
  const notes: string[] = [];
  if (dropped) notes.push(`${dropped} op records were dropped by the engine (record buffer full)`);
  if (cancelled) notes.push("run cancelled before the end");
  if (spec.promptSetName) notes.push(`prompt set: ${spec.promptSetName}`);
  const profile: Profile = {
    schema: "qwen-workbench/profile",
    version: PROFILE_SCHEMA_VERSION,
    id: spec.id,
    kind: "run",
    manifest: modelManifest(model, {
      toggles,
      prompts: promptsManifest,
      sampling: { temperature: spec.sampling.temperature, top_k: spec.sampling.topK, top_p: spec.sampling.topP, seed: spec.sampling.seed },
      command: spec.command,
      label: spec.label,
    }),
    summary: {
      prefill_tokens: prefillTokens,
      decode_tokens: decodeTokens,
      ...(sortedTtft.length ? { ttft_ms: quantile(sortedTtft, 0.5) } : {}),
      ...(sortedTpot.length ? { tpot_ms: { median: quantile(sortedTpot, 0.5), p90: quantile(sortedTpot, 0.9), min: sortedTpot[0], max: sortedTpot[sortedTpot.length - 1] } } : {}),
      ...(prefillMs > 0 ? { prefill_tok_s: prefillTokens / (prefillMs / 1000) } : {}),
      ...(decodeMs > 0 ? { decode_tok_s: decodeTokens / (decodeMs / 1000) } : {}),
      wall_ms: performance.now() - t0,
      profiling: spec.profiling,
      profiling_mode: session.profilingMode,
      steps_per_sync: stepsPerSync,
      ...(session.kvInfo ? { kv: session.kvInfo() } : {}),  // KV-cache type and memory, shown next to the speeds
      ...sparseSummary(session),
      outputs: texts,
      ...(captureSummary.length ? { captures: captureSummary } : {}),
      ...(specTraces.length && o.speculative ? { speculative: summarizeSpec(mergeTraces(specTraces), o.speculative.label, true, o.speculative.tree) } : {}),
    },
    kernels,
    ...(spec.profiling && cols.step.length ? { ops: cols } : {}),
    ...(countersMeta ? { counters_meta: countersMeta } : {}),
    ...(spec.profiling && cols.step.length
      ? { fidelity: { mode: session.profilingMode, sum_check: sumCheck(stepTimes(cols, stepWalls, stepCalls)) }, host_spans: hostSpans }
      : {}),
    tokens: tokenEvents,
    output_text: texts.join("\n\n"),
    ...(notes.length ? { notes } : {}),
  };
  const s = profile.summary;
  const pass: PassMeasure = {
    ttft_ms: s.ttft_ms, tpot_ms: s.tpot_ms?.median, prefill_tok_s: s.prefill_tok_s, decode_tok_s: s.decode_tok_s,
    tpots, others: others === undefined ? null : Number(others.toFixed(3)),
  };
  return { profile: Profile.parse(profile), cancelled, captures, tokens: allTokens, passes: [pass] };
}
