// The Passkey page: runs the passkey retrieval test (POST /api/passkey) on a model with Dual Chunk Attention and
// MInference sparse prefill options, and shows a saved result as the heat map of accuracy by length × needle depth
// (plotly), the per-length table with sparse density / recall, and exports (server SVG, CSV, markdown, JSON).
// app.js hands in its helpers (no import cycle); this module owns everything with a #pk- id.
/* global Plotly */

export function createPasskeyPage(ctx) {
  const { $, api, toast, esc, enc, follow, BASE_LAYOUT, PLOT_CFG } = ctx;
  let results = [];

  const num = (id) => { const v = $(id).value.trim(); return v === "" ? undefined : Number(v); };
  function body() {
    const lengths = $("#pk-lengths").value.split(",").map((s) => Number(s.trim())).filter((x) => x > 0);
    const model = $("#pk-model").value.trim();
    return {
      ...(model ? { model } : {}), lengths, trials: num("#pk-trials") ?? 10, seed: num("#pk-seed") ?? 0, buckets: num("#pk-buckets") ?? 5,
      dca: $("#pk-dca").value, dcaChunk: num("#pk-dca-chunk"), dcaLocal: num("#pk-dca-local"),
      sparse: $("#pk-sparse").value, sparseVertical: num("#pk-sv"), sparseSlash: num("#pk-ss"), sparseBlocks: num("#pk-sb"), sparseLocal: num("#pk-sl"),
      sparseSink: num("#pk-sk"), sparseStats: $("#pk-stats").checked || undefined,
    };
  }

  async function start() {
    $("#pk-run").disabled = true;
    const st = $("#pk-status");
    try {
      const { task } = await api("/api/passkey", { json: body() });
      $("#pk-cancel").hidden = false;
      $("#pk-cancel").onclick = () => api(`/api/tasks/${enc(task.id)}/cancel`, { method: "POST" }).catch((e) => toast(e.message, "error"));
      const r = await follow(task.id, {
        progress: (p) => { st.textContent = `loading: ${p.stage} ${p.done}/${p.total}`; },
        passkey: (p) => { st.textContent = `length ${p.length}: trial ${p.trial + 1} · ${p.done}/${p.total} done`; },
      });
      if (r.kind === "done") { st.textContent = r.data.title; await refresh(r.data.key, r.data.index); }
      else { st.textContent = ""; toast(`passkey ${r.kind}: ${r.data?.message ?? ""}`, r.kind === "error" ? "error" : "info"); }
    } catch (e) { toast(e.message, "error"); st.textContent = ""; }
    finally { $("#pk-run").disabled = false; $("#pk-cancel").hidden = true; }
  }

  async function refresh(selectKey, selectIndex = 0) {
    results = (await api("/api/passkey")).results;
    const sel = $("#pk-result");
    sel.innerHTML = results.map((r, i) => `<option value="${i}">${esc(r.label ?? r.key)} · ${esc(r.model)} · dca ${r.dca ? "on" : "off"}${r.sparse ? " · sparse" : ""} (${esc(r.key)}${r.index ? `#${r.index}` : ""})</option>`).join("")
      || '<option value="">no results yet: run one</option>';
    const at = selectKey ? results.findIndex((r) => r.key === selectKey && r.index === selectIndex) : 0;
    if (results.length) { sel.value = String(Math.max(0, at)); await draw(); }
  }

  async function draw() {
    const e = results[Number($("#pk-result").value)];
    if (!e) return;
    const q = `key=${enc(e.key)}&index=${e.index}`;
    const r = await api(`/api/passkey/result?${q}&format=json`);
    const depth = Array.from({ length: r.buckets }, (_, b) => `${Math.round((100 * b) / r.buckets)}–${Math.round((100 * (b + 1)) / r.buckets)} %`);
    const z = r.lengths.map((L) => depth.map((_, b) => { const c = r.cells.find((x) => x.length === L && x.bucket === b); return c && c.accuracy !== null ? 100 * c.accuracy : null; }));
    const text = r.lengths.map((L) => depth.map((_, b) => { const c = r.cells.find((x) => x.length === L && x.bucket === b); return c ? `${c.correct}/${c.n}` : ""; }));
    Plotly.newPlot("pk-heat", [{
      type: "heatmap", z, x: depth, y: r.lengths.map(String), text, texttemplate: "%{z:.0f} %<br>%{text}", zmin: 0, zmax: 100,
      colorscale: [[0, "#d73027"], [0.5, "#fee08b"], [1, "#1a9850"]], colorbar: { title: { text: "accuracy %" } },
      hovertemplate: "length %{y}<br>depth %{x}<br>%{z:.0f} % (%{text})<extra></extra>",
    }], { ...BASE_LAYOUT, title: { text: e.title, font: { size: 12 } }, margin: { l: 70, r: 20, t: 50, b: 50 },
      xaxis: { title: { text: "needle depth" } }, yaxis: { title: { text: "length (tokens)" }, type: "category" } }, PLOT_CFG);
    const sp = r.sparse;
    $("#pk-table").innerHTML = `<table><thead><tr><th class="n">length</th><th class="n">accuracy</th><th class="n">correct / trials</th>${sp ? '<th class="n">keys visited</th><th class="n">recall of attention mass</th>' : ""}</tr></thead><tbody>${
      r.byLength.map((b) => { const s = sp?.byLength.find((x) => x.length === b.length);
        return `<tr><td class="n">${b.length}</td><td class="n">${(100 * b.accuracy).toFixed(0)} %</td><td class="n">${b.correct}/${b.n}</td>${s ? `<td class="n">${(100 * s.density).toFixed(1)} %</td><td class="n">${s.recall === null ? "– (run with stats)" : s.recall.toFixed(4)}</td>` : ""}</tr>`; }).join("")}</tbody></table>`
      + (sp ? `<p class="muted small">sparse prefill ${sp.mode === "block-sparse" ? `block-sparse: blocks ${sp.blocks}` : `vertical-slash: vertical ${sp.vertical}, slash ${sp.slash}`}, local ${sp.local}, sink ${sp.sink}</p>` : "")
      + (r.warnings.length ? `<div class="note">${r.warnings.map(esc).join("<br>")}</div>` : "");
    $("#pk-exports").innerHTML = ["svg", "csv", "md", "json"].map((f) => `<a class="button secondary" href="/api/passkey/result?${q}&format=${f}&download=1">${f.toUpperCase()}</a>`).join(" ");
  }

  function wire() {
    $("#pk-run").addEventListener("click", start);
    $("#pk-result").addEventListener("change", () => draw().catch((e) => toast(e.message, "error")));
    $("#pk-refresh").addEventListener("click", () => refresh().catch((e) => toast(e.message, "error")));
  }

  return { init: () => refresh(), wire };
}
