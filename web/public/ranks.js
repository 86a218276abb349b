// The Latency page's tensor-parallel panel: the ranks side by side (GET /api/profiles/:key/views → ranks, from
// engine/measure/ranks.ts). Per phase, a grouped bar chart (x = op, one bar per rank), a table of op × rank with the
// step time, the collectives' time and their share of the step per rank. Pure functions of the view (tested in
// test/web/ranks-page.test.ts); app.js only places them. A profile of one rank has ranks = null: nothing is drawn.
import { esc, fmt } from "./format.js";

/** A latency matrix's title suffix: with tensor parallelism it holds rank 0 of N (this panel has them all). */
export const ofRank = (m) => (m.ranks ? ` · rank ${m.rank} of ${m.ranks}` : "");

/** The heading line of the panel, or "" for a profile of one rank. */
export function ranksIntro(ranks) {
  if (!ranks) return "";
  const comm = [...new Set([...ranks.prefill.commOps, ...ranks.decode.commOps])];
  return `<h2>Ranks side by side <span class="muted small">(tensor parallelism, ${ranks.ranks.length} ranks)</span></h2>
    <p class="muted small">The layer × op plots and table below show rank 0 (the step summaries count rank 0's records). Here every
    rank's time per step; communication = ${comm.length ? comm.map((o) => `<code>${esc(o)}</code>`).join(" + ") : "the collectives (none recorded)"}
    over the rank's step time (all of its records: ops, collectives, gaps, copies).</p>`;
}

/** One phase's table: op rows × rank columns, then step, communication and its share; "" when the phase has no steps. */
export function ranksTable(m) {
  if (!m.steps) return "";
  const head = m.ranks.map((k) => `<th class="n">rank ${k}</th>`).join("");
  const row = (label, cells, cls = "") => `<tr${cls ? ` class="${cls}"` : ""}><td>${label}</td>${cells.map((c) => `<td class="n">${c}</td>`).join("")}</tr>`;
  const body = [
    ...m.ops.map((op, j) => row(esc(op), m.ms[j].map((x) => fmt(x, 4)))),
    row("<b>step</b>", m.stepMs.map((x) => `<b>${fmt(x, 4)}</b>`)),
    row("communication (ms)", m.commMs.map((x) => fmt(x, 4)), "comm"),
    row("<b>communication share of the step</b>", m.commPct.map((x) => `<b>${fmt(x, 1)} %</b>`), "comm"),
  ].join("");
  return `<h3>${esc(m.phase)} (ms per step, ${esc(m.stat)} of ${m.steps} step${m.steps > 1 ? "s" : ""})</h3>
    <table class="ranks" data-phase="${esc(m.phase)}"><thead><tr><th>op</th>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

/** Plotly traces and layout of one phase: x = op (then "communication"), one bar series per rank. */
export function ranksFigure(m, palette, base = {}) {
  const traces = m.ranks.map((k, i) => ({
    type: "bar", name: `rank ${k} · comm ${fmt(m.commPct[i], 1)} %`, x: m.ops, y: m.ms.map((row) => row[i]),
    marker: { color: palette[i % palette.length] }, hovertemplate: `rank ${k} · %{x}: %{y:.4f} ms<extra></extra>`,
  }));
  const share = m.ranks.map((k, i) => `rank ${k} ${fmt(m.commPct[i], 1)} %`).join(", ");
  return {
    traces,
    layout: {
      ...base, barmode: "group",
      title: { text: `${m.phase}: time per step by op and rank (${m.stat} of ${m.steps}) · communication share: ${share}`, font: { size: 13 } },
      xaxis: { title: { text: "op" } }, yaxis: { title: { text: "time per step (ms)" }, rangemode: "tozero" },
    },
  };
}

/** Fills the Latency page's #lat-ranks panel from a views answer (hidden for a profile of one rank). */
export function drawRanks(v, { Plotly, palette, base, cfg }) {
  const root = document.getElementById("lat-ranks");
  const r = v.ranks;
  root.hidden = !r;
  if (!r) { for (const ph of ["prefill", "decode"]) Plotly.purge(`lat-ranks-${ph}`); return; }
  document.getElementById("lat-ranks-intro").innerHTML = ranksIntro(r);
  for (const ph of ["prefill", "decode"]) {
    const div = document.getElementById(`lat-ranks-${ph}`);
    div.parentElement.hidden = !r[ph].steps;
    if (!r[ph].steps) { Plotly.purge(div); continue; }
    const f = ranksFigure(r[ph], palette, base);
    Plotly.react(div, f.traces, f.layout, cfg);
  }
  document.getElementById("lat-ranks-table").innerHTML = ranksTable(r.prefill) + ranksTable(r.decode);
}
