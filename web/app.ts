// The workbench's Hono app: createApp(deps) composes the sub-apps (one folder each, its test beside it);
// web/server.ts is the only file that listens. The engine is reached through an injectable EngineHost (a Bun
// Worker in the server, an in-process fake in tests). Every input is validated with zod; every error leaves
// through one handler as JSON {error}.
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { z } from "zod";
import { join } from "node:path";
import { createContext, type AppDeps } from "./context.ts";
import { HttpError } from "./errors.ts";
import { exportRoutes } from "./exports/routes.ts";
import { modelRoutes } from "./models/routes.ts";
import { notebookRoutes } from "./notebook/routes.ts";
import { pageRoutes } from "./pages/routes.ts";
import { passkeyRoutes } from "./passkey/routes.ts";
import { profileRoutes } from "./profiles/routes.ts";
import { quantRoutes } from "./quant/routes.ts";
import { runRoutes } from "./runs/routes.ts";

export type { AppDeps } from "./context.ts";

export function createApp(deps: AppDeps) {
  const ctx = createContext(deps);
  const { host, tasks, profiles, promptSets } = ctx;
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

  const maxBody = deps.maxBodyBytes ?? 2 << 20;
  app.use("/api/*", bodyLimit({ maxSize: maxBody, onError: (c) => c.json({ error: `request body too large (limit ${maxBody} bytes)` }, 413) }));
  app.use("/api/*", async (c, next) => {
    await next();
    c.header("Cache-Control", "no-store");
  });

  app.route("/api", modelRoutes(ctx));
  app.route("/api", runRoutes(ctx, {
    heartbeatMs: deps.heartbeatMs ?? 5000,
    maxFollowers: deps.maxFollowers ?? (Number(process.env.QW_SSE_MAX_FOLLOWERS) || 128),
    flushMs: deps.sseFlushMs ?? (Number(process.env.QW_SSE_FLUSH_MS) || 50),
  }));
  app.route("/api", quantRoutes(ctx));
  app.route("/api", passkeyRoutes(ctx));
  app.route("/api", profileRoutes(ctx));
  app.route("/api", exportRoutes(ctx));
  app.route("/", pageRoutes(deps.publicDir));

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
