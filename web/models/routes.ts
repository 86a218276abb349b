// Models sub-app (mounted at /api): health, the model list under the roots, the loaded model, loading one
// (a task followed over SSE), what the loaded model offers (its toggle registry, its capture points), and the
// engine's catalog: every name the page shows (ops, hooks, profiling modes, toggles) and the toggle defaults.
import { Hono } from "hono";
import { z } from "zod";
import { modelView, type WebContext } from "../context.ts";
import { HttpError } from "../errors.ts";
import { catalogDoc, hookNames, hookPatterns } from "../catalog.ts";
import { BackendField, check, jsonBody, ModelSource } from "../http.ts";
import { listModels } from "../store.ts";
import type { Task } from "../tasks.ts";
import { WeightsOptionSchema } from "../../engine/formats/requant.ts";

const LoadRequest = z.object({
  source: ModelSource,
  backend: BackendField.optional(),
  threads: z.number().int().min(0).max(1024).optional(),
  parallel: z.string().max(16).optional(),  // tensor parallelism (tp1 | tp2 | …): the engine checks it when it opens the model
}).extend(WeightsOptionSchema.shape).strict();

export function modelRoutes(ctx: WebContext) {
  const { host, tasks } = ctx;
  /** The latest load task: the page shows "loading" while it runs (also after a reload of the page). */
  let loading: Task | null = null;
  const loadingId = () => (loading && !loading.done ? loading.id : null);
  const app = new Hono();

  app.get("/health", (c) => c.json({
    ok: true, model: host.loaded()?.source ?? null, pending: tasks.pendingCount(), running: tasks.active()?.id ?? null,
  }));

  app.get("/models", (c) => c.json({
    models: listModels(ctx.modelRoots), loaded: modelView(host.loaded()), roots: ctx.modelRoots, loading: loadingId(),
  }));

  app.get("/model", (c) => c.json({ loaded: modelView(host.loaded()), loading: loadingId() }));

  app.post("/models/load", async (c) => {
    const req = check(LoadRequest, await jsonBody(c), "load");
    const source = ctx.resolveSource(req.source);
    ctx.guardQueue();
    const t = tasks.submit("load", source, async (t) => {
      const info = await host.load(t.id, source, { backend: req.backend ?? ctx.defaultBackend, threads: req.threads, root: ctx.rootOf(source), weights: req.weights, weightsLayers: req.weightsLayers, ...(req.parallel !== undefined ? { parallel: req.parallel } : {}) }, ctx.relay(t));
      return { model: modelView(info) };
    });
    loading = t;
    return c.json({ task: t.view(), events: `/api/tasks/${t.id}/events` }, 202);
  });

  app.get("/toggles", (c) => {
    const m = host.loaded();
    if (!m) throw new HttpError(409, "no model loaded: POST /api/models/load first");
    return c.json({ model: m.source, backend: m.backend, layers: m.config.num_hidden_layers, registry: m.registry });
  });

  app.get("/hooks", async (c) => {
    const cat = await ctx.catalog();
    const n = host.loaded()?.config.num_hidden_layers ?? 0;
    return c.json({ layers: n, patterns: hookPatterns(cat), hooks: hookNames(cat, n) });
  });

  app.get("/catalog", async (c) => c.json(catalogDoc(await ctx.catalog())));

  return app;
}
