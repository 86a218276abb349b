// Notebook page: cells of notebooks/<name>.nb.ts edited in the browser and run on the server (one Bun Worker per
// notebook, see web/notebook/). Runs are tasks of the server's queue, followed over SSE (/api/tasks/:id/events).
// Outputs are drawn here: text, markdown, sortable tables, plotly figures, SVG (as <img>, so a shared notebook's
// SVG cannot run script), sandboxed HTML, progress bars and errors with the cell's line number.
/* global Plotly */
import { esc } from "./format.js";

const $ = (s, el = document) => el.querySelector(s);
const enc = encodeURIComponent;

const nb = { list: [], name: null, cells: [], exec: true, dirty: false, task: null, es: null, seq: 0, kernel: null };

async function api(path, opts = {}) {
  const init = { ...opts };
  if (opts.json !== undefined) { init.method = init.method ?? "POST"; init.headers = { "content-type": "application/json" }; init.body = JSON.stringify(opts.json); }
  const r = await fetch(path, init);
  const body = (r.headers.get("content-type") ?? "").includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new Error(body?.error ?? `${r.status} ${r.statusText}`);
  return body;
}
function status(msg, kind = "") { const s = $("#nb-status"); s.textContent = msg; s.className = `muted nb-st ${kind}`; }
function fail(e) { status(e.message ?? String(e), "err"); }

// ---------- markdown (escaped first: no raw HTML from a file reaches the page) ----------
function inline(s) {
  return esc(s).replace(/`([^`]+)`/g, "<code>$1</code>").replace(/\*\*([^*]+)\*\*/g, "<b>$1</b>").replace(/(^|[^*])\*([^*\s][^*]*)\*/g, "$1<i>$2</i>")
    .replace(/\[([^\]]+)\]\(((?:https?:\/\/|\/|#|\.)[^)\s]*)\)/g, '<a href="$2" target="_blank" rel="noopener">$1</a>');
}
function renderMarkdown(src) {
  const out = [];
  let para = [], list = null, code = null;
  const flushPara = () => { if (para.length) out.push(`<p>${inline(para.join(" "))}</p>`); para = []; };
  const flushList = () => { if (list) out.push(`<${list.tag}>${list.items.map((i) => `<li>${inline(i)}</li>`).join("")}</${list.tag}>`); list = null; };
  for (const line of src.split("\n")) {
    if (code) { if (/^```/.test(line)) { out.push(`<pre><code>${esc(code.join("\n"))}</code></pre>`); code = null; } else code.push(line); continue; }
    if (/^```/.test(line)) { flushPara(); flushList(); code = []; continue; }
    const h = /^(#{1,6})\s+(.*)$/.exec(line);
    const li = /^\s*(?:([-*])|(\d+)\.)\s+(.*)$/.exec(line);
    if (h) { flushPara(); flushList(); out.push(`<h${h[1].length}>${inline(h[2])}</h${h[1].length}>`); }
    else if (li) { flushPara(); const tag = li[1] ? "ul" : "ol"; if (list?.tag !== tag) { flushList(); list = { tag, items: [] }; } list.items.push(li[3]); }
    else if (!line.trim()) { flushPara(); flushList(); }
    else if (list && /^\s+/.test(line)) list.items[list.items.length - 1] += " " + line.trim();
    else { flushList(); para.push(line.trim()); }
  }
  if (code) out.push(`<pre><code>${esc(code.join("\n"))}</code></pre>`);
  flushPara(); flushList();
  return out.join("");
}

// ---------- outputs ----------
const cellText = (v) => (v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v));
function renderTable(o) {
  const wrap = document.createElement("div");
  wrap.className = "nb-tbl";
  const cols = o.columns ?? [...new Set(o.rows.flatMap((r) => Object.keys(r)))];
  let rows = o.rows, sortCol = null, dir = 1;
  const draw = () => {
    const numeric = Object.fromEntries(cols.map((c) => [c, rows.every((r) => r[c] === null || r[c] === undefined || typeof r[c] === "number")]));
    const shown = rows.slice(0, 1000);
    wrap.innerHTML = (o.title ? `<div class="nb-caption">${esc(o.title)}</div>` : "")
      + `<table><thead><tr>${cols.map((c) => `<th data-col="${esc(c)}" class="${numeric[c] ? "n" : ""}" title="sort">${esc(c)}${sortCol === c ? (dir > 0 ? " ▲" : " ▼") : ""}</th>`).join("")}</tr></thead><tbody>`
      + shown.map((r) => `<tr>${cols.map((c) => `<td class="${numeric[c] ? "n" : ""}">${esc(cellText(r[c]))}</td>`).join("")}</tr>`).join("")
      + `</tbody></table>${rows.length > shown.length ? `<div class="muted small">${rows.length - shown.length} more rows not shown</div>` : ""}`;
  };
  wrap.addEventListener("click", (ev) => {
    const th = ev.target.closest("th[data-col]");
    if (!th) return;
    const c = th.dataset.col;
    dir = sortCol === c ? -dir : 1; sortCol = c;
    rows = [...o.rows].sort((a, b) => {
      const x = a[c], y = b[c];
      if (typeof x === "number" && typeof y === "number") return dir * (x - y);
      return dir * cellText(x).localeCompare(cellText(y), undefined, { numeric: true });
    });
    draw();
  });
  draw();
  return wrap;
}

function appendText(outEl, o) {
  const last = outEl.lastElementChild;
  let pre = last?.matches?.(`pre.nb-text[data-stream="${o.stream ?? "stdout"}"]`) ? last : null;
  if (!pre) { pre = document.createElement("pre"); pre.className = `nb-text ${o.stream === "stderr" ? "stderr" : ""}`; pre.dataset.stream = o.stream ?? "stdout"; pre._text = ""; outEl.append(pre); }
  // A carriage return rewrites the current line (terminal-style progress lines).
  let t = pre._text + o.text;
  t = t.split("\n").map((l) => (l.includes("\r") ? l.split("\r").filter(Boolean).pop() ?? "" : l)).join("\n");
  pre._text = t;
  pre.textContent = t;
}

function renderOutput(cell, outEl, o) {
  if (o.type === "text") return appendText(outEl, o);
  if (o.type === "progress") {
    let p = [...outEl.querySelectorAll(".nb-progress")].find((x) => x.dataset.key === o.key);
    if (!p) { p = document.createElement("div"); p.className = "nb-progress"; p.dataset.key = o.key; p.innerHTML = "<span></span><progress></progress><span></span>"; outEl.append(p); }
    const [l, bar, n] = p.children;
    l.textContent = o.label; bar.max = Math.max(1, o.total); bar.value = Math.min(o.done, o.total); n.textContent = `${o.done}/${o.total}`;
    return;
  }
  const el = document.createElement("div");
  el.className = `nb-o nb-${o.type}`;
  if (o.type === "markdown") el.innerHTML = renderMarkdown(o.text);
  else if (o.type === "table") el.append(renderTable(o));
  else if (o.type === "svg") {
    const img = document.createElement("img");
    img.className = "nb-svg"; img.alt = o.title ?? "figure";
    img.src = "data:image/svg+xml;charset=utf-8," + enc(o.svg);
    el.append(img);
  } else if (o.type === "plotly") {
    el.style.height = `${Number(o.layout?.height) || 380}px`; // plotly sizes to its div: give it the figure's height
    outEl.append(el);
    try { Plotly.newPlot(el, o.data, { margin: { l: 60, r: 20, t: 40, b: 50 }, ...(o.layout ?? {}), autosize: true }, { responsive: true, displaylogo: false }); }
    catch (e) { el.textContent = `plotly: ${e.message}`; }
    return;
  } else if (o.type === "html") {
    const f = document.createElement("iframe");
    f.setAttribute("sandbox", "allow-same-origin"); // no scripts: a shared notebook's HTML cannot act
    f.srcdoc = o.html;
    f.onload = () => { try { f.style.height = `${f.contentDocument.documentElement.scrollHeight + 4}px`; } catch { /* sized by CSS */ } };
    el.append(f);
  } else if (o.type === "error") {
    const src = cell.source.split("\n")[o.line - 1];
    el.innerHTML = `<pre>${esc(`${o.name}: ${o.message}`)}${o.line ? `\n<b>cell line ${o.line}</b>${src !== undefined ? `: ${esc(src.trim())}` : ""}` : ""}${o.stack ? `\n<span class="muted">${esc(o.stack)}</span>` : ""}</pre>`;
  }
  outEl.append(el);
}

function renderOutputs(cell) {
  const outEl = cell.el.querySelector(".nb-out");
  outEl.innerHTML = "";
  for (const o of cell.outputs) renderOutput(cell, outEl, o);
}

// ---------- cells ----------
function newCell(c, outs) {
  return { key: `k${++nb.seq}`, type: c.type, source: c.source, title: c.title, outputs: outs?.outputs ?? [], ok: outs?.ok, ms: outs?.ms, state: outs ? "saved" : "", editing: false };
}

function setState(cell, state, text) {
  cell.state = state;
  const s = cell.el?.querySelector(".nb-state");
  if (s) { s.textContent = text ?? state; s.className = `nb-state ${state}`; }
  cell.el?.classList.toggle("running", state === "running");
}

function autosize(ta) { ta.rows = Math.max(2, ta.value.split("\n").length); }

function cellEl(cell) {
  const d = document.createElement("div");
  d.className = `nb-cell ${cell.type}`;
  d.dataset.key = cell.key;
  d.innerHTML = `<div class="nb-gutter">${cell.type === "code" ? '<button class="nb-run small" title="Run this cell (Shift+Enter)">▶</button>' : ""}</div>
    <div class="nb-main">
      <div class="nb-head"><span class="nb-title">${esc(cell.title ?? "")}</span><span class="nb-state"></span><span class="grow"></span>
        ${cell.type === "code" ? '<button class="small secondary" data-a="from" title="Run this cell and every cell below it">Run from here</button>' : '<button class="small secondary" data-a="edit">Edit</button>'}
        <button class="small secondary" data-a="up" title="Move up">↑</button><button class="small secondary" data-a="down" title="Move down">↓</button>
        <button class="small secondary" data-a="add-code" title="Insert a code cell below">+ code</button><button class="small secondary" data-a="add-md" title="Insert a markdown cell below">+ text</button>
        <button class="small secondary" data-a="del" title="Delete this cell">✕</button></div>
      <textarea class="nb-src" spellcheck="false" aria-label="cell source"></textarea>
      <div class="nb-md" title="double-click to edit"></div>
      <div class="nb-out"></div>
    </div>`;
  cell.el = d;
  const ta = d.querySelector(".nb-src");
  ta.value = cell.source;
  autosize(ta);
  const md = d.querySelector(".nb-md");
  const showMd = () => {
    const editing = cell.type === "markdown" && cell.editing;
    ta.hidden = cell.type === "markdown" && !editing;
    md.hidden = cell.type !== "markdown" || editing;
    if (!md.hidden) md.innerHTML = renderMarkdown(cell.source) || '<p class="muted">(empty text cell: double-click to edit)</p>';
  };
  cell.showMd = showMd;
  showMd();
  ta.addEventListener("input", () => { cell.source = ta.value; autosize(ta); markDirty(); });
  ta.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && ev.shiftKey) {
      ev.preventDefault();
      if (cell.type === "markdown") { cell.editing = false; showMd(); } else runCells([cell]);
      const next = nb.cells[nb.cells.indexOf(cell) + 1];
      next?.el.querySelector(".nb-src:not([hidden])")?.focus();
    } else if (ev.key === "Tab") {
      ev.preventDefault();
      ta.setRangeText("  ", ta.selectionStart, ta.selectionEnd, "end");
      cell.source = ta.value; markDirty();
    }
  });
  ta.addEventListener("blur", () => { if (cell.type === "markdown" && cell.editing) { cell.editing = false; showMd(); } });
  md.addEventListener("dblclick", () => { cell.editing = true; showMd(); ta.focus(); });
  d.querySelector(".nb-run")?.addEventListener("click", () => runCells([cell]));
  d.querySelector(".nb-head").addEventListener("click", (ev) => {
    const a = ev.target.closest("[data-a]")?.dataset.a;
    if (!a) return;
    const i = nb.cells.indexOf(cell);
    if (a === "from") return runCells(nb.cells.slice(i));
    if (a === "edit") { cell.editing = true; showMd(); ta.focus(); return; }
    if (a === "up" && i > 0) [nb.cells[i - 1], nb.cells[i]] = [nb.cells[i], nb.cells[i - 1]];
    else if (a === "down" && i < nb.cells.length - 1) [nb.cells[i + 1], nb.cells[i]] = [nb.cells[i], nb.cells[i + 1]];
    else if (a === "del") nb.cells.splice(i, 1);
    else if (a === "add-code" || a === "add-md") {
      const c = newCell({ type: a === "add-code" ? "code" : "markdown", source: "" });
      c.editing = true;
      nb.cells.splice(i + 1, 0, c);
    } else return;
    markDirty();
    drawCells();
  });
  renderOutputs(cell);
  if (cell.state === "saved" && cell.outputs.length) setState(cell, "saved", `saved output${cell.ms ? ` · ${(cell.ms / 1000).toFixed(2)} s` : ""}`);
  return d;
}

function drawCells() {
  const root = $("#nb-cells");
  root.innerHTML = "";
  for (const c of nb.cells) root.append(c.el ?? cellEl(c)); // existing cells keep their element (plots survive a move)
  if (!nb.cells.length) root.innerHTML = '<p class="muted">This notebook has no cells.</p>';
}

function markDirty() { nb.dirty = true; status("unsaved changes"); }
function setBusy(busy) {
  $("#nb-interrupt").disabled = !busy;
  $("#nb-run-all").disabled = busy || !nb.exec;
  for (const b of document.querySelectorAll("#nb-cells .nb-run, #nb-cells [data-a=from]")) b.disabled = busy || !nb.exec;
}

// ---------- runs ----------
async function runCells(cells) {
  const code = cells.filter((c) => c.type === "code" && c.source.trim());
  if (!code.length || nb.task) return;
  for (const c of code) setState(c, "queued", "waiting");
  setBusy(true);
  let r;
  // Keys are the cells' positions when the run starts, so a reloaded page can follow a run still in progress.
  const byKey = new Map(code.map((c) => [`c${nb.cells.indexOf(c)}`, c]));
  try {
    r = await api(`/api/notebooks/${enc(nb.name)}/run`, { json: { cells: [...byKey].map(([key, c]) => ({ key, source: c.source })) } });
  } catch (e) { for (const c of code) setState(c, "", ""); setBusy(false); return fail(e); }
  nb.task = r.id;
  status(`running (task ${r.id})`);
  follow(r.events, byKey);
}

function follow(url, byKey) {
  const cells = [...byKey.values()];
  const es = new EventSource(url);
  nb.es = es;
  const on = (name, f) => es.addEventListener(name, (ev) => f(JSON.parse(ev.data)));
  on("status", (d) => {
    if (d.status === "queued" && d.position > 0) for (const c of cells) if (c.state === "queued") setState(c, "queued", `queued behind ${d.position} task${d.position > 1 ? "s" : ""} of the server (the engine runs one at a time)`);
    if (d.status === "running") for (const c of cells) if (c.state === "queued") setState(c, "queued", "waiting");
  });
  on("cell-start", (d) => {
    const c = byKey.get(d.cell); if (!c) return;
    c.outputs = []; renderOutputs(c); setState(c, "running", "running…");
  });
  on("output", (d) => {
    const c = byKey.get(d.cell); if (!c) return;
    const o = d.output;
    if (o.type === "progress") { const i = c.outputs.findIndex((x) => x.type === "progress" && x.key === o.key); if (i >= 0) c.outputs[i] = o; else c.outputs.push(o); }
    else if (o.type === "text" && c.outputs.at(-1)?.type === "text" && (c.outputs.at(-1).stream ?? "stdout") === (o.stream ?? "stdout")) c.outputs[c.outputs.length - 1] = { ...c.outputs.at(-1), text: c.outputs.at(-1).text + o.text };
    else c.outputs.push(o);
    renderOutput(c, c.el.querySelector(".nb-out"), o);
  });
  on("cell-done", (d) => {
    const c = byKey.get(d.cell); if (!c) return;
    c.ok = d.ok; c.ms = d.ms;
    if (d.error) { const o = { type: "error", ...d.error }; for (const k of Object.keys(o)) if (o[k] === undefined || o[k] === null) delete o[k]; c.outputs.push(o); renderOutput(c, c.el.querySelector(".nb-out"), o); }
    setState(c, d.ok ? "done" : "failed", d.ok ? `done · ${(d.ms / 1000).toFixed(2)} s` : d.killed ? "worker terminated" : `failed · ${(d.ms / 1000).toFixed(2)} s`);
    markDirty();
  });
  const end = (what) => (d) => {
    es.close(); nb.es = null; nb.task = null;
    for (const c of cells) if (c.state === "queued" || c.state === "running") setState(c, "", what === "cancelled" ? "cancelled" : "");
    setBusy(false);
    status(what === "done" ? (d.ok ? `ran ${d.ran} cell${d.ran > 1 ? "s" : ""} · unsaved` : `stopped at a failing cell · unsaved`) : `${what}${d.message ? `: ${d.message}` : ""}`, what === "done" && d.ok ? "" : "err");
    refreshKernel();
  };
  on("done", end("done"));
  on("error", end("error"));
  on("cancelled", end("cancelled"));
}

async function refreshKernel() {
  if (!nb.name) return;
  try {
    const d = await api(`/api/notebooks/${enc(nb.name)}`);
    $("#nb-kernel").textContent = `worker: ${d.kernel.state}${d.kernel.lastExit ? ` (last: ${d.kernel.lastExit})` : ""}`;
  } catch { /* shown elsewhere */ }
}

// ---------- files ----------
async function openNotebook(name) {
  if (nb.es) { nb.es.close(); nb.es = null; nb.task = null; }
  const d = await api(`/api/notebooks/${enc(name)}`);
  nb.name = d.name; nb.exec = d.exec; nb.dirty = false;
  nb.cells = d.cells.map((c, i) => newCell(c, d.outputs[i]));
  $("#nb-select").value = d.name;
  $("#nb-export").href = `/api/notebooks/${enc(d.name)}/ipynb`;
  const note = $("#nb-note");
  const notes = [d.exec ? "" : (d.execNote ?? "Code execution is disabled on this server: read only."), d.outputsError ? `Saved outputs not shown: ${d.outputsError}` : ""].filter(Boolean);
  note.hidden = !notes.length; note.textContent = notes.join(" · ");
  for (const b of ["#nb-save", "#nb-new", "#nb-restart"]) $(b).disabled = !d.exec;
  $("#nb-file").textContent = d.file;
  drawCells();
  setBusy(!!d.kernel.task);
  if (d.kernel.task) { nb.task = d.kernel.task; status(`a run of this notebook is in progress (task ${d.kernel.task})`); follow(`/api/tasks/${enc(d.kernel.task)}/events`, new Map(nb.cells.map((c, i) => [`c${i}`, c]))); }
  else status(`opened · ${d.cells.length} cells`);
  $("#nb-kernel").textContent = `worker: ${d.kernel.state}${d.kernel.lastExit ? ` (last: ${d.kernel.lastExit})` : ""}`;
  if (location.hash !== `#notebook?name=${enc(d.name)}`) history.replaceState(null, "", `#notebook?name=${enc(d.name)}`);
}

async function save() {
  const body = {
    cells: nb.cells.map((c) => ({ type: c.type, source: c.source, ...(c.title ? { title: c.title } : {}) })),
    outputs: nb.cells.map((c) => (c.type === "code" && c.outputs.length ? { outputs: c.outputs, ...(c.ok !== undefined ? { ok: c.ok } : {}), ...(c.ms !== undefined ? { ms: c.ms } : {}) } : null)),
  };
  await api(`/api/notebooks/${enc(nb.name)}`, { method: "PUT", json: body });
  nb.dirty = false;
  status(`saved ${new Date().toLocaleTimeString()}`, "ok");
}

async function loadList(select) {
  const d = await api("/api/notebooks");
  nb.list = d.notebooks; nb.exec = d.exec;
  $("#nb-select").innerHTML = d.notebooks.map((n) => `<option value="${esc(n.name)}">${esc(n.name)}</option>`).join("");
  const want = select ?? new URLSearchParams(location.hash.split("?")[1] ?? "").get("name") ?? nb.name ?? d.notebooks[0]?.name;
  if (want && d.notebooks.some((n) => n.name === want)) await openNotebook(want);
  else if (!d.notebooks.length) { $("#nb-cells").innerHTML = `<p class="muted">No notebooks in ${esc(d.dir)}.</p>`; }
}

async function importIpynb(file) {
  const text = await file.text();
  let doc;
  try { doc = JSON.parse(text); } catch { throw new Error(`${file.name} is not JSON`); }
  const stem = file.name.replace(/\.ipynb$/i, "").replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[^A-Za-z0-9]+/, "").slice(0, 60) || "imported";
  for (let i = 0; i < 50; i++) {
    const name = i ? `${stem}-${i + 1}` : stem;
    const r = await fetch(`/api/notebooks/import?name=${enc(name)}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(doc) });
    if (r.status === 409) continue;
    const b = await r.json();
    if (!r.ok) throw new Error(b.error);
    return loadList(name);
  }
  throw new Error("too many notebooks with that name");
}

let started = false;
function init() {
  if (started) { if (!nb.name) loadList().catch(fail); return; }
  started = true;
  $("#nb-select").addEventListener("change", (ev) => openNotebook(ev.target.value).catch(fail));
  $("#nb-run-all").addEventListener("click", () => runCells(nb.cells));
  $("#nb-interrupt").addEventListener("click", () => api(`/api/notebooks/${enc(nb.name)}/interrupt`, { method: "POST" }).then(() => status("interrupt requested…")).catch(fail));
  $("#nb-restart").addEventListener("click", () => api(`/api/notebooks/${enc(nb.name)}/restart`, { method: "POST" }).then(() => { status("worker restarted: variables cleared"); refreshKernel(); }).catch(fail));
  $("#nb-save").addEventListener("click", () => save().catch(fail));
  $("#nb-new").addEventListener("click", async () => {
    const name = window.prompt("Name of the new notebook (letters, digits, . _ -)");
    if (!name) return;
    try { await api("/api/notebooks", { json: { name } }); await loadList(name); } catch (e) { fail(e); }
  });
  $("#nb-import").addEventListener("change", (ev) => { const f = ev.target.files[0]; ev.target.value = ""; if (f) importIpynb(f).catch(fail); });
  document.addEventListener("keydown", (ev) => {
    if ((ev.ctrlKey || ev.metaKey) && ev.key === "s" && !$("#tab-notebook").hidden) { ev.preventDefault(); save().catch(fail); }
  });
  loadList().catch(fail);
}

function route() {
  const tab = location.hash.slice(1).split("?")[0];
  if (tab !== "notebook") return;
  init();
  const want = new URLSearchParams(location.hash.split("?")[1] ?? "").get("name");
  if (started && want && want !== nb.name) loadList(want).catch(fail); // re-list: it may be new since the page loaded
}
window.addEventListener("hashchange", route);
route();
