// One notebook's worker: runs its cells (already transformed by engine/notebook/transform.ts on the server) as
// modules in this thread, so cells share this worker's globals and nothing else. Console output, display()
// outputs and errors go back to the server as messages; the server may terminate this worker at any time
// (interrupt of a cell that does not stop, time or memory limit), which loses the notebook's variables only.
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { format } from "node:util";
import { display, installSink } from "../../engine/notebook/display.ts";
import type { Output } from "../../engine/notebook/format.ts";
import { ToNotebook, type CellError, type FromNotebook } from "./protocol.ts";

declare const self: Worker;
const post = (m: FromNotebook) => self.postMessage(m);

let flag = new Int32Array(new SharedArrayBuffer(4));
let current: { id: string; ac: AbortController } | null = null;
let cellDir = "";  // made and removed by the server (a terminated worker cleans nothing up)
let seq = 0;

// Text is coalesced per stream (a loop of console.log calls becomes one output) and flushed every 50 ms, before
// any other output, and at the end of the cell.
let textBuf: { stream: "stdout" | "stderr"; text: string } | null = null;
let flushTimer: ReturnType<typeof setTimeout> | null = null;
function flushText() {
  if (flushTimer) { clearTimeout(flushTimer); flushTimer = null; }
  if (!textBuf || !current) { textBuf = null; return; }
  post({ t: "output", id: current.id, output: { type: "text", stream: textBuf.stream, text: textBuf.text } });
  textBuf = null;
}
function text(stream: "stdout" | "stderr", s: string) {
  if (!current) return;
  if (textBuf && textBuf.stream !== stream) flushText();
  textBuf ??= { stream, text: "" };
  textBuf.text += s;
  if (textBuf.text.length > 256_000) flushText();
  else flushTimer ??= setTimeout(flushText, 50);
}
function emit(o: Output) {
  if (!current) return;
  flushText();
  post({ t: "output", id: current.id, output: o });
}

installSink({
  emit,
  interrupted: () => Atomics.load(flag, 0) === 1,
  get signal() { return current?.ac.signal ?? new AbortController().signal; },
});
for (const [k, stream] of [["log", "stdout"], ["info", "stdout"], ["debug", "stdout"], ["warn", "stderr"], ["error", "stderr"]] as const) {
  (console as unknown as Record<string, (...a: unknown[]) => void>)[k] = (...a: unknown[]) => text(stream, format(...a) + "\n");
}
console.table = (rows: unknown) => display(rows);
for (const stream of ["stdout", "stderr"] as const) {
  (process[stream] as unknown as { write: (c: unknown) => boolean }).write = (c: unknown) => {
    text(stream, typeof c === "string" ? c : new TextDecoder().decode(c as Uint8Array));
    return true;
  };
}
// A stray async failure (a timer callback, a promise nobody awaited) is reported under the running cell, if
// any, instead of ending the worker: Bun closes a worker on any uncaught exception, and the notebook's
// variables are worth more than that. Timer callbacks are wrapped for this; other stray throws (event
// listeners) still end the worker, and the next run starts a fresh one.
const stray = (what: string) => (e: unknown) => text("stderr", `${what}: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
process.on("unhandledRejection", stray("unhandled rejection"));
const guard = <A extends unknown[]>(f: unknown) => (typeof f !== "function" ? f : (...a: A) => {
  try { return (f as (...x: A) => unknown)(...a); } catch (e) { stray("uncaught exception in a timer callback")(e); }
});
for (const name of ["setTimeout", "setInterval", "setImmediate", "queueMicrotask"] as const) {
  const orig = (globalThis as unknown as Record<string, (f: unknown, ...rest: unknown[]) => unknown>)[name];
  if (typeof orig !== "function") continue;
  (globalThis as unknown as Record<string, unknown>)[name] = Object.assign((f: unknown, ...rest: unknown[]) => orig(guard(f), ...rest), orig);
}

function errorInfo(e: unknown, file: string): CellError {
  const cleanup = (s: string) => s.split(file).join("cell");
  if (e && typeof e === "object" && "position" in e && (e as { position?: { line?: number } }).position?.line) {
    const b = e as { name?: string; message?: string; position: { line: number; column?: number; lineText?: string } };
    return { name: b.name === "BuildMessage" ? "SyntaxError" : String(b.name ?? "Error"), message: cleanup(String(b.message)), line: b.position.line,
      stack: b.position.lineText ? `${b.position.line} | ${b.position.lineText}` : undefined };
  }
  if (e instanceof Error) {
    const esc = file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    const m = new RegExp(`${esc}:(\\d+)`).exec(e.stack ?? "");
    const frames = (e.stack ?? "").split("\n").filter((l) => /^\s+at /.test(l)).map(cleanup)
      .filter((l) => !l.includes("web/notebook/worker.ts"));
    return { name: e.name, message: cleanup(e.message), ...(m ? { line: Number(m[1]) } : {}), ...(frames.length ? { stack: frames.join("\n") } : {}) };
  }
  return { name: "Error", message: `thrown value: ${format(e)}` };
}

async function exec(id: string, code: string) {
  const file = join(cellDir, `cell-${++seq}.ts`);
  writeFileSync(file, code);
  current = { id, ac: new AbortController() };
  try {
    const mod = (await import(file)) as { default?: unknown };
    if (mod.default !== undefined) display(mod.default);
    flushText();
    post({ t: "done", id, ok: true });
  } catch (e) {
    flushText();
    post({ t: "done", id, ok: false, error: errorInfo(e, file) });
  } finally {
    current = null;
    rmSync(file, { force: true });
  }
}

self.onmessage = (ev: MessageEvent) => {
  const r = ToNotebook.safeParse(ev.data);
  if (!r.success) { console.error("[notebook worker] bad message:", r.error.issues[0]?.message); return; }
  const m = r.data;
  if (m.t === "init") {
    flag = new Int32Array(m.flag);
    cellDir = m.cellDir;
    post({ t: "ready" });
  } else if (m.t === "interrupt") current?.ac.abort();
  else void exec(m.id, m.code);
};
