// One categorical palette (engine/export/palette.ts) for every plot and export: distinct colours, one per op, stable.
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { deltaE, opColor, PALETTE, paletteDoc, runColor } from "../../engine/export/palette.ts";
import { opNames } from "../../engine/catalog.ts";

const OP_NAMES = opNames();
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

test("palette: >= 12 colours, every pair clearly distinct (ΔE*76 >= 20) and visible on white", () => {
  expect(PALETTE.length).toBeGreaterThanOrEqual(12);
  let min = Infinity, pair = "";
  for (let i = 0; i < PALETTE.length; i++) {
    for (let j = i + 1; j < PALETTE.length; j++) {
      const d = deltaE(PALETTE[i], PALETTE[j]);
      if (d < min) { min = d; pair = `${PALETTE[i]} / ${PALETTE[j]}`; }
    }
    expect(deltaE(PALETTE[i], "#ffffff")).toBeGreaterThan(25);
  }
  expect(`${min.toFixed(1)} (${pair})`).toBe(min >= 20 ? `${min.toFixed(1)} (${pair})` : "ΔE >= 20");
  // the pairs a user could not tell apart before (embed/down, gate_up/final_norm) are far apart now
  expect(deltaE(opColor("embed"), opColor("down"))).toBeGreaterThanOrEqual(20);
  expect(deltaE(opColor("gate_up"), opColor("final_norm"))).toBeGreaterThanOrEqual(20);
});

test("op colours: one distinct colour per op, a fixed mapping (index in the catalog's op list)", () => {
  const colours = OP_NAMES.map(opColor);
  expect(new Set(colours).size).toBe(OP_NAMES.length);
  OP_NAMES.forEach((op, i) => expect(opColor(op)).toBe(PALETTE[i]));
  expect(opColor("embed")).toBe("#4e79a7");
  expect(opColor("not-an-op")).toBe("#7f7f7f");
  expect(runColor(0)).toBe(PALETTE[0]);
  expect(runColor(PALETTE.length + 1)).toBe(PALETTE[1]);
  expect(paletteDoc().opColors.down).toBe(opColor("down"));
});

test("the browser has no palette or op list of its own (it reads GET /api/palette)", () => {
  const js = readFileSync(resolve(import.meta.dir, "../../web/public/app.js"), "utf8");
  expect(js).toContain("/api/palette");
  expect(js).not.toMatch(/\[\s*"#[0-9a-f]{6}"\s*,\s*"#[0-9a-f]{6}"/i); // no list of colours
  expect(js).not.toMatch(/\[\s*"embed"\s*,\s*"attn_norm"/);                // no list of op names
});
