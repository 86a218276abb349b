// Task routes, under both /tasks and /runs (the page and older clients use either): list, one task, cancel,
// and its events as SSE (replayable from Last-Event-ID / ?from=).
import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { HttpError } from "../errors.ts";
import { takeFrames, type TaskManager } from "../tasks.ts";

export interface SseOptions {
  heartbeatMs: number;    // keep-alive comment interval (Bun's idle timeout must be longer)
  maxFollowers: number;   // SSE clients per task before 429
  flushMs: number;        // a follower gets at most one write per this many ms
}

export function taskRoutes(tasks: TaskManager, o: SseOptions) {
  const app = new Hono();
  const taskOr404 = (id: string) => {
    const t = tasks.get(id);
    if (!t) throw new HttpError(404, `no such task: ${id.slice(0, 80)}`);
    return t;
  };

  for (const base of ["/tasks", "/runs"]) {
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
      if (t.followers >= o.maxFollowers) {
        throw new HttpError(429, `too many followers of task ${t.id} (cap ${o.maxFollowers}); poll GET /api/tasks/${t.id} instead, or retry later`);
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
        const hb = setInterval(() => { if (!closed) s.write(": keep-alive\n\n").catch(close); }, o.heartbeatMs);
        try {
          await write(": stream open\n\n");
          let lastWrite = 0;
          while (!closed) {
            // At most one write per flushMs: during a fast decode (2 events per token) a follower's events
            // go out in batches, so 100 followers cost ~2000 writes/s instead of ~100 per token.
            const wait = lastWrite + o.flushMs - performance.now();
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
  return app;
}
