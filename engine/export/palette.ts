// engine/export/palette.ts — the one categorical palette of every plot and export (server SVGs, the HTML report, the web
// pages through GET /api/palette), and the fixed op → colour mapping.
//
// Tableau 10 (minus its light grey) extended with Kelly's colours of maximum contrast, then ten colours of an sRGB
// grid (step 16), each picked greedily for the largest smallest CIELAB distance (ΔE*76) to all before it and > 30 from
// white; the last six (2026-12-05) leave room for ops beyond the catalog's 20: every pair differs by >= 26 (the old palette had blue/blue and
// brown/brown pairs at ΔE < 12, so embed and down, gate_up and final_norm looked alike). Tested in
// test/engine/palette.test.ts.
import { opIndex, opNames } from "../catalog.ts";

export const PALETTE: readonly string[] = [
  "#4e79a7", "#f28e2c", "#e15759", "#76b7b2", "#59a14f", "#edc949", "#af7aa1", "#ff9da7",
  "#9c755f", "#222222", "#8db600", "#604e97", "#882d17", "#b3446c", "#a1caf1", "#c2b280",
  "#0000e0", "#e040e0", "#00e000", "#000080",
  "#f00000", "#00f0c0", "#204000", "#0060f0", "#807000", "#400030",
];

/** Colour of an op: its index in the library's op list (one colour per op while that list is not longer than
 *  PALETTE: tested). */
export function opColor(op: string): string {
  const i = opIndex(op);
  return i >= opNames().length ? "#7f7f7f" : PALETTE[i % PALETTE.length];
}

/** Colour of the i-th run (overlays, A/B). */
export function runColor(i: number): string {
  return PALETTE[((i % PALETTE.length) + PALETTE.length) % PALETTE.length];
}

/** What GET /api/palette serves: the browser draws with the same colours. */
export function paletteDoc(): { palette: readonly string[]; ops: readonly string[]; opColors: Record<string, string> } {
  const ops = opNames();
  return { palette: PALETTE, ops, opColors: Object.fromEntries(ops.map((o) => [o, opColor(o)])) };
}

/** CIELAB L*a*b* of an sRGB hex colour (D65), for the distinctness test. */
export function hexToLab(hex: string): [number, number, number] {
  const c = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255)
    .map((v) => (v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4));
  const x = (0.4124 * c[0] + 0.3576 * c[1] + 0.1805 * c[2]) / 0.95047;
  const y = 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  const z = (0.0193 * c[0] + 0.1192 * c[1] + 0.9505 * c[2]) / 1.08883;
  const f = (t: number) => (t > 0.008856 ? Math.cbrt(t) : 7.787 * t + 16 / 116);
  return [116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))];
}

/** ΔE*76 between two hex colours. */
export function deltaE(a: string, b: string): number {
  const p = hexToLab(a), q = hexToLab(b);
  return Math.hypot(p[0] - q[0], p[1] - q[1], p[2] - q[2]);
}
