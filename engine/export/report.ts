// A self-contained HTML report of a profile: summary, manifest, server-rendered SVG plots, the llama-bench
// table, the per layer × op table, and the profile JSON embedded (so the data travels with the report).
// No external script, style sheet or font: it opens offline and can be mailed around.
import type { Profile } from "../measure/profile.ts";
import { latencyMatrix, profilingModeOf, type PhaseName } from "../measure/aggregate.ts";
import { rankViews, type RankView } from "../measure/ranks.ts";
import type { Ceilings } from "../measure/roofline.ts";
import { latencySvg, quantSvg, rooflineSvg, timelineSvg } from "./svg.ts";
import { tableRows } from "./table.ts";
import { fmtSpread, summaryStats } from "../measure/stats.ts";

function esc(s: unknown): string {
  return String(s ?? "").replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

const fmt = (v: number | undefined, d = 2) => (v === undefined || !Number.isFinite(v) ? "–" : v.toFixed(d));

function profilingLabel(p: Profile): string {
  const mode = profilingModeOf(p);
  return mode === "kernels" ? "kernels (CUPTI kernel records, graph kept; CPU: host timestamps per op)"
    : mode === "events" ? "events (an event pair around every op, ops launched one by one)"
    : mode === "counters" ? "counters (CUPTI hardware counters per op, kernels replayed: op times include the replays)" : mode;
}

export function htmlReport(p: Profile, opts: { ceilings?: Ceilings[] } = {}): string {
  const m = p.manifest, s = p.summary, st = summaryStats(p);
  // medians over the measured repetitions with their min–max (engine/measure/stats.ts), as every other view shows them
  const reps = Math.max(0, ...Object.values(st).map((x) => x?.n ?? 0));
  const summary: [string, string][] = [
    ["repetitions", `${reps} measured${s.warmup ? ` after ${s.warmup} warm-up` : ""} · median (min–max)`],
    ["TTFT", `${fmtSpread(st.ttft_ms)} ms`],
    ["TPOT median (p90 of steps)", `${fmtSpread(st.tpot_ms, 3)} ms (${fmt(s.tpot_ms?.p90, 3)} ms)`],
    ["prefill", `${fmtSpread(st.prefill_tok_s, 1)} tok/s over ${s.prefill_tokens ?? "–"} tokens`],
    ["decode", `${fmtSpread(st.decode_tok_s, 1)} tok/s over ${s.decode_tokens ?? "–"} tokens`],
  ];
  if (s.profiling_overhead_pct !== undefined) summary.push(["profiling overhead", `${fmt(s.profiling_overhead_pct, 1)} %`]);
  summary.push(["profiling mode", profilingLabel(p)]);
  for (const c of p.fidelity?.sum_check ?? []) {
    summary.push([`sum check · ${c.mode ?? p.fidelity!.mode} · ${c.phase}`,
      `records ${fmt(c.ops_ms + c.gaps_ms + c.other_ms, 4)} ms of ${fmt(c.wall_ms, 4)} ms per step (gaps ${fmt(c.gaps_ms, 4)}); |wall − records| ${fmt(c.diff_pct.median)} % median, ${fmt(c.diff_pct.max)} % max over ${c.steps} steps${c.calls !== undefined && c.calls !== c.steps ? ` in ${c.calls} engine calls` : ""}`]);
  }
  const manifest: [string, string][] = [
    ["profile", p.id], ["kind", p.kind], ["label", m.label ?? ""], ["date", m.date], ["git commit", m.git_commit],
    ["model", `${m.model.id} (${m.model.format}, hash ${m.model.hash.slice(0, 16)})`],
    ["device", `${m.device.name} · ${m.device.backend}${m.device.threads ? ` · ${m.device.threads} threads` : ""}${m.device.driver ? ` · driver ${m.device.driver}` : ""}`],
    ["toggles", Object.entries(m.toggles).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("/") : v}`).join(", ") || "defaults"],
    ["sampling", m.sampling ? `temperature ${m.sampling.temperature}, top-k ${m.sampling.top_k}, top-p ${m.sampling.top_p}, seed ${m.sampling.seed}` : "–"],
    ["command", m.command ?? ""], ["engine build", m.engine_build.slice(0, 300)],
  ];
  const kv = (rows: [string, string][]) => `<table class="kv">${rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join("")}</table>`;
  const bench = tableRows([p]);
  const benchHtml = bench.length ? `<table><thead><tr><th>test</th><th>backend</th><th>weights</th><th class="n">t/s</th><th class="n">min</th><th class="n">max</th><th class="n">samples</th></tr></thead><tbody>${
    bench.map((r) => `<tr><td>${esc(r.test)}</td><td>${esc(r.backend)}</td><td>${esc(r.weights)}</td><td class="n">${fmt(r.tokens_per_s)}</td><td class="n">${fmt(r.tokens_per_s_min)}</td><td class="n">${fmt(r.tokens_per_s_max)}</td><td class="n">${r.samples}</td></tr>`).join("")}</tbody></table>` : "<p>no rates</p>";
  const layerTables = (["prefill", "decode"] as PhaseName[]).map((phase) => {
    const lm = latencyMatrix(p, phase);
    if (!lm.steps) return "";
    return `<h3>${phase}${lm.ranks ? ` · rank ${lm.rank} of ${lm.ranks}` : ""}: ms per step (mean of ${lm.steps})</h3><div class="scroll"><table><thead><tr><th>layer</th>${lm.ops.map((o) => `<th class="n">${esc(o)}</th>`).join("")}<th class="n">total</th></tr></thead><tbody>${
      lm.layers.map((_, i) => `<tr><td>${esc(lm.layerLabels[i])}</td>${lm.ms[i].map((v) => `<td class="n">${v.toFixed(4)}</td>`).join("")}<td class="n"><b>${lm.ms[i].reduce((a, b) => a + b, 0).toFixed(4)}</b></td></tr>`).join("")}</tbody></table></div>`;
  }).join("");
  const rv = rankViews(p);
  const rankTables = rv ? (["prefill", "decode"] as PhaseName[]).map((ph) => rankTable(rv[ph])).join("") : "";
  const plots = [latencySvg(p), timelineSvg(p), rooflineSvg([p], opts.ceilings ?? [])];
  if (p.quant_error?.length) plots.push(quantSvg(p));
  const quant = p.quant_error?.map((q) => `<h3>${esc(q.candidate_label)} vs ${esc(q.reference_label)}</h3><table><thead><tr><th>hook</th><th class="n">cosine</th><th class="n">rel L1</th><th class="n">RMSE</th><th class="n">SQNR (dB)</th><th class="n">max abs</th></tr></thead><tbody>${
    q.layers.map((l) => `<tr><td>${esc(l.hook)}</td><td class="n">${l.cosine.toFixed(6)}</td><td class="n">${l.rel_l1.toExponential(3)}</td><td class="n">${l.rmse.toExponential(3)}</td><td class="n">${fmt(l.sqnr_db, 1)}</td><td class="n">${l.max_abs.toExponential(3)}</td></tr>`).join("")}</tbody></table>${
    q.logits ? `<p>logits: KL ${q.logits.kl.toExponential(3)} nats · top-1 agreement ${(q.logits.top1_agreement * 100).toFixed(1)} % · cosine ${q.logits.cosine.toFixed(6)}</p>` : ""}${
    q.perplexity ? `<p>perplexity on ${esc(q.perplexity.text ?? "a text")} (${q.perplexity.tokens ?? "?"} tokens, ctx ${q.perplexity.ctx ?? "?"}): ${fmt(q.perplexity.reference ?? NaN, 3)} → ${fmt(q.perplexity.candidate ?? NaN, 3)} · KL ${q.perplexity.kl_mean?.toExponential(3) ?? "–"} nats · top-1 agreement ${q.perplexity.top1_agreement === null || q.perplexity.top1_agreement === undefined ? "–" : (q.perplexity.top1_agreement * 100).toFixed(2) + " %"}</p>` : ""}${
    (q.findings ?? []).map((f) => `<p><b>finding:</b> ${esc(f)}</p>`).join("")}`).join("") ?? "";
  const json = JSON.stringify(p).replace(/</g, "\\u003c");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>qwen-workbench report · ${esc(m.label ?? p.id)}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:16px 28px}header h1{margin:0;font-size:20px}header p{margin:4px 0 0;color:#b9c1d0;font-size:13px}
main{max-width:1100px;margin:0 auto;padding:20px 28px}
section{background:#fff;border:1px solid #e1e4ea;border-radius:8px;padding:14px 18px;margin:0 0 16px}
h2{font-size:16px;margin:0 0 10px}h3{font-size:14px;margin:14px 0 6px}
table{border-collapse:collapse;font-size:11.5px;width:100%}th,td{padding:4px 8px;border-bottom:1px solid #eceef2;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}.kv th{width:160px;color:#555;font-weight:500}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(200px,1fr));gap:10px}
.card{border:1px solid #e1e4ea;border-radius:6px;padding:8px 12px}.card b{display:block;font-size:18px}.card span{color:#666;font-size:12px}
.plot svg{max-width:100%;height:auto}.scroll{overflow-x:auto}pre{white-space:pre-wrap;font-size:12px;background:#f3f4f7;padding:8px;border-radius:6px}
</style></head><body>
<header><h1>${esc(m.label ?? p.id)}</h1><p>${esc(m.model.id)} · ${esc(m.device.name)} (${esc(m.device.backend)}) · ${esc(m.date)}</p></header>
<main>
<section><h2>Summary</h2><div class="grid">${summary.map(([k, v]) => `<div class="card"><span>${esc(k)}</span><b>${esc(v)}</b></div>`).join("")}</div></section>
<section><h2>Plots</h2>${plots.map((svg) => `<div class="plot">${svg}</div>`).join("")}</section>
<section><h2>Rates (llama-bench style)</h2>${benchHtml}</section>
${rankTables ? `<section><h2>Ranks side by side (tensor parallelism)</h2><p>ms per step on each rank; communication = ${esc(rv!.decode.commOps.join(" + ") || "the collectives")} over the rank's step time. The layer × op tables below are rank 0's.</p>${rankTables}</section>` : ""}
<section><h2>Per layer × op</h2>${layerTables || "<p>no op records (profiling was off)</p>"}</section>
${quant ? `<section><h2>Quantization error</h2>${quant}</section>` : ""}
${p.output_text !== undefined ? `<section><h2>Output</h2><pre>${esc(p.output_text)}</pre></section>` : ""}
<section><h2>Manifest</h2>${kv(manifest)}</section>
${p.notes?.length ? `<section><h2>Notes</h2><ul>${p.notes.map((n) => `<li>${esc(n)}</li>`).join("")}</ul></section>` : ""}
<section><h2>Data</h2><p>The complete profile JSON is embedded in this file (element <code>#profile-data</code>).</p></section>
</main>
<script type="application/json" id="profile-data">${json}</script>
</body></html>
`;
}

/** One phase of a tensor-parallel profile: op × rank, then the step, the collectives and their share per rank. */
function rankTable(m: RankView): string {
  if (!m.steps) return "";
  const row = (label: string, cells: string[]) => `<tr><td>${label}</td>${cells.map((c) => `<td class="n">${c}</td>`).join("")}</tr>`;
  return `<h3>${m.phase}: ms per step (mean of ${m.steps})</h3><table><thead><tr><th>op</th>${m.ranks.map((k) => `<th class="n">rank ${k}</th>`).join("")}</tr></thead><tbody>${
    m.ops.map((op, j) => row(esc(op), m.ms[j].map((v) => v.toFixed(4)))).join("")}${row("<b>step</b>", m.stepMs.map((v) => v.toFixed(4)))}${
    row("communication", m.commMs.map((v) => v.toFixed(4)))}${row("<b>communication share of the step</b>", m.commPct.map((v) => `${v.toFixed(1)} %`))}</tbody></table>`;
}
