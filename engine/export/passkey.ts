// engine/export/passkey.ts — a passkey result (engine/measure/passkey.ts) as files: the heat map of accuracy by
// prompt length × needle depth as a standalone SVG (one cell per (length, depth bucket), the count in each cell,
// the per-length accuracy at the right), and every cell as CSV. The markdown table is passkeyTable().
import { passkeyTitle, type PasskeyResult } from "../measure/passkey-schema.ts";

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** Red (0 %) → yellow → green (100 %); grey for an empty cell. */
export function accuracyColor(a: number | null): string {
  if (a === null) return "#e5e5e5";
  const t = Math.max(0, Math.min(1, a));
  const h = 120 * t;  // hue 0 = red, 60 = yellow, 120 = green
  return `hsl(${h.toFixed(0)}, 70%, ${(62 - 10 * Math.abs(t - 0.5)).toFixed(0)}%)`;
}

/** The heat map as a standalone SVG document. */
export function passkeySvg(r: PasskeyResult, cellW = 88, cellH = 30): string {
  const left = 90, top = 78, right = 120;
  const width = left + r.buckets * cellW + right, height = top + r.lengths.length * cellH + 46;
  const parts: string[] = [];
  for (let b = 0; b < r.buckets; b++) {
    const x = left + b * cellW + cellW / 2;
    parts.push(`<text x="${x}" y="${top - 8}" font-size="11" text-anchor="middle">${Math.round((100 * b) / r.buckets)}–${Math.round((100 * (b + 1)) / r.buckets)} %</text>`);
  }
  parts.push(`<text x="${left + (r.buckets * cellW) / 2}" y="${top - 26}" font-size="12" text-anchor="middle" fill="#444">needle depth</text>`);
  parts.push(`<text x="${left + r.buckets * cellW + right / 2}" y="${top - 8}" font-size="11" text-anchor="middle">all</text>`);
  r.byLength.forEach((L, i) => {
    const y = top + i * cellH;
    parts.push(`<text x="${left - 10}" y="${y + cellH / 2 + 4}" font-size="12" text-anchor="end">${L.length}</text>`);
    for (const c of r.cells.filter((x) => x.length === L.length)) {
      const x = left + c.bucket * cellW;
      const label = c.accuracy === null ? "–" : `${(100 * c.accuracy).toFixed(0)} % (${c.n})`;
      parts.push(`<rect x="${x}" y="${y}" width="${cellW - 2}" height="${cellH - 2}" fill="${accuracyColor(c.accuracy)}"><title>length ${L.length}, depth bucket ${c.bucket}: ${c.correct}/${c.n}</title></rect>`);
      parts.push(`<text x="${x + cellW / 2 - 1}" y="${y + cellH / 2 + 4}" font-size="11" text-anchor="middle">${label}</text>`);
    }
    const ax = left + r.buckets * cellW + 8;
    parts.push(`<rect x="${ax}" y="${y}" width="${right - 16}" height="${cellH - 2}" fill="${accuracyColor(L.accuracy)}"/>`);
    parts.push(`<text x="${ax + (right - 16) / 2}" y="${y + cellH / 2 + 4}" font-size="11" font-weight="600" text-anchor="middle">${(100 * L.accuracy).toFixed(0)} % (${L.correct}/${L.n})</text>`);
  });
  parts.push(`<text x="14" y="${top + (r.lengths.length * cellH) / 2}" font-size="12" fill="#444" transform="rotate(-90 14 ${top + (r.lengths.length * cellH) / 2})" text-anchor="middle">length (tokens)</text>`);
  const foot = r.warnings.length ? `warnings: ${r.warnings.join("; ")}` : `${r.trials} trial(s) per length, seed ${r.seed}`;
  parts.push(`<text x="14" y="${height - 14}" font-size="10" fill="#666">${esc(foot)}</text>`);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif">`
    + `<rect width="100%" height="100%" fill="white"/>`
    + `<text x="14" y="22" font-size="14" font-weight="600">Passkey retrieval: accuracy by length × needle depth</text>`
    + `<text x="14" y="40" font-size="10" fill="#555">${esc(passkeyTitle(r))}</text>`
    + parts.join("") + `</svg>`;
}

/** One CSV row per (length, depth bucket) cell, then one "all" row per length. */
export function passkeyCsv(r: PasskeyResult): string {
  const sp = r.sparse;
  const rows = ["length,depth_lo_pct,depth_hi_pct,n,correct,accuracy,dca,sparse,keys_visited,recall"];
  const tail = (length: number) => {
    const s = sp?.byLength.find((x) => x.length === length);
    return `${r.dca.on ? "on" : "off"},${sp ? sp.mode ?? "vertical-slash" : "off"},${s ? s.density.toFixed(6) : ""},${s?.recall ?? ""}`;
  };
  for (const c of r.cells) {
    rows.push(`${c.length},${Math.round((100 * c.bucket) / r.buckets)},${Math.round((100 * (c.bucket + 1)) / r.buckets)},${c.n},${c.correct},${c.accuracy ?? ""},${tail(c.length)}`);
  }
  for (const L of r.byLength) rows.push(`${L.length},0,100,${L.n},${L.correct},${L.accuracy},${tail(L.length)}`);
  return rows.join("\n") + "\n";
}
