// The workbench's Hono app. createApp(deps) builds every route; web/server.ts is the only file that listens.
// The engine is reached through an injectable EngineHost (a Bun Worker in the server, an in-process fake in
// tests). Every input is validated with zod; every error leaves through one handler as JSON {error}.
import { Hono, type Context } from "hono";
import { streamSSE } from "hono/streaming";
import { bodyLimit } from "hono/body-limit";
import { z } from "zod";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { ProfilingMode, ToggleValues, type Profile } from "../engine/measure/profile.ts";
import { PromptSpec, SamplingSpec, PromptSet, parsePromptSet, checkToggles, newProfileId, type RunSpec } from "../engine/measure/record.ts";
import { defaultQuantHooks } from "../engine/measure/quant-error.ts";
import { compareProfiles, latencyMatrix, stepTimeline, tokenTimeline } from "../engine/measure/aggregate.ts";
import { chromeTrace } from "../engine/export/trace.ts";
import { renderTable, tableRows, TABLE_FORMATS, TABLE_MIME } from "../engine/export/table.ts";
import { htmlReport } from "../engine/export/report.ts";
import { compareSvg, latencySvg, quantSvg, rooflineSvg, timelineSvg } from "../engine/export/svg.ts";
import {
  aboveDramReason, cacheNote, ceilingsFor, groupByDevice, loadCeilings, loadCeilingsReport, mixedDeviceWarning, rooflinePoints,
} from "../engine/measure/roofline.ts";
import { paletteDoc } from "../engine/export/palette.ts";
import { summaryStats } from "../engine/measure/stats.ts";
import type { EngineHost, HostEvent, ModelInfo } from "./core.ts";
import { HttpError } from "./errors.ts";
import { confine, confineAnyRoot } from "./paths.ts";
import { listModels, ProfileStore, PromptSetStore, SYNTHETIC_RE } from "./store.ts";
import { takeFrames, TaskManager, type Task } from "./tasks.ts";
import { notebookRoutes, type NotebookDeps } from "./notebook/routes.ts";
import { qualityRoutes } from "./quality.ts";
import { optionFromToggle, sameWeights, WEIGHTS_TOGGLE, WeightsOptionSchema } from "../engine/formats/requant.ts";

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

const HOOK_RE = /^(blocks\.(\d+|\*)\.(hook_resid_pre|attn\.hook_[qkvz]|hook_attn_out|hook_resid_mid|mlp\.hook_pre|mlp\.hook_post|hook_resid_post)|hook_logits)$/;
const HookName = z.string().regex(HOOK_RE, "unknown hook name (e.g. blocks.3.hook_resid_post, blocks.*.attn.hook_q, hook_logits)");
const Backend = z.enum(["auto", "cpu", "cuda"]);
const ModelSource = z.string().min(1).max(4096);

const RunRequest = z.object({
  model: ModelSource.optional(),
  backend: Backend.optional(),
  prompt: z.string().min(1).max(200_000).optional(),
  messages: z.array(z.object({ role: z.enum(["system", "user", "assistant"]), content: z.string().max(200_000) }).strict()).min(1).max(256).optional(),
  tokens: z.array(z.number().int().min(0)).min(1).max(200_000).optional(),
  promptSet: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/).optional(),
  prompts: z.array(PromptSpec).min(1).max(1000).optional(),
  maxTokens: z.number().int().min(1).max(4096).default(32),
  // Measured passes over the prompt(s) (the summary is their median, with min–max) after `warmup` unrecorded
  // passes: the first run after a load pays for cold caches and lazy set-up, which is not the toggle's cost.
  repeats: z.number().int().min(1).max(20).default(3),
  warmup: z.number().int().min(0).max(3).default(1),
  sampling: SamplingSpec.partial().default({}),
  toggles: ToggleValues.default({}),
  profiling: z.union([z.boolean(), ProfilingMode]).default(true), // true: kernels (events where CUPTI is missing)
  capture: z.array(HookName).max(512).default([]),
  label: z.string().max(120).optional(),
}).strict().refine((r) => [r.prompt, r.messages, r.tokens, r.promptSet, r.prompts].filter((x) => x !== undefined).length === 1,
  { message: "give exactly one of prompt, messages, tokens, promptSet or prompts" });
export type RunRequest = z.infer<typeof RunRequest>;

const LoadRequest = z.object({
  source: ModelSource,
  backend: Backend.optional(),
  threads: z.number().int().min(0).max(1024).optional(),
}).extend(WeightsOptionSchema.shape).strict();

const KeyParam = z.string().regex(/^[A-Za-z0-9._\/-]{1,300}$/, "invalid profile key");
const EXPORTS = ["trace", "md", "csv", "json", "jsonl", "html", "profile", "svg-latency", "svg-timeline", "svg-roofline", "svg-quant"] as const;

function check<T extends z.ZodType>(schema: T, data: unknown, what: string): z.infer<T> {
  const r = schema.safeParse(data);
  if (!r.success) {
    const i = r.error.issues[0];
    const where = i.path.length ? `${i.path.join(".")}: ` : "";
    throw new HttpError(400, `${what}: ${where}${i.message}`);
  }
  return r.data;
}

async function jsonBody(c: Context): Promise<unknown> {
  const ct = c.req.header("content-type") ?? "";
  if (!ct.includes("application/json")) throw new HttpError(415, "expected Content-Type: application/json");
  try { return await c.req.json(); } catch { throw new HttpError(400, "request body is not valid JSON"); }
}

function slug(s: string) { return s.replace(/[^A-Za-z0-9._-]+/g, "-").slice(0, 80) || "profile"; }

export function createApp(deps: AppDeps) {
  const host = deps.host;
  const profiles = new ProfileStore(deps.profilesRoot, deps.saveSubdir);
  const promptSets = new PromptSetStore(deps.promptSetsDir ?? join(profiles.root, "prompt-sets"));
  // local calibrations (<root>/raw/ceilings, git-ignored) first, then the committed ones
  const ceilingsDir = deps.ceilingsDir ? [deps.ceilingsDir] : [join(profiles.root, "raw", "ceilings"), join(profiles.root, "ceilings")];
  const publicDir = resolve(deps.publicDir ?? new URL("./public", import.meta.url).pathname);
  const modelRoots = deps.modelRoots.map((r) => resolve(r));
  const heartbeatMs = deps.heartbeatMs ?? 5000;
  const defaultBackend = deps.defaultBackend ?? "auto";
  const maxQueue = deps.maxQueue ?? 64;
  const maxFollowers = deps.maxFollowers ?? (Number(process.env.QW_SSE_MAX_FOLLOWERS) || 128);
  const flushMs = deps.sseFlushMs ?? (Number(process.env.QW_SSE_FLUSH_MS) || 50);
  // A run's model load goes to the engine under `${id}:load`: cancelling the run cancels that load too.
  const tasks = new TaskManager((t) => { host.cancel(t.id); host.cancel(`${t.id}:load`); });
  let loading: Task | null = null;
  /** Model roots (real paths) of the sources resolved so far: the engine confines a source's files to its root. */
  const rootOf = new Map<string, string>();

  /** "default", a synthetic preset, or a path confined to the model roots → the string the engine opens. */
  function resolveSource(src: string): string {
    if (src === "default" || SYNTHETIC_RE.test(src)) return src;
    if (src.startsWith("synthetic:")) throw new HttpError(400, `unknown synthetic preset: ${src} (tiny, 0.5b, 1.5b, 7b; optional :q8_0 :q4_k :f16 :bf16)`);
    if (!modelRoots.length) throw new HttpError(403, "no model roots are configured; only 'default' and synthetic presets can be opened");
    const { path, root } = confineAnyRoot(modelRoots, src);
    rootOf.set(path, root);
    return path;
  }

  const relay = (t: Task) => (e: HostEvent) => t.emit(e.type, e);

  /** weights: a run's `weights` toggle value; another one than the loaded model's reloads it (a load-time option). */
  async function ensureModel(t: Task, source: string | undefined, backend: "auto" | "cpu" | "cuda" | undefined, weights?: string | string[]): Promise<ModelInfo> {
    const cur = host.loaded();
    const want = source ?? cur?.source ?? "default";
    const sameW = weights === undefined || (cur !== null && sameWeights(weights, cur.weights));
    if (cur && cur.source === want && (!backend || backend === "auto" || backend === cur.backend) && sameW) return cur;
    t.emit("loading", { source: want, ...(weights !== undefined ? { weights } : {}) });
    const wopt = weights !== undefined ? { weights: undefined, weightsLayers: undefined, ...optionFromToggle(weights) } : {};
    const info = await host.load(`${t.id}:load`, want, { backend: backend ?? (cur?.source === want ? cur.backend : defaultBackend), root: rootOf.get(want), ...wopt }, relay(t));
    t.emit("loaded", modelView(info));
    return info;
  }

  function modelView(m: ModelInfo | null) {
    if (!m) return null;
    return {
      source: m.source, id: m.id, format: m.format, backend: m.backend, device: m.device, config: m.config,
      weightBytes: m.weightBytes, weightTypes: m.weightTypes, hash: m.hash, loadMs: m.loadMs, weights: m.weights,
      layers: m.config.num_hidden_layers, registry: m.registry,
    };
  }

  function expandHooks(hooks: string[], nLayers: number): string[] {
    const out: string[] = [];
    for (const h of hooks) {
      if (h.startsWith("blocks.*.")) for (let l = 0; l < nLayers; l++) out.push(h.replace("*", String(l)));
      else {
        const m = /^blocks\.(\d+)\./.exec(h);
        if (m && Number(m[1]) >= nLayers) throw new Error(`hook ${h}: the model has ${nLayers} layers`);
        out.push(h);
      }
    }
    return [...new Set(out)];
  }

  function guardQueue() {
    if (tasks.closingReason) throw new HttpError(503, `the server is shutting down (${tasks.closingReason}); no new tasks`);
    if (tasks.pendingCount() >= maxQueue) throw new HttpError(503, `too many pending tasks (${maxQueue}); wait or cancel some`);
  }

  const app = new Hono();

  app.onError((err, c) => {
    if (err instanceof HttpError) return c.json({ error: err.message }, err.status);
    if (err instanceof z.ZodError) return c.json({ error: err.issues[0]?.message ?? "invalid input" }, 400);
    const msg = err instanceof Error ? err.message : String(err);
    if (/ENOENT/.test(msg)) return c.json({ error: "not found" }, 404);
    console.error("[web] unhandled:", err);
    return c.json({ error: msg || "internal error" }, 500);
  });
  app.notFound((c) => c.json({ error: `no route for ${c.req.method} ${new URL(c.req.url).pathname}` }, 404));

  // Mounted before the API body limit: saved notebooks carry their outputs (figures); it has its own limit.
  const notebooks = notebookRoutes(tasks, deps.notebooks ?? { dir: join(import.meta.dir, "../notebooks"), exec: false });
  app.route("/api/notebooks", notebooks);

  app.use("/api/*", bodyLimit({
    maxSize: deps.maxBodyBytes ?? 2 << 20,
    onError: (c) => c.json({ error: `request body too large (limit ${deps.maxBodyBytes ?? 2 << 20} bytes)` }, 413),
  }));
  app.use("/api/*", async (c, next) => {
    await next();
    c.header("Cache-Control", "no-store");
  });

  // ---- engine / models ----
  app.get("/api/health", (c) => c.json({
    ok: true, model: host.loaded()?.source ?? null, pending: tasks.pendingCount(), running: tasks.active()?.id ?? null,
  }));

  app.get("/api/models", (c) => c.json({
    models: listModels(modelRoots), loaded: modelView(host.loaded()), roots: modelRoots,
    loading: loading && !loading.done ? loading.id : null,
  }));

  app.get("/api/model", (c) => c.json({ loaded: modelView(host.loaded()), loading: loading && !loading.done ? loading.id : null }));

  app.post("/api/models/load", async (c) => {
    const req = check(LoadRequest, await jsonBody(c), "load");
    const source = resolveSource(req.source);
    guardQueue();
    const t = tasks.submit("load", source, async (t) => {
      const info = await host.load(t.id, source, { backend: req.backend ?? defaultBackend, threads: req.threads, root: rootOf.get(source), weights: req.weights, weightsLayers: req.weightsLayers }, relay(t));
      return { model: modelView(info) };
    });
    loading = t;
    return c.json({ task: t.view(), events: `/api/tasks/${t.id}/events` }, 202);
  });

  app.get("/api/toggles", (c) => {
    const m = host.loaded();
    if (!m) throw new HttpError(409, "no model loaded: POST /api/models/load first");
    return c.json({ model: m.source, backend: m.backend, layers: m.config.num_hidden_layers, registry: m.registry });
  });

  app.get("/api/hooks", (c) => {
    const m = host.loaded();
    const n = m?.config.num_hidden_layers ?? 0;
    const per = ["hook_resid_pre", "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_z", "hook_attn_out", "hook_resid_mid", "mlp.hook_pre", "mlp.hook_post", "hook_resid_post"];
    return c.json({ layers: n, patterns: per.map((p) => `blocks.*.${p}`).concat(["hook_logits"]), hooks: Array.from({ length: n }, (_, l) => per.map((p) => `blocks.${l}.${p}`)).flat().concat(["hook_logits"]) });
  });

  // ---- runs ----
  app.post("/api/runs", async (c) => {
    const req = check(RunRequest, await jsonBody(c), "run");
    const source = req.model !== undefined ? resolveSource(req.model) : undefined;
    let prompts: z.infer<typeof PromptSpec>[];
    let setName: string | undefined;
    let setSampling = {};
    let setMax: number | undefined;
    if (req.promptSet) {
      const s = promptSets.get(req.promptSet);
      prompts = s.prompts; setName = s.name; setSampling = s.sampling ?? {}; setMax = s.maxTokens;
    } else if (req.prompts) prompts = req.prompts;
    else prompts = [{ prompt: req.prompt, messages: req.messages, tokens: req.tokens }];
    // Validate toggles now when the model that will run them is already known.
    const cur = host.loaded();
    if (cur && (!source || source === cur.source)) {
      const bad = checkToggles(cur.registry, req.toggles, cur.config.num_hidden_layers, cur.backend);
      if (bad) throw new HttpError(400, `run: toggles: ${bad}`);
    }
    guardQueue();
    const sampling = SamplingSpec.parse({ ...setSampling, ...req.sampling });
    const t = tasks.submit("run", req.label, async (t) => {
      const info = await ensureModel(t, source, req.backend, req.toggles[WEIGHTS_TOGGLE]);
      const bad = checkToggles(info.registry, req.toggles, info.config.num_hidden_layers, info.backend);
      if (bad) throw new Error(bad);
      const id = newProfileId(req.label ? slug(req.label) : "run");
      const spec: RunSpec = {
        id, prompts, maxTokens: setMax ?? req.maxTokens, sampling, toggles: req.toggles, profiling: req.profiling,
        capture: expandHooks(req.capture, info.config.num_hidden_layers), label: req.label ?? id, promptSetName: setName,
        repeats: req.repeats, warmup: req.warmup,
        command: `POST /api/runs ${JSON.stringify({ ...req, prompt: req.prompt && req.prompt.length > 200 ? req.prompt.slice(0, 200) + "…" : req.prompt }).slice(0, 1500)}`,
      };
      const r = await host.run(t.id, spec, relay(t));
      if (t.shutdownReason) {
        // Graceful shutdown (D6): what was measured is kept, marked partial so no one mistakes it for a full run.
        r.profile.partial = t.shutdownReason;
        r.profile.notes = [...(r.profile.notes ?? []), `partial: ${t.shutdownReason}`];
      }
      const key = profiles.save(r.profile);
      return {
        profileKey: key, profileId: r.profile.id, cancelled: r.cancelled, summary: r.profile.summary, text: r.profile.output_text,
        ...(t.shutdownReason ? { partial: t.shutdownReason, shutdown: true } : {}),
      };
    });
    return c.json({ task: t.view(), id: t.id, events: `/api/tasks/${t.id}/events` }, 202);
  });

  qualityRoutes(app, { host, tasks, profiles, hookName: HookName, check, jsonBody, resolveSource, ensureModel, guardQueue, expandHooks });

  const taskOr404 = (id: string) => {
    const t = tasks.get(id);
    if (!t) throw new HttpError(404, `no such task: ${id.slice(0, 80)}`);
    return t;
  };

  for (const base of ["/api/tasks", "/api/runs"]) {
    app.get(base, (c) => c.json({ tasks: tasks.list().map((t) => t.view(false)) }));
    app.get(`${base}/:id`, (c) => c.json(taskOr404(c.req.param("id")).view()));
    app.post(`${base}/:id/cancel`, (c) => {
      const t = tasks.cancel(c.req.param("id"));
      if (!t) throw new HttpError(404, `no such task: ${c.req.param("id").slice(0, 80)}`);
      return c.json(t.view(false));
    });
    app.get(`${base}/:id/events`, (c) => {
      const t = taskOr404(c.req.param("id"));
      const from = Number(c.req.header("last-event-id") ?? c.req.query("from") ?? 0) || 0;
      // Followers cost the engine nothing (D5): each event is serialized once (sseFrame) and a follower's
      // backlog goes out in one write; past maxFollowers per task a client gets 429 instead of a stream.
      if (t.followers >= maxFollowers) {
        throw new HttpError(429, `too many followers of task ${t.id} (cap ${maxFollowers}); poll GET /api/tasks/${t.id} instead, or retry later`);
      }
      t.followers++;
      try { (c.env as { timeout?: (r: Request, s: number) => void } | undefined)?.timeout?.(c.req.raw, 0); } catch { /* not Bun.serve */ }
      return streamSSE(c, async (s) => {
        const queue = t.events.filter((e) => e.id > from);
        let finished = t.done, closed = false;
        let wake: (() => void) | null = null;
        const unsub = finished ? () => {} : t.subscribe((e) => { if (e) queue.push(e); else finished = true; wake?.(); });
        // A client that goes away must free its follower slot even while a write to it is blocked.
        let gone: () => void = () => {};
        const goneP = new Promise<void>((r) => { gone = r; });
        const close = () => { closed = true; unsub(); wake?.(); gone(); };
        s.onAbort(close);
        c.req.raw.signal?.addEventListener("abort", close, { once: true });
        const write = (bytes: string | Uint8Array) => Promise.race([s.write(bytes), goneP]);
        const hb = setInterval(() => { if (!closed) s.write(": keep-alive\n\n").catch(close); }, heartbeatMs);
        try {
          await write(": stream open\n\n");
          let lastWrite = 0;
          while (!closed) {
            // At most one write per flushMs: during a fast decode (2 events per token) a follower's events
            // go out in batches, so 100 followers cost ~2000 writes/s instead of ~100 per token.
            const wait = lastWrite + flushMs - performance.now();
            if (queue.length && !finished && wait > 0) await Promise.race([new Promise((r) => setTimeout(r, wait)), goneP]);
            while (queue.length && !closed) {
              await write(takeFrames(queue)); // encoded once per event, only copied per follower
              lastWrite = performance.now();
            }
            if (closed || (finished && !queue.length)) break; // (closed may have been set during the write)
            await new Promise<void>((r) => { wake = r; });
            wake = null;
          }
        } finally {
          clearInterval(hb);
          unsub();
          t.followers--;
        }
      }, async (err) => { console.error("[web] sse:", err.message); });
    });
  }

  // ---- profiles ----
  app.get("/api/profiles", (c) => c.json({ root: profiles.root, profiles: profiles.list() }));

  const keyOf = (c: Context) => check(KeyParam, c.req.param("key"), "profile key");

  app.get("/api/profiles/:key", (c) => c.json(profiles.get(keyOf(c))));

  app.delete("/api/profiles/:key", (c) => {
    const key = keyOf(c);
    profiles.delete(key);
    return c.json({ deleted: key });
  });

  function ceilingsForProfile(p: Profile) {
    return ceilingsFor(loadCeilings(ceilingsDir), p.manifest.device.name, p.manifest.device.backend);
  }

  app.get("/api/profiles/:key/views", (c) => {
    const key = keyOf(c);
    const stat = check(z.enum(["mean", "median"]).default("mean"), c.req.query("stat"), "stat");
    const p = profiles.get(key);
    const ceil = ceilingsForProfile(p);
    const points = (g: "op" | "layer" | "layer-op") => rooflinePoints(p, g).map((x) => ({ ...x, why: aboveDramReason(x, ceil) }));
    return c.json({
      key, id: p.id, kind: p.kind, manifest: p.manifest, summary: p.summary, stats: summaryStats(p), notes: p.notes ?? [],
      latency: { prefill: latencyMatrix(p, "prefill", undefined, stat), decode: latencyMatrix(p, "decode", undefined, stat) },
      steps: stepTimeline(p), tokens: tokenTimeline(p),
      roofline: { op: points("op"), layer: points("layer"), "layer-op": points("layer-op") },
      ceilings: ceil, quant_error: p.quant_error ?? null, output_text: p.output_text ?? null,
      fidelity: p.fidelity ?? null,
    });
  });

  app.get("/api/profiles/:key/export/:format", (c) => {
    const key = keyOf(c);
    const format = check(z.enum(EXPORTS), c.req.param("format"), "export format");
    const p = profiles.get(key);
    const name = slug(p.manifest.label ?? p.id);
    const attach = (ext: string) => c.header("Content-Disposition", `attachment; filename="${name}.${ext}"`);
    switch (format) {
      case "trace": attach("trace.json"); return c.json(chromeTrace(p));
      case "profile": attach("json"); return c.json(p);
      case "html": if (c.req.query("download") !== "0") attach("html"); return c.html(htmlReport(p, { ceilings: loadCeilings(ceilingsDir) }));
      case "svg-latency": case "svg-timeline": case "svg-roofline": case "svg-quant": {
        const svg = format === "svg-latency" ? latencySvg(p) : format === "svg-timeline" ? timelineSvg(p)
          : format === "svg-roofline" ? rooflineSvg([p], loadCeilings(ceilingsDir), check(z.enum(["op", "layer", "layer-op"]).default("op"), c.req.query("group"), "group"))
          : quantSvg(p);
        if (c.req.query("download") === "1") attach(`${format.slice(4)}.svg`);
        return c.body(svg, 200, { "Content-Type": "image/svg+xml; charset=utf-8" });
      }
      default: {
        attach(format);
        return c.body(renderTable(tableRows([p]), format), 200, { "Content-Type": TABLE_MIME[format] });
      }
    }
  });

  const keysParam = (c: Context) => {
    const raw = c.req.query("keys") ?? "";
    const keys = raw.split(",").filter(Boolean);
    if (!keys.length || keys.length > 16) throw new HttpError(400, "keys: give 1–16 profile keys, comma-separated");
    return keys.map((k) => check(KeyParam, k, "profile key"));
  };

  app.get("/api/export/table", (c) => {
    const format = check(z.enum(TABLE_FORMATS), c.req.query("format") ?? "md", "format");
    const ps = keysParam(c).map((k) => profiles.get(k));
    return c.body(renderTable(tableRows(ps), format), 200, { "Content-Type": TABLE_MIME[format] });
  });

  app.get("/api/export/roofline.svg", (c) => {
    const ps = keysParam(c).map((k) => profiles.get(k));
    const group = check(z.enum(["op", "layer", "layer-op"]).default("op"), c.req.query("group"), "group");
    return c.body(rooflineSvg(ps, loadCeilings(ceilingsDir), group), 200, { "Content-Type": "image/svg+xml; charset=utf-8" });
  });

  // The devices of a set of runs and the mixed-device warning, as the Roofline page and the SVG export draw them.
  app.get("/api/roofline/devices", (c) => {
    const keys = keysParam(c);
    const groups = groupByDevice(keys.map((k) => profiles.get(k)));
    const all = loadCeilings(ceilingsDir);
    return c.json({
      warning: mixedDeviceWarning(groups),
      devices: groups.map((g) => {
        const ceilings = ceilingsFor(all, g.device, g.backend);
        const notes = g.items.map(({ item }) => cacheNote(item, rooflinePoints(item, "op"), ceilings)).filter((n) => n !== null);
        return { key: g.key, device: g.device, backend: g.backend, runs: g.items.map((i) => keys[i.index]), ceilings, notes };
      }),
    });
  });

  app.get("/api/compare", (c) => {
    const a = check(KeyParam, c.req.query("a"), "a"), b = check(KeyParam, c.req.query("b"), "b");
    const cmp = compareProfiles(profiles.get(a), profiles.get(b));
    if (c.req.query("format") === "svg") return c.body(compareSvg(cmp), 200, { "Content-Type": "image/svg+xml; charset=utf-8" });
    return c.json({ ...cmp, keys: { a, b } });
  });

  app.get("/api/ceilings", (c) => {
    const { ceilings: all, skipped } = loadCeilingsReport(ceilingsDir);
    return c.json({
      dirs: ceilingsDir, ceilings: all, skipped,
      note: all.length ? null : "no measured ceilings — run notebooks/calibrate.ts on the device",
    });
  });

  // The categorical palette and the op → colour mapping of engine/palette.ts (the pages draw with these).
  app.get("/api/palette", (c) => {
    c.header("Cache-Control", "no-cache");
    return c.json(paletteDoc());
  });

  // ---- prompt sets ----
  app.get("/api/prompt-sets", (c) => c.json({ promptSets: promptSets.list() }));
  app.get("/api/prompt-sets/:name", (c) => c.json(promptSets.get(c.req.param("name"))));
  app.delete("/api/prompt-sets/:name", (c) => { promptSets.delete(c.req.param("name")); return c.json({ deleted: c.req.param("name") }); });
  app.post("/api/prompt-sets", async (c) => {
    const ct = c.req.header("content-type") ?? "";
    let set: PromptSet;
    if (ct.includes("application/json")) set = check(PromptSet, await jsonBody(c), "prompt set");
    else if (ct.includes("ndjson") || ct.includes("jsonl") || ct.includes("text/plain")) {
      const name = check(z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, "name: 1–64 of A-Z a-z 0-9 . _ -"), c.req.query("name"), "prompt set name (?name=)");
      try { set = parsePromptSet(await c.req.text(), name); } catch (e) {
        throw new HttpError(400, `prompt set: ${e instanceof z.ZodError ? `${e.issues[0]?.path.join(".")}: ${e.issues[0]?.message}` : (e as Error).message}`);
      }
    } else throw new HttpError(415, "expected application/json or application/x-ndjson (JSONL, with ?name=)");
    promptSets.save(set);
    return c.json({ saved: set.name, prompts: set.prompts.length }, 201);
  });

  // ---- static pages ----
  const plotlyPath = (() => {
    try { return Bun.resolveSync("plotly.js/dist/plotly.min.js", import.meta.dir); } catch { return null; }
  })();
  app.get("/vendor/plotly.min.js", (c) => {
    if (!plotlyPath || !existsSync(plotlyPath)) throw new HttpError(404, "plotly.js is not installed (npm install)");
    return new Response(Bun.file(plotlyPath), { headers: { "Content-Type": "text/javascript; charset=utf-8", "Cache-Control": "public, max-age=86400" } });
  });
  const MIME: Record<string, string> = { html: "text/html; charset=utf-8", js: "text/javascript; charset=utf-8", css: "text/css; charset=utf-8", svg: "image/svg+xml", png: "image/png", ico: "image/x-icon" };
  const serve = (rel: string) => {
    const p = confine(publicDir, rel, { mustExist: true });
    const ext = p.split(".").pop() ?? "";
    return new Response(Bun.file(p), { headers: { "Content-Type": MIME[ext] ?? "application/octet-stream", "Cache-Control": "no-cache" } });
  };
  app.get("/", () => serve("index.html"));
  app.get("/static/*", (c) => serve(decodeURIComponent(new URL(c.req.url).pathname.slice("/static/".length))));
  app.get("/favicon.ico", (c) => c.body(null, 204));

  /**
   * Graceful shutdown (D6): refuse new tasks, end queued ones, cancel the running one (a run saves what it
   * measured as a partial profile), then give followers up to 3 s to receive their terminal event.
   */
  async function shutdown(reason: string, waitMs = 15_000): Promise<void> {
    await tasks.shutdown(reason, waitMs);
    const deadline = Date.now() + 3000;
    while (tasks.list().some((t) => t.followers > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  }

  return Object.assign(app, { tasks, profiles, promptSets, host, notebooks, shutdown });
}

export type WorkbenchApp = ReturnType<typeof createApp>;
