// The notebook file format: a TypeScript file with "percent" cell markers (the jupytext / VS Code convention),
// so a notebook diffs like code and runs unchanged with `bun notebooks/X.nb.ts`:
//
//   // %% [markdown]
//   // # Title            ← markdown cells are line comments ("// " stripped)
//   // %% optional title
//   const x = 1;          ← code cells are plain TypeScript
//
// Outputs live beside the file in X.outputs.json (one entry per cell, keyed by a hash of the cell's source, so
// an edited cell's old outputs are dropped instead of shown against new code). Every output is validated here.
import { z } from "zod";

export const CellType = z.enum(["code", "markdown"]);
export const Cell = z.object({
  type: CellType,
  source: z.string().max(1_000_000),
  title: z.string().max(200).regex(/^[^\n]*$/, "a cell title is one line").optional(),
}).strict();
export type Cell = z.infer<typeof Cell>;

const Json = z.unknown();
export const Output = z.discriminatedUnion("type", [
  z.object({ type: z.literal("text"), text: z.string(), stream: z.enum(["stdout", "stderr"]).optional() }).strict(),
  z.object({ type: z.literal("markdown"), text: z.string() }).strict(),
  z.object({ type: z.literal("html"), html: z.string() }).strict(),
  z.object({ type: z.literal("table"), rows: z.array(z.record(z.string(), Json)), columns: z.array(z.string()).optional(), title: z.string().optional() }).strict(),
  z.object({ type: z.literal("plotly"), data: z.array(Json), layout: z.record(z.string(), Json).optional() }).strict(),
  z.object({ type: z.literal("svg"), svg: z.string(), title: z.string().optional() }).strict(),
  z.object({ type: z.literal("progress"), key: z.string(), label: z.string(), done: z.number(), total: z.number() }).strict(),
  z.object({ type: z.literal("error"), name: z.string(), message: z.string(), line: z.number().int().optional(), stack: z.string().optional() }).strict(),
]);
export type Output = z.infer<typeof Output>;

export const CellOutputs = z.object({
  hash: z.string(),
  outputs: z.array(Output),
  ok: z.boolean().optional(),
  ms: z.number().optional(),
}).strict();
export type CellOutputs = z.infer<typeof CellOutputs>;

export const OutputsFile = z.object({
  format: z.literal("qwen-workbench-notebook-outputs"),
  version: z.literal(1),
  saved: z.string().optional(),
  cells: z.array(CellOutputs),
}).strict();
export type OutputsFile = z.infer<typeof OutputsFile>;

export const NOTEBOOK_EXT = ".nb.ts";
export const OUTPUTS_EXT = ".outputs.json";
const MARKER = /^\/\/ %%(?:[ \t]+\[(markdown|md)\])?(?:[ \t]+(.*?))?[ \t]*$/;

/** Stable, short hash of a cell's source (outputs are matched to cells by it). */
export function cellHash(source: string): string {
  return Bun.hash(source.replace(/\s+$/, "")).toString(16).padStart(16, "0");
}

function trimBlankLines(lines: string[]): string[] {
  let a = 0, b = lines.length;
  while (a < b && !lines[a].trim()) a++;
  while (b > a && !lines[b - 1].trim()) b--;
  return lines.slice(a, b);
}

/** Parses a .nb.ts file. Text before the first marker (if any) becomes a leading code cell. */
export function parseNotebook(text: string): Cell[] {
  const cells: Cell[] = [];
  // The preamble (before the first marker) is a cell only if it has content.
  let cur: { type: Cell["type"]; title?: string; lines: string[]; preamble?: boolean } = { type: "code", lines: [], preamble: true };
  const flush = () => {
    let body = trimBlankLines(cur.lines);
    if (cur.type === "markdown") body = body.map((l) => l.replace(/^\/\/ ?/, ""));
    if (cur.preamble && !body.length) return;
    cells.push({ type: cur.type, source: body.join("\n"), ...(cur.title ? { title: cur.title } : {}) });
  };
  for (const line of text.replace(/\r\n?/g, "\n").split("\n")) {
    const m = MARKER.exec(line);
    if (!m) { cur.lines.push(line); continue; }
    flush();
    cur = { type: m[1] ? "markdown" : "code", title: m[2] || undefined, lines: [] };
  }
  flush();
  return cells;
}

/** Writes cells back as a .nb.ts file; parseNotebook(serializeNotebook(c)) gives c back (sources trimmed of blank edge lines). */
export function serializeNotebook(cells: Cell[]): string {
  const parts = cells.map((c) => {
    const head = `// %%${c.type === "markdown" ? " [markdown]" : ""}${c.title ? ` ${c.title.trim()}` : ""}`;
    const body = trimBlankLines(c.source.replace(/\r\n?/g, "\n").split("\n"));
    const lines = c.type === "markdown" ? body.map((l) => (l.trim() ? `// ${l}` : "//")) : body;
    return [head, ...lines].join("\n");
  });
  return parts.join("\n\n") + "\n";
}

/** Outputs for each cell, matched by source hash (first unused entry with the same hash, so reordering keeps them). */
export function matchOutputs(cells: Cell[], file: OutputsFile | null): (CellOutputs | null)[] {
  const pool = [...(file?.cells ?? [])];
  return cells.map((c) => {
    if (c.type !== "code") return null;
    const h = cellHash(c.source);
    const i = pool.findIndex((o) => o.hash === h);
    return i < 0 ? null : pool.splice(i, 1)[0];
  });
}

export function outputsFile(cells: Cell[], outs: ({ outputs: Output[]; ok?: boolean; ms?: number } | null | undefined)[]): OutputsFile {
  return {
    format: "qwen-workbench-notebook-outputs", version: 1, saved: new Date().toISOString(),
    cells: cells.flatMap((c, i) => {
      const o = outs[i];
      if (c.type !== "code" || !o || !o.outputs.length) return [];
      return [{ hash: cellHash(c.source), outputs: o.outputs.filter((x) => x.type !== "progress" || x.done >= x.total), ok: o.ok, ms: o.ms }];
    }),
  };
}

/** Parses X.outputs.json text; a damaged file is reported, never fatal to opening the notebook. */
export function parseOutputs(text: string): { file: OutputsFile | null; error?: string } {
  let raw: unknown;
  try { raw = JSON.parse(text); } catch (e) { return { file: null, error: `outputs file is not JSON: ${(e as Error).message}` }; }
  const r = OutputsFile.safeParse(raw);
  if (!r.success) return { file: null, error: `outputs file: ${r.error.issues[0]?.path.join(".")}: ${r.error.issues[0]?.message}` };
  return { file: r.data };
}
