// The engine side of the web workbench: one loaded model and one session, runs executed one at a time.
// EngineCore runs inside the Bun Worker (web/engine-worker.ts) in the server, and in-process in tests
// (LocalHost). It never touches HTTP or the file system: profiles go back to the caller, which writes them.
import type { EngineModel, EngineSession, OpenModel, ToggleDef, QwenConfig, Progress } from "../engine/api.ts";
import type { DeviceManifest, Profile } from "../engine/profile.ts";
import { checkToggles, recordRun, type RunSpec, type RunEvent } from "../engine/export/record.ts";
import { recordQuantError, type QuantSpec } from "../engine/export/quant.ts";

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
}

export type HostEvent =
  | RunEvent
  | { type: "progress"; stage: string; done: number; total: number; message?: string }
  | { type: "arm"; arm: string; repeat: number };

export interface LoadOptions { backend: "auto" | "cpu" | "cuda"; threads?: number }

/** What the web app needs from the engine, wherever it runs (worker or in-process). */
export interface EngineHost {
  load(taskId: string, source: string, opts: LoadOptions, onEvent: (e: HostEvent) => void): Promise<ModelInfo>;
  run(taskId: string, spec: RunSpec, onEvent: (e: HostEvent) => void): Promise<{ profile: Profile; cancelled: boolean }>;
  quant(taskId: string, spec: QuantSpec, onEvent: (e: HostEvent) => void): Promise<Profile>;
  cancel(taskId: string): void;
  /** The model currently loaded (null before the first load and after an engine crash). */
  loaded(): ModelInfo | null;
  close(): Promise<void>;
}

export class EngineCore {
  private model: EngineModel | null = null;
  private session: EngineSession | null = null;
  private info: ModelInfo | null = null;
  private aborts = new Map<string, AbortController>();
  constructor(private openModel: OpenModel) {}

  loaded(): ModelInfo | null { return this.info; }

  async load(taskId: string, source: string, opts: LoadOptions, onEvent: (e: HostEvent) => void): Promise<ModelInfo> {
    const t0 = performance.now();
    this.unload();
    const ac = new AbortController();
    this.aborts.set(taskId, ac);
    try {
      const m = await this.openModel(source, {
        backend: opts.backend, threads: opts.threads,
        onProgress: (p: Progress) => onEvent({ type: "progress", stage: p.stage, done: p.done, total: p.total, message: p.message }),
      });
      if (ac.signal.aborted) { m.close(); throw new Error("load cancelled"); }
      this.model = m;
      this.session = m.newSession({ maxBatch: 1 });
      this.info = {
        source, id: m.id, format: m.format, backend: m.backend, device: m.device, config: m.config,
        weightBytes: m.weightBytes, weightTypes: m.weightTypes, hash: m.hash, buildInfo: m.buildInfo,
        registry: m.toggleRegistry(), profilingModes: m.profilingModes(), loadMs: performance.now() - t0,
      };
      return this.info;
    } finally {
      this.aborts.delete(taskId);
    }
  }

  private unload() {
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
    const bad = checkToggles(info.registry, spec.toggles, info.config.num_hidden_layers, info.backend);
    if (bad) throw new Error(bad);
    const ac = new AbortController();
    this.aborts.set(taskId, ac);
    try {
      const r = await recordRun(model, session, spec, { onEvent, signal: ac.signal });
      return { profile: r.profile, cancelled: r.cancelled };
    } finally {
      this.aborts.delete(taskId);
    }
  }

  async quant(taskId: string, spec: QuantSpec, onEvent: (e: HostEvent) => void): Promise<Profile> {
    const { model, session, info } = this.need();
    for (const t of [spec.reference.toggles, spec.candidate.toggles]) {
      const bad = checkToggles(info.registry, t, info.config.num_hidden_layers, info.backend);
      if (bad) throw new Error(bad);
    }
    const ac = new AbortController();
    this.aborts.set(taskId, ac);
    try {
      return await recordQuantError(model, session, spec, { onEvent, signal: ac.signal });
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
  cancel(id: string) { this.core.cancel(id); }
  loaded() { return this.core.loaded(); }
  async close() { this.core.close(); }
}
