// The engine worker: FFI calls block their thread, so the engine lives here and the server's event loop stays
// free for HTTP and SSE. Speaks the protocol of web/protocol.ts. An engine failure becomes an "error" reply
// for that request; the worker itself keeps serving.
import { EngineCore } from "./core.ts";
import { ToWorker, type FromWorker } from "./protocol.ts";
import type { OpenModel } from "../engine/api.ts";
import type { Catalog } from "../engine/catalog.ts";
import type { RunSpec } from "../engine/measure/record.ts";
import type { QuantSpec } from "../engine/measure/quant-error.ts";

declare const self: Worker;

let core: EngineCore | null = null;
const post = (m: FromWorker) => self.postMessage(m);
const errMsg = (e: unknown) => (e instanceof Error ? e.message : String(e));

self.onmessage = async (ev: MessageEvent) => {
  const parsed = ToWorker.safeParse(ev.data);
  if (!parsed.success) {
    const id = (ev.data && typeof ev.data === "object" && typeof ev.data.id === "string") ? ev.data.id : "?";
    post({ t: "error", id, message: `engine worker: bad message: ${parsed.error.issues[0]?.message}` });
    return;
  }
  const m = parsed.data;
  if (m.t === "init") {
    try {
      for (const [k, v] of Object.entries(m.env ?? {})) process.env[k] = v;
      // An engine module exports openModel, and may export catalog() (a fake engine's own names).
      const mod = (await import(m.engineModule)) as { openModel?: OpenModel; catalog?: () => Catalog };
      if (typeof mod.openModel !== "function") throw new Error(`${m.engineModule} exports no openModel()`);
      core = new EngineCore(mod.openModel, typeof mod.catalog === "function" ? mod.catalog : undefined);
      post({ t: "ready" });
    } catch (e) {
      post({ t: "init-error", message: `cannot load the engine (${m.engineModule}): ${errMsg(e)}` });
    }
    return;
  }
  if (m.t === "cancel") { core?.cancel(m.id); return; }
  if (!core) { post({ t: "error", id: m.id, message: "engine worker not initialized" }); return; }
  const onEvent = (e: object) => post({ t: "event", id: m.id, ev: e as { type: string } });
  try {
    let value: unknown;
    if (m.t === "load") value = await core.load(m.id, m.source, m.opts, onEvent);
    else if (m.t === "run") value = await core.run(m.id, m.spec as RunSpec, onEvent);
    else if (m.t === "perplexity") value = await core.perplexity(m.id, m.spec, onEvent);
    else if (m.t === "passkey") value = await core.passkey(m.id, m.spec, onEvent);
    else if (m.t === "catalog") value = core.catalog();
    else value = await core.quant(m.id, m.spec as QuantSpec, onEvent);
    post({ t: "result", id: m.id, value });
  } catch (e) {
    post({ t: "error", id: m.id, message: errMsg(e) });
  }
};
