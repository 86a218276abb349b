// What the sub-apps of web/app.ts share: the engine host, the task queue, the stores, and the few steps every
// route that starts engine work takes (resolve a model source inside the roots, load it if needed, refuse new
// tasks when the queue is full). createContext builds it once per app from AppDeps.
import { join, resolve } from "node:path";
import type { Catalog } from "../engine/catalog.ts";
import type { EngineHost, HostEvent, ModelInfo } from "./core.ts";
import { HttpError } from "./errors.ts";
import { confineAnyRoot } from "./paths.ts";
import { ProfileStore, PromptSetStore, SYNTHETIC_RE } from "./store.ts";
import { TaskManager, type Task } from "./tasks.ts";
import { optionFromToggle, sameWeights, withOutput } from "../engine/formats/requant.ts";
import type { NotebookDeps } from "./notebook/routes.ts";

export interface AppDeps {
  host: EngineHost;
  profilesRoot: string;          // profiles are listed/read/deleted only inside it
  modelRoots: string[];          // model files are opened only inside these
  saveSubdir?: string;           // where new run profiles go, relative to profilesRoot (default raw/web)
  promptSetsDir?: string;        // default <profilesRoot>/prompt-sets
  ceilingsDir?: string;          // default <profilesRoot>/ceilings
  publicDir?: string;            // default web/public
  maxBodyBytes?: number;         // default 2 MiB
  heartbeatMs?: number;          // SSE keep-alive comment interval (default 5000; Bun's idle timeout must be longer)
  defaultBackend?: "auto" | "cpu" | "cuda";
  maxQueue?: number;             // pending tasks before 503 (default 64)
  maxFollowers?: number;         // SSE clients per task before 429 (default 128, QW_SSE_MAX_FOLLOWERS)
  sseFlushMs?: number;           // a follower gets at most one write per this many ms (default 50, QW_SSE_FLUSH_MS)
  notebooks?: NotebookDeps;      // default: <repo>/notebooks, read-only (no code execution)
}

export type BackendChoice = "auto" | "cpu" | "cuda";

export interface WebContext {
  host: EngineHost;
  tasks: TaskManager;
  profiles: ProfileStore;
  promptSets: PromptSetStore;
  /** Ceilings folders, first match wins: local calibrations (<root>/raw/ceilings, git-ignored), then the committed ones. */
  ceilingsDir: string[];
  modelRoots: string[];
  defaultBackend: BackendChoice;
  /** "default", a synthetic preset, or a path confined to the model roots → the string the engine opens. */
  resolveSource(src: string): string;
  /** The model a task runs on: the loaded one when it matches, else loaded now (events go to the task).
   *  weights, parallel: a run's `weights` / `parallel` toggle values; another one than the loaded model's reloads it
   *  (load-time options); a reload of the same source keeps the loaded model's value of the one not named, and its
   *  output format (weightsLayers.output, which no toggle carries). */
  ensureModel(t: Task, source: string | undefined, backend: BackendChoice | undefined, weights?: string | string[], parallel?: string): Promise<ModelInfo>;
  /** 503 when the server is shutting down or the queue is full. */
  guardQueue(): void;
  /** Engine events of a task go to its followers under their own type. */
  relay(t: Task): (e: HostEvent) => void;
  /** The engine's names (ops, hooks, profiling modes, toggles); 503 while the engine cannot give them. */
  catalog(): Promise<Catalog>;
  /** The model root a resolved source was confined to (the engine keeps the files it opens inside it). */
  rootOf(source: string): string | undefined;
}

/** The model as the API shows it (no build info; layers at the top for the page). */
export function modelView(m: ModelInfo | null) {
  if (!m) return null;
  return {
    source: m.source, id: m.id, format: m.format, backend: m.backend, device: m.device, config: m.config,
    weightBytes: m.weightBytes, weightTypes: m.weightTypes, hash: m.hash, loadMs: m.loadMs, weights: m.weights,
    ...(m.weightsOutput !== undefined ? { weightsOutput: m.weightsOutput } : {}),
    ...(m.parallel !== undefined ? { parallel: m.parallel } : {}),
    layers: m.config.num_hidden_layers, registry: m.registry,
  };
}

export function createContext(deps: AppDeps): WebContext {
  const host = deps.host;
  const profiles = new ProfileStore(deps.profilesRoot, deps.saveSubdir);
  const promptSets = new PromptSetStore(deps.promptSetsDir ?? join(profiles.root, "prompt-sets"));
  const ceilingsDir = deps.ceilingsDir ? [deps.ceilingsDir] : [join(profiles.root, "raw", "ceilings"), join(profiles.root, "ceilings")];
  const modelRoots = deps.modelRoots.map((r) => resolve(r));
  const defaultBackend = deps.defaultBackend ?? "auto";
  const maxQueue = deps.maxQueue ?? 64;
  // A run's model load goes to the engine under `${id}:load`: cancelling the run cancels that load too.
  const tasks = new TaskManager((t) => { host.cancel(t.id); host.cancel(`${t.id}:load`); });
  /** Model roots (real paths) of the sources resolved so far: the engine confines a source's files to its root. */
  const roots = new Map<string, string>();
  const relay = (t: Task) => (e: HostEvent) => t.emit(e.type, e);

  function resolveSource(src: string): string {
    if (src === "default" || SYNTHETIC_RE.test(src)) return src;
    if (src.startsWith("synthetic:")) throw new HttpError(400, `unknown synthetic preset: ${src} (tiny, 0.5b, 1.5b, 7b; optional :q8_0 :q4_k :f16 :bf16)`);
    if (!modelRoots.length) throw new HttpError(403, "no model roots are configured; only 'default' and synthetic presets can be opened");
    const { path, root } = confineAnyRoot(modelRoots, src);
    roots.set(path, root);
    return path;
  }

  async function ensureModel(t: Task, source: string | undefined, backend: BackendChoice | undefined, weights?: string | string[], parallel?: string): Promise<ModelInfo> {
    const cur = host.loaded();
    const want = source ?? cur?.source ?? "default";
    const sameW = weights === undefined || (cur !== null && sameWeights(weights, cur.weights));
    const sameP = parallel === undefined || (cur !== null && parallel === (cur.parallel ?? parallel));
    if (cur && cur.source === want && (!backend || backend === "auto" || backend === cur.backend) && sameW && sameP) return cur;
    t.emit("loading", { source: want, ...(weights !== undefined ? { weights } : {}), ...(parallel !== undefined ? { parallel } : {}) });
    // the same model again (another weights, parallel or backend): what the run does not name stays as loaded
    const again = cur?.source === want ? cur : null;
    const w = weights ?? again?.weights;
    // the toggle has no output format: the same file keeps the loaded model's (weightsLayers.output)
    const wopt = w !== undefined ? { weights: undefined, weightsLayers: undefined, ...withOutput(optionFromToggle(w), again?.weightsOutput) } : {};
    const p = parallel ?? again?.parallel;
    const info = await host.load(`${t.id}:load`, want, {
      backend: backend ?? (again ? again.backend : defaultBackend), root: roots.get(want), ...wopt, ...(p !== undefined ? { parallel: p } : {}),
    }, relay(t));
    t.emit("loaded", modelView(info));
    return info;
  }

  function guardQueue() {
    if (tasks.closingReason) throw new HttpError(503, `the server is shutting down (${tasks.closingReason}); no new tasks`);
    if (tasks.pendingCount() >= maxQueue) throw new HttpError(503, `too many pending tasks (${maxQueue}); wait or cancel some`);
  }

  // Asked once; a failure (the engine worker could not start) is not kept, so the next request asks again.
  let names: Promise<Catalog> | null = null;
  function catalog(): Promise<Catalog> {
    names ??= host.catalog().catch((e) => {
      names = null;
      throw new HttpError(503, `the engine's names (ops, hooks, toggles) are unavailable: ${(e as Error).message}`);
    });
    return names;
  }

  return {
    host, tasks, catalog, profiles, promptSets, ceilingsDir, modelRoots, defaultBackend,
    resolveSource, ensureModel, guardQueue, relay, rootOf: (s) => roots.get(s),
  };
}
