// The notebook API, a Hono sub-app mounted at /api/notebooks by web/app.ts.
//
// Execution model: each open notebook has one Bun Worker (web/notebook/kernel.ts). A run request (one cell, run
// all, run from here) becomes ONE task of the server's task queue (kind "notebook"), so it waits behind a
// running model load / run / quantization measurement and blocks them while it runs: the engine still
// computes one thing at a time, whether the server's engine worker or a notebook's own model handle does it.
// The page follows the task over the usual SSE stream (/api/tasks/:id/events): status (queued, position),
// cell-start, output, cell-done, then done / error / cancelled.
//
// Safety: code runs only when the server allows it (loopback, or --allow-exec); otherwise every route that
// runs or writes code answers 403 and notebooks can only be read.
import { Hono, type Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { z } from "zod";
import { Cell, Output } from "../../engine/notebook/format.ts";
import { fromIpynb, toIpynb } from "../../engine/notebook/ipynb.ts";
import { HttpError } from "../errors.ts";
import { check, jsonBody } from "../http.ts";
import type { Task, TaskManager } from "../tasks.ts";
import { DEFAULT_LIMITS, NotebookKernel, type KernelLimits } from "./kernel.ts";
import { NAME_RE, NotebookStore } from "./store.ts";

export interface NotebookDeps {
  dir: string;                     // notebooks folder (default <repo>/notebooks)
  exec: boolean;                   // may cells run and notebooks be written? (server: loopback or --allow-exec)
  execNote?: string;               // why not, shown by the page
  limits?: Partial<KernelLimits>;
  maxBodyBytes?: number;           // default 8 MiB, the server's request limit (outputs with figures outgrow the 2 MiB API bodies)
  maxQueue?: number;               // pending tasks before 503 (default 64)
}

const SaveRequest = z.object({
  cells: z.array(Cell).max(2000),
  outputs: z.array(z.object({ outputs: z.array(Output).max(10_000), ok: z.boolean().optional(), ms: z.number().optional() }).nullable()).max(2000).default([]),
}).strict();
const RunRequest = z.object({
  cells: z.array(z.object({ key: z.string().max(100), source: z.string().max(1_000_000) }).strict()).min(1).max(2000),
}).strict();
const CreateRequest = z.object({ name: z.string(), cells: z.array(Cell).max(2000).optional() }).strict();

const NEW_NOTEBOOK: Cell[] = [
  { type: "markdown", source: "# New notebook\n\nCells are TypeScript; `display()`, `table()`, `plotly()`, `plot()` and `progress()` show results under the cell." },
  { type: "code", source: 'import { openModel } from "../engine/index.ts";\nimport { display, table } from "../engine/notebook/display.ts";\n\nconst model = await openModel("default");\ndisplay(`${model.id} · ${model.backend} · ${model.config.num_hidden_layers} layers`);' },
];

export function notebookRoutes(tasks: TaskManager, deps: NotebookDeps) {
  const store = new NotebookStore(deps.dir);
  const limits: KernelLimits = { ...DEFAULT_LIMITS, ...deps.limits };
  const kernels = new Map<string, { kernel: NotebookKernel; task: Task | null }>();
  const maxQueue = deps.maxQueue ?? 64;
  const app = new Hono();

  const entry = (name: string) => {
    let e = kernels.get(name);
    if (!e) { e = { kernel: new NotebookKernel(store.path(name), limits), task: null }; kernels.set(name, e); }
    return e;
  };
  const needExec = () => {
    if (!deps.exec) throw new HttpError(403, deps.execNote ?? "code execution is disabled on this server (restart it on loopback, or with --allow-exec)");
  };
  const nameOf = (c: Context) => {
    const n = c.req.param("name") ?? "";
    if (!NAME_RE.test(n)) throw new HttpError(400, `notebook name: 1–64 of A-Z a-z 0-9 . _ -, got ${JSON.stringify(n.slice(0, 80))}`);
    return n;
  };
  const kernelView = (name: string) => {
    const e = kernels.get(name);
    return { state: e?.kernel.state() ?? "off", lastExit: e?.kernel.lastExit ?? null, task: e?.task && !e.task.done ? e.task.id : null };
  };

  app.onError((err, c) => {
    if (err instanceof HttpError) return c.json({ error: err.message }, err.status);
    console.error("[notebook] unhandled:", err);
    return c.json({ error: err instanceof Error ? err.message : String(err) }, 500);
  });
  app.use("*", bodyLimit({
    maxSize: deps.maxBodyBytes ?? 8 << 20,
    onError: (c) => c.json({ error: `request body too large (limit ${deps.maxBodyBytes ?? 8 << 20} bytes)` }, 413),
  }));
  app.use("*", async (c, next) => { await next(); c.header("Cache-Control", "no-store"); });

  app.get("/", (c) => c.json({ dir: store.dir, exec: deps.exec, execNote: deps.exec ? null : deps.execNote ?? null, notebooks: store.list() }));

  app.post("/", async (c) => {
    needExec();
    const req = check(CreateRequest, await jsonBody(c), "new notebook");
    if (store.exists(req.name)) throw new HttpError(409, `a notebook named ${req.name} already exists`);
    const doc = await store.write(req.name, req.cells ?? NEW_NOTEBOOK, []);
    return c.json({ ...doc, kernel: kernelView(req.name), exec: deps.exec }, 201);
  });

  app.post("/import", async (c) => {
    needExec();
    const name = c.req.query("name") ?? "";
    if (!NAME_RE.test(name)) throw new HttpError(400, "import: give ?name= (1–64 of A-Z a-z 0-9 . _ -)");
    if (store.exists(name) && c.req.query("overwrite") !== "1") throw new HttpError(409, `a notebook named ${name} already exists (add ?overwrite=1 to replace it)`);
    let nb: ReturnType<typeof fromIpynb>;
    try { nb = fromIpynb(await jsonBody(c)); } catch (e) { throw e instanceof HttpError ? e : new HttpError(400, (e as Error).message); }
    const doc = await store.write(name, nb.cells, nb.outputs.map((o) => (o.length ? { outputs: o } : null)));
    return c.json({ ...doc, kernel: kernelView(name), exec: deps.exec }, 201);
  });

  app.get("/:name", (c) => {
    const name = nameOf(c);
    return c.json({ ...store.read(name), kernel: kernelView(name), exec: deps.exec, execNote: deps.exec ? null : deps.execNote ?? null });
  });

  app.put("/:name", async (c) => {
    needExec();
    const name = nameOf(c);
    const req = check(SaveRequest, await jsonBody(c), "save");
    const doc = await store.write(name, req.cells, req.cells.map((_, i) => req.outputs[i] ?? null));
    return c.json({ ...doc, kernel: kernelView(name), exec: deps.exec });
  });

  app.get("/:name/ipynb", (c) => {
    const doc = store.read(nameOf(c));
    c.header("Content-Disposition", `attachment; filename="${doc.name}.ipynb"`);
    return c.json(toIpynb(doc.cells, doc.outputs));
  });

  app.post("/:name/run", async (c) => {
    needExec();
    const name = nameOf(c);
    if (!store.exists(name)) throw new HttpError(404, `no notebook named ${name}`);
    const req = check(RunRequest, await jsonBody(c), "run");
    const e = entry(name);
    if (e.task && !e.task.done) throw new HttpError(409, `notebook ${name} is already running or queued (task ${e.task.id}); interrupt it first`);
    if (tasks.pendingCount() >= maxQueue) throw new HttpError(503, `too many pending tasks (${maxQueue}); wait or cancel some`);
    const t = tasks.submit("notebook", `${name}: ${req.cells.length} cell${req.cells.length > 1 ? "s" : ""}`, async (t) => {
      let ran = 0;
      const watch = setInterval(() => { if (t.cancelRequested) e.kernel.interrupt(); }, 100);
      try {
        for (const cell of req.cells) {
          if (t.cancelRequested) break;
          t.emit("cell-start", { cell: cell.key });
          const r = await e.kernel.run(cell.source, (o) => t.emit("output", { cell: cell.key, output: o }));
          ran++;
          t.emit("cell-done", { cell: cell.key, ok: r.ok, ms: r.ms, error: r.error ?? null, killed: r.killed ?? null });
          if (!r.ok) return { ok: false, ran, failed: cell.key, cancelled: t.cancelRequested };
        }
        return { ok: true, ran, cancelled: t.cancelRequested };
      } finally {
        clearInterval(watch);
      }
    });
    e.task = t;
    return c.json({ task: t.view(), id: t.id, events: `/api/tasks/${t.id}/events` }, 202);
  });

  app.post("/:name/interrupt", (c) => {
    const name = nameOf(c);
    const e = kernels.get(name);
    const task = e?.task && !e.task.done ? e.task : null;
    if (task) tasks.cancel(task.id);      // a queued run leaves the queue; a running one sees cancelRequested
    const running = e?.kernel.interrupt() ?? false;
    return c.json({ interrupted: !!task || running, task: task?.id ?? null });
  });

  app.post("/:name/restart", (c) => {
    const name = nameOf(c);
    const e = kernels.get(name);
    if (e?.task && !e.task.done) tasks.cancel(e.task.id);
    e?.kernel.kill("restarted from the page");
    return c.json({ restarted: true, kernel: kernelView(name) });
  });

  return Object.assign(app, {
    store, kernels,
    closeAll() { for (const e of kernels.values()) e.kernel.kill("server stopping"); },
  });
}
