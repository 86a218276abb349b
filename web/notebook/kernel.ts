// The server's side of one open notebook: its Bun Worker (web/notebook/worker.ts), started on first use, and the
// limits that keep a cell from taking the server with it:
//   - interrupt: a flag in shared memory (progress()/checkInterrupt() in the cell see it even in a busy loop)
//     and an AbortSignal; a cell still running `graceMs` later has its worker terminated (variables are lost,
//     the next run starts a fresh worker);
//   - time: a cell running past `cellTimeoutMs` is terminated the same way;
//   - memory: cells run one at a time server-wide (they are tasks of the server's queue, see routes.ts), so
//     growth of the process's resident memory while a cell runs is that cell's; past `memoryMb` it is
//     terminated. Bun Workers have no per-worker heap limit, hence this watchdog.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { transformCell } from "../../engine/notebook/transform.ts";
import type { Output } from "../../engine/notebook/format.ts";
import { FromNotebook, type CellError, type ToNotebook } from "./protocol.ts";

export interface KernelLimits {
  cellTimeoutMs: number;   // per cell
  memoryMb: number;        // resident-memory growth allowed during one cell
  graceMs: number;         // after an interrupt, before the worker is terminated
}
export const DEFAULT_LIMITS: KernelLimits = { cellTimeoutMs: 30 * 60_000, memoryMb: 8192, graceMs: 3000 };

export interface CellResult { ok: boolean; error?: CellError; ms: number; killed?: string }

interface Running {
  id: string;
  t0: number;
  onOutput: (o: Output) => void;
  resolve: (r: CellResult) => void;
  timers: ReturnType<typeof setTimeout>[];
}

const REPO = join(import.meta.dir, "../..");
/** From the notebook's folder first; packages the workbench ships (zod, @observablehq/plot, …) from anywhere. */
const resolveFrom = (dir: string) => (spec: string) => {
  if (spec.startsWith("node:") || spec.startsWith("bun:")) return spec;
  for (const from of [dir, REPO]) {
    try { return Bun.resolveSync(spec, from); } catch { /* next */ }
    if (spec.startsWith(".") || spec.startsWith("/")) break; // relative paths mean the notebook's folder only
  }
  return spec; // the import then fails with Bun's own message
};

export class NotebookKernel {
  private worker: Worker | null = null;
  private ready: Promise<void> | null = null;
  private cellDir: string | null = null;
  private running: Running | null = null;
  private seq = 0;
  private readonly flag = new Int32Array(new SharedArrayBuffer(4));
  /** Why the last worker ended (shown by the page), null while one is alive or none was started. */
  lastExit: string | null = null;
  constructor(readonly file: string, private limits: KernelLimits = DEFAULT_LIMITS) {}

  state(): "off" | "idle" | "busy" { return this.running ? "busy" : this.worker ? "idle" : "off"; }

  private start(): Promise<void> {
    if (this.ready) return this.ready;
    const w = new Worker(new URL("./worker.ts", import.meta.url).href);
    this.worker = w;
    this.cellDir = mkdtempSync(join(tmpdir(), "qwb-nb-"));
    this.lastExit = null;
    this.ready = new Promise<void>((resolve, reject) => {
      w.onmessage = (ev: MessageEvent) => {
        const r = FromNotebook.safeParse(ev.data);
        if (!r.success) { console.error("[notebook] malformed message from a notebook worker:", r.error.issues[0]?.message); return; }
        const m = r.data;
        if (m.t === "ready") { resolve(); return; }
        const run = this.running;
        if (!run || run.id !== m.id) return;
        if (m.t === "output") run.onOutput(m.output);
        else this.finish({ ok: m.ok, error: m.error, ms: performance.now() - run.t0 });
      };
      w.onerror = (e: ErrorEvent) => {
        // Bun's ErrorEvent.message carries a code frame; keep the error's own message.
        const own = e.error instanceof Error ? e.error.message : /error: (.*)/.exec(e.message ?? "")?.[1] ?? e.message;
        this.kill(`notebook worker crashed: ${own ?? "unknown error"}`);
        reject(new Error(own));
      };
      w.addEventListener("close", () => { if (this.worker === w) this.kill("notebook worker exited"); });
      w.postMessage({ t: "init", cellDir: this.cellDir!, flag: this.flag.buffer as SharedArrayBuffer } satisfies ToNotebook);
    });
    this.ready.catch(() => {});
    return this.ready;
  }

  private finish(r: CellResult) {
    const run = this.running;
    if (!run) return;
    this.running = null;
    for (const t of run.timers) clearTimeout(t);
    Atomics.store(this.flag, 0, 0);
    run.resolve(r);
  }

  /** Runs one cell's source; resolves when it ends (never rejects: failures are a CellResult). */
  async run(source: string, onOutput: (o: Output) => void): Promise<CellResult> {
    if (this.running) return { ok: false, ms: 0, error: { name: "Busy", message: "a cell of this notebook is already running" } };
    const t0 = performance.now();
    let code: string;
    try {
      code = transformCell(source, resolveFrom(dirname(this.file)), { file: this.file, dir: dirname(this.file) }).code;
    } catch (e) {
      return { ok: false, ms: 0, error: { name: "SyntaxError", message: (e as Error).message } };
    }
    await this.start().catch(() => {});
    if (!this.worker) return { ok: false, ms: 0, error: { name: "KernelError", message: this.lastExit ?? "the notebook worker did not start" } };
    Atomics.store(this.flag, 0, 0);
    const id = `c${++this.seq}`;
    return new Promise<CellResult>((resolve) => {
      const rss0 = process.memoryUsage().rss;
      const timers: ReturnType<typeof setTimeout>[] = [];
      this.running = { id, t0, onOutput, resolve, timers };
      timers.push(setTimeout(() => this.kill(`time limit: the cell ran longer than ${Math.round(this.limits.cellTimeoutMs / 1000)} s; the notebook worker was terminated (its variables are lost)`), this.limits.cellTimeoutMs));
      const mem = setInterval(() => {
        if (this.running?.id !== id) { clearInterval(mem); return; }
        const grown = (process.memoryUsage().rss - rss0) / 2 ** 20;
        if (grown > this.limits.memoryMb) { clearInterval(mem); this.kill(`memory limit: the cell grew the server's memory by ${grown.toFixed(0)} MiB (limit ${this.limits.memoryMb} MiB); the notebook worker was terminated (its variables are lost)`); }
      }, 200);
      timers.push(mem as unknown as ReturnType<typeof setTimeout>);
      this.worker!.postMessage({ t: "exec", id, code } satisfies ToNotebook);
    });
  }

  /** Asks the running cell to stop; terminates the worker if it has not stopped after the grace period. */
  interrupt(): boolean {
    const run = this.running;
    if (!run) return false;
    Atomics.store(this.flag, 0, 1);
    this.worker?.postMessage({ t: "interrupt" } satisfies ToNotebook);
    run.timers.push(setTimeout(() => {
      if (this.running === run) this.kill(`interrupted: the cell did not stop within ${(this.limits.graceMs / 1000).toFixed(1)} s, so the notebook worker was terminated (its variables are lost; run the cells again)`);
    }, this.limits.graceMs));
    return true;
  }

  /** Terminates the worker (if any); a running cell ends with the reason as its error. */
  kill(reason = "the notebook worker was restarted"): void {
    const w = this.worker;
    this.worker = null; this.ready = null;
    if (w) {
      this.lastExit = reason;
      w.onmessage = null;
      try { w.terminate(); } catch { /* gone */ }
    }
    if (this.cellDir) { rmSync(this.cellDir, { recursive: true, force: true }); this.cellDir = null; }
    const run = this.running;
    if (run) this.finish({ ok: false, ms: performance.now() - run.t0, killed: reason, error: { name: "KernelKilled", message: reason } });
  }
}
