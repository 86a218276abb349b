// Tensor-parallel profiles in the workbench (a constructed tp2 profile, test/engine/tp-fixture.ts, saved into the
// profiles folder): the views' ranks and step roofline points, the roofline devices' aggregate roofs, the trace
// and SVG exports, the Latency page's ranks panel (web/public/ranks.js) and the Roofline page's figure
// (web/public/roofline.js) as pure functions; a profile of one rank keeps today's answers (no ranks, no step points).
import { describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
// @ts-expect-error plain browser ES module without types
import { ofRank, ranksFigure, ranksIntro, ranksTable } from "../../web/public/ranks.js";
// @ts-expect-error plain browser ES module without types
import { rooflineFigure } from "../../web/public/roofline.js";
import { PALETTE } from "../../engine/export/palette.ts";
import { cpuLibraryBuilt } from "../reference/fixtures.ts";
import { expectedStepUs, tpProfile } from "../engine/tp-fixture.ts";
import { appsForFile } from "./helpers.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const setup = appsForFile();

describe.skipIf(!cpuLibraryBuilt())("tensor-parallel profiles in the web views", () => {
  const env = setup();
  const save = (p: ReturnType<typeof tpProfile>, name: string) => writeFileSync(join(env.dirs.profiles, `${name}.json`), JSON.stringify({ ...p, id: name }));
  save(tpProfile(2), "tp2");
  save(tpProfile(1, { rankColumn: false }), "tp1");
  mkdirSync(join(env.dirs.profiles, "ceilings"), { recursive: true });
  writeFileSync(join(env.dirs.profiles, "ceilings", "h200.json"), JSON.stringify({ schema: "qwen-workbench/ceilings", version: 1, device: "NVIDIA H200",
    backend: "cuda", bandwidth_bytes_s: 4.2e12, flops: { bf16: 8e14 } }));
  const get = async (path: string) => { const r = await env.app.request(path); expect(r.status).toBe(200); return r; };
  const views = async (key: string, q = "") => (await (await get(`/api/profiles/${key}/views${q}`)).json()) as any;

  test("views: ranks side by side with the communication share, rank 0 in the latency matrix, step points", async () => {
    const v = await views("tp2");
    expect(v.ranks.ranks).toEqual([0, 1]);
    expect(v.ranks.decode.commPct[0]).toBeCloseTo((100 * expectedStepUs(0).comm) / expectedStepUs(0).step, 6);
    expect(v.latency.decode.totalMs).toBeCloseTo(expectedStepUs(0).step / 1e3, 6);
    expect([v.latency.decode.rank, v.latency.decode.ranks]).toEqual([0, 2]);
    expect(v.roofline.step.map((p: any) => [p.phase, p.ranks])).toEqual([["prefill", 2], ["decode", 2]]);
    expect(v.roofline.op.every((p: any) => /^r[01] /.test(p.label))).toBe(true);
    expect((await views("tp2", "?stat=median")).ranks.decode.stat).toBe("median");
    const one = await views("tp1");
    expect(one.ranks).toBeNull();
    expect(one.roofline.step).toEqual([]);
    expect(one.latency.decode.ranks).toBeUndefined();
  });

  test("roofline devices: N × the roofs for the tp run and the note saying which point is plotted against what", async () => {
    const d = (await (await get("/api/roofline/devices?keys=tp2,tp1")).json()) as any;
    expect(d.devices.length).toBe(1);
    const dev = d.devices[0];
    expect(dev.aggregates.map((a: any) => [a.ranks, a.ceilings.memory[0].name, a.ceilings.memory[0].value])).toEqual([[2, "2 × DRAM bandwidth", 8.4e12]]);
    expect(dev.notes.join(" ")).toMatch(/per-rank points .* one device's roofs.*N × the roofs/);
    const only1 = (await (await get("/api/roofline/devices?keys=tp1")).json()) as any;
    expect(only1.devices[0].aggregates).toEqual([]);
    // the page's figure: the device roofs in grey, the aggregate ones in blue, a diamond step trace per phase
    const f = rooflineFigure([await views("tp2"), await views("tp1")], ["tp2", "tp1"], d, { group: "op", phase: "decode", palette: PALETTE });
    const lines = f.traces.filter((t: any) => t.mode === "lines");
    expect(lines.map((t: any) => t.name)).toEqual(["DRAM bandwidth (4.20 TB/s)", "bf16 tensor core (800.00 TFLOP/s)", "2 × DRAM bandwidth (8.40 TB/s)", "2 × bf16 tensor core (1.60 PFLOP/s)"].map((n) => expect.stringContaining(n.split(" (")[0])));
    expect(lines.slice(2).every((t: any) => t.line.color === "#2b6cb0")).toBe(true);
    const steps = f.traces.filter((t: any) => t.marker?.symbol === "diamond");
    expect(steps.map((t: any) => t.name)).toEqual(["tp2 fixture · decode · step (all ranks)"]);
    expect(steps[0].text).toEqual(["step (2 ranks) · decode"]);
    expect(f.notes.join(" ")).toMatch(/aggregate bandwidth/);
  });

  test("exports: the trace has a track per rank, the roofline SVG the aggregate roofs", async () => {
    const tr = (await (await get("/api/profiles/tp2/export/trace")).json()) as any;
    const names = tr.traceEvents.filter((e: any) => e.name === "thread_name" && e.pid === 3).map((e: any) => e.args.name);
    expect(names.filter((n: string) => /^rank \d$/.test(n))).toEqual(["rank 0", "rank 1"]);
    const svg = await (await get("/api/profiles/tp2/export/svg-roofline")).text();
    expect(svg).toContain("2 × DRAM bandwidth 8.40 TB/s");
    expect(await (await get("/api/profiles/tp1/export/svg-roofline")).text()).not.toContain("2 × DRAM");
  });

  test("the Latency page's ranks panel: a column and a bar series per rank, the communication share labelled", async () => {
    const v = await views("tp2");
    const intro = ranksIntro(v.ranks);
    expect(intro).toContain("2 ranks");
    expect(intro).toContain("<code>all_reduce</code> + <code>all_gather</code>");
    const html = ranksTable(v.ranks.decode);
    expect(html).toContain("<th class=\"n\">rank 0</th><th class=\"n\">rank 1</th>");
    const share = (k: number) => ((100 * expectedStepUs(k).comm) / expectedStepUs(k).step).toFixed(1);
    expect(html).toContain(`communication share of the step</b></td><td class="n"><b>${share(0)} %</b></td><td class="n"><b>${share(1)} %</b>`);
    expect(html).toMatch(/<td>all_reduce<\/td><td class="n">0\.1200<\/td><td class="n">0\.1200<\/td>/); // 2 layers × 2 × 30 µs
    const f = ranksFigure(v.ranks.decode, PALETTE);
    expect(f.traces.map((t: any) => t.name)).toEqual([`rank 0 · comm ${share(0)} %`, `rank 1 · comm ${share(1)} %`]);
    expect(f.traces[0].x).toEqual(v.ranks.decode.ops);
    expect(f.layout.barmode).toBe("group");
    expect(ofRank(v.latency.decode)).toBe(" · rank 0 of 2");
    // one rank: nothing
    const one = await views("tp1");
    expect(ranksIntro(one.ranks)).toBe("");
    expect(ofRank(one.latency.decode)).toBe("");
    expect(ranksTable({ ...v.ranks.prefill, steps: 0 })).toBe("");
  });
});
