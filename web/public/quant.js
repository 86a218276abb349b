// The Quantization-error page: two arms (a model file and a toggle set each), per-layer error plots, logits
// KL / top-1, perplexity and KL on a text next to them, non-finite findings, and a perplexity-only panel.
// app.js hands in its helpers (no import cycle); this module owns everything with a #q- id.
/* global Plotly */

export function createQuantPage(ctx) {
  const { $, api, toast, esc, fmt, enc, state, readToggles, follow, loadProfiles, paramOf, downloadPlot, PALETTE, BASE_LAYOUT, PLOT_CFG, toggleStr, effDefault } = ctx;
  let models = [];

  const armOf = (side) => ({ model: $(`#q-${side}-model`).value || undefined, toggles: readToggles($(`#q-${side}`)) });
  const modelName = (src) => (src ? (models.find((m) => m.source === src)?.name ?? src) : `loaded (${state.model?.id ?? "none"})`);
  const armLabel = (a) => [a.model ? modelName(a.model) : null, toggleStr(a.toggles)].filter((x) => x && x !== "defaults").join(" · ") || "defaults";

  /** The page offers only comparisons that differ: identical arms disable the buttons and say why. */
  function updateSame() {
    const r = armOf("ref"), c = armOf("cand");
    const same = (r.model ?? "") === (c.model ?? "") && JSON.stringify(r.toggles) === JSON.stringify(c.toggles);
    $("#q-same").hidden = !same;
    $("#q-run").disabled = same; $("#q-ppl-run").disabled = same && !$("#q-ppl-noref").checked;
    return same;
  }

  /** A default candidate that differs: a toggle with another value this backend implements (first one that
   *  changes stored data: needsReset in the registry, like the weight or KV-cache format), else another model
   *  file; nothing when neither exists (the note then says what to pick). */
  function pickDefaultCandidate() {
    if ($("#q-cand").dataset.touched) return;
    const backend = state.model?.backend ?? "cpu";
    // weights: q4 (or q8) against the loaded format, the comparison the toggle exists for (bf16 of a bf16 file is the identity)
    const altOf = (d) => (d.id === state.catalog?.weightsToggle ? ["q4", "q8"].find((v) => v !== state.model?.weights && (d.backends?.[backend] ?? []).includes(v))
      : d.values.find((v) => v !== effDefault(d) && (d.backends?.[backend] ?? d.values).includes(v)));
    const alts = state.registry.map((d) => ({ d, alt: altOf(d) })).filter((x) => x.alt);
    const pick = alts.find((x) => x.d.needsReset) ?? alts[0];
    const sel = pick && $(`.toggle[data-id="${pick.d.id}"] .global`, $("#q-cand"));
    if (sel) sel.value = pick.alt;
    else {
      const other = models.find((m) => m.kind !== "synthetic" && m.source !== state.model?.source);
      if (other) $("#q-cand-model").value = other.source;
    }
  }

  async function refreshModelSelects() {
    const j = await api("/api/models");
    models = j.models;
    for (const side of ["ref", "cand"]) {
      const sel = $(`#q-${side}-model`), cur = sel.value;
      sel.innerHTML = `<option value="">the loaded model</option>` + models.filter((m) => m.kind !== "synthetic")
        .map((m) => `<option value="${esc(m.source)}">${esc(m.name)} (${esc(m.kind)})</option>`).join("");
      if (cur && models.some((m) => m.source === cur)) sel.value = cur;
    }
  }

  /** Called when the toggle panels were re-rendered (a model loaded). */
  function onToggles() { pickDefaultCandidate(); updateSame(); }

  async function init() {
    await loadProfiles();
    await refreshModelSelects();
    onToggles();
    const want = paramOf("key");
    if (want) $("#q-profile").value = want;
    if ($("#q-profile").value) await draw($("#q-profile").value);
  }

  function pplSettings() {
    return { text: $("#q-ppl-text").value === "prompt" ? { text: $("#q-prompt").value } : "brown", ctx: Number($("#q-ppl-ctx").value), maxTokens: Number($("#q-ppl-max").value) };
  }

  async function run() {
    if (updateSame()) return;
    const ref = armOf("ref"), cand = armOf("cand");
    const body = {
      prompt: $("#q-prompt").value, repeats: Number($("#q-repeats").value), phase: $("#q-phase").value,
      reference: { label: armLabel(ref), toggles: ref.toggles, ...(ref.model ? { model: ref.model } : {}) },
      candidate: { label: armLabel(cand), toggles: cand.toggles, ...(cand.model ? { model: cand.model } : {}) },
      ...($("#q-ppl").checked ? { perplexity: pplSettings() } : {}),
    };
    // empty: the engine's default hooks (every block's output and the logits)
    const hooks = $("#q-hooks").value.split(",").map((x) => x.trim()).filter(Boolean);
    if (hooks.length) body.hooks = hooks;
    $("#q-run").disabled = true; $("#q-status").textContent = "queued…";
    try {
      const { id } = await api("/api/quant", { json: body });
      const r = await follow(id, {
        arm: (a) => ($("#q-status").textContent = `${a.arm} · repeat ${a.repeat + 1}`),
        progress: (p) => ($("#q-status").textContent = `opening ${p.message ?? ""} ${p.done}/${p.total}`),
        perplexity: (p) => ($("#q-status").textContent = `perplexity · ${p.arm} window ${p.window}/${p.windows}`),
      });
      if (r.kind === "done") { $("#q-status").textContent = "done"; await loadProfiles(); $("#q-profile").value = r.data.profileKey; await draw(r.data.profileKey); }
      else { $("#q-status").textContent = r.kind; toast(`measurement failed: ${r.data.message}`, "error"); }
    } catch (e) { toast(e.message, "error"); $("#q-status").textContent = ""; }
    finally { updateSame(); }
  }

  async function runPerplexity() {
    const ref = armOf("ref"), cand = armOf("cand"), s = pplSettings();
    // /api/perplexity runs the candidate as the loaded model: "the loaded model" of the reference is the one loaded now
    if (cand.model && !ref.model) ref.model = state.model?.source;
    const body = { text: s.text, ctx: s.ctx, maxTokens: s.maxTokens, score: $("#q-ppl-score").value, phase: $("#q-phase").value, toggles: cand.toggles, label: armLabel(cand),
      ...(cand.model ? { model: cand.model } : {}),
      ...($("#q-ppl-noref").checked ? {} : { reference: { label: armLabel(ref), toggles: ref.toggles, ...(ref.model ? { model: ref.model } : {}) } }) };
    $("#q-ppl-run").disabled = true; $("#q-status").textContent = "perplexity: queued…";
    try {
      const { id } = await api("/api/perplexity", { json: body });
      const r = await follow(id, { perplexity: (p) => ($("#q-status").textContent = `perplexity · ${p.arm} window ${p.window}/${p.windows}${p.ppl ? ` · ${fmt(p.ppl, 2)}` : ""}`) });
      if (r.kind === "done") { $("#q-status").textContent = "done"; drawPerplexity(r.data.perplexity); }
      else { $("#q-status").textContent = r.kind; toast(`perplexity failed: ${r.data.message}`, "error"); }
    } catch (e) { toast(e.message, "error"); $("#q-status").textContent = ""; }
    finally { updateSame(); }
  }

  const pm = (x, se, d = 2) => `${fmt(x, d)}${se !== null && se !== undefined ? ` ± ${fmt(se, d)}` : ""}`;
  const sci = (x) => (x === null || x === undefined ? "–" : Number(x).toExponential(2));

  function drawPerplexity(r) {
    const rows = [r.reference, r.candidate].filter(Boolean);
    const k = r.candidate.kl;
    $("#q-ppl-result").innerHTML = `<p class="small">${esc(r.text)} · ${r.candidate.tokens} tokens · ctx ${r.candidate.ctx}, score ${esc(r.candidate.score)} · ${r.candidate.windows} windows</p>
      <table><thead><tr><th>arm</th><th>model</th><th class="n">perplexity ± SE</th><th class="n">scored</th><th class="n">non-finite</th><th class="n">s</th></tr></thead><tbody>${
      rows.map((x) => `<tr><td>${esc(x.label)}</td><td class="small">${esc(x.model)}</td><td class="n">${pm(x.ppl, x.ppl_se)}</td><td class="n">${x.scored}</td>
        <td class="n">${x.nonfinite_rows ? `<b class="status-failed">${x.nonfinite_rows}</b>` : 0}</td><td class="n">${fmt(x.seconds, 1)}</td></tr>`).join("")}</tbody></table>
      ${k ? `<p class="small">vs reference: KL mean ${sci(k.mean)} ± ${sci(k.se)} nats (p99 ${sci(k.p99)}, max ${sci(k.max)}, top-${k.top_k} coarse) · top-1 agreement ${fmt(k.top1_agreement * 100, 2)} % · ln(PPL/PPL<sub>ref</sub>) ${sci(k.ln_ppl_ratio)} ± ${sci(k.ln_ppl_ratio_se)}</p>` : ""}`;
  }

  async function draw(key) {
    if (!key) return;
    const v = await api(`/api/profiles/${enc(key)}/views`);
    const q = v.quant_error?.[0];
    if (!q) { $("#q-note").hidden = false; $("#q-note").textContent = "This profile has no quantization-error table."; return; }
    const notes = (v.notes ?? []).filter((n) => !(q.findings ?? []).includes(n));
    $("#q-note").hidden = !notes.length; $("#q-note").textContent = notes.join(" · ");
    $("#q-findings").hidden = !q.findings?.length;
    $("#q-findings").innerHTML = (q.findings ?? []).map((f) => `<div>⚠ ${esc(f)}</div>`).join("");
    const L = q.layers, names = L.map((l) => l.hook.replace(/^blocks\./, "L").replace(".hook_", " ") + (l.nonfinite ? " ⚠" : ""));
    const p = q.perplexity;
    // the pass the captures and times come from (profiles before the phase option: prefill)
    const decode = q.phase === "decode", per = decode ? "decode step" : "prefill", at = decode ? "decode step" : "prompt";
    $("#q-cards").innerHTML = [
      ["reference", `${q.reference_label}${q.reference_model ? ` (${q.reference_model.split("/").pop()})` : ""}`], ["candidate", `${q.candidate_label}${q.candidate_model ? ` (${q.candidate_model.split("/").pop()})` : ""}`],
      [`logits KL (${at})`, q.logits ? `${q.logits.kl.toExponential(2)} nats` : "–"], [`top-1 agreement (${at})`, q.logits ? `${fmt(q.logits.top1_agreement * 100, 1)} %` : "–"],
      ["min SQNR", L.length ? `${fmt(Math.min(...L.map((l) => l.sqnr_db)), 1)} dB` : "–"],
      ...(p ? [["perplexity ref → cand", `${pm(p.reference, p.reference_se)} → ${pm(p.candidate, p.candidate_se)}`], ["Δ perplexity", `${fmt(p.delta, 3)}`],
        ["KL on text", `${sci(p.kl_mean)} nats`], ["top-1 on text", p.top1_agreement === null ? "–" : `${fmt(p.top1_agreement * 100, 2)} %`]] : []),
      ...(q.first_nonfinite ? [["first non-finite", `${q.first_nonfinite.hook} (${q.first_nonfinite.arm})`]] : []),
    ].map(([k, x]) => `<div class="card"><span>${esc(k)}</span><b style="font-size:15px">${esc(x)}</b></div>`).join("");
    if (p) $("#q-cards").insertAdjacentHTML("beforeend", `<p class="small muted" style="grid-column:1/-1;margin:0">perplexity on ${esc(p.text ?? "text")}: ${p.tokens} tokens, ctx ${p.ctx}, score ${esc(p.score ?? "all")}; KL over the reference's top-${p.top_k} ids + the rest</p>`);
    const lmw = v.summary.layer_ms;
    if (q.weights?.length) $("#q-cards").insertAdjacentHTML("beforeend", `<div style="grid-column:1/-1"><p class="small" style="margin:4px 0">Requantized weights (the 7 projections of each layer, reference → candidate) next to the time each layer saved:</p>
      <table><thead><tr><th>layer</th><th>weights</th><th class="n">weight SQNR (dB)</th><th class="n">1 − cos</th><th class="n">params</th><th class="n">time saved (ms / ${per})</th></tr></thead><tbody>${
      q.weights.map((w) => `<tr><td>L${w.layer}</td><td>${esc(w.reference)} → ${esc(w.candidate)}</td><td class="n">${fmt(w.sqnr_db, 2)}</td><td class="n">${(1 - w.cosine).toExponential(2)}</td><td class="n">${w.params}</td>
        <td class="n">${lmw && lmw.reference[w.layer] !== undefined ? fmt(lmw.reference[w.layer] - lmw.candidate[w.layer], 4) : "–"}</td></tr>`).join("")}</tbody></table></div>`);
    if (q.kv?.length) {
      // K/V as each arm's attention reads them (vs the fp32 K/V) beside that layer's attention-output error and time saved
      const zOf = (layer) => L.find((l) => l.layer === layer && l.hook.endsWith("attn.hook_z"));
      const e = (x) => `${fmt(x.sqnr_db, 1)} / ${sci(x.rel_l1)}`;
      $("#q-cards").insertAdjacentHTML("beforeend", `<div style="grid-column:1/-1"><p class="small" style="margin:4px 0">K and V as each arm's attention reads them (KV-cache format or Sage quantization), against the fp32 K/V; SQNR (dB) / relative L1, reference → candidate; the attention output (attn.hook_z) of the candidate against the reference; the time each layer saved:</p>
      <table id="q-kv"><thead><tr><th>layer</th><th>K/V form</th><th class="n">K</th><th class="n">V</th><th class="n">attn out rel L1</th><th class="n">attn out 1 − cos</th><th class="n">time saved (ms / ${per})</th></tr></thead><tbody>${
        q.kv.map((x) => { const z = zOf(x.layer); return `<tr><td>L${x.layer}</td><td>${esc(x.reference)} → ${esc(x.candidate)}</td><td class="n">${e(x.k.reference)} → ${e(x.k.candidate)}</td><td class="n">${e(x.v.reference)} → ${e(x.v.candidate)}</td>
          <td class="n">${z ? sci(z.rel_l1) : "–"}</td><td class="n">${z ? (1 - z.cosine).toExponential(2) : "–"}</td><td class="n">${lmw && lmw.reference[x.layer] !== undefined ? fmt(lmw.reference[x.layer] - lmw.candidate[x.layer], 4) : "–"}</td></tr>`; }).join("")}</tbody></table></div>`);
    }
    const colors = (c) => L.map((l) => (l.nonfinite ? "#c8453b" : c));
    const bar = (div, y, title, ytitle, color, log = false) => Plotly.react(div, [{ type: "bar", x: names, y, marker: { color: colors(color) }, hovertemplate: "%{x}: %{y:.4g}<extra></extra>" }], {
      ...BASE_LAYOUT, margin: { l: 64, r: 10, t: 36, b: 70 }, title: { text: title, font: { size: 13 } },
      xaxis: { title: { text: "hook (⚠ = non-finite values)" }, tickangle: -30 }, yaxis: { title: { text: ytitle }, type: log ? "log" : "linear" },
    }, PLOT_CFG);
    bar("q-cos", L.map((l) => Math.max(1e-12, 1 - l.cosine)), "1 − cosine similarity", "1 − cos (log)", PALETTE[0], true);
    bar("q-sqnr", L.map((l) => l.sqnr_db), "SQNR", "SQNR (dB)", PALETTE[4]);
    bar("q-rel", L.map((l) => l.rel_l1), "relative L1 error", "rel L1", PALETTE[1]);
    bar("q-max", L.map((l) => l.max_abs), "max abs error", "max |Δ|", PALETTE[2]);
    const lm = v.summary.layer_ms;
    if (lm) {
      const pts = L.filter((l) => l.layer >= 0 && lm.reference[l.layer] !== undefined);
      Plotly.react("q-tradeoff", [{
        type: "scatter", mode: "markers+text", x: pts.map((l) => lm.reference[l.layer] - lm.candidate[l.layer]), y: pts.map((l) => l.sqnr_db),
        text: pts.map((l) => `L${l.layer}`), textposition: "top center", marker: { size: 11, color: PALETTE[6] },
        hovertemplate: "%{text}: saved %{x:.4f} ms, SQNR %{y:.1f} dB<extra></extra>",
      }], {
        ...BASE_LAYOUT, title: { text: `Error vs time saved per layer (${per}, median of ${lm.repeats})`, font: { size: 13 } },
        xaxis: { title: { text: `time saved by the candidate (ms per ${per}; > 0 = faster)` }, zeroline: true },
        yaxis: { title: { text: "SQNR (dB, higher = less error)" } },
      }, PLOT_CFG);
    }
    const ex = $(".exports[data-for=q]");
    ex.innerHTML = `<button class="secondary small" id="q-png">PNG</button>
      <a class="button secondary small" href="/api/profiles/${enc(key)}/export/svg-quant" target="_blank">Static SVG</a>
      <a class="button secondary small" href="/api/profiles/${enc(key)}/export/html">HTML report</a>`;
    $("#q-png").addEventListener("click", () => ["q-cos", "q-sqnr", "q-tradeoff"].forEach((id) => downloadPlot(id, "png")));
  }

  function wire() {
    $("#q-run").addEventListener("click", run);
    $("#q-ppl-run").addEventListener("click", runPerplexity);
    for (const id of ["#q-ref", "#q-cand", "#q-ref-model", "#q-cand-model", "#q-ppl-noref"]) $(id).addEventListener("change", updateSame);
    for (const id of ["#q-cand", "#q-cand-model"]) $(id).addEventListener("change", () => ($("#q-cand").dataset.touched = "1"));
    $("#q-profile").addEventListener("change", (e) => draw(e.target.value).catch((x) => toast(x.message, "error")));
  }

  return { init, wire, onToggles, draw };
}
