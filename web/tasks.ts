// Tasks: model loads, runs and quantization-error jobs. They execute one at a time (one engine, one session),
// in submission order; each keeps an event log that SSE clients replay from any point (Last-Event-ID) and
// follow live. Finished tasks are kept (bounded) so a late client still gets the whole story.

export type TaskKind = "load" | "run" | "quant" | "perplexity" | "notebook" | "passkey";
export type TaskStatus = "queued" | "running" | "done" | "failed" | "cancelled";

export interface TaskEvent { id: number; event: string; data: unknown; frame?: Uint8Array }

const utf8 = new TextEncoder();

/** The event as one SSE frame, serialized and UTF-8 encoded once however many clients follow the task (D5).
 *  JSON.stringify without indentation never emits a raw newline, so the data fits one `data:` line. */
export function sseFrame(e: TaskEvent): Uint8Array {
  return (e.frame ??= utf8.encode(`id: ${e.id}\nevent: ${e.event}\ndata: ${JSON.stringify(e.data) ?? "null"}\n\n`));
}

/** Frames of queued events joined into one buffer (≤ ~256 KiB), taken off the front of `queue`. */
export function takeFrames(queue: TaskEvent[]): Uint8Array {
  const parts: Uint8Array[] = [];
  let n = 0;
  while (queue.length && n < 256 << 10) { const f = sseFrame(queue.shift()!); parts.push(f); n += f.length; }
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

export interface TaskView {
  id: string; kind: TaskKind; status: TaskStatus; created: string; started?: string; finished?: string;
  error?: string; result?: unknown; label?: string; events: number; profileKey?: string; followers: number;
}

type Listener = (e: TaskEvent | null) => void; // null = finished

export class Task {
  status: TaskStatus = "queued";
  readonly created = new Date();
  started?: Date;
  finished?: Date;
  error?: string;
  result?: unknown;
  readonly events: TaskEvent[] = [];
  private listeners = new Set<Listener>();
  private droppedEvents = 0;
  cancelRequested = false;
  /** Why the server stopped this task while it ran (graceful shutdown), if it did. */
  shutdownReason?: string;
  /** SSE clients attached now (capped per task by the app). */
  followers = 0;
  constructor(readonly id: string, readonly kind: TaskKind, readonly label: string | undefined,
    readonly exec: (t: Task) => Promise<unknown>, private maxEvents: number) {}

  emit(event: string, data: unknown) {
    const e = { id: this.events.length + this.droppedEvents + 1, event, data };
    this.events.push(e);
    // Long runs: keep the head (start, prefill) and the recent tail; steps in between are dropped from replay.
    if (this.events.length > this.maxEvents) { this.events.splice(16, 1); this.droppedEvents++; }
    for (const l of this.listeners) l(e);
  }
  compact() {
    const last = this.events[this.events.length - 1];
    this.droppedEvents += this.events.length - 1;
    this.events.length = 0;
    if (last) this.events.push(last);
  }
  get done() { return this.status === "done" || this.status === "failed" || this.status === "cancelled"; }
  finish(status: TaskStatus) {
    this.status = status;
    this.finished = new Date();
    for (const l of this.listeners) l(null);
    this.listeners.clear();
  }
  subscribe(l: Listener): () => void { this.listeners.add(l); return () => this.listeners.delete(l); }
  view(withResult = true): TaskView {
    return {
      id: this.id, kind: this.kind, status: this.status, created: this.created.toISOString(),
      started: this.started?.toISOString(), finished: this.finished?.toISOString(), error: this.error,
      result: withResult ? this.result : undefined, label: this.label, events: this.events.length + this.droppedEvents,
      profileKey: (this.result as { profileKey?: string } | undefined)?.profileKey, followers: this.followers,
    };
  }
}

export class TaskManager {
  private tasks = new Map<string, Task>();
  private queue: Task[] = [];
  private running: Task | null = null;
  private seq = 0;
  private closing: string | null = null;
  constructor(private onCancelRunning: (t: Task) => void, private keep = 300, private maxEvents = 20000) {}

  /** Non-null once shutdown() began: the reason, for refusing new work. */
  get closingReason() { return this.closing; }

  /**
   * Graceful shutdown: queued tasks end "cancelled", the running one is cancelled with `reason` (its exec
   * sees t.shutdownReason and saves what it has), and this resolves when it has finished or after waitMs.
   */
  async shutdown(reason: string, waitMs: number): Promise<void> {
    this.closing = reason;
    for (const t of this.queue.splice(0)) {
      t.cancelRequested = true;
      t.emit("cancelled", { message: `not started: ${reason}`, shutdown: true });
      t.finish("cancelled");
    }
    const r = this.running;
    if (!r) return;
    r.shutdownReason = reason;
    r.cancelRequested = true;
    this.onCancelRunning(r);
    const deadline = Date.now() + waitMs;
    while (!r.done && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
    if (!r.done) { r.emit("cancelled", { message: `${reason}: the task did not stop within ${waitMs} ms`, shutdown: true }); r.finish("cancelled"); }
  }

  submit(kind: TaskKind, label: string | undefined, exec: (t: Task) => Promise<unknown>): Task {
    const id = `${kind}-${Date.now().toString(36)}-${(++this.seq).toString(36)}`;
    const t = new Task(id, kind, label, exec, this.maxEvents);
    this.tasks.set(id, t);
    this.queue.push(t);
    t.emit("status", { status: "queued", position: this.queue.length + (this.running ? 1 : 0) - 1 });
    this.prune();
    queueMicrotask(() => this.pump());
    return t;
  }

  get(id: string) { return this.tasks.get(id); }
  list() { return [...this.tasks.values()].reverse(); }
  active() { return this.running; }
  pendingCount() { return this.queue.length + (this.running ? 1 : 0); }

  cancel(id: string): Task | undefined {
    const t = this.tasks.get(id);
    if (!t || t.done) return t;
    t.cancelRequested = true;
    const qi = this.queue.indexOf(t);
    if (qi >= 0) {
      this.queue.splice(qi, 1);
      t.emit("cancelled", { message: "cancelled before it started" });
      t.finish("cancelled");
    } else if (this.running === t) {
      this.onCancelRunning(t);
    }
    return t;
  }

  private async pump() {
    if (this.running) return;
    const t = this.queue.shift();
    if (!t) return;
    this.running = t;
    t.status = "running";
    t.started = new Date();
    t.emit("status", { status: "running" });
    try {
      t.result = await t.exec(t);
      if (t.done) return; // shutdown gave up waiting and already ended it
      const cancelled = t.cancelRequested || (t.result as { cancelled?: boolean } | undefined)?.cancelled === true;
      t.emit(cancelled ? "cancelled" : "done", t.result ?? {});
      t.finish(cancelled ? "cancelled" : "done");
    } catch (e) {
      t.error = e instanceof Error ? e.message : String(e);
      if (t.done) return;
      if (t.cancelRequested) { t.emit("cancelled", { message: t.error, ...(t.shutdownReason ? { shutdown: true } : {}) }); t.finish("cancelled"); }
      else { t.emit("error", { message: t.error }); t.finish("failed"); }
    } finally {
      this.running = null;
      if (!this.closing) queueMicrotask(() => this.pump());
    }
  }

  private prune() {
    // Finished tasks beyond the 20 most recent keep only their terminal event (bounded memory; the profile
    // holds the data). A client replaying such a task gets the outcome directly.
    let finished = 0;
    for (const t of [...this.tasks.values()].reverse()) {
      if (!t.done) continue;
      if (++finished > 20 && t.events.length > 1) t.compact();
    }
    if (this.tasks.size <= this.keep) return;
    for (const [id, t] of this.tasks) {
      if (this.tasks.size <= this.keep) break;
      if (t.done) this.tasks.delete(id);
    }
  }
}
