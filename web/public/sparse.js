// Sparse prefill on the pages (toggle sparsePrefill = vertical-slash | block-sparse): the budget fields shown under the toggle on the
// Run page, reading them into a run's `sparse` field, and the per-layer table of what the session measured
// (profile summary.sparse: keys visited, and with stats the recall of dense attention mass, rel L2 and cosine of z).

import { esc } from "./format.js";

/** Budget inputs under the toggle (hidden unless the toggle is on somewhere). */
export function sparseFields(ns) {
  const f = (cls, label, min, ph) => `<label>${label} <input class="${cls}" name="${ns}-${cls}" type="number" min="${min}" placeholder="${ph}"></label>`;
  return `<div class="sparse-budgets line" hidden>${f("sp-vertical", "vertical lines", 0, 1000)}${f("sp-slash", "slash lines", 0, 6096)}
    ${f("sp-blocks", "blocks (block-sparse)", 0, 100)}${f("sp-local", "local diagonals", 1, 100)}${f("sp-sink", "sink columns", 0, 30)}
    <label class="check"><input type="checkbox" class="sp-stats" name="${ns}-sp-stats"> recall / error vs dense (slower)</label></div>`;
}

/** Shows the budgets while the toggle (or a layer of it) is a sparse pattern. */
export function wireSparseFields(div) {
  const box = div.querySelector(".sparse-budgets");
  const show = () => { box.hidden = ![...div.querySelectorAll("select")].some((s) => s.value !== "off"); };
  div.addEventListener("change", show);
  show();
}

/** The run's `sparse` field from the fields (undefined when the toggle is off everywhere or nothing is set). */
export function readSparse(root) {
  const div = root.querySelector('.toggle[data-id="sparsePrefill"]');
  const box = div?.querySelector(".sparse-budgets");
  if (!box || box.hidden) return undefined;
  const out = {};
  for (const k of ["vertical", "slash", "blocks", "local", "sink"]) {
    const v = box.querySelector(`.sp-${k}`).value.trim();
    if (v !== "") out[k] = Number(v);
  }
  if (box.querySelector(".sp-stats").checked) out.stats = true;
  return Object.keys(out).length ? out : undefined;
}

/** Per layer: keys visited, recall, rel L2, cosine (min / mean over the query heads), or "" without sparse data. */
export function sparseSummaryHtml(sp) {
  if (!sp || !sp.layers?.length) return "";
  const agg = (xs, d) => {
    const v = xs.filter((x) => x !== undefined && x !== null);
    if (!v.length) return "–";
    return `${Math.min(...v).toFixed(d)} / ${(v.reduce((a, b) => a + b, 0) / v.length).toFixed(d)}`;
  };
  const rows = sp.layers.map((l) => `<tr><td>L${l.layer}</td><td class="n">${agg(l.heads.map((h) => 100 * h.density), 1)} %</td>
    <td class="n">${agg(l.heads.map((h) => h.recall), 4)}</td><td class="n">${agg(l.heads.map((h) => h.relL2), 4)}</td><td class="n">${agg(l.heads.map((h) => h.cosine), 5)}</td></tr>`).join("");
  return `<div class="sparse-summary"><p class="muted small">Sparse prefill (latest prompt's prefill, ${sp.steps} step(s)), budgets: vertical ${esc(sp.vertical)}, slash ${esc(sp.slash)}, blocks ${esc(sp.blocks ?? "–")}, local ${esc(sp.local)}, sink ${esc(sp.sink)} (vertical-slash: pattern from the last ${esc(sp.lastQ)} queries; block-sparse: blocks of ${esc(sp.blockSize ?? 64)} positions).${sp.stats ? "" : " Recall and error: tick “recall / error vs dense”."} Values: min / mean over the query heads.</p>
    <table><thead><tr><th>layer</th><th class="n">keys visited</th><th class="n">recall of attention mass</th><th class="n">rel L2 of z</th><th class="n">cosine of z</th></tr></thead><tbody>${rows}</tbody></table></div>`;
}
