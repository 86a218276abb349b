// Static SVG plots rendered on the server (no browser): @observablehq/plot with a linkedom document. Each
// function returns a standalone SVG document string (xmlns set, title and legend drawn inside the SVG), usable
// as a file, inline in the HTML report, or as an <img>.
import * as Plot from "@observablehq/plot";
import { parseHTML } from "linkedom";
import type { Profile } from "../measure/profile.ts";
import { latencyMatrix, profilingModeOf, tokenTimeline, type Comparison, type PhaseName } from "../measure/aggregate.ts";
import {
  aboveDramReason, aggregateCeilings, cacheNote, ceilingsFor, groupByDevice, mixedDeviceWarning, placeLabels, rooflinePoints,
  stepRooflinePoints, TP_ROOFLINE_NOTE, type Ceilings, type RooflineGroup,
} from "../measure/roofline.ts";
import { opNames } from "../catalog.ts";
import { opColor, PALETTE, runColor } from "./palette.ts";

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
      x: { label: `layer (${phase}${m.ranks ? `, rank ${m.rank} of ${m.ranks}` : ""}, mean of ${m.steps} step${m.steps > 1 ? "s" : ""}; total ${m.totalMs.toFixed(3)} ms/step)`, domain: m.layerLabels },
      y: { label: "time per step (ms)", grid: true },
      color: { domain: opDomain(), range: opDomain().map(opColor) },
      marks: [Plot.barY(data, { x: "layer", y: "ms", fill: "op", title: (d: { op: string; ms: number }) => `${d.op}: ${d.ms.toFixed(4)} ms` }), Plot.ruleY([0])],
    }, width, 260));
  }
  const legend = opDomain().filter((o) => allOps.has(o)).map((o) => ({ label: o, color: opColor(o) }));
  return compose("Latency per layer × op", subtitleOf(p), panels, legend);
}

function opDomain(): string[] { return opNames(); }

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

/** Splits text into lines of at most `n` characters at spaces. */
function wrap(text: string, n: number): string[] {
  const out: string[] = [];
  let cur = "";
  for (const w of text.split(" ")) {
    if (cur && cur.length + 1 + w.length > n) { out.push(cur); cur = w; } else cur = cur ? `${cur} ${w}` : w;
  }
  return cur ? [...out, cur] : out;
}

function textPanel(items: { text: string; color?: string; bold?: boolean }[], width: number): Panel {
  const per = Math.floor((width - 28) / 7.2);
  const lines = items.flatMap((l) => wrap(l.text, per).map((text) => ({ ...l, text })));
  const h = 8 + lines.length * 16;
  const body = lines.map((l, i) => `<text x="14" y="${18 + i * 16}" font-size="12" fill="${l.color ?? "#333"}"${l.bold ? ' font-weight="600"' : ""}>${esc(l.text)}</text>`).join("");
  return { svg: `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${h}">${body}</svg>`, width, height: h };
}

const fmtRate = (v: number, unit: "B" | "FLOP") => (v >= 1e12 ? `${(v / 1e12).toFixed(2)} T${unit}/s` : `${(v / 1e9).toFixed(v >= 1e11 ? 0 : 1)} G${unit}/s`);
const ROOF_DASH: Record<string, string> = { dram: "7,3", l3: "4,3", l2: "2,3" };
const AGGREGATE_ROOF = "#2b6cb0";
export const ROOFLINE_TOP_LABELS = 8;

/** One device's panel: its roofs (DRAM and cache bandwidths, compute peaks) and the points of its runs. */
function rooflinePanel(runs: { p: Profile; index: number }[], ceilings: Ceilings | null, group: RooflineGroup, width: number): Panel[] {
  const pts = runs.flatMap(({ p, index }) => rooflinePoints(p, group).map((r) => ({
    ...r, run: p.manifest.label ?? p.id, runIndex: index, why: aboveDramReason(r, ceilings),
    x: r.measuredIntensity ?? r.intensity, // profiling mode counters: measured bytes; the modelled ones as a hollow dot
  })));
  const modelled = pts.filter((p) => p.measuredIntensity !== undefined);
  // tensor parallelism: a step point per run and phase against N × the roofs (engine/measure/roofline.ts)
  const steps = runs.flatMap(({ p, index }) => stepRooflinePoints(p).map((r) => ({ ...r, run: p.manifest.label ?? p.id, runIndex: index, x: r.intensity })));
  const aggregates = ceilings ? [...new Set(steps.map((s) => s.ranks!))].map((n) => aggregateCeilings(ceilings, n)) : [];
  const dev = runs[0].p.manifest.device;
  const head = `${dev.name} (${dev.backend}) · ${ceilings ? `ceilings ${ceilings.file}` : "no measured ceilings for this device: run notebooks/calibrate.ts"}`;
  if (!pts.length) return [textPanel([{ text: head, bold: true }], width), emptyPanel("no op records with FLOPs and bytes (run with profiling on)", width)];
  const xs = [...pts.map((p) => p.x), ...modelled.map((p) => p.intensity), ...steps.map((p) => p.x)], ys = [...pts, ...steps].map((p) => p.flopPerS);
  const xmin = Math.min(...xs) / 3, xmax = Math.max(...xs) * 3;
  let ymin = Math.min(...ys) / 3, ymax = Math.max(...ys) * 3;
  const marks: Plot.Markish[] = [];
  const labels: { x: number; y: number; text: string; anchor: "start" | "end" }[] = [];
  for (const [i, c] of (ceilings ? [ceilings, ...aggregates] : []).entries()) {
    const peak = Math.max(...c.compute.map((r) => r.value), 0);
    ymax = Math.max(ymax, peak * 1.5 || 0, ...c.memory.map((m) => Math.min(m.value * xmax, peak || Infinity) * 1.5));
    const lines: { x: number; y: number; roof: string; level: string }[] = [];
    for (const m of c.memory) {
      const roof = `${m.name} ${fmtRate(m.value, "B")}`;
      for (let k = 0; k <= 40; k++) {
        const x = xmin * Math.pow(xmax / xmin, k / 40);
        lines.push({ x, y: Math.min(m.value * x, peak || Infinity), roof, level: m.level ?? "dram" });
      }
      labels.push({ x: xmin * 1.05, y: m.value * xmin * 1.05, text: roof, anchor: "start" });
      ymin = Math.min(ymin, m.value * xmin / 1.5);
    }
    for (const r of c.compute) {
      const roof = `${r.name} ${fmtRate(r.value, "FLOP")}`;
      lines.push({ x: xmin, y: r.value, roof, level: "compute" }, { x: xmax, y: r.value, roof, level: "compute" });
      labels.push({ x: xmax / 1.05, y: r.value * 1.12, text: roof, anchor: "end" });
    }
    for (const level of ["dram", "l3", "l2", "compute"]) {
      const ls = lines.filter((l) => l.level === level);
      // the aggregate roofs of tp runs (i > 0) in blue, the device's own in grey
      if (ls.length) marks.push(Plot.line(ls, { x: "x", y: "y", z: "roof", stroke: i > 0 ? AGGREGATE_ROOF : level === "compute" ? "#666" : "#333", strokeDasharray: ROOF_DASH[level] ?? "1,0", strokeWidth: 1.2 }));
    }
  }
  for (const anchor of ["start", "end"] as const) {
    marks.push(Plot.text(labels.filter((l) => l.anchor === anchor), { x: "x", y: "y", text: "text", textAnchor: anchor, fontSize: 9, fill: "#444", lineAnchor: "bottom" }));
  }
  if (modelled.length) marks.push(Plot.dot(modelled, {
    x: "intensity", y: "flopPerS", stroke: (d: { runIndex: number }) => runColor(d.runIndex), fill: "none", symbol: "phase", r: 4,
    title: (d: typeof pts[number]) => `${d.run} ${d.phase} ${d.label} (modelled bytes)\n${(d.bytes / 1e6).toFixed(3)} MB modelled, ${(d.measuredBytes! / 1e6).toFixed(3)} MB measured`,
  }));
  marks.push(Plot.dot(pts, {
    x: "x", y: "flopPerS", fill: (d: { runIndex: number }) => runColor(d.runIndex),
    symbol: "phase", r: 4, stroke: "white", strokeWidth: 0.5,
    title: (d: typeof pts[number]) => `${d.run} ${d.phase} ${d.label}\n${d.kernels.join(", ")}\n${(d.flops / 1e6).toFixed(3)} MFLOP, ${(d.bytes / 1e6).toFixed(3)} MB, ${(d.seconds * 1e3).toFixed(4)} ms per step, ${(d.bytesPerS / 1e9).toFixed(1)} GB/s${d.measuredBytes !== undefined ? `\nmeasured DRAM ${(d.measuredBytes / 1e6).toFixed(3)} MB${d.l2HitPct !== undefined ? `, L2 hit ${d.l2HitPct.toFixed(1)} %` : ""}` : ""}${d.why ? `\n${d.why}` : ""}`,
  }));
  if (steps.length) {
    marks.push(Plot.dot(steps, {
      x: "x", y: "flopPerS", fill: (d: { runIndex: number }) => runColor(d.runIndex), symbol: "diamond", r: 7, stroke: "#111", strokeWidth: 1,
      title: (d: typeof steps[number]) => `${d.run} ${d.phase} ${d.label}: all ranks' work over the busiest rank's time\n${(d.flops / 1e6).toFixed(3)} MFLOP, ${(d.bytes / 1e6).toFixed(3)} MB, ${(d.seconds * 1e3).toFixed(4)} ms per step, ${(d.bytesPerS / 1e9).toFixed(1)} GB/s`,
    }));
    marks.push(Plot.text(steps, { x: "x", y: "flopPerS", text: (d: typeof steps[number]) => `${d.label} · ${d.phase}`, dx: 10, dy: 10, textAnchor: "start", fontSize: 9, fill: "#111" }));
  }
  // Labels only for the points that take the most time, and only where they do not overlap a label already placed:
  // the layer × op view has hundreds of points (every point keeps its tooltip).
  const fx = (x: number) => (Math.log(x / xmin) / Math.log(xmax / xmin)) * (width - 130);
  const fy = (y: number) => (Math.log(ymax / y) / Math.log(ymax / ymin)) * 360;
  const placed = placeLabels(pts, ROOFLINE_TOP_LABELS, (d) => fx(d.x), (d) => fy(d.flopPerS), (d) => d.label);
  marks.push(Plot.text(placed, { x: "x", y: "flopPerS", text: "label", dx: 6, textAnchor: "start", fontSize: 9, fill: "#333" }));
  const plot = render({
    marginLeft: 70, marginBottom: 40, marginRight: 60,
    x: { type: "log", domain: [xmin, xmax], label: "arithmetic intensity (FLOP/byte)", grid: true, tickFormat: "~g" },
    y: { type: "log", domain: [ymin, ymax], label: "achieved performance (FLOP/s)", grid: true, tickFormat: "~s" },
    symbol: { domain: ["prefill", "decode"], range: ["circle", "triangle"] },
    marks,
  }, width, 400);
  const notes = runs.map(({ p }) => cacheNote(p, pts.filter((x) => x.run === (p.manifest.label ?? p.id)), ceilings)).filter((n): n is string => !!n);
  if (steps.length) notes.push(TP_ROOFLINE_NOTE);
  const labelNote = pts.length > ROOFLINE_TOP_LABELS ? [{ text: `labels on up to ${ROOFLINE_TOP_LABELS} points with the most time (none that would overlap); every point has a tooltip`, color: "#777" }] : [];
  return [textPanel([{ text: head, bold: true }, ...notes.map((text) => ({ text, color: "#8a5a00" })), ...labelNote], width), plot];
}

/**
 * Log-log roofline: achieved FLOP/s against arithmetic intensity; several runs overlaid. Every run is drawn
 * against its own device's roofs: one panel per device, and a warning when the runs come from several devices.
 * `ceilings`: every known ceilings file (each run's device picks its own).
 */
export function rooflineSvg(profiles: Profile[], ceilings: Ceilings[], group: RooflineGroup = "op", width = 760): string {
  if (!profiles.length) return compose("Roofline", "", [emptyPanel("no runs", width)]);
  const groups = groupByDevice(profiles);
  const warning = mixedDeviceWarning(groups);
  const panels: Panel[] = warning ? [textPanel([{ text: `⚠ ${warning}`, color: "#b00020", bold: true }], width)] : [];
  for (const g of groups) {
    panels.push(...rooflinePanel(g.items.map(({ item, index }) => ({ p: item, index })), ceilingsFor(ceilings, g.device, g.backend), group, width));
  }
  const legend = profiles.map((p, i) => ({ label: `${p.manifest.label ?? p.id}${groups.length > 1 ? ` · ${p.manifest.device.name}` : ""}`, color: runColor(i) }));
  const sub = groups.length > 1 ? `${groups.length} devices · ● prefill ▲ decode` : `${groups[0].key} · ● prefill ▲ decode`;
  return compose(`Roofline (one point per ${group})`, sub, panels, legend);
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
  const lg = (q.phase === "decode" ? " · one decode step" : "")
    + (q.logits ? ` · logits KL ${q.logits.kl.toExponential(3)} · top-1 agreement ${(q.logits.top1_agreement * 100).toFixed(1)} %` : "")
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
      // colour = the one significance rule (engine/measure/stats.ts) on the per-step p10–p90 bands, as on the web page
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
