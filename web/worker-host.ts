// The server's side of the engine worker: forwards load/run/quant/cancel to web/engine-worker.ts and turns
// its replies back into promises and event callbacks. If the worker dies, every pending request fails with a
// clear message, the loaded model is forgotten, and the next request starts a fresh worker.
import { z } from "zod";
import { Profile } from "../engine/measure/profile.ts";
import { CatalogSchema, type Catalog } from "../engine/catalog.ts";
import type { RunSpec } from "../engine/measure/record.ts";
import type { QuantSpec } from "../engine/measure/quant-error.ts";
import type { EngineHost, HostEvent, LoadOptions, ModelInfo, PerplexityAnswer } from "./core.ts";
import { FromWorker, type PasskeySpec, type PerplexitySpec, type ToWorker } from "./protocol.ts";
import { parsePasskeyResult, type PasskeyResult } from "../engine/measure/passkey-schema.ts";

interface Pending { resolve: (v: unknown) => void; reject: (e: Error) => void; onEvent: (e: HostEvent) => void }

const ModelInfoSchema = z.object({
  source: z.string(), id: z.string(), format: z.string(), backend: z.enum(["cpu", "cuda"]),
  config: z.object({ num_hidden_layers: z.number().int() }).passthrough(),
  registry: z.array(z.object({ id: z.string(), values: z.array(z.string()) }).passthrough()),
}).passthrough();
const RunResult = z.object({ profile: Profile, cancelled: z.boolean() });

export class WorkerHost implements EngineHost {
  private worker: Worker | null = null;
  private ready: Promise<void> | null = null;
  private pending = new Map<string, Pending>();
  private info: ModelInfo | null = null;
  private names: Catalog | null = null;
  private calls = 0;
  constructor(private engineModule = new URL("../engine/index.ts", import.meta.url).pathname, private env?: Record<string, string>) {}

  private start(): Promise<void> {
    if (this.ready) return this.ready;
    const w = new Worker(new URL("./engine-worker.ts", import.meta.url).href);
    this.worker = w;
    this.ready = new Promise<void>((resolve, reject) => {
      const fail = (why: string) => {
        if (this.worker !== w) return;
        this.worker = null; this.ready = null; this.info = null;
        reject(new Error(why));
        for (const [id, p] of this.pending) { this.pending.delete(id); p.reject(new Error(why)); }
        try { w.terminate(); } catch { /* gone */ }
      };
      w.onmessage = (ev: MessageEvent) => {
        const r = FromWorker.safeParse(ev.data);
        if (!r.success) { console.error("[web] malformed message from the engine worker:", r.error.issues[0]?.message, JSON.stringify(ev.data)?.slice(0, 300)); return; }
        const m = r.data;
        if (m.t === "ready") { resolve(); return; }
        if (m.t === "init-error") { fail(m.message); return; }
        const p = this.pending.get(m.id);
        if (!p) return;
        if (m.t === "event") p.onEvent(m.ev as unknown as HostEvent);
        else if (m.t === "result") { this.pending.delete(m.id); p.resolve(m.value); }
        else if (m.t === "error") { this.pending.delete(m.id); p.reject(new Error(m.message)); }
      };
      w.onerror = (e: ErrorEvent) => {
        // Bun's ErrorEvent.message carries a code frame; keep the error's own message.
        const own = e.error instanceof Error ? e.error.message : /error: (.*)/.exec(e.message ?? "")?.[1];
        fail(`engine worker crashed: ${own ?? e.message ?? "unknown error"}`);
      };
      w.addEventListener("close", () => fail("engine worker exited"));
      w.postMessage({ t: "init", engineModule: this.engineModule, env: this.env } satisfies ToWorker);
    });
    this.ready.catch(() => {});
    return this.ready;
  }

  private async call(msg: ToWorker & { id: string }, onEvent: (e: HostEvent) => void): Promise<unknown> {
    await this.start();
    return new Promise((resolve, reject) => {
      this.pending.set(msg.id, { resolve, reject, onEvent });
      this.worker!.postMessage(msg);
    });
  }

  async load(id: string, source: string, opts: LoadOptions, onEvent: (e: HostEvent) => void): Promise<ModelInfo> {
    // The model loaded so far stays loaded (and reported) until the new one is in: a failed load keeps it.
    const v = ModelInfoSchema.parse(await this.call({ t: "load", id, source, opts }, onEvent)) as unknown as ModelInfo;
    this.info = v;
    return v;
  }
  async run(id: string, spec: RunSpec, onEvent: (e: HostEvent) => void) {
    return RunResult.parse(await this.call({ t: "run", id, spec }, onEvent));
  }
  async quant(id: string, spec: QuantSpec, onEvent: (e: HostEvent) => void) {
    return Profile.parse(await this.call({ t: "quant", id, spec }, onEvent));
  }
  async perplexity(id: string, spec: PerplexitySpec, onEvent: (e: HostEvent) => void) {
    const v = await this.call({ t: "perplexity", id, spec }, onEvent);
    if (!v || typeof v !== "object" || !("candidate" in v)) throw new Error("engine worker: malformed perplexity result");
    return v as PerplexityAnswer;
  }
  async passkey(id: string, spec: PasskeySpec, onEvent: (e: HostEvent) => void): Promise<PasskeyResult> {
    return parsePasskeyResult(await this.call({ t: "passkey", id, spec }, onEvent));
  }
  /** Checked here (the worker is another thread's word) and kept: the names are static for the library's life. */
  async catalog() {
    this.names ??= CatalogSchema.parse(await this.call({ t: "catalog", id: `catalog-${++this.calls}` }, () => {}));
    return this.names;
  }
  cancel(id: string) { this.worker?.postMessage({ t: "cancel", id } satisfies ToWorker); }
  loaded() { return this.info; }
  async close() {
    const w = this.worker;
    this.worker = null; this.ready = null; this.info = null;
    for (const [id, p] of this.pending) { this.pending.delete(id); p.reject(new Error("engine host closed")); }
    w?.terminate();
  }
}
