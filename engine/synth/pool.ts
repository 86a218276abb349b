// engine/synth/pool.ts — encodes synthetic tensors on a pool of Bun Workers (engine/synth/worker.ts) while a
// writer consumes them strictly in order.
//
// A tensor is cut into the row chunks that engine/synth/synthetic.ts's sequential encoder generates one after another;
// every chunk starts from its own jumped-ahead RNG state (Xoshiro128.jump), so the chunks of one tensor — and of
// tensors after it — run on all workers at once and the bytes are those of the sequential path. Chunks come back
// as transferred ArrayBuffers and are copied into the tensor's buffer (one memcpy on the main thread).
//
// Memory: tensors are started in file order while (a) the pool has fewer queued chunks than workers and (b) the
// bytes of started-but-not-yet-written tensors stay within `maxInFlightBytes` (one tensor is always allowed).
// A tensor counts as written when the writer asks for the next one.
import { availableParallelism } from "node:os";
import type { SynthSpec, SynthTensor } from "./types.ts";

/** One unit of work: rows [row0, row0 + rows) of tensor t encoded as ggmlType (see encodeTensorRows). */
export interface EncodeJob {
  spec: SynthSpec;
  t: SynthTensor;
  ggmlType: number;
  row0: number;
  rows: number;
}

/** Worker count: QW_SYNTH_WORKERS if set (1 = sequential, in-process), else min(cores - 1, 12), at least 1. */
export function synthWorkerCount(env: Record<string, string | undefined> = process.env): number {
  const raw = env.QW_SYNTH_WORKERS;
  if (raw !== undefined && raw.trim() !== "") {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1) throw new Error(`QW_SYNTH_WORKERS must be a positive integer, got '${raw}'`);
    return n;
  }
  return Math.max(1, Math.min(availableParallelism() - 1, 12));
}

interface Pending {
  job: EncodeJob;
  resolve: (b: Uint8Array) => void;
  reject: (e: Error) => void;
}

interface Slot {
  w: Worker;
  inFlight: Map<number, Pending>;
}

/** A fixed set of workers; each holds up to `depth` jobs so it never waits on the main thread between jobs. */
export class SynthPool {
  private slots: Slot[] = [];
  private queue: Pending[] = [];
  private nextId = 1;
  private failure: Error | null = null;
  private closed = false;
  /** Called once with the first failure (a job that threw, a crashed worker). */
  onFailure?: (e: Error) => void;
  /** Called after any job completes (the scheduler refills the queue from it). */
  onIdle?: () => void;

  constructor(readonly size: number, private readonly depth = 2) {
    if (!Number.isInteger(size) || size < 1) throw new Error(`SynthPool: size must be a positive integer, got ${size}`);
    const url = new URL("./worker.ts", import.meta.url).href;
    for (let i = 0; i < size; i++) {
      const slot: Slot = { w: new Worker(url), inFlight: new Map() };
      slot.w.onmessage = (ev: MessageEvent) => this.onMessage(slot, ev.data);
      slot.w.onerror = (ev: ErrorEvent) => {
        ev.preventDefault?.();
        this.fail(new Error(`synthetic worker ${i} crashed: ${ev.message ?? "unknown error"}`));
      };
      slot.w.addEventListener("close", () => {
        if (!this.closed && slot.inFlight.size > 0) this.fail(new Error(`synthetic worker ${i} exited with ${slot.inFlight.size} job(s) unfinished`));
      });
      this.slots.push(slot);
    }
  }

  /** Jobs waiting for a worker (not yet sent). */
  get backlog(): number {
    return this.queue.length;
  }

  /** Encodes one job on some worker. Rejects with the worker's error (message + tensor name) if it throws. */
  run(job: EncodeJob): Promise<Uint8Array> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new Error("SynthPool: closed"));
    return new Promise<Uint8Array>((resolve, reject) => {
      this.queue.push({ job, resolve, reject });
      this.dispatch();
    });
  }

  /** Terminates the workers; jobs still pending reject. Safe to call more than once. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const err = this.failure ?? new Error("SynthPool: closed");
    for (const s of this.slots) {
      for (const p of s.inFlight.values()) p.reject(err);
      s.inFlight.clear();
      s.w.terminate();
    }
    for (const p of this.queue) p.reject(err);
    this.queue = [];
  }

  private dispatch(): void {
    while (this.queue.length > 0 && !this.closed) {
      let best: Slot | null = null;
      for (const s of this.slots) if (s.inFlight.size < this.depth && (!best || s.inFlight.size < best.inFlight.size)) best = s;
      if (!best) return;
      const p = this.queue.shift()!;
      const id = this.nextId++;
      best.inFlight.set(id, p);
      best.w.postMessage({ id, job: p.job });
    }
  }

  private onMessage(slot: Slot, m: { id: number; buf?: ArrayBuffer; error?: string; stack?: string }): void {
    const p = slot.inFlight.get(m.id);
    if (!p) return;
    slot.inFlight.delete(m.id);
    if (m.error !== undefined || !m.buf) {
      const j = p.job;
      const e = new Error(`synthetic worker failed on ${j.t.name} rows ${j.row0}..${j.row0 + j.rows}: ${m.error ?? "no data"}`);
      if (m.stack) e.stack = `${e.message}\n  worker stack: ${m.stack}`;
      p.reject(e);
      this.fail(e);
      return;
    }
    p.resolve(new Uint8Array(m.buf));
    this.dispatch();
    this.onIdle?.();
  }

  private fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    this.onFailure?.(e);
    this.close();
  }
}

/** A tensor as the scheduler sees it: its byte size and the row-chunk jobs that make it, in order. */
export interface ScheduledTensor {
  nbytes: number;
  jobs: { job: EncodeJob; offset: number; nbytes: number }[];
}

/**
 * Produces tensors in order from a pool: `get(i)` returns tensor i's bytes (call it for i = 0, 1, 2, ... in
 * order, as the GGUF and safetensors writers do). Work on later tensors starts ahead within the limits above.
 * Any failure rejects the pending and all later `get`s at once (no hang); `close()` always terminates the pool.
 */
export class OrderedEncoder {
  private started = 0;
  private reserved = 0;
  private handedOut = -1;
  private results: Promise<Uint8Array>[] = [];
  private failure: Error | null = null;
  /** Rejects the promise of the get() the writer is waiting on (a failure in any later tensor ends it at once). */
  private rejectWaiter: ((e: Error) => void) | null = null;

  constructor(private pool: SynthPool, private tensors: ScheduledTensor[], private maxInFlightBytes = 4e9) {
    pool.onFailure = (e) => {
      this.failure = e;
      this.rejectWaiter?.(e);
      this.rejectWaiter = null;
    };
    pool.onIdle = () => this.pump();
    this.pump();
  }

  get(i: number): Promise<Uint8Array> {
    if (this.failure) return Promise.reject(this.failure);
    if (!Number.isInteger(i) || i < 0 || i >= this.tensors.length) return Promise.reject(new Error(`OrderedEncoder: no tensor ${i}`));
    // the writer has written every tensor before i: their bytes are no longer held here
    for (let k = Math.max(this.handedOut, 0); k < i; k++) if (k < this.started) this.reserved -= this.tensors[k].nbytes;
    this.handedOut = Math.max(this.handedOut, i);
    while (this.started <= i) this.start(); // asked for a tensor not started yet: start it (and those before) now
    this.pump();
    const r = this.results[i];
    if (!r) return Promise.reject(new Error(`OrderedEncoder: tensor ${i} was already handed out`));
    delete this.results[i]; // nothing here keeps a written tensor alive
    // Not Promise.race with a long-lived "failed" promise: its reaction list would keep every tensor ever
    // returned (the whole file) reachable until the end.
    return new Promise<Uint8Array>((resolve, reject) => {
      this.rejectWaiter = reject;
      r.then(
        (b) => { if (this.rejectWaiter === reject) this.rejectWaiter = null; resolve(b); },
        (e) => { if (this.rejectWaiter === reject) this.rejectWaiter = null; reject(e); },
      );
    });
  }

  close(): void {
    this.pool.close();
  }

  private pump(): void {
    while (!this.failure && this.started < this.tensors.length && this.pool.backlog < this.pool.size) {
      const next = this.tensors[this.started].nbytes;
      if (this.reserved > 0 && this.reserved + next > this.maxInFlightBytes) return;
      this.start();
    }
  }

  private start(): void {
    const i = this.started++;
    const T = this.tensors[i];
    this.reserved += T.nbytes;
    let r: Promise<Uint8Array>;
    if (T.jobs.length === 1 && T.jobs[0].offset === 0 && T.jobs[0].nbytes === T.nbytes) {
      r = this.pool.run(T.jobs[0].job);
    } else {
      const out = new Uint8Array(T.nbytes);
      r = Promise.all(T.jobs.map((j) => this.pool.run(j.job).then((b) => {
        if (b.length !== j.nbytes) throw new Error(`synthetic: ${j.job.t.name} rows ${j.job.row0}.. gave ${b.length} bytes, expected ${j.nbytes}`);
        out.set(b, j.offset);
      }))).then(() => out);
    }
    r.catch(() => {}); // a failure reaches the writer through get(); this only avoids an unhandled rejection
    this.results[i] = r;
  }
}
