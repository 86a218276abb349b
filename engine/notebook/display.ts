// What a notebook cell shows under itself: display(), table(), plotly(), plot() (Observable Plot, rendered to
// SVG here with linkedom, like engine/export/svg.ts), svg(), markdown(), progress(). The same calls work in
// both places a notebook runs:
//   - in the workbench's notebook worker (web/notebook/worker.ts), which installs a sink on globalThis: every
//     call becomes an output under the cell, streamed to the page;
//   - under plain `bun notebooks/X.nb.ts`, with no sink: they print a text rendering to the terminal.
// progress() and interrupted() also carry the page's Interrupt button into long loops (cooperative stop).
import type * as PlotTypes from "@observablehq/plot";
import { plotSvg } from "../export/svg.ts";
import { tableMarkdown } from "./ipynb.ts";
import type { Output } from "./format.ts";

/** Observable Plot itself, for plot({ marks: [Plot.barY(...)] }) without a second import. */
export * as Plot from "@observablehq/plot";

export interface NotebookSink {
  emit(o: Output): void;
  /** True once the page asked to interrupt the running cell. */
  interrupted(): boolean;
  /** Aborted when the page asks to interrupt (pass it to engine calls that take a signal). */
  signal: AbortSignal;
}

const SINK_KEY = "__qwenWorkbenchNotebookSink";
export function installSink(s: NotebookSink | null) { (globalThis as Record<string, unknown>)[SINK_KEY] = s ?? undefined; }
const sink = () => (globalThis as Record<string, unknown>)[SINK_KEY] as NotebookSink | undefined;
/** True when running inside the workbench page (outputs go under the cell), false in a terminal. */
export const inWorkbench = () => !!sink();

export class Interrupted extends Error {
  constructor() { super("interrupted from the page"); this.name = "Interrupted"; }
}

const NEVER = new AbortController().signal;
/** The interrupt signal of the running cell (never aborts in a terminal). */
export function interruptSignal(): AbortSignal { return sink()?.signal ?? NEVER; }
export function interrupted(): boolean { return sink()?.interrupted() ?? false; }
/** Throws Interrupted when the page asked to stop; call it in long loops that do not call progress(). */
export function checkInterrupt(): void { if (interrupted()) throw new Interrupted(); }

function emit(o: Output, terminal: () => string) {
  const s = sink();
  if (s) s.emit(o);
  else console.log(terminal());
}

/** A JSON-safe copy (drops functions, turns typed arrays and Maps into arrays/objects, non-finite numbers into null). */
function plain(v: unknown, depth = 0): unknown {
  if (v === null || v === undefined) return null;
  if (typeof v === "number") return Number.isFinite(v) ? v : null;
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "string" || typeof v === "boolean") return v;
  if (typeof v === "function" || typeof v === "symbol") return null;
  if (depth > 40) return "…";
  if (ArrayBuffer.isView(v)) return Array.from(v as unknown as ArrayLike<number>, (x) => plain(x, depth + 1));
  if (Array.isArray(v)) return v.map((x) => plain(x, depth + 1));
  if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [String(k), plain(x, depth + 1)]));
  if (v instanceof Set) return [...v].map((x) => plain(x, depth + 1));
  if (v instanceof Date) return v.toISOString();
  return Object.fromEntries(Object.entries(v as object).map(([k, x]) => [k, plain(x, depth + 1)]));
}

/** Rows (array of objects) as a sortable table. Nested values are shown as JSON. */
export function table(rows: readonly object[], opts: { columns?: string[]; title?: string } = {}): void {
  const r = rows.map((x) => plain(x) as Record<string, unknown>);
  emit({ type: "table", rows: r, ...(opts.columns ? { columns: opts.columns } : {}), ...(opts.title ? { title: opts.title } : {}) },
    () => `${opts.title ? `${opts.title}\n` : ""}${tableMarkdown(r, opts.columns)}`);
}

/** A plotly.js figure (data traces + layout), drawn interactively on the page. */
export function plotly(data: object[], layout: object = {}): void {
  const d = plain(data) as unknown[];
  emit({ type: "plotly", data: d, layout: plain(layout) as Record<string, unknown> },
    () => `[plotly figure: ${d.length} trace(s)${(layout as { title?: unknown }).title ? ` — ${JSON.stringify((layout as { title?: unknown }).title)}` : ""}; open the notebook in the workbench to see it]`);
}

/** A static SVG figure (e.g. from engine/export/svg.ts). */
export function svg(markup: string, title?: string): void {
  if (!/^\s*<svg[\s>]/.test(markup)) throw new Error("svg(): expected markup starting with <svg");
  emit({ type: "svg", svg: markup, ...(title ? { title } : {}) }, () => `[svg figure${title ? `: ${title}` : ""}, ${markup.length} bytes]`);
}

/** An Observable Plot figure rendered on the server (plot({ marks: [Plot.barX(...)] })). Returns the SVG. */
export function plot(opts: PlotTypes.PlotOptions & { width?: number; height?: number }): string {
  const s = plotSvg(opts, opts.width ?? 640, opts.height ?? 320);
  svg(s, typeof opts.title === "string" ? opts.title : undefined);
  return s;
}

export function markdown(text: string): void {
  emit({ type: "markdown", text }, () => text);
}

const lastProgress = new Map<string, number>();
/**
 * A progress bar under the cell, updated in place (same key). Throttled to ~10 updates/s except the last.
 * Also the cooperative interrupt point of long loops: it throws Interrupted once the page asks to stop.
 */
export function progress(label: string, done: number, total: number, key = label): void {
  checkInterrupt();
  const now = performance.now();
  const final = done >= total;
  if (!final && now - (lastProgress.get(key) ?? -1e9) < 100) return;
  lastProgress.set(key, now);
  const s = sink();
  if (s) s.emit({ type: "progress", key, label, done, total });
  else if (process.stdout.isTTY) process.stdout.write(`\r${label} ${done}/${total}${final ? "\n" : ""}`);
  else if (final) console.log(`${label} ${done}/${total}`);
}

/** Shows any value: rows → table, plotly figure → plot, "<svg…" → figure, string → text, else JSON. */
export function display(v: unknown): void {
  if (typeof v === "string") {
    if (/^\s*<svg[\s>]/.test(v)) return svg(v);
    return emit({ type: "text", text: v.endsWith("\n") ? v : v + "\n" }, () => v);
  }
  if (Array.isArray(v) && v.length && v.every((x) => x && typeof x === "object" && !Array.isArray(x))) return table(v);
  if (v && typeof v === "object" && Array.isArray((v as { data?: unknown }).data) && "layout" in (v as object)) {
    const f = v as { data: object[]; layout: object };
    return plotly(f.data, f.layout);
  }
  const text = formatValue(v);
  emit({ type: "text", text: text + "\n" }, () => text);
}

/** A readable one-value rendering (Bun.inspect when available: Maps, typed arrays, classes). */
export function formatValue(v: unknown): string {
  if (typeof v === "string") return v;
  try { return Bun.inspect(v, { depth: 4 }); } catch { return String(v); }
}
