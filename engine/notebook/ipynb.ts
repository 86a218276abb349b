// Jupyter .ipynb (nbformat 4) import and export. Cells map one to one; outputs map to standard mime bundles
// (stream, error, display_data with image/svg+xml, text/html, text/markdown, the plotly mime type) so
// JupyterLab / VS Code show them, plus a vendor mime type for tables and progress so our own outputs
// round-trip exactly. The kernelspec names Deno's TypeScript kernel, which runs the same cells.
import { z } from "zod";
import { Output, type Cell, type CellOutputs } from "./format.ts";

const TABLE_MIME = "application/vnd.qwen-workbench.table+json";
const PROGRESS_MIME = "application/vnd.qwen-workbench.progress+json";
const PLOTLY_MIME = "application/vnd.plotly.v1+json";

const Source = z.union([z.string(), z.array(z.string())]).transform((s) => (Array.isArray(s) ? s.join("") : s));
const MimeBundle = z.record(z.string(), z.unknown());
const IpynbOutput = z.discriminatedUnion("output_type", [
  z.object({ output_type: z.literal("stream"), name: z.string(), text: Source }).passthrough(),
  z.object({ output_type: z.literal("error"), ename: z.string(), evalue: z.string(), traceback: z.array(z.string()).default([]) }).passthrough(),
  z.object({ output_type: z.literal("display_data"), data: MimeBundle, metadata: z.record(z.string(), z.unknown()).optional() }).passthrough(),
  z.object({ output_type: z.literal("execute_result"), data: MimeBundle, metadata: z.record(z.string(), z.unknown()).optional() }).passthrough(),
]);
const IpynbCell = z.object({
  cell_type: z.enum(["code", "markdown", "raw"]),
  source: Source,
  metadata: z.record(z.string(), z.unknown()).optional(),
  outputs: z.array(IpynbOutput).optional(),
}).passthrough();
export const Ipynb = z.object({
  nbformat: z.number().int().min(4, "only nbformat 4 notebooks can be imported"),
  nbformat_minor: z.number().int().optional(),
  metadata: z.record(z.string(), z.unknown()).optional(),
  cells: z.array(IpynbCell),
}).passthrough();
type IpynbOutput = z.infer<typeof IpynbOutput>;

/** Jupyter's convention: a list of lines, each but the last ending in "\n". */
const lines = (s: string) => s.split(/(?<=\n)/).filter((l, i, a) => l !== "" || a.length === 1);
const textOf = (v: unknown) => (Array.isArray(v) ? v.join("") : typeof v === "string" ? v : JSON.stringify(v));
const escHtml = (s: string) => s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);

function columnsOf(rows: Record<string, unknown>[], cols?: string[]) {
  return cols ?? [...new Set(rows.flatMap((r) => Object.keys(r)))];
}
const cellText = (v: unknown) => (v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v));

function tableHtml(rows: Record<string, unknown>[], cols?: string[]): string {
  const c = columnsOf(rows, cols);
  return `<table><thead><tr>${c.map((k) => `<th>${escHtml(k)}</th>`).join("")}</tr></thead><tbody>`
    + rows.map((r) => `<tr>${c.map((k) => `<td>${escHtml(cellText(r[k]))}</td>`).join("")}</tr>`).join("") + "</tbody></table>";
}

export function tableMarkdown(rows: Record<string, unknown>[], cols?: string[]): string {
  const c = columnsOf(rows, cols);
  const row = (xs: string[]) => `| ${xs.map((x) => x.replace(/\|/g, "\\|")).join(" | ")} |`;
  return [row(c), row(c.map(() => "---")), ...rows.map((r) => row(c.map((k) => cellText(r[k]))))].join("\n");
}

function toIpynbOutput(o: Output): IpynbOutput {
  switch (o.type) {
    case "text": return { output_type: "stream", name: o.stream ?? "stdout", text: o.text };
    case "error": return {
      output_type: "error", ename: o.name, evalue: o.message,
      traceback: [...(o.line !== undefined ? [`(cell line ${o.line})`] : []), ...(o.stack ? o.stack.split("\n") : [])],
    };
    case "markdown": return { output_type: "display_data", data: { "text/markdown": o.text, "text/plain": o.text }, metadata: {} };
    case "html": return { output_type: "display_data", data: { "text/html": o.html }, metadata: {} };
    case "svg": return { output_type: "display_data", data: { "image/svg+xml": o.svg, "text/plain": o.title ?? "SVG figure" }, metadata: {} };
    case "plotly": return { output_type: "display_data", data: { [PLOTLY_MIME]: { data: o.data, layout: o.layout ?? {} }, "text/plain": "plotly figure" }, metadata: {} };
    case "table": return {
      output_type: "display_data", metadata: {},
      data: { [TABLE_MIME]: { rows: o.rows, columns: o.columns, title: o.title }, "text/html": tableHtml(o.rows, o.columns), "text/plain": tableMarkdown(o.rows, o.columns) },
    };
    case "progress": return { output_type: "display_data", data: { [PROGRESS_MIME]: o, "text/plain": `${o.label} ${o.done}/${o.total}` }, metadata: {} };
  }
}

function fromIpynbOutput(o: IpynbOutput): Output | null {
  if (o.output_type === "stream") return { type: "text", text: o.text, ...(o.name === "stderr" ? { stream: "stderr" as const } : o.name === "stdout" ? { stream: "stdout" as const } : {}) };
  if (o.output_type === "error") {
    const tb = [...o.traceback];
    const m = /^\(cell line (\d+)\)$/.exec(tb[0] ?? "");
    if (m) tb.shift();
    return { type: "error", name: o.ename, message: o.evalue, ...(m ? { line: Number(m[1]) } : {}), ...(tb.length ? { stack: tb.join("\n") } : {}) };
  }
  const d = o.data;
  const pick = (): unknown => {
    if (d[TABLE_MIME]) { const t = d[TABLE_MIME] as Record<string, unknown>; return { type: "table", rows: t.rows, ...(t.columns ? { columns: t.columns } : {}), ...(t.title ? { title: t.title } : {}) }; }
    if (d[PROGRESS_MIME]) return d[PROGRESS_MIME];
    if (d[PLOTLY_MIME]) { const f = d[PLOTLY_MIME] as { data?: unknown; layout?: unknown }; return { type: "plotly", data: f.data ?? [], layout: f.layout ?? {} }; }
    if (d["image/svg+xml"] !== undefined) {
      const t = d["text/plain"] !== undefined ? textOf(d["text/plain"]) : undefined;
      return { type: "svg", svg: textOf(d["image/svg+xml"]), ...(t && t !== "SVG figure" ? { title: t } : {}) };
    }
    if (d["text/markdown"] !== undefined) return { type: "markdown", text: textOf(d["text/markdown"]) };
    if (d["text/html"] !== undefined) return { type: "html", html: textOf(d["text/html"]) };
    for (const img of ["image/png", "image/jpeg", "image/gif"]) {
      if (typeof d[img] === "string") return { type: "html", html: `<img src="data:${img};base64,${String(d[img]).replace(/\s+/g, "")}">` };
    }
    if (d["text/plain"] !== undefined) return { type: "text", text: textOf(d["text/plain"]) };
    return null;
  };
  const r = Output.safeParse(pick());
  return r.success ? r.data : { type: "text", text: `(output not imported: ${r.error.issues[0]?.message})` };
}

/** Cells (+ outputs per cell, null where none) → an nbformat 4.5 document. */
export function toIpynb(cells: Cell[], outputs: (Pick<CellOutputs, "outputs"> | null)[] = []): Record<string, unknown> {
  return {
    nbformat: 4, nbformat_minor: 5,
    metadata: {
      kernelspec: { name: "deno", display_name: "Deno", language: "typescript" },
      language_info: { name: "typescript", file_extension: ".ts", mimetype: "text/x.typescript" },
      "qwen-workbench": { format: 1 },
    },
    cells: cells.map((c, i) => {
      const base = { id: `cell-${i}`, metadata: c.title ? { title: c.title } : {}, source: lines(c.source) };
      if (c.type === "markdown") return { cell_type: "markdown", ...base };
      return { cell_type: "code", ...base, execution_count: null, outputs: (outputs[i]?.outputs ?? []).map(toIpynbOutput) };
    }),
  };
}

/** An .ipynb document (parsed JSON) → cells and outputs. Raw cells become markdown; unknown outputs become text. */
export function fromIpynb(raw: unknown): { cells: Cell[]; outputs: Output[][] } {
  const r = Ipynb.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new Error(`not a Jupyter notebook: ${i?.path.join(".") || "(root)"}: ${i?.message}`);
  }
  const cells: Cell[] = [], outputs: Output[][] = [];
  for (const c of r.data.cells) {
    const title = typeof c.metadata?.title === "string" && !c.metadata.title.includes("\n") ? c.metadata.title : undefined;
    cells.push({ type: c.cell_type === "code" ? "code" : "markdown", source: c.source.replace(/\r\n?/g, "\n").replace(/\n+$/, ""), ...(title ? { title } : {}) });
    outputs.push(c.cell_type === "code" ? (c.outputs ?? []).map(fromIpynbOutput).filter((o): o is Output => o !== null) : []);
  }
  return { cells, outputs };
}
