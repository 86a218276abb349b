// qwen-workbench client: plain ES module, no build step. Talks to the JSON API of web/app.ts and draws with
// plotly.js (served from our node_modules at /vendor/plotly.min.js).
/* global Plotly */
import { esc, fmt } from "./format.js";
import { rooflineFigure } from "./roofline.js";
import { createQuantPage } from "./quant.js";
import { createPasskeyPage } from "./passkey.js";
import { drawRanks, ofRank } from "./ranks.js";
import { readSparse, sparseFields, sparseSummaryHtml, wireSparseFields } from "./sparse.js";
import { drawSpec, readDraft, readEagle, specFields, wireSpecFields } from "./spec.js";

const $ = (s, el = document) => el.querySelector(s);
const $$ = (s, el = document) => [...el.querySelectorAll(s)];
const enc = encodeURIComponent;
// One statistic (engine/measure/stats.ts): a median over the measured repetitions with its min–max; "n" = repetitions.
const fmtSpread = (st, d = 2) => (!st || !st.n ? "–" : st.n > 1 ? `${fmt(st.median, d)} (${fmt(st.min, d)}–${fmt(st.max, d)})` : fmt(st.median, d));
const fmtRange = (v, r, d = 2) => (v === null || v === undefined ? "–" : r && r[1] > r[0] ? `${fmt(v, d)} <span class="muted small">(${fmt(r[0], d)}–${fmt(r[1], d)})</span>` : fmt(v, d));
const badge = (status) => `<span class="badge ${esc(String(status).replace(/\s+/g, "-"))}">${esc(status)}</span>`;
const STATUS_COLOR = { faster: "#59a14f", slower: "#e15759" }; // anything else (within noise, too few samples): grey
const statusColor = (status) => STATUS_COLOR[status] ?? "#b8c2d6";

// The palette and the op colours come from engine/export/palette.ts (GET /api/palette, loaded first in boot()), filled
// in place so that page modules handed these objects before boot() see the loaded colours.
const PALETTE = [], OP_COLORS = {};
const opColor = (op) => OP_COLORS[op] ?? "#7f7f7f";
const PLOT_CFG = { responsive: true, displaylogo: false, toImageButtonOptions: { format: "png", scale: 2 } };
const BASE_LAYOUT = { margin: { l: 64, r: 20, t: 40, b: 52 }, font: { family: "system-ui, sans-serif", size: 12 }, paper_bgcolor: "#fff", plot_bgcolor: "#fff", legend: { orientation: "h", y: -0.22 } };

// state.catalog: every op, hook, profiling-mode and toggle name, and the toggle defaults per backend, as the
// engine's native library defines them (GET /api/catalog, loaded first in boot()); the page writes none by hand.
const state = { model: null, registry: [], layers: 0, profiles: [], task: null, es: null, lastRunKey: null, catalog: null };

async function api(path, opts = {}) {
  const init = { ...opts };
  if (opts.json !== undefined) { init.method = init.method ?? "POST"; init.headers = { "content-type": "application/json" }; init.body = JSON.stringify(opts.json); }
  const r = await fetch(path, init);
  const ct = r.headers.get("content-type") ?? "";
  const body = ct.includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new Error(body?.error ?? `${r.status} ${r.statusText}`);
  return body;
}

let toastTimer = 0;
function toast(msg, kind = "info") {
  const t = $("#toast");
  t.textContent = msg; t.className = `toast ${kind}`; t.hidden = false;
  clearTimeout(toastTimer); toastTimer = setTimeout(() => (t.hidden = true), kind === "error" ? 8000 : 3500);
}

// ---------- tabs ----------
function showTab(name) {
  for (const s of $$(".tab")) s.hidden = s.id !== `tab-${name}`;
  for (const a of $$("#tabs a")) a.classList.toggle("active", a.dataset.tab === name);
  const init = TAB_INIT[name];
  if (init) init().catch((e) => toast(e.message, "error"));
  setTimeout(() => $$(`#tab-${name} .js-plotly-plot`).forEach((d) => Plotly.Plots.resize(d)), 30);
}
window.addEventListener("hashchange", () => showTab(location.hash.slice(1).split("?")[0] || "run"));

// ---------- model + toggles ----------
function setModel(m) {
  state.model = m;
  state.registry = m?.registry ?? [];
  state.layers = m?.layers ?? m?.config?.num_hidden_layers ?? 0;
  const chip = $("#model-chip");
  // weightsOutput: the lm_head's format when requantized (weightsLayers.output; the per-layer toggle has no output)
  const wl = m?.weights && m.weights !== "as-loaded" ? (Array.isArray(m.weights) ? m.weights.join("/") : m.weights) : "";
  const wo = m?.weightsOutput ? `output=${m.weightsOutput}` : "";
  const w = wl || wo ? ` · weights ${[wl, wo].filter(Boolean).join(",")}` : "";
  const tp = m?.parallel && m.parallel !== state.catalog?.defaults?.[m.backend]?.[state.catalog?.parallelToggle] ? ` · ${m.parallel}` : "";
  chip.textContent = m ? `${m.id} · ${m.backend} · ${m.device?.name ?? ""} · ${state.layers} layers${w}${tp}` : "no model loaded";
  chip.classList.toggle("ok", !!m);
  renderToggles($("#toggles"), "run");
  renderToggles($("#q-ref"), "qref");
  renderToggles($("#q-cand"), "qcand");
  quant.onToggles();
}

// Profiling modes from the catalog; the first choice leaves the mode to the engine (its low-overhead one: a run sends
// profiling: true), the others name one.
function renderProfilingModes() {
  const sel = $("#profiling"), cur = sel.value;
  const modes = state.catalog?.profilingModes ?? [], names = modes.map((m) => m.name);
  sel.innerHTML = `<option value="">engine default</option>` + modes.map((m) => `<option value="${esc(m.name)}" title="${esc(m.description ?? "")}">${esc(m.name)}</option>`).join("");
  sel.value = names.includes(cur) ? cur : "";
}

/** Capture-point hints from the catalog: the hook patterns a run or a quantization measurement may name. */
function renderHookHints() {
  const pats = state.catalog?.hookPatterns ?? [];
  $("#capture").placeholder = pats.length ? `e.g. ${pats.slice(-2).join(", ")}` : "";
  $("#hook-patterns").innerHTML = pats.map((p) => `<option value="${esc(p)}"></option>`).join("");
}

/** The value a toggle takes when a run does not name it, on the loaded model's backend: from the catalog
 *  (the server computes it with the engine's rule), else the registry's own default. */
const effDefault = (d) => state.catalog?.defaults?.[state.model?.backend ?? "cpu"]?.[d.id] ?? d.default;

// weights and parallel (the catalog's weightsToggle, parallelToggle) are load-time options (engine/formats/requant.ts, parallel.ts): shown as
// the loaded model has them (weights: one value or one per layer); a run that picks another value makes the server reload the model with it.
const curOf = (d) => (d.id === state.catalog?.weightsToggle && state.model?.weights !== undefined ? state.model.weights
  : d.id === state.catalog?.parallelToggle && state.model?.parallel !== undefined ? state.model.parallel : effDefault(d));
const sameVal = (a, b) => {
  const fold = (v) => (Array.isArray(v) && v.every((x) => x === v[0]) ? v[0] : v);
  return JSON.stringify(fold(a)) === JSON.stringify(fold(b));
};

function renderToggles(root, ns) {
  if (!state.registry.length) { root.innerHTML = '<p class="muted">Load a model to see its toggles.</p>'; return; }
  const backend = state.model?.backend ?? "cpu";
  root.innerHTML = "";
  const single = document.createElement("details");
  single.className = "single";
  let nSingle = 0;
  for (const d of state.registry) {
    const impl = d.backends?.[backend] ?? d.values;
    const cur = curOf(d), def = Array.isArray(cur) ? cur[0] : cur;
    // a value no backend has is "not implemented yet"; one only the other backend has is "not on <backend>"
    const why = (v) => (impl.includes(v) ? "" : Object.values(d.backends ?? {}).some((b) => b.includes(v)) ? ` (not on ${backend})` : " (not implemented yet)");
    const opts = (sel) => d.values.map((v) => `<option value="${esc(v)}" ${v === sel ? "selected" : ""} ${impl.includes(v) ? "" : "disabled"}>${esc(v)}${why(v)}</option>`).join("");
    const div = document.createElement("div");
    div.className = "toggle";
    div.dataset.id = d.id;
    div.innerHTML = `<div class="line"><span class="name" title="${esc(d.description ?? "")}">${esc(d.name ?? d.id)} <small>${esc(d.id)} · ${esc(d.spec)}</small></span>
      <select class="global" aria-label="${esc(d.id)}" name="${ns}-${esc(d.id)}">${opts(def)}</select>
      ${d.perLayer && state.layers ? `<label class="pl" title="per-layer mask"><input type="checkbox" class="perlayer"> per layer</label>` : "<span></span>"}</div>
      ${d.perLayer && state.layers ? `<div class="layers" hidden>${
        Array.from({ length: state.layers }, (_, l) => `<label>L${l}<select data-layer="${l}" name="${ns}-${esc(d.id)}-L${l}">${opts(Array.isArray(cur) ? cur[l] : def)}</select></label>`).join("")}</div>` : ""}
      <div class="desc">${esc(d.description ?? "")}${(d.cost ?? []).map((c) => `<br><span class="cost">cost of ${esc(c.ops.join(", "))}: ${esc(c.how)}</span>`).join("")}</div>${d.id === "speculative" ? specFields(ns) : d.id === "sparsePrefill" ? sparseFields(ns) : ""}`;
    if (d.id === "sparsePrefill") wireSparseFields(div);
    if (d.id === "speculative") wireSpecFields(div);
    const cb = $(".perlayer", div);
    if (cb) cb.addEventListener("change", () => {
      $(".layers", div).hidden = !cb.checked;
      $(".global", div).disabled = cb.checked;
      if (cb.checked) $$(".layers select", div).forEach((s) => (s.value = $(".global", div).value));
    });
    if (cb && Array.isArray(cur)) { cb.checked = true; $(".layers", div).hidden = false; $(".global", div).disabled = true; }
    if (impl.length > 1) root.appendChild(div); else { single.appendChild(div); nSingle++; }
  }
  if (nSingle) {
    single.insertAdjacentHTML("afterbegin", `<summary>${nSingle} more with a single arm on ${esc(backend)}</summary>`);
    root.appendChild(single);
  }
}

function readToggles(root) {
  const out = {};
  for (const div of $$(".toggle", root)) {
    const d = state.registry.find((x) => x.id === div.dataset.id);
    const cb = $(".perlayer", div);
    if (cb?.checked) {
      const vals = $$(".layers select", div).map((s) => s.value);
      if (!sameVal(vals, curOf(d))) out[d.id] = vals;
    } else {
      const v = $(".global", div).value;
      if (!sameVal(v, curOf(d))) out[d.id] = v;
    }
  }
  return out;
}

async function refreshModels() {
  const j = await api("/api/models");
  const sel = $("#model-select");
  const cur = sel.value || j.loaded?.source || "default";
  const groups = { default: "Embedded", gguf: "GGUF files", hf: "Hugging Face directories", synthetic: "Synthetic (random weights, real shapes)" };
  sel.innerHTML = Object.entries(groups).map(([k, g]) => {
    const ms = j.models.filter((m) => m.kind === k);
    return ms.length ? `<optgroup label="${g}">${ms.map((m) => `<option value="${esc(m.source)}">${esc(m.name)}</option>`).join("")}</optgroup>` : "";
  }).join("");
  sel.value = cur;
  if (j.loaded) setModel(j.loaded);
  return j;
}

function follow(taskId, handlers) {
  return new Promise((resolve) => {
    const es = new EventSource(`/api/tasks/${enc(taskId)}/events`);
    const end = (kind, data) => { es.close(); resolve({ kind, data }); };
    for (const [ev, fn] of Object.entries(handlers)) es.addEventListener(ev, (m) => fn(JSON.parse(m.data)));
    es.addEventListener("done", (m) => end("done", JSON.parse(m.data)));
    es.addEventListener("error", (m) => { if (m.data) end("error", JSON.parse(m.data)); });
    es.addEventListener("cancelled", (m) => end("cancelled", JSON.parse(m.data)));
    state.es = es;
  });
}

function progressHandlers() {
  const bar = $("#load-progress"), st = $("#load-status");
  return {
    loading: (d) => { bar.hidden = false; bar.value = 0; st.textContent = `loading ${d.source}…`; },
    progress: (p) => { bar.hidden = false; bar.value = p.total ? p.done / p.total : 0; st.textContent = `${p.stage} ${p.done}/${p.total}${p.message ? ` · ${p.message}` : ""}`; },
    loaded: (m) => { bar.hidden = true; st.textContent = `loaded in ${fmt(m.loadMs, 0)} ms`; setModel(m); },
  };
}

async function loadModel() {
  const source = $("#model-select").value, backend = $("#backend-select").value;
  $("#load-btn").disabled = true;
  try {
    const { task } = await api("/api/models/load", { json: { source, backend } });
    const r = await follow(task.id, progressHandlers());
    if (r.kind === "done") { setModel(r.data.model); $("#load-progress").hidden = true; $("#load-status").textContent = `loaded in ${fmt(r.data.model.loadMs, 0)} ms`; }
    else { $("#load-progress").hidden = true; $("#load-status").textContent = ""; toast(`load failed: ${r.data.message}`, "error"); }
  } catch (e) { toast(e.message, "error"); }
  finally { $("#load-btn").disabled = false; }
}

// ---------- run ----------
const live = { layers: [], ops: {} };

function drawLiveLayers(step) {
  step = { ...step, layers: [...step.layers].sort((a, b) => (a.layer < 0 ? 1e9 : a.layer) - (b.layer < 0 ? 1e9 : b.layer)) };
  const layers = step.layers.map((l) => (l.layer >= 0 ? `L${l.layer}` : "head/tail"));
  Plotly.react("live-layers", [{
    type: "bar", x: layers, y: step.layers.map((l) => l.ms), marker: { color: step.phase === "prefill" ? PALETTE[1] : PALETTE[0] },
    hovertemplate: "%{x}: %{y:.4f} ms<extra></extra>",
  }], {
    ...BASE_LAYOUT, margin: { l: 60, r: 10, t: 30, b: 40 },
    title: { text: `${step.phase} step ${step.step} · ${fmt(step.ms, 3)} ms total`, font: { size: 13 } },
    xaxis: { title: { text: "layer" } }, yaxis: { title: { text: "time (ms)" }, rangemode: "tozero" },
  }, PLOT_CFG);
}

function runBody() {
  const src = $("#prompt-source").value;
  const body = {
    maxTokens: Number($("#max-tokens").value),
    repeats: Number($("#repeats").value),
    sampling: { temperature: Number($("#temperature").value), topK: Number($("#top-k").value), topP: Number($("#top-p").value), seed: Number($("#seed").value) },
    toggles: readToggles($("#toggles")), profiling: $("#profiling").value || true,
    capture: $("#capture").value.split(",").map((s) => s.trim()).filter(Boolean),
  };
  const label = $("#label").value.trim();
  if (label) body.label = label;
  const draft = readDraft($("#toggles"));
  if (draft) body.draft = draft;
  const sparse = readSparse($("#toggles"));
  if (sparse) body.sparse = sparse;
  const eagle = readEagle($("#toggles"));
  if (eagle) body.eagle = eagle;
  const model = $("#model-select").value;
  if (model && model !== state.model?.source) { body.model = model; body.backend = $("#backend-select").value; }
  if (src === "set") body.promptSet = $("#set-select").value;
  else if (src === "chat") body.messages = [{ role: "user", content: $("#prompt").value }];
  else body.prompt = $("#prompt").value;
  return body;
}

async function startRun() {
  const out = $("#run-output");
  let body;
  try { body = runBody(); } catch (e) { toast(e.message, "error"); return; }
  $("#run-btn").disabled = true;
  let res;
  try { res = await api("/api/runs", { json: body }); } catch (e) { toast(e.message, "error"); $("#run-btn").disabled = false; return; }
  state.task = res.id;
  $("#cancel-btn").disabled = false;
  $("#run-status").textContent = "queued"; $("#run-ttft").textContent = "–"; $("#run-tpot").textContent = "–"; $("#run-ntok").textContent = "0";
  $("#run-links").innerHTML = "";
  out.innerHTML = body.prompt ? `<span class="prompt">${esc(body.prompt)}</span>` : "";
  const tpots = [];
  let ntok = 0, curPrompt = -1;
  const r = await follow(res.id, {
    ...progressHandlers(),
    status: (s) => ($("#run-status").textContent = s.status),
    start: () => ($("#run-status").textContent = "running"),
    repeat: (r) => ($("#run-status").textContent = r.warmup ? "warm-up (not recorded)" : `repetition ${r.repeat + 1}/${r.repeats}`),
    prefill: (p) => {
      if (p.prompt !== curPrompt && body.promptSet) { out.insertAdjacentHTML("beforeend", `${p.prompt ? "\n\n" : ""}<span class="prompt">[prompt ${p.prompt + 1}]</span> `); }
      curPrompt = p.prompt;
    },
    token: (t) => {
      ntok++;
      if (t.phase === "prefill") $("#run-ttft").textContent = `${fmt(t.ms, 1)} ms`; else tpots.push(t.ms);
      const span = document.createElement("span");
      span.className = "tok new"; span.textContent = t.text; span.title = `token ${t.token} · ${fmt(t.ms, 2)} ms`;
      out.appendChild(span);
      setTimeout(() => span.classList.remove("new"), 400);
      $("#run-ntok").textContent = String(ntok);
      if (tpots.length) { const s = [...tpots].sort((a, b) => a - b); $("#run-tpot").textContent = `${fmt(s[s.length >> 1], 2)} ms`; }
    },
    step: (s) => drawLiveLayers(s),
  });
  $("#run-btn").disabled = false; $("#cancel-btn").disabled = true;
  $("#run-status").textContent = r.kind === "done" ? "done" : r.kind;
  $("#run-status").className = `status-${r.kind === "error" ? "failed" : r.kind}`;
  if (r.kind === "error") toast(`run failed: ${r.data.message}`, "error");
  const key = r.data?.profileKey;
  if (key) {
    state.lastRunKey = key;
    const s = r.data.summary ?? {}, st = s.stats ?? {};
    if (s.ttft_ms !== undefined) $("#run-ttft").textContent = `${fmtSpread(st.ttft_ms, 1)} ms`;
    if (s.tpot_ms) $("#run-tpot").textContent = `${fmtSpread(st.tpot_ms, 2)} ms`;
    $("#run-links").innerHTML = `<a class="button secondary small" href="#latency?key=${enc(key)}">Latency</a>
      <a class="button secondary small" href="#roofline?keys=${enc(key)}">Roofline</a>
      <a class="button secondary small" href="/api/profiles/${enc(key)}/export/html">HTML report</a>
      <span class="muted small">saved ${esc(key)} · median (min–max) of ${s.repeats ?? 1} repetition(s)${s.warmup ? " after a warm-up" : ""} · prefill ${esc(fmtSpread(st.prefill_tok_s, 1))} tok/s · decode ${esc(fmtSpread(st.decode_tok_s, 1))} tok/s${s.kv ? ` · KV ${esc(s.kv.kvCache)} ${esc((s.kv.kvBytesPerToken / 1024).toFixed(1))} KiB/token, ${esc((s.kv.kvBytes / 1048576).toFixed(1))} MiB allocated` : ""}</span>${sparseSummaryHtml(s.sparse)}`;
    drawSpec($("#run-spec"), s.speculative);
    await loadProfiles();
  }
  refreshRecent();
}

async function cancelRun() {
  if (!state.task) return;
  try { await api(`/api/tasks/${enc(state.task)}/cancel`, { method: "POST" }); } catch (e) { toast(e.message, "error"); }
}

async function refreshRecent() {
  const j = await api("/api/tasks");
  $("#recent-runs tbody").innerHTML = j.tasks.filter((t) => t.kind !== "load").slice(0, 8).map((t) => `<tr><td class="muted small">${esc(t.id)}</td><td>${esc(t.label ?? "")}</td>
    <td class="status-${t.status}">${esc(t.status)}${t.error ? ` — ${esc(t.error.slice(0, 80))}` : ""}</td>
    <td>${t.profileKey ? `<a class="button secondary small" href="#${t.kind === "quant" ? "quant" : "latency"}?key=${enc(t.profileKey)}">open</a>` : ""}</td></tr>`).join("");
}

async function refreshSets() {
  const j = await api("/api/prompt-sets");
  $("#set-select").innerHTML = j.promptSets.map((s) => `<option value="${esc(s.name)}">${esc(s.name)} (${s.prompts} prompts)</option>`).join("") || '<option value="">no saved sets</option>';
}

async function saveSet() {
  const name = (prompt("Prompt set name (A-Z a-z 0-9 . _ -):", "my-prompts") ?? "").trim();
  if (!name) return;
  const b = runBody();
  const set = { name, prompts: [{ prompt: $("#prompt").value, seed: b.sampling.seed }], sampling: b.sampling, maxTokens: b.maxTokens };
  try { await api("/api/prompt-sets", { json: set }); toast(`saved prompt set ${name}`); await refreshSets(); } catch (e) { toast(e.message, "error"); }
}

async function uploadSet(file) {
  const name = file.name.replace(/\.(jsonl|ndjson|json)$/i, "").replace(/[^A-Za-z0-9._-]/g, "-").slice(0, 64);
  const text = await file.text();
  try {
    if (/\.json$/i.test(file.name) && text.trim().startsWith("{")) {
      const obj = JSON.parse(text); obj.name = obj.name ?? name;
      await api("/api/prompt-sets", { json: obj });
    } else await api(`/api/prompt-sets?name=${enc(name)}`, { method: "POST", headers: { "content-type": "application/x-ndjson" }, body: text });
    toast(`uploaded prompt set ${name}`);
    await refreshSets(); $("#set-select").value = name;
  } catch (e) { toast(e.message, "error"); }
}

// ---------- profiles ----------
async function loadProfiles() {
  const j = await api("/api/profiles");
  state.profiles = j.profiles;
  $("#prof-root").textContent = `root: ${j.root}`;
  const label = (p) => `${p.label ?? p.id} · ${p.kind} · ${p.date.slice(5, 19).replace("T", " ")}`;
  for (const sel of $$(".profile-select")) {
    const cur = sel.value;
    sel.innerHTML = state.profiles.filter((p) => p.kind !== "quant-error" || sel.id.startsWith("q")).map((p) => `<option value="${esc(p.key)}">${esc(label(p))}</option>`).join("");
    if (cur && state.profiles.some((p) => p.key === cur)) sel.value = cur;
  }
  const qsel = $("#q-profile"), qcur = qsel.value;
  qsel.innerHTML = state.profiles.filter((p) => p.has_quant).map((p) => `<option value="${esc(p.key)}">${esc(label(p))}</option>`).join("") || '<option value="">no quantization-error profiles yet</option>';
  if (qcur && state.profiles.some((p) => p.key === qcur)) qsel.value = qcur;
  renderProfileTable();
  return state.profiles;
}

/** Toggles that differ from the effective defaults of the loaded registry (all of them when none is loaded). */
const toggleStr = (t) => Object.entries(t ?? {}).filter(([k, v]) => {
  const d = state.registry.find((x) => x.id === k);
  return !d || (Array.isArray(v) ? v.some((x) => x !== effDefault(d)) : v !== effDefault(d));
}).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("/") : v}`).join(", ") || "defaults";

function renderProfileTable() {
  $("#prof-list tbody").innerHTML = state.profiles.map((p) => `<tr data-key="${esc(p.key)}">
    <td><input type="checkbox" class="sel" aria-label="select ${esc(p.key)}"></td>
    <td class="small">${esc(p.date.slice(0, 19).replace("T", " "))}</td><td><b>${esc(p.label ?? p.id)}</b><br><span class="muted small">${esc(p.key)}</span></td>
    <td><span class="badge">${esc(p.kind)}</span></td><td class="small">${esc(p.model)}</td><td class="small">${esc(p.device)} (${esc(p.backend)})</td>
    <td class="small">${esc(toggleStr(p.toggles))}</td><td class="n">${fmtRange(p.ttft_ms, p.spread?.ttft_ms, 2)}</td><td class="n">${fmtRange(p.decode_tok_s, p.spread?.decode_tok_s, 1)}</td><td class="n">${p.repeats ?? "–"}</td>
    <td><div class="row" style="margin:0;flex-wrap:nowrap">
      <a class="button secondary small" href="#${p.has_quant ? "quant" : "latency"}?key=${enc(p.key)}">open</a>
      <a class="button secondary small" href="/api/profiles/${enc(p.key)}/export/html">report</a>
      <a class="button secondary small" href="/api/profiles/${enc(p.key)}/export/trace">trace</a>
      <a class="button secondary small" href="/api/profiles/${enc(p.key)}/export/md" target="_blank">md</a>
      <a class="button secondary small" href="/api/profiles/${enc(p.key)}/export/csv">csv</a>
      <button class="danger small del">delete</button></div></td></tr>`).join("")
    || '<tr><td colspan="11" class="muted">No profiles yet: run a prompt on the Run tab.</td></tr>';
  for (const b of $$("#prof-list .del")) b.addEventListener("click", async () => {
    const key = b.closest("tr").dataset.key;
    if (!confirm(`Delete profile ${key}?`)) return;
    try { await api(`/api/profiles/${enc(key)}`, { method: "DELETE" }); toast(`deleted ${key}`); await loadProfiles(); } catch (e) { toast(e.message, "error"); }
  });
  updateSelectedLinks();
  for (const cb of $$("#prof-list .sel")) cb.addEventListener("change", updateSelectedLinks);
}
const selectedKeys = () => $$("#prof-list .sel").filter((c) => c.checked).map((c) => c.closest("tr").dataset.key);
function updateSelectedLinks() {
  const k = selectedKeys();
  $("#prof-table").href = k.length ? `/api/export/table?format=md&keys=${k.map(enc).join(",")}` : "#";
}

/** Opens the run's Chrome trace in ui.perfetto.dev through its postMessage API (PING/PONG, then the buffer):
 *  nothing is uploaded to a server, the trace goes from this page to the Perfetto tab. */
async function openInPerfetto(key) {
  const ORIGIN = "https://ui.perfetto.dev";
  const win = window.open(ORIGIN);
  if (!win) { toast("the browser blocked the Perfetto window", "error"); return; }
  const buffer = await (await fetch(`/api/profiles/${enc(key)}/export/trace`)).arrayBuffer();
  const ping = setInterval(() => win.postMessage("PING", ORIGIN), 100);
  const stop = setTimeout(() => { clearInterval(ping); window.removeEventListener("message", onMsg); }, 30000);
  function onMsg(e) {
    if (e.origin !== ORIGIN || e.data !== "PONG") return;
    clearInterval(ping); clearTimeout(stop); window.removeEventListener("message", onMsg);
    win.postMessage({ perfetto: { buffer, title: key, fileName: `${key.split("/").pop()}.trace.json` } }, ORIGIN);
  }
  window.addEventListener("message", onMsg);
}

function exportButtons(root, key, plots) {
  root.innerHTML = `
    <button class="secondary small" data-x="png">PNG</button><button class="secondary small" data-x="svg">SVG</button>
    <a class="button secondary small" href="/api/profiles/${enc(key)}/export/html" data-x="html">HTML report</a>
    <a class="button secondary small" href="/api/profiles/${enc(key)}/export/trace">Chrome trace</a>
    <button class="secondary small" data-x="perfetto" title="open the trace in ui.perfetto.dev (sent from this page, not uploaded)">Open in Perfetto</button>
    <a class="button secondary small" href="/api/profiles/${enc(key)}/export/svg-latency" target="_blank">Static SVG</a>
    <a class="button secondary small" href="/api/profiles/${enc(key)}/export/md" target="_blank">md</a>
    <a class="button secondary small" href="/api/profiles/${enc(key)}/export/csv">csv</a>
    <a class="button secondary small" href="/api/profiles/${enc(key)}/export/json">json</a>
    <a class="button secondary small" href="/api/profiles/${enc(key)}/export/jsonl">jsonl</a>`;
  $("[data-x=perfetto]", root).addEventListener("click", () => openInPerfetto(key).catch((e) => toast(e.message, "error")));
  for (const fmtName of ["png", "svg"]) $(`[data-x=${fmtName}]`, root).addEventListener("click", async () => {
    for (const id of plots) {
      const gd = document.getElementById(id);
      if (gd?.data) await Plotly.downloadImage(gd, { format: fmtName, filename: `${key.split("/").pop()}-${id}`, width: gd.clientWidth, height: gd.clientHeight, scale: fmtName === "png" ? 2 : 1 });
    }
  });
}

// ---------- latency ----------
// Which profiling mode produced the numbers, what it cost against profiling off (when measured), and whether
// the records add up to the steps users timed (engine/measure/fidelity.ts). What a mode records: its description
// in the catalog (the native library's words).
function fidelityHtml(f, s) {
  if (!f) {
    const mode = s.profiling_mode ?? (s.profiling === false ? "off" : "events (older profile)");
    return `<p class="muted">Profiling mode: <b>${esc(mode)}</b>. No sum check recorded for this profile.</p>`;
  }
  const what = state.catalog?.profilingModes?.find((m) => m.name === f.mode)?.description ?? "";
  const over = Object.entries(f.overhead_pct ?? {}).map(([m, o]) => `${esc(m)} +${fmt(o.median, 1)} % (${fmt(o.min, 1)}–${fmt(o.max, 1)})`).join(" · ");
  const rows = f.sum_check.map((c) => `<tr><td>${esc(c.mode ?? f.mode)}</td><td>${c.phase}</td><td class="n">${c.steps}${c.calls && c.calls !== c.steps ? ` in ${c.calls} calls` : ""}</td><td class="n">${fmt(c.wall_ms, 4)}</td><td class="n">${fmt(c.ops_ms, 4)}</td><td class="n">${fmt(c.gaps_ms, 4)}</td><td class="n">${fmt(c.other_ms, 4)}</td><td class="n">${fmt(c.unrecorded_ms, 4)}</td><td class="n">${fmt(c.diff_pct.median, 2)} % (max ${fmt(c.diff_pct.max, 2)})</td></tr>`).join("");
  return `<p>Profiling mode: <b>${esc(f.mode)}</b>${what ? ` — ${esc(what)}` : ""}.${over ? ` Overhead vs off (same run): ${over}.` : ""}</p>
    <table><thead><tr><th>mode</th><th>phase</th><th class="n">steps</th><th class="n">wall ms</th><th class="n">ops ms</th><th class="n">gaps ms</th><th class="n">copies / wake ms</th><th class="n">unrecorded ms</th><th class="n">|wall − records| / wall</th></tr></thead><tbody>${rows}</tbody></table>
    <p class="muted">Medians per step. Wall = the engine call as the caller timed it; records = every op, gap and copy row of the step.</p>`;
}
function paramOf(name) { return new URLSearchParams(location.hash.split("?")[1] ?? "").get(name); }

async function initLatency() {
  await loadProfiles();
  const sel = $("#lat-profile");
  const want = paramOf("key") ?? state.lastRunKey;
  if (want && state.profiles.some((p) => p.key === want)) sel.value = want;
  if (sel.value) await drawLatency(sel.value);
  else $("#lat-cards").innerHTML = '<p class="muted">No profiles yet: run a prompt on the Run tab.</p>';
}

function stackedBars(div, m, title) {
  if (!m.steps) {
    Plotly.react(div, [], { ...BASE_LAYOUT, title: { text: `${title}: no op records (profiling off?)`, font: { size: 13 } }, xaxis: { visible: false }, yaxis: { visible: false } }, PLOT_CFG);
    return;
  }
  const traces = m.ops.map((op, j) => ({
    type: "bar", name: op, x: m.layerLabels, y: m.ms.map((row) => row[j]), marker: { color: opColor(op) },
    hovertemplate: `%{x} · ${op}: %{y:.4f} ms<extra></extra>`,
  }));
  Plotly.react(div, traces, {
    ...BASE_LAYOUT, barmode: "stack",
    title: { text: `${title} · ${fmt(m.totalMs, 3)} ms per step (${m.stat} of ${m.steps})`, font: { size: 13 } },
    xaxis: { title: { text: "layer" } }, yaxis: { title: { text: "time per step (ms)" } },
    legend: { orientation: "h", y: -0.25, font: { size: 11 }, traceorder: "normal" },
  }, PLOT_CFG);
}

// The latency table's measured columns (profiling mode counters, engine/measure/aggregate.ts): DRAM GB/s over the
// kernels' own time and the L2 hit rate per layer row; empty cells where a profile has no counters.
const measuredHead = () => '<th class="n" title="measured DRAM bytes (read + write) / kernel time: profiling mode counters">GB/s measured</th><th class="n" title="L2 sector hit rate: profiling mode counters">L2 hit</th>';
function measuredCells(m, i) {
  const g = m.gbpsMeasured?.[i], h = m.l2HitPct?.[i];
  return `<td class="n">${g == null ? "" : fmt(g, 1)}</td><td class="n">${h == null ? "" : `${fmt(h, 1)} %`}</td>`;
}

async function drawLatency(key) {
  const v = await api(`/api/profiles/${enc(key)}/views?stat=${$("#lat-stat").value}`);
  const s = v.summary, st = v.stats ?? {};
  const n = Math.max(0, ...Object.values(st).map((x) => x?.n ?? 0));
  $("#lat-cards").innerHTML = [
    ["TTFT (median, min–max)", `${fmtSpread(st.ttft_ms, 2)} ms`], ["TPOT median (min–max)", `${fmtSpread(st.tpot_ms, 3)} ms`], ["TPOT p90 (all steps)", `${fmt(s.tpot_ms?.p90, 3)} ms`],
    ["prefill", `${fmtSpread(st.prefill_tok_s, 1)} tok/s`], ["decode", `${fmtSpread(st.decode_tok_s, 1)} tok/s`],
    ...(s.kv ? [["KV cache", `${s.kv.kvCache}: ${(s.kv.kvBytesPerToken / 1024).toFixed(1)} KiB/token, ${(s.kv.kvBytes / 1048576).toFixed(1)} MiB`]] : []),
    ["repetitions", `${n} measured${s.warmup ? ` after ${s.warmup} warm-up` : ", no warm-up"}`],
    ["device", `${v.manifest.device.name} (${v.manifest.device.backend})`],
  ].map(([k, x]) => `<div class="card"><span>${k}</span><b${x.length > 18 ? ' class="long"' : ""}>${esc(x)}</b></div>`).join("");
  $("#lat-fidelity").innerHTML = fidelityHtml(v.fidelity, s) + sparseSummaryHtml(s.sparse) +
    (v.counters_meta?.unavailable?.length ? `<p class="muted">Counters: ${v.counters_meta.unavailable.map(esc).join("; ")}</p>` : "");
  drawRanks(v, { Plotly, palette: PALETTE, base: BASE_LAYOUT, cfg: PLOT_CFG });
  stackedBars("lat-prefill", v.latency.prefill, `Prefill${ofRank(v.latency.prefill)}`);
  stackedBars("lat-decode", v.latency.decode, `Decode${ofRank(v.latency.decode)}`);
  const tk = v.tokens;
  const steps = v.steps;
  Plotly.react("lat-timeline", [
    { type: "scatter", mode: "lines+markers", name: "wall clock between tokens", x: tk.map((t) => t.index), y: tk.map((t) => t.dt_ms),
      marker: { color: tk.map((t) => (t.phase === "prefill" ? PALETTE[1] : PALETTE[0])), size: 6 }, line: { color: "#b8c2d6", width: 1 },
      text: tk.map((t) => JSON.stringify(t.text)), hovertemplate: "token %{x} %{text}: %{y:.3f} ms<extra></extra>" },
    { type: "scatter", mode: "lines", name: "engine time per step (op records)", x: steps.map((_, i) => i), y: steps.map((s) => s.ms),
      line: { color: PALETTE[2], dash: "dot" }, hovertemplate: "step %{x}: %{y:.3f} ms<extra></extra>" },
  ], {
    ...BASE_LAYOUT, title: { text: `Per-token timeline · wall clock between tokens (first point: run start → first token, incl. tokenization) · engine TTFT ${fmt(s.ttft_ms, 2)} ms`, font: { size: 12 } },
    xaxis: { title: { text: "token index" } }, yaxis: { title: { text: "latency (ms)" }, rangemode: "tozero" },
  }, PLOT_CFG);
  const tables = ["prefill", "decode"].map((ph) => {
    const m = v.latency[ph];
    if (!m.steps) return "";
    return `<h3>${ph}${ofRank(m)} (${m.stat} of ${m.steps} step${m.steps > 1 ? "s" : ""})</h3><table><thead><tr><th>layer</th>${m.ops.map((o) => `<th class="n">${esc(o)}</th>`).join("")}<th class="n">total</th>${measuredHead()}</tr></thead><tbody>${
      m.layerLabels.map((l, i) => `<tr><td>${esc(l)}</td>${m.ms[i].map((x) => `<td class="n">${fmt(x, 4)}</td>`).join("")}<td class="n"><b>${fmt(m.ms[i].reduce((a, b) => a + b, 0), 4)}</b></td>${measuredCells(m, i)}</tr>`).join("")}</tbody></table>`;
  }).join("");
  $("#lat-table").innerHTML = tables || '<p class="muted">No op records: the run was not in profiling mode.</p>';
  exportButtons($(".exports[data-for=lat]"), key, ["lat-prefill", "lat-decode", "lat-timeline"]);
}

// ---------- roofline ----------
async function initRoofline() {
  await loadProfiles();
  const want = (paramOf("keys") ?? "").split(",").filter(Boolean);
  const runs = state.profiles.filter((p) => p.has_ops);
  const prev = new Set($$("#roof-runs input:checked").map((c) => c.value));
  const checked = want.length ? new Set(want) : prev.size ? prev : new Set(runs.slice(0, 2).map((p) => p.key));
  $("#roof-runs").innerHTML = runs.map((p) => `<label><input type="checkbox" value="${esc(p.key)}" ${checked.has(p.key) ? "checked" : ""}><span>${esc(p.label ?? p.id)}<small>${esc(p.device)} · ${esc(toggleStr(p.toggles))}</small></span></label>`).join("")
    || '<p class="muted">No profiles with op records yet.</p>';
  for (const c of $$("#roof-runs input")) c.addEventListener("change", drawRoofline);
  await drawRoofline();
}

// One panel per device (the server groups the runs: GET /api/roofline/devices), each with its own roofs
// (the figure is built by roofline.js, a pure function).
async function drawRoofline() {
  const keys = $$("#roof-runs input:checked").map((c) => c.value);
  const group = $("#roof-group").value, phase = $("#roof-phase").value;
  $("#roof-server-svg").href = keys.length ? `/api/export/roofline.svg?keys=${keys.map(enc).join(",")}&group=${group}` : "#";
  const note = $("#roof-note");
  if (!keys.length) { note.hidden = true; Plotly.react("roof-plot", [], { ...BASE_LAYOUT, title: { text: "Select runs to plot" } }, PLOT_CFG); return; }
  const [views, dev] = await Promise.all([
    Promise.all(keys.map((k) => api(`/api/profiles/${enc(k)}/views`))),
    api(`/api/roofline/devices?keys=${keys.map(enc).join(",")}`),
  ]);
  const f = rooflineFigure(views, keys, dev, { group, phase, palette: PALETTE, base: BASE_LAYOUT });
  note.hidden = !f.warning && !f.notes.length;
  note.classList.toggle("warn", !!f.warning);
  note.innerHTML = (f.warning ? `<b>⚠ ${esc(f.warning)}</b><br>` : "") + f.notes.map(esc).join("<br>");
  $("#roof-plot").style.height = `${f.height}px`;
  Plotly.react("roof-plot", f.traces, f.layout, PLOT_CFG);
}

async function downloadPlot(id, format) {
  const gd = document.getElementById(id);
  if (gd?.data) await Plotly.downloadImage(gd, { format, filename: id, width: gd.clientWidth, height: gd.clientHeight, scale: format === "png" ? 2 : 1 });
}

// ---------- compare ----------
async function initCompare() {
  await loadProfiles();
  const a = paramOf("a"), b = paramOf("b");
  const runs = state.profiles.filter((p) => p.kind !== "quant-error");
  if (a) $("#cmp-a").value = a; else if (runs[1]) $("#cmp-a").value = runs[1].key;
  if (b) $("#cmp-b").value = b; else if (runs[0]) $("#cmp-b").value = runs[0].key;
  if ($("#cmp-a").value && $("#cmp-b").value) await drawCompare();
}

async function drawCompare() {
  const a = $("#cmp-a").value, b = $("#cmp-b").value;
  if (!a || !b) return;
  $("#cmp-svg").href = `/api/compare?a=${enc(a)}&b=${enc(b)}&format=svg`;
  $("#cmp-table").href = `/api/export/table?format=md&keys=${enc(a)},${enc(b)}`;
  const c = await api(`/api/compare?a=${enc(a)}&b=${enc(b)}`);
  const pctCell = (r) => (r.pct === null ? "–" : `${r.pct > 0 ? "+" : ""}${fmt(r.pct, 1)} %`);
  const verdictNote = "Medians over the measured repetitions (min–max). A difference is faster/slower only when each median lies outside the other side's spread, else within noise (the rule of notebooks/ablate.ts and compare.ts); per-step rows use p10–p90.";
  $("#cmp-summary").innerHTML = `<p><b>A</b> ${esc(c.a.label)} · <b>B</b> ${esc(c.b.label)} · toggles: ${c.toggleDiff.length ? c.toggleDiff.map((t) => `<code>${esc(t.id)}</code> ${esc(JSON.stringify(t.a))} → ${esc(JSON.stringify(t.b))}`).join(", ") : "identical"}
    · tokens: ${c.sameTokens === null ? "–" : c.sameTokens ? "identical" : "<b>differ</b>"}</p>
    <p class="muted small">${esc(verdictNote)}</p>
    <table><thead><tr><th>metric</th><th class="n">A</th><th class="n">B</th><th class="n">Δ (B − A)</th><th class="n">Δ %</th><th>status</th></tr></thead><tbody>${
    c.summary.map((r) => `<tr><td>${esc(r.metric)} (${esc(r.unit)})</td><td class="n">${esc(fmtSpread(r.aSpread, 3))}</td><td class="n">${esc(fmtSpread(r.bSpread, 3))}</td><td class="n">${fmt(r.delta, 3)}</td><td class="n">${pctCell(r)}</td><td>${badge(r.status)}</td></tr>`).join("")}</tbody></table>`;
  // per layer: A vs B medians of the per-step layer totals, whiskers p10–p90
  const traces = [];
  const dec = c.byLayer.filter((r) => r.phase === "decode");
  for (const [side, color] of [["a", PALETTE[0]], ["b", PALETTE[1]]]) {
    traces.push({
      type: "bar", name: side === "a" ? `A: ${c.a.label}` : `B: ${c.b.label}`, x: dec.map((r) => (r.layer >= 0 ? `L${r.layer}` : "head/tail")), y: dec.map((r) => r[side].median),
      marker: { color }, error_y: { type: "data", symmetric: false, array: dec.map((r) => Math.max(0, r[side].p90 - r[side].median)), arrayminus: dec.map((r) => Math.max(0, r[side].median - r[side].p10)), color: "#555", thickness: 1 },
      hovertemplate: "%{x}: median %{y:.4f} ms<extra>%{fullData.name}</extra>",
    });
  }
  Plotly.react("cmp-layers", traces, { ...BASE_LAYOUT, barmode: "group", title: { text: "Decode: time per step by layer (median; whiskers p10–p90 over steps)", font: { size: 13 } },
    xaxis: { title: { text: "layer" } }, yaxis: { title: { text: "time per step (ms)" }, rangemode: "tozero" } }, PLOT_CFG);
  const ops = c.byOp.filter((r) => r.phase === "decode");
  Plotly.react("cmp-ops", [{
    type: "bar", orientation: "h", y: ops.map((r) => r.op), x: ops.map((r) => r.deltaMs),
    marker: { color: ops.map((r) => statusColor(r.status)) }, customdata: ops.map((r) => r.status), hovertemplate: "%{y}: %{x:+.4f} ms (%{customdata})<extra></extra>",
  }], { ...BASE_LAYOUT, margin: { l: 90, r: 20, t: 40, b: 52 }, title: { text: "Decode: Δ median time per step by op (B − A; grey = within noise)", font: { size: 13 } },
    xaxis: { title: { text: "Δ time per step (ms)" }, zeroline: true }, yaxis: { autorange: "reversed" } }, PLOT_CFG);
  const sp = (s) => (s.n ? `${fmt(s.median, 4)} <span class="muted">[${fmt(s.p10, 4)}–${fmt(s.p90, 4)}]</span>` : "–");
  $("#cmp-rows").innerHTML = `<table><thead><tr><th>phase</th><th>layer</th><th>op</th><th class="n">A ms</th><th class="n">B ms</th><th class="n">Δ ms</th><th class="n">B/A</th><th>status</th></tr></thead><tbody>${
    c.rows.map((r) => `<tr><td>${r.phase}</td><td>${r.layer >= 0 ? `L${r.layer}` : "head/tail"}</td><td>${esc(r.op)}</td><td class="n">${sp(r.a)}</td><td class="n">${sp(r.b)}</td>
      <td class="n">${fmt(r.deltaMs, 4)}</td><td class="n">${fmt(r.ratio, 3)}</td><td>${badge(r.status)}</td></tr>`).join("")}</tbody></table>`;
}

// ---------- wiring ----------
const quant = createQuantPage({ $, api, toast, esc, fmt, enc, state, readToggles, follow, loadProfiles, paramOf, downloadPlot, PALETTE, BASE_LAYOUT, PLOT_CFG, toggleStr, effDefault });
const passkey = createPasskeyPage({ $, api, toast, esc, enc, follow, BASE_LAYOUT, PLOT_CFG });
const TAB_INIT = {
  run: async () => { await refreshRecent(); },
  latency: initLatency, roofline: initRoofline, quant: () => quant.init(), compare: initCompare, passkey: () => passkey.init(),
  profiles: async () => { await loadProfiles(); },
};

async function boot() {
  try { const pal = await api("/api/palette"); PALETTE.push(...pal.palette); Object.assign(OP_COLORS, pal.opColors); } catch (e) { toast(`palette: ${e.message}`, "error"); }
  try { state.catalog = await api("/api/catalog"); } catch (e) { toast(`catalog: ${e.message}`, "error"); }
  renderProfilingModes();
  renderHookHints();
  $("#load-btn").addEventListener("click", loadModel);
  $("#run-btn").addEventListener("click", startRun);
  $("#cancel-btn").addEventListener("click", cancelRun);
  $("#save-set-btn").addEventListener("click", saveSet);
  $("#set-file").addEventListener("change", (e) => e.target.files[0] && uploadSet(e.target.files[0]));
  $("#prompt-source").addEventListener("change", (e) => { $("#set-row").hidden = e.target.value !== "set"; $("#prompt").hidden = e.target.value === "set"; if (e.target.value === "set") refreshSets(); });
  $("#lat-profile").addEventListener("change", (e) => drawLatency(e.target.value).catch((x) => toast(x.message, "error")));
  $("#lat-stat").addEventListener("change", () => $("#lat-profile").value && drawLatency($("#lat-profile").value).catch((x) => toast(x.message, "error")));
  $("#roof-group").addEventListener("change", drawRoofline);
  $("#roof-phase").addEventListener("change", drawRoofline);
  $("#roof-png").addEventListener("click", () => downloadPlot("roof-plot", "png"));
  $("#roof-svg").addEventListener("click", () => downloadPlot("roof-plot", "svg"));
  quant.wire();
  passkey.wire();
  for (const id of ["#cmp-a", "#cmp-b"]) $(id).addEventListener("change", () => drawCompare().catch((x) => toast(x.message, "error")));
  $("#cmp-swap").addEventListener("click", () => { const a = $("#cmp-a").value; $("#cmp-a").value = $("#cmp-b").value; $("#cmp-b").value = a; drawCompare(); });
  $("#prof-refresh").addEventListener("click", loadProfiles);
  $("#prof-compare").addEventListener("click", () => {
    const k = selectedKeys();
    if (k.length !== 2) { toast("select exactly two profiles to compare", "error"); return; }
    location.hash = `compare?a=${enc(k[0])}&b=${enc(k[1])}`;
  });
  $("#prof-roof").addEventListener("click", () => {
    const k = selectedKeys();
    if (!k.length) { toast("select profiles first", "error"); return; }
    location.hash = `roofline?keys=${k.map(enc).join(",")}`;
  });
  Plotly.newPlot("live-layers", [], { ...BASE_LAYOUT, margin: { l: 60, r: 10, t: 30, b: 40 }, title: { text: "waiting for a run (profiling mode)", font: { size: 13 } }, xaxis: { title: { text: "layer" } }, yaxis: { title: { text: "time (ms)" } } }, PLOT_CFG);
  try {
    const j = await refreshModels();
    await loadProfiles();
    if (!j.loaded && !j.loading) await loadModel();
  } catch (e) { toast(e.message, "error"); }
  showTab(location.hash.slice(1).split("?")[0] || "run");
  document.body.dataset.ready = "1";
}

boot();
