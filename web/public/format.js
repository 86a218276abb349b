// Text helpers the page's modules share (app.js, notebook.js, ranks.js, roofline.js, sparse.js, spec.js): HTML escaping and a
// number with d decimals ("–" for a missing or non-finite value).
export const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
export const fmt = (v, d = 2) => (v === null || v === undefined || !Number.isFinite(v) ? "–" : Number(v).toFixed(d));
