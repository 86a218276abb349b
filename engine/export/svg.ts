// Static SVG plots rendered on the server (no browser): @observablehq/plot with a linkedom document. Each
// function returns a standalone SVG document string (xmlns set, title and legend drawn inside the SVG), usable
// as a file, inline in the HTML report, or as an <img>.
import * as Plot from "@observablehq/plot";
import { parseHTML } from "linkedom";
import type { Profile } from "../profile.ts";
import {
  latencyMatrix, profilingModeOf, rooflinePoints, tokenTimeline, type Comparison, type PhaseName, type RooflineGroup,
} from "./aggregate.ts";
import type { Ceilings } from "./ceilings.ts";

// A fixed categorical palette (Observable's "tableau10" plus 5) so op colors match across every chart.
export const PALETTE = ["#4e79a7", "#f28e2c", "#e15759", "#76b7b2", "#59a14f", "#edc949", "#af7aa1", "#ff9da7",
  "#9c755f", "#bab0ab", "#1f77b4", "#8c564b", "#17becf", "#bcbd22", "#7f7f7f"];

function doc() {
  return parseHTML("<!doctype html><html><body></body></html>").document;
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

interface Panel { svg: string; width: number; height: number }

function render(opts: Plot.PlotOptions, width: number, height: number): Panel {
  const d = doc();
  const el = Plot.plot({ ...opts, width, height, document: d as unknown as Document, style: { fontSize: "11px", background: "white" } }) as unknown as Element;
  el.setAttribute("xmlns", "http://www.w3.org/2000/svg");
  el.setAttribute("xmlns:xlink", "http://www.w3.org/1999/xlink");
  return { svg: el.outerHTML, width, height };
}

/** One Observable Plot figure as a standalone SVG string (notebooks' plot() output uses it). */
export function plotSvg(opts: Plot.PlotOptions, width = 640, height = 320): string {
  return render(opts, width, height).svg;
}

/** Stacks panels vertically under a title, with an optional legend (label → color). */
function compose(title: string, subtitle: string, panels: Panel[], legend: { label: string; color: string; shape?: string }[] = []): string {
  const width = Math.max(...panels.map((p) => p.width), 400);
  const colW = Math.min(width - 28, Math.max(130, 24 + 6.6 * Math.max(0, ...legend.map((l) => l.label.length))));
  const legendCols = Math.max(1, Math.floor((width - 20) / colW));
  const legendRows = Math.ceil(legend.length / legendCols);
  let y = subtitle ? 50 : 36;
  const parts: string[] = [];
  legend.forEach((l, i) => {
    const lx = 14 + (i % legendCols) * colW, ly = y + Math.floor(i / legendCols) * 18;
    const mark = l.shape === "line"
      ? `<line x1="${lx}" y1="${ly + 6}" x2="${lx + 12}" y2="${ly + 6}" stroke="${l.color}" stroke-width="2"/>`
      : `<rect x="${lx}" y="${ly}" width="12" height="12" rx="2" fill="${l.color}"/>`;
    parts.push(`${mark}<text x="${lx + 17}" y="${ly + 10}" font-size="11">${esc(l.label)}</text>`);
  });
  y += legendRows * 18 + (legend.length ? 6 : 0);
  for (const p of panels) {
    parts.push(p.svg.replace(/^<svg /, `<svg x="0" y="${y}" `));
    y += p.height + 8;
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="${width}" height="${y}" viewBox="0 0 ${width} ${y}" font-family="system-ui, sans-serif">`
    + `<rect width="100%" height="100%" fill="white"/>`
    + `<text x="14" y="22" font-size="15" font-weight="600">${esc(title)}</text>`
    + (subtitle ? `<text x="14" y="40" font-size="11" fill="#555">${esc(subtitle)}</text>` : "")
    + parts.join("") + `</svg>`;
}

function subtitleOf(p: Profile): string {
  const m = p.manifest;
  return `${m.label ?? p.id} · ${m.model.id} · ${m.device.name} (${m.device.backend}) · profiling ${profilingModeOf(p)} · ${m.date.slice(0, 19).replace("T", " ")}`;
}

function emptyPanel(text: string, width = 720): Panel {
  return { svg: `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="60"><text x="14" y="34" font-size="12" fill="#777">${esc(text)}</text></svg>`, width, height: 60 };
}

/** Stacked bars: ms per step for each layer, split by op, one panel per phase. */
export function latencySvg(p: Profile, width = 760): string {
  const panels: Panel[] = [];
  const allOps = new Set<string>();
  for (const phase of ["prefill", "decode"] as PhaseName[]) {
    const m = latencyMatrix(p, phase);
    if (!m.steps) { panels.push(emptyPanel(`${phase}: no op records (run with profiling on)`, width)); continue; }
    const data = m.layers.flatMap((l, i) => m.ops.map((op, j) => ({ layer: m.layerLabels[i], op, ms: m.ms[i][j] })));
    m.ops.forEach((o) => allOps.add(o));
    panels.push(render({
      marginLeft: 60, marginBottom: 40,
      x: { label: `layer (${phase}, mean of ${m.steps} step${m.steps > 1 ? "s" : ""}; total ${m.totalMs.toFixed(3)} ms/step)`, domain: m.layerLabels },
      y: { label: "time per step (ms)", grid: true },
      color: { domain: opDomain(), range: PALETTE },
      marks: [Plot.barY(data, { x: "layer", y: "ms", fill: "op", title: (d: { op: string; ms: number }) => `${d.op}: ${d.ms.toFixed(4)} ms` }), Plot.ruleY([0])],
    }, width, 260));
  }
  const legend = opDomain().filter((o) => allOps.has(o)).map((o) => ({ label: o, color: opColor(o) }));
  return compose("Latency per layer × op", subtitleOf(p), panels, legend);
}

import { OP_NAMES } from "../profile.ts";
function opDomain(): string[] { return [...OP_NAMES]; }
export function opColor(op: string): string { const i = OP_NAMES.indexOf(op as never); return PALETTE[(i < 0 ? 14 : i) % PALETTE.length]; }

/** Per-token latency (ms since the previous token; the first point is the TTFT). */
export function timelineSvg(p: Profile, width = 760): string {
  const t = tokenTimeline(p);
  if (!t.length) return compose("Per-token latency", subtitleOf(p), [emptyPanel("no token events", width)]);
  const panel = render({
    marginLeft: 60,
    x: { label: "token index", grid: true },
    y: { label: "wall clock between tokens (ms)", grid: true, zero: true },
    color: { domain: ["prefill", "decode"], range: [PALETTE[1], PALETTE[0]] },
    marks: [Plot.lineY(t, { x: "index", y: "dt_ms", stroke: "#bbb" }), Plot.dot(t, { x: "index", y: "dt_ms", fill: "phase", r: 3 })],
  }, width, 260);
  return compose("Per-token latency", `${subtitleOf(p)} · TTFT ${p.summary.ttft_ms?.toFixed(2) ?? "?"} ms · TPOT median ${p.summary.tpot_ms?.median.toFixed(2) ?? "?"} ms`,
    [panel], [{ label: "first token (from run start)", color: PALETTE[1] }, { label: "decode", color: PALETTE[0] }]);
}

/** Log-log roofline: achieved FLOP/s against arithmetic intensity; several runs overlaid; device roofs if known. */
export function rooflineSvg(profiles: Profile[], ceilings: Ceilings | null, group: RooflineGroup = "op", width = 760): string {
  const pts = profiles.flatMap((p, i) => rooflinePoints(p, group).map((r) => ({
    ...r, run: p.manifest.label ?? p.id, runIndex: i, gflops: r.flopPerS / 1e9,
  })));
  const runs = profiles.map((p) => p.manifest.label ?? p.id);
  if (!pts.length) return compose("Roofline", "", [emptyPanel("no op records with FLOPs and bytes (run with profiling on)", width)]);
  const xs = pts.map((p) => p.intensity), ys = pts.map((p) => p.flopPerS);
  let xmin = Math.min(...xs) / 2, xmax = Math.max(...xs) * 2;
  let ymin = Math.min(...ys) / 3, ymax = Math.max(...ys) * 3;
  const marks: Plot.Markish[] = [];
  const withPoints = new Set(pts.map((p) => p.runIndex));
  const legend: { label: string; color: string; shape?: string }[] = runs.map((r, i) => ({ label: r, color: PALETTE[i % PALETTE.length], i }))
    .filter((r) => withPoints.has(r.i)).map(({ label, color }) => ({ label, color }));
  let note = "";
  if (ceilings) {
    const peak = Math.max(...ceilings.compute.map((c) => c.value), 0);
    ymax = Math.max(ymax, peak * 1.5 || ymax);
    const lines: { x: number; y: number; roof: string }[] = [];
    for (const m of ceilings.memory) {
      for (let k = 0; k <= 40; k++) {
        const x = xmin * Math.pow(xmax / xmin, k / 40);
        lines.push({ x, y: Math.min(m.value * x, peak || Infinity), roof: `${m.name} ${(m.value / 1e9).toFixed(0)} GB/s` });
      }
    }
    for (const c of ceilings.compute) {
      const roof = `${c.name} ${c.value >= 1e12 ? `${(c.value / 1e12).toFixed(1)} TFLOP/s` : `${(c.value / 1e9).toFixed(0)} GFLOP/s`}`; // a CPU's peak is GFLOP/s
      lines.push({ x: xmin, y: c.value, roof }, { x: xmax, y: c.value, roof });
    }
    ymin = Math.min(ymin, Math.min(...lines.map((l) => l.y)));
    marks.push(Plot.line(lines, { x: "x", y: "y", z: "roof", stroke: "#444", strokeDasharray: "4,3", strokeWidth: 1.2 }));
    legend.push({ label: `ceilings: ${ceilings.device}`, color: "#444", shape: "line" });
  } else {
    note = " · no measured ceilings for this device — run notebooks/calibrate.ts";
  }
  marks.push(Plot.dot(pts, {
    x: "intensity", y: "flopPerS", fill: (d: { runIndex: number }) => PALETTE[d.runIndex % PALETTE.length],
    symbol: "phase", r: 4, stroke: "white", strokeWidth: 0.5,
    title: (d: typeof pts[number]) => `${d.run} ${d.phase} ${d.label}\n${d.kernels.join(", ")}\n${(d.flops / 1e6).toFixed(3)} MFLOP, ${(d.bytes / 1e6).toFixed(3)} MB, ${(d.seconds * 1e3).toFixed(4)} ms`,
  }));
  marks.push(Plot.text(pts.filter((d) => d.runIndex === 0), { x: "intensity", y: "flopPerS", text: "label", dx: 6, textAnchor: "start", fontSize: 9, fill: "#555" }));
  const panel = render({
    marginLeft: 70, marginBottom: 40, marginRight: 60,
    x: { type: "log", domain: [xmin, xmax], label: "arithmetic intensity (FLOP/byte)", grid: true, tickFormat: "~g" },
    y: { type: "log", domain: [ymin, ymax], label: "achieved performance (FLOP/s)", grid: true, tickFormat: "~s" },
    symbol: { domain: ["prefill", "decode"], range: ["circle", "triangle"] },
    marks,
  }, width, 420);
  const dev = profiles[0].manifest.device;
  return compose(`Roofline (one point per ${group})`, `${dev.name} (${dev.backend}) · ● prefill ▲ decode${note}`, [panel], legend);
}

/** Quantization error per layer (SQNR in dB, cosine) from a quant-error profile. */
export function quantSvg(p: Profile, width = 760): string {
  const q = p.quant_error?.[0];
  if (!q || !q.layers.length) return compose("Quantization error", subtitleOf(p), [emptyPanel("no quantization-error table in this profile", width)]);
  const rows = q.layers.map((l) => ({ ...l, name: l.hook.replace(/^blocks\./, "L").replace(/\.hook_/, " ") }));
  const dom = rows.map((r) => r.name);
  const sq = render({
    marginLeft: 60, marginBottom: 70,
    x: { label: "hook", domain: dom, tickRotate: -30 },
    y: { label: "SQNR (dB, higher is better)", grid: true },
    marks: [Plot.barY(rows, { x: "name", y: (d: { sqnr_db: number }) => (Number.isFinite(d.sqnr_db) ? d.sqnr_db : 0), fill: PALETTE[0] }), Plot.ruleY([0])],
  }, width, 250);
  const cos = render({
    marginLeft: 60, marginBottom: 70,
    x: { label: "hook", domain: dom, tickRotate: -30 },
    y: { label: "1 − cosine similarity (log)", type: "log", grid: true },
    marks: [Plot.dot(rows, { x: "name", y: (d: { cosine: number }) => Math.max(1e-12, 1 - d.cosine), fill: PALETTE[2], r: 4 })],
  }, width, 230);
  const lg = (q.logits ? ` · logits KL ${q.logits.kl.toExponential(3)} · top-1 agreement ${(q.logits.top1_agreement * 100).toFixed(1)} %` : "")
    + (q.perplexity?.reference != null && q.perplexity.candidate != null ? ` · perplexity ${q.perplexity.reference.toFixed(2)} → ${q.perplexity.candidate.toFixed(2)}` : "")
    + (q.first_nonfinite ? ` · non-finite from ${q.first_nonfinite.hook} (${q.first_nonfinite.arm})` : "");
  return compose(`Quantization error: ${q.candidate_label} vs ${q.reference_label}`, `${subtitleOf(p)}${lg}`, [sq, cos]);
}

const NOISE_GREY = "#b8c2d6";

/** Compare: per layer time delta (B − A) per phase. */
export function compareSvg(c: Comparison, width = 760): string {
  const panels: Panel[] = [];
  for (const phase of ["prefill", "decode"] as PhaseName[]) {
    const rows = c.byLayer.filter((r) => r.phase === phase).map((r) => ({ ...r, name: r.layer >= 0 ? `L${r.layer}` : "head/tail" }));
    if (!rows.length) continue;
    panels.push(render({
      marginLeft: 60, marginBottom: 40,
      x: { label: `layer (${phase})`, domain: rows.map((r) => r.name) },
      y: { label: "Δ median time per step, B − A (ms)", grid: true },
      // colour = the one significance rule (engine/stats.ts) on the per-step p10–p90 bands, as on the web page
      marks: [Plot.barY(rows, { x: "name", y: "deltaMs", fill: (d: { status: string }) => (d.status === "faster" ? PALETTE[4] : d.status === "slower" ? PALETTE[2] : NOISE_GREY) }), Plot.ruleY([0])],
    }, width, 230));
  }
  if (!panels.length) panels.push(emptyPanel("no op records to compare", width));
  return compose(`Compare: B = ${c.b.label} vs A = ${c.a.label}`, c.toggleDiff.map((t) => `${t.id}: ${t.a} → ${t.b}`).join(" · ") || "same toggles",
    panels, [{ label: "B faster", color: PALETTE[4] }, { label: "B slower", color: PALETTE[2] }, { label: "within noise", color: NOISE_GREY }]);
}

/** Horizontal bars with min–max whiskers (one per arm), e.g. decode tok/s per ablation arm. */
export function barsSvg(title: string, subtitle: string, rows: { label: string; value: number; lo?: number; hi?: number }[], xLabel: string, width = 760): string {
  if (!rows.length) return compose(title, subtitle, [emptyPanel("no rows", width)]);
  const panel = render({
    marginLeft: Math.min(320, 12 + 6.2 * Math.max(...rows.map((r) => r.label.length))), marginRight: 30,
    y: { label: null, domain: rows.map((r) => r.label) },
    x: { label: xLabel, grid: true, zero: true },
    marks: [
      Plot.barX(rows, { y: "label", x: "value", fill: PALETTE[0] }),
      Plot.ruleY(rows.filter((r) => r.lo !== undefined && r.hi !== undefined), { y: "label", x1: "lo", x2: "hi", stroke: "#333" }),
      Plot.text(rows, { y: "label", x: "value", text: (d: { value: number }) => d.value.toFixed(1), dx: 4, textAnchor: "start", fontSize: 10 }),
    ],
  }, width, Math.max(120, 40 + rows.length * 26));
  return compose(title, subtitle, [panel]);
}
