// The Roofline page's figure (plotly traces and layout), a pure function of the server's answers so that it
// can be tested without a browser (test/web/roofline-page.test.ts): one panel per device, each run against its
// own device's roofs (DRAM, L3, L2 bandwidth; compute peaks), labels only on the points with the most time.
// Tensor-parallel runs add a step point per phase (◆, all ranks' work over the busiest rank's time) drawn against
// N × the roofs (blue; the server's dev.devices[].aggregates), while their per-rank points keep one device's roofs.
import { esc } from "./format.js";

export const ROOF_TOP_LABELS = 8;
const ROOF_DASH = { dram: "dash", l3: "dashdot", l2: "dot" };
const AGGREGATE_ROOF = "#2b6cb0";
const fix = (v, d) => Number(v).toFixed(d);
const rate = (v, unit) => (v >= 1e12 ? `${fix(v / 1e12, 2)} T${unit}/s` : `${fix(v / 1e9, v >= 1e11 ? 0 : 1)} G${unit}/s`);

// Labels for at most ROOF_TOP_LABELS points, most time first, skipping one whose label box (at pixel px, py; 10 px
// type to the right of the point) overlaps a label already placed. The other points show on hover.
function labelled(pts, px, py) {
  const boxes = [], out = new Set();
  for (const p of [...pts].sort((a, b) => b.seconds - a.seconds)) {
    if (out.size >= ROOF_TOP_LABELS) break;
    const x0 = px(p) + 6, y0 = py(p) - 7, b = { x0, x1: x0 + 6 * p.label.length, y0, y1: y0 + 14 };
    if (boxes.some((o) => b.x0 < o.x1 && o.x0 < b.x1 && b.y0 < o.y1 && o.y0 < b.y1)) continue;
    boxes.push(b);
    out.add(p);
  }
  return out;
}

// x of a point: the measured intensity (DRAM bytes the GPU counted, profiling mode counters) when there is one,
// else the modelled one. Measured points get a second, hollow marker at their modelled intensity (same FLOP/s).
const xOf = (p) => p.measuredIntensity ?? p.intensity;
const measuredHover = (p) => (p.measuredBytes === undefined ? "" :
  `<br>measured DRAM: ${fix(p.measuredBytes / 1e6, 3)} MB (modelled ${fix(p.bytes / 1e6, 3)} MB)` +
  (p.measuredBytesPerS !== undefined ? ` · ${fix(p.measuredBytesPerS / 1e9, 1)} GB/s over kernel time` : "") +
  (p.l2HitPct !== undefined ? ` · L2 hit ${fix(p.l2HitPct, 1)} %` : ""));

// The traces of one run and phase: its points, and where bytes were measured the modelled-bytes markers.
function pointTraces(ps, ph, ax, color, top) {
  const symbol = ph === "prefill" ? "circle" : "triangle-up";
  const out = [{
    type: "scatter", mode: "markers+text", name: `${ps[0].run} · ${ph}`, xaxis: `x${ax}`, yaxis: `y${ax}`,
    x: ps.map(xOf), y: ps.map((p) => p.flopPerS), text: ps.map((p) => (top.has(p) ? p.label : "")),
    textposition: "middle right", textfont: { size: 10, color: "#333" }, cliponaxis: false,
    marker: { color, symbol, size: 9, line: { color: "#fff", width: 1 } },
    customdata: ps.map((p) => [p.kernels.join(", "), p.flops / 1e6, p.bytes / 1e6, p.seconds * 1e3, p.bytesPerS / 1e9, p.label, (p.why ? `<br><i>${esc(p.why)}</i>` : "") + measuredHover(p), p.measuredBytes === undefined ? "modelled" : "measured"]),
    hovertemplate: "<b>%{customdata[5]}</b> (" + ph + ")<br>kernel: %{customdata[0]}<br>FLOPs: %{customdata[1]:.3f} M<br>bytes: %{customdata[2]:.3f} MB<br>time: %{customdata[3]:.4f} ms<br>%{x:.3g} FLOP/B (%{customdata[7]} bytes) · %{y:.3s}FLOP/s · %{customdata[4]:.2f} GB/s%{customdata[6]}<extra></extra>",
  }];
  const measured = ps.filter((p) => p.measuredIntensity !== undefined);
  if (measured.length) out.push({
    type: "scatter", mode: "markers", name: `${ps[0].run} · ${ph} · modelled bytes`, xaxis: `x${ax}`, yaxis: `y${ax}`,
    x: measured.map((p) => p.intensity), y: measured.map((p) => p.flopPerS), cliponaxis: false,
    marker: { color, symbol: `${symbol}-open`, size: 9, line: { color, width: 1.5 } },
    customdata: measured.map((p) => [p.label, p.bytes / 1e6, p.measuredBytes / 1e6]),
    hovertemplate: "<b>%{customdata[0]}</b> (" + ph + ", modelled)<br>modelled bytes: %{customdata[1]:.3f} MB (measured %{customdata[2]:.3f} MB)<br>%{x:.3g} FLOP/B<extra></extra>",
  });
  return out;
}

// The step points of a tensor-parallel run and phase: large diamonds, always labelled.
function stepTrace(ps, ph, ax, color) {
  return {
    type: "scatter", mode: "markers+text", name: `${ps[0].run} · ${ph} · step (all ranks)`, xaxis: `x${ax}`, yaxis: `y${ax}`,
    x: ps.map((p) => p.intensity), y: ps.map((p) => p.flopPerS), text: ps.map((p) => `${p.label} · ${ph}`),
    textposition: "bottom right", textfont: { size: 10, color: "#111" }, cliponaxis: false,
    marker: { color, symbol: "diamond", size: 14, line: { color: "#111", width: 1.5 } },
    customdata: ps.map((p) => [p.flops / 1e6, p.bytes / 1e6, p.seconds * 1e3, p.bytesPerS / 1e9, p.ranks, p.why ? `<br><i>${esc(p.why)}</i>` : ""]),
    hovertemplate: "<b>step, all %{customdata[4]} ranks</b> (" + ph + ")<br>FLOPs: %{customdata[0]:.3f} M · bytes: %{customdata[1]:.3f} MB (every rank's model ops)<br>time: %{customdata[2]:.4f} ms (the busiest rank, collectives included)<br>%{x:.3g} FLOP/B · %{y:.3s}FLOP/s · %{customdata[3]:.2f} GB/s — against %{customdata[4]} × the roofs%{customdata[5]}<extra></extra>",
  };
}

/**
 * views: GET /api/profiles/:key/views for each key; dev: GET /api/roofline/devices?keys=…;
 * opts: { group: "op"|"layer"|"layer-op", phase: "both"|"prefill"|"decode", palette, base (layout defaults) }.
 * Returns { traces, layout, notes, warning, height }.
 */
export function rooflineFigure(views, keys, dev, opts) {
  const { group, phase, palette } = opts;
  const runOf = new Map(keys.map((k, i) => [k, i]));
  const traces = [], annotations = [], notes = [];
  const n = dev.devices.length, gap = 0.1, h = (1 - gap * (n - 1)) / n;
  const layout = {
    ...(opts.base ?? {}), margin: { l: 80, r: 20, t: 44, b: 60 }, showlegend: true, legend: { orientation: "h", y: -0.08 },
    title: { text: `Roofline · one point per ${group}${n > 1 ? ` · ${n} devices` : ` · ${dev.devices[0]?.key ?? ""}`}`, font: { size: 13 } },
  };
  let total = 0;
  dev.devices.forEach((d, g) => {
    const ax = g === 0 ? "" : String(g + 1);
    const pts = d.runs.flatMap((k) => {
      const i = runOf.get(k), v = views[i];
      return v.roofline[group].filter((p) => phase === "both" || p.phase === phase).map((p) => ({ ...p, run: v.manifest.label ?? v.id, i }));
    });
    total += pts.length;
    const steps = d.runs.flatMap((k) => {
      const i = runOf.get(k), v = views[i];
      return (v.roofline.step ?? []).filter((p) => phase === "both" || p.phase === phase).map((p) => ({ ...p, run: v.manifest.label ?? v.id, i }));
    });
    const xs = [...pts, ...steps].flatMap((p) => (p.measuredIntensity !== undefined ? [p.intensity, p.measuredIntensity] : [p.intensity])), ys = [...pts, ...steps].map((p) => p.flopPerS);
    const xmin = (xs.length ? Math.min(...xs) : 0.1) / 3, xmax = (xs.length ? Math.max(...xs) : 10) * 3;
    let ymin = (ys.length ? Math.min(...ys) : 1e9) / 3, ymax = (ys.length ? Math.max(...ys) : 1e10) * 3;
    const c = d.ceilings;
    const aggs = c ? (d.aggregates ?? []).map((a) => a.ceilings) : [];
    for (const cc of c ? [c, ...aggs] : []) {
      const peak = Math.max(0, ...cc.compute.map((r) => r.value));
      if (peak) ymax = Math.max(ymax, peak * 2);
      for (const m of cc.memory) ymin = Math.min(ymin, m.value * xmin);
    }
    const top = labelled(pts, (p) => Math.log(xOf(p) / xmin) / Math.log(xmax / xmin) * (opts.plotWidth ?? 900),
      (p) => Math.log(ymax / p.flopPerS) / Math.log(ymax / ymin) * 400);
    for (const k of d.runs) {
      const i = runOf.get(k);
      for (const ph of ["prefill", "decode"]) {
        const ps = pts.filter((p) => p.i === i && p.phase === ph);
        if (!ps.length) continue;
        traces.push(...pointTraces(ps, ph, ax, palette[i % palette.length], top));
        const st = steps.filter((p) => p.i === i && p.phase === ph);
        if (st.length) traces.push(stepTrace(st, ph, ax, palette[i % palette.length]));
      }
    }
    const where = n > 1 ? `${d.device}: ` : "";
    if (c) {
      [c, ...aggs].forEach((cc, j) => {
        const peak = Math.max(0, ...cc.compute.map((r) => r.value));
        for (const m of cc.memory) {
          const x2 = [xmin, Math.min(xmax, peak ? peak / m.value : xmax)];
          traces.push({ type: "scatter", mode: "lines", name: `${where}${m.name} (${rate(m.value, "B")})`, xaxis: `x${ax}`, yaxis: `y${ax}`, x: x2, y: x2.map((x) => m.value * x), line: { color: j ? AGGREGATE_ROOF : "#333", dash: ROOF_DASH[m.level] ?? "dash", width: 1.5 }, hoverinfo: "name" });
        }
        for (const r of cc.compute) traces.push({ type: "scatter", mode: "lines", name: `${where}${r.name} (${rate(r.value, "FLOP")})`, xaxis: `x${ax}`, yaxis: `y${ax}`, x: [xmin, xmax], y: [r.value, r.value], line: { color: j ? AGGREGATE_ROOF : "#777", dash: "longdash", width: 1.5 }, hoverinfo: "name" });
      });
    } else {
      notes.push(`No measured ceilings for ${d.key}: run notebooks/calibrate.ts on that device to draw its memory and compute roofs.`);
    }
    notes.push(...(d.notes ?? []));
    const top0 = 1 - g * (h + gap);
    layout[`xaxis${ax}`] = { type: "log", title: { text: "arithmetic intensity (FLOP/byte)" }, range: [Math.log10(xmin), Math.log10(xmax)], anchor: `y${ax}` };
    layout[`yaxis${ax}`] = { type: "log", title: { text: "FLOP/s" }, range: [Math.log10(ymin), Math.log10(ymax)], exponentformat: "SI", domain: [Math.max(0, top0 - h), top0], anchor: `x${ax}` };
    if (n > 1) annotations.push({ text: `<b>${esc(d.key)}</b>${c ? ` · ceilings ${esc(c.file)}` : " · no measured ceilings"}`, xref: "paper", yref: "paper", x: 0, y: top0, yanchor: "bottom", showarrow: false, font: { size: 12 } });
  });
  if (total > ROOF_TOP_LABELS) notes.push(`Labels on up to ${ROOF_TOP_LABELS} points with the most time per panel (none that would overlap); hover for every point.`);
  return { traces, layout: { ...layout, annotations }, notes, warning: dev.warning ?? null, height: Math.max(560, 480 * n) };
}
