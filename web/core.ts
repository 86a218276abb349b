// The engine side of the web workbench: one loaded model and one session, runs executed one at a time.
// EngineCore runs inside the Bun Worker (web/engine-worker.ts) in the server, and in-process in tests
// (LocalHost). It never touches HTTP or the file system: profiles go back to the caller, which writes them.
import type { EngineModel, EngineSession, OpenModel, OpenOptions, ToggleDef, QwenConfig, Progress } from "../engine/api.ts";
import type { DeviceManifest, Profile, ToggleValues } from "../engine/measure/profile.ts";
import { recordRun, type RunSpec, type RunEvent } from "../engine/measure/record.ts";
import { toggleSettingsProblem } from "../engine/toggles.ts";
import { recordQuantError, sameShapes, type ArmEnv, type QuantSpec } from "../engine/measure/quant-error.ts";
import { runPerplexity, textTokens, type PerplexityRunResult } from "../engine/measure/perplexity-run.ts";
import { DraftCache } from "../engine/spec/draft-cache.ts";
import { catalog as libraryCatalog, type Catalog } from "../engine/catalog.ts";
import type { PasskeySpec, PerplexitySpec } from "./protocol.ts";
import { runPasskey, type PasskeyResult } from "../engine/measure/passkey.ts";
import { optionFromToggle, outputFormat, sameWeights, withOutput, WEIGHTS_TOGGLE, type WeightsOption } from "../engine/formats/requant.ts";
import { PARALLEL_TOGGLE } from "../engine/formats/parallel.ts";

export interface ModelInfo {
  source: string;
  id: string;
  format: string;
  backend: "cpu" | "cuda";
  device: DeviceManifest;
  config: QwenConfig;
  weightBytes: number;
  weightTypes: Record<string, number>;
  hash: string;
  buildInfo: string;
  registry: ToggleDef[];
  profilingModes: string[];
  loadMs: number;
  /** The model's `weights` toggle value: one format, or one per layer (a load-time option, engine/formats/requant.ts). */
  weights: string | string[];
  /** The output matrix's (lm_head) format when not as loaded (weightsLayers.output; the toggle has no output). */
  weightsOutput?: string;
  /** The model's `parallel` toggle value (tensor parallelism, a load-time option: engine/formats/parallel.ts). */
  parallel?: string;
}

export type HostEvent =
  | RunEvent
  | { type: "progress"; stage: string; done: number; total: number; message?: string }
  | { type: "arm"; arm: string; repeat: number }
  | { type: "perplexity"; arm: string; window: number; windows: number; ppl: number | null }
  | { type: "passkey"; length: number; trial: number; done: number; total: number; correct: boolean };

export type PerplexityAnswer = PerplexityRunResult & { text: string };

/** root: the model root the source was confined to; the engine keeps every file it opens inside it.
 *  parallel: tensor parallelism (tp1 | tp2 | …), checked by the engine when it opens the model. */
export interface LoadOptions extends WeightsOption { backend: "auto" | "cpu" | "cuda"; threads?: number; root?: string; parallel?: string }

/** ModelInfo's weightsOutput of a model's weights option: present only when the lm_head is not as loaded. */
export function outputOf(weights: { weightsLayers?: Record<string, string> } | undefined): { weightsOutput?: string } {
  const o = outputFormat(weights);
  return o === "as-loaded" ? {} : { weightsOutput: o };
}

/** What the web app needs from the engine, wherever it runs (worker or in-process). */
export interface EngineHost {
  load(taskId: string, source: string, opts: LoadOptions, onEvent: (e: HostEvent) => void): Promise<ModelInfo>;
  run(taskId: string, spec: RunSpec, onEvent: (e: HostEvent) => void): Promise<{ profile: Profile; cancelled: boolean }>;
  quant(taskId: string, spec: QuantSpec, onEvent: (e: HostEvent) => void): Promise<Profile>;
  perplexity(taskId: string, spec: PerplexitySpec, onEvent: (e: HostEvent) => void): Promise<PerplexityAnswer>;
  /** A passkey run on the loaded model in its own session (its own max context, DCA and sparse options). */
  passkey(taskId: string, spec: PasskeySpec, onEvent: (e: HostEvent) => void): Promise<PasskeyResult>;
  cancel(taskId: string): void;
  /** Every op, hook, profiling-mode and toggle name of the engine (engine/catalog.ts); the same before any load. */
  catalog(): Promise<Catalog>;
  /** The model currently loaded (null before the first load and after an engine crash). */
  loaded(): ModelInfo | null;
  close(): Promise<void>;
}

/**
 * The web's one call of the engine's toggle validator (engine/toggles.ts): every toggle set of a request against
 * the model's registry, on its backend and layer count. The first problem as a message (it names the toggle
 * and the allowed values), or null. The runs route calls it for an early 400; EngineCore before it runs
 * (docs/ARCHITECTURE.md §How a toggle flows).
 */
export function toggleProblem(info: ModelInfo, ...sets: ToggleValues[]): string | null {
  for (const t of sets) {
    const bad = toggleSettingsProblem(info.registry, t, { backend: info.backend, nLayers: info.config.num_hidden_layers });
    if (bad) return bad;
  }
  return null;
}

const parallelOf = (v: string | string[] | undefined) => (typeof v === "string" ? { parallel: v } : {});

function refuseToggles(info: ModelInfo, ...sets: ToggleValues[]): void {
  const bad = toggleProblem(info, ...sets);
  if (bad) throw new Error(bad);
}

export class EngineCore {
  private model: EngineModel | null = null;
  private session: EngineSession | null = null;
  private info: ModelInfo | null = null;
  private loadOpts: LoadOptions | null = null;
  private aborts = new Map<string, AbortController>();
  private drafts: DraftCache;
  /** catalog: the engine's names (a fake engine gives its own toggles; the library's by default). */
  constructor(private openModel: OpenModel, readonly catalog: () => Catalog = libraryCatalog) { this.drafts = new DraftCache(openModel); }

  loaded(): ModelInfo | null { return this.info; }

  /**
   * Opens `source` and only then replaces the loaded model: a load that fails or is cancelled keeps the
   * previous one (D7). Both are in memory for a moment; the cancel flag is checked between tensors.
   */
  async load(taskId: string, source: string, opts: LoadOptions, onEvent: (e: HostEvent) => void): Promise<ModelInfo> {
    const t0 = performance.now();
    const ac = new AbortController();
    this.aborts.set(taskId, ac);
    try {
      const m = await this.openModel(source, {
        backend: opts.backend, threads: opts.threads, root: opts.root, signal: ac.signal, weights: opts.weights, weightsLayers: opts.weightsLayers,
        ...(opts.parallel !== undefined ? { parallel: opts.parallel as OpenOptions["parallel"] } : {}),
        onProgress: (p: Progress) => onEvent({ type: "progress", stage: p.stage, done: p.done, total: p.total, message: p.message }),
      });
      if (ac.signal.aborted) { m.close(); throw new Error("load cancelled"); }
      this.unload();
      this.model = m;
      this.session = m.newSession({ maxBatch: 1 });
      this.loadOpts = opts;
      this.info = {
        source, id: m.id, format: m.format, backend: m.backend, device: m.device, config: m.config,
        weightBytes: m.weightBytes, weightTypes: m.weightTypes, hash: m.hash, buildInfo: m.buildInfo,
        registry: m.toggleRegistry(), profilingModes: m.profilingModes(), loadMs: performance.now() - t0,
        weights: this.session.toggles()[WEIGHTS_TOGGLE] ?? "as-loaded",
        ...outputOf(m.weights),
        ...parallelOf(this.session.toggles()[PARALLEL_TOGGLE] ?? m.parallel),
      };
      return this.info;
    } finally {
      this.aborts.delete(taskId);
    }
  }

  private unload() {
    this.drafts.close();
    try { this.session?.close(); } catch { /* already gone */ }
    try { this.model?.close(); } catch { /* already gone */ }
    this.session = null; this.model = null; this.info = null;
  }

  private need(): { model: EngineModel; session: EngineSession; info: ModelInfo } {
    if (!this.model || !this.session || !this.info) throw new Error("no model loaded");
    return { model: this.model, session: this.session, info: this.info };
  }

  async run(taskId: string, spec: RunSpec, onEvent: (e: HostEvent) => void): Promise<{ profile: Profile; cancelled: boolean }> {
    const { model, session, info } = this.need();
    refuseToggles(info, spec.toggles);
    const ac = new AbortController();
    this.aborts.set(taskId, ac);
    try {
      // speculative = draft / eagle: the draft model or EAGLE head named by the run (engine/spec/)
      const sp = spec.draft ? { ...(await this.drafts.get(spec.draft.model, spec.draft.root, model, session)), k: spec.draft.k, label: spec.draft.model }
        : spec.eagle ? {
          ...(await this.drafts.getEagle(spec.eagle.head, spec.eagle.root, model, session)), k: spec.eagle.depth, label: spec.eagle.head,
          tree: { depth: spec.eagle.depth, topK: spec.eagle.topK, budget: spec.eagle.budget },
        } : undefined;
      // Sparse prefill budgets are session options: such a run gets its own session (same context), closed after.
      const s = spec.sparse ? model.newSession({ maxBatch: 1, maxContext: session.maxContext, sparse: spec.sparse }) : session;
      try {
        const r = await recordRun(model, s, spec, { onEvent, signal: ac.signal, ...(sp ? { speculative: sp } : {}) });
        return { profile: r.profile, cancelled: r.cancelled };
      } finally {
        if (s !== session) s.close();
      }
    } finally {
      this.aborts.delete(taskId);
    }
  }

  /** An arm on another model file than the loaded one, or on the loaded one with other `weights` or `parallel`
   *  (load-time options): opened on the same backend, closed by the caller. What the arm does not name stays as
   *  loaded on the same file, and at the file's defaults on another. */
  private async otherModel(source: string | undefined, onEvent: (e: HostEvent) => void, toggles: ToggleValues = {}): Promise<ArmEnv | undefined> {
    const { model, info } = this.need();
    const w = toggles[WEIGHTS_TOGGLE], par = toggles[PARALLEL_TOGGLE];
    const otherWeights = w !== undefined && !sameWeights(w, info.weights);
    if (Array.isArray(par)) throw new Error(`toggle ${PARALLEL_TOGGLE} is one value for the whole model (a load option), not one per layer`);
    const otherParallel = par !== undefined && par !== (info.parallel ?? par);
    if ((!source || source === info.source) && !otherWeights && !otherParallel) return undefined;
    const same = !source || source === info.source;
    if (same) source = info.source;
    const m = await this.openModel(source!, {
      backend: info.backend, threads: this.loadOpts?.threads, ...(same ? { root: this.loadOpts?.root } : {}),
      // another toggle value on the same file keeps the output format the loaded model has (the toggle has none)
      ...(w !== undefined ? withOutput(optionFromToggle(w), same ? info.weightsOutput : undefined)
        : same ? { weights: this.loadOpts?.weights, weightsLayers: this.loadOpts?.weightsLayers } : {}),
      ...parallelOf(par ?? (same ? this.loadOpts?.parallel : undefined)) as { parallel?: OpenOptions["parallel"] },
      onProgress: (p: Progress) => onEvent({ type: "progress", stage: p.stage, done: p.done, total: p.total, message: `${source}: ${p.message ?? ""}` }),
    });
    const bad = sameShapes(model, m);
    if (bad) { m.close(); throw new Error(bad); }
    return { model: m, session: m.newSession({ maxBatch: 1 }) };
  }

  async quant(taskId: string, spec: QuantSpec, onEvent: (e: HostEvent) => void): Promise<Profile> {
    const { model, session, info } = this.need();
    refuseToggles(info, spec.reference.toggles, spec.candidate.toggles);
    const ac = new AbortController();
    this.aborts.set(taskId, ac);
    const opened: ArmEnv[] = [];
    try {
      const reference = await this.otherModel(spec.reference.model, onEvent, spec.reference.toggles);
      if (reference) opened.push(reference);
      const candidate = await this.otherModel(spec.candidate.model, onEvent, spec.candidate.toggles);
      if (candidate) opened.push(candidate);
      return await recordQuantError(model, session, spec, { onEvent, signal: ac.signal, reference, candidate });
    } finally {
      for (const e of opened) e.model.close();
      this.aborts.delete(taskId);
    }
  }

  async perplexity(taskId: string, spec: PerplexitySpec, onEvent: (e: HostEvent) => void): Promise<PerplexityAnswer> {
    const { model, session, info } = this.need();
    refuseToggles(info, spec.toggles, spec.reference?.toggles ?? {});
    const ac = new AbortController();
    this.aborts.set(taskId, ac);
    let other: ArmEnv | undefined;
    try {
      const { tokens, name } = textTokens(model, spec.text === "brown" ? { kind: "brown" } : { kind: "text", text: spec.text.text }, spec.maxTokens);
      const ref = spec.reference;
      if (ref) other = await this.otherModel(ref.model, onEvent, ref.toggles);
      const r = await runPerplexity({
        candidate: { model, session, toggles: spec.toggles, label: spec.label ?? "candidate" },
        reference: ref ? { run: { ...(other ?? { model, session }), toggles: ref.toggles ?? {}, label: ref.label ?? "reference" } } : undefined,
        tokens, ctx: spec.ctx, score: spec.score, phase: spec.phase, signal: ac.signal,
        onProgress: (p) => onEvent({ type: "perplexity", arm: p.arm, window: p.window, windows: p.windows, ppl: p.ppl }),
      });
      return { ...r, text: name };
    } finally {
      other?.model.close();
      this.aborts.delete(taskId);
    }
  }

  async passkey(taskId: string, spec: PasskeySpec, onEvent: (e: HostEvent) => void): Promise<PasskeyResult> {
    const { model } = this.need();
    const ac = new AbortController();
    this.aborts.set(taskId, ac);
    try {
      return await runPasskey(model, {
        ...spec, signal: ac.signal,
        onTrial: (t, done, total) => onEvent({ type: "passkey", length: t.length, trial: t.trial, done, total, correct: t.correct }),
      });
    } finally {
      this.aborts.delete(taskId);
    }
  }

  cancel(taskId: string) { this.aborts.get(taskId)?.abort(); }

  close() { for (const a of this.aborts.values()) a.abort(); this.unload(); }
}

/** In-process host (tests, and scripts that do not need a worker). */
export class LocalHost implements EngineHost {
  constructor(private core: EngineCore) {}
  load(id: string, s: string, o: LoadOptions, e: (e: HostEvent) => void) { return this.core.load(id, s, o, e); }
  run(id: string, s: RunSpec, e: (e: HostEvent) => void) { return this.core.run(id, s, e); }
  quant(id: string, s: QuantSpec, e: (e: HostEvent) => void) { return this.core.quant(id, s, e); }
  perplexity(id: string, s: PerplexitySpec, e: (e: HostEvent) => void) { return this.core.perplexity(id, s, e); }
  passkey(id: string, s: PasskeySpec, e: (e: HostEvent) => void) { return this.core.passkey(id, s, e); }
  cancel(id: string) { this.core.cancel(id); }
  async catalog() { return this.core.catalog(); }
  loaded() { return this.core.loaded(); }
  async close() { this.core.close(); }
}
