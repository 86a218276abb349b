// The per-rank views of a tensor-parallel profile (engine/measure/ranks.ts, the rank-0 step views of aggregate.ts,
// the per-rank and step roofline points of roofline.ts, the trace's rank tracks) on a constructed profile whose
// every time is known (test/engine/tp-fixture.ts), and that a profile of one rank gives what it gave before.
import { describe, expect, test } from "bun:test";
import { latencyMatrix, opRecords, stepTimeline, compareProfiles } from "../../engine/measure/aggregate.ts";
import { rankViews } from "../../engine/measure/ranks.ts";
import { aggregateCeilings, parseCeilings, rooflinePoints, stepRooflinePoints } from "../../engine/measure/roofline.ts";
import { chromeTrace } from "../../engine/export/trace.ts";
import { rooflineSvg } from "../../engine/export/svg.ts";
import { collectiveOps } from "../../engine/catalog.ts";
import { cpuLibraryBuilt } from "../reference/fixtures.ts";
import { expectedStepUs, LAYER_OPS, LAYERS, tpProfile, usOn, workOf } from "./tp-fixture.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout();

describe.skipIf(!cpuLibraryBuilt())("tensor-parallel views", () => {
  test("the library's collectives are all_reduce and all_gather", () => {
    expect([...collectiveOps()].sort()).toEqual(["all_gather", "all_reduce"]);
  });

  test("ranks side by side: per-op time per rank, step time and the communication share", () => {
    const v = rankViews(tpProfile(2))!;
    expect(v.ranks).toEqual([0, 1]);
    const d = v.decode;
    expect(d.steps).toBe(2);
    expect(d.commOps).toEqual(["all_reduce", "all_gather"]);
    for (const k of [0, 1]) {
      const e = expectedStepUs(k);
      expect(d.stepMs[k]).toBeCloseTo(e.step / 1e3, 9);
      expect(d.commMs[k]).toBeCloseTo(e.comm / 1e3, 9);
      expect(d.commPct[k]).toBeCloseTo((100 * e.comm) / e.step, 9);
      // qkv runs once per layer: LAYERS × its time on that rank
      expect(d.ms[d.ops.indexOf("qkv")][k]).toBeCloseTo((LAYERS * usOn("qkv", 100, k)) / 1e3, 9);
      expect(d.ms[d.ops.indexOf("all_reduce")][k]).toBeCloseTo((LAYERS * 2 * 30) / 1e3, 9);
    }
    expect(d.commPct[1]).toBeLessThan(d.commPct[0]); // the slower rank spends a smaller share communicating
    expect(v.prefill.steps).toBe(1);
    expect(rankViews(tpProfile(2), "median")!.decode.stepMs[1]).toBeCloseTo(expectedStepUs(1).step / 1e3, 9);
    expect(rankViews(tpProfile(4))!.decode.commPct.length).toBe(4);
  });

  test("the step views read rank 0's records: a tp2 step is not counted twice", () => {
    const p = tpProfile(2);
    const m = latencyMatrix(p, "decode");
    expect(m.totalMs).toBeCloseTo(expectedStepUs(0).step / 1e3, 9);
    expect([m.rank, m.ranks]).toEqual([0, 2]);
    expect(latencyMatrix(p, "decode", undefined, "mean", 1).totalMs).toBeCloseTo(expectedStepUs(1).step / 1e3, 9);
    expect(stepTimeline(p).map((s) => s.ms)).toEqual(Array(3).fill(expectedStepUs(0).step / 1e3).map((x) => expect.closeTo(x, 9)));
    const c = compareProfiles(p, p);
    expect(c.byOp.find((r) => r.phase === "decode" && r.op === "qkv")!.a.median).toBeCloseTo((LAYERS * 100) / 1e3, 9);
  });

  test("a profile of one rank: no rank view, no rank fields, points and trace as before", () => {
    for (const p of [tpProfile(1), tpProfile(1, { rankColumn: false })]) {
      expect(rankViews(p)).toBeNull();
      const m = latencyMatrix(p, "decode");
      expect("rank" in m || "ranks" in m).toBe(false);
      expect(rooflinePoints(p, "op").every((x) => x.rank === undefined && !x.label.startsWith("r"))).toBe(true);
      expect(stepRooflinePoints(p)).toEqual([]);
      const names = chromeTrace(p).traceEvents.filter((e) => e.name === "thread_name").map((e) => String(e.args!.name));
      expect(names.some((n) => n.startsWith("rank"))).toBe(false);
      expect(names).toContain("kernels");
    }
    // a rank column of zeros reads the same as none
    expect(opRecords(tpProfile(1)).every((r) => r.rank === 0)).toBe(true);
    expect(latencyMatrix(tpProfile(1), "decode")).toEqual(latencyMatrix(tpProfile(1, { rankColumn: false }), "decode"));
  });

  test("roofline: per-rank points without the collectives; one step point per phase over the busiest rank's time", () => {
    const p = tpProfile(2);
    const pts = rooflinePoints(p, "op").filter((x) => x.phase === "decode");
    expect(pts.map((x) => x.label).sort()).toEqual(["r0 attention", "r0 down", "r0 lm_head", "r0 o_proj", "r0 qkv", "r1 attention", "r1 down", "r1 lm_head", "r1 o_proj", "r1 qkv"]);
    const q1 = pts.find((x) => x.label === "r1 qkv")!;
    expect(q1.rank).toBe(1);
    expect(q1.bytes).toBeCloseTo(LAYERS * workOf("qkv", 2).bytes, 3);          // one rank's shard
    expect(q1.seconds).toBeCloseTo((LAYERS * usOn("qkv", 100, 1)) / 1e6, 12);
    const steps = stepRooflinePoints(p);
    expect(steps.map((x) => [x.phase, x.label, x.ranks])).toEqual([["prefill", "step (2 ranks)", 2], ["decode", "step (2 ranks)", 2]]);
    const d = steps[1];
    const computeOps = LAYER_OPS.filter(([op]) => op !== "all_reduce").length * LAYERS + 1; // + lm_head
    expect(d.bytes).toBeCloseTo(2 * computeOps * workOf("qkv", 2).bytes, 3);         // both ranks' bytes: the tp1 bytes
    // time: the slower rank (1), gaps left out, collectives in
    expect(d.seconds).toBeCloseTo((expectedStepUs(1).step - 10) / 1e6, 12);
    expect(d.bytesPerS).toBeCloseTo(d.bytes / d.seconds, 0);
  });

  test("aggregate ceilings: N × every roof, named so", () => {
    const c = parseCeilings({ schema: "qwen-workbench/ceilings", version: 1, device: "NVIDIA H200", backend: "cuda", bandwidth_bytes_s: 4.2e12, flops: { bf16: 8e14 }, cache_bytes: { l2: 5e7 } }, "h.json");
    const a = aggregateCeilings(c, 4);
    expect(a.memory.map((m) => [m.name, m.value, m.level])).toEqual([["4 × DRAM bandwidth", 4 * 4.2e12, "dram"]]);
    expect(a.compute.map((m) => [m.name, m.value])).toEqual([["4 × bf16 tensor core", 3.2e15]]);
    expect(a.cacheBytes.l2).toBe(2e8);
    expect(c.memory[0].value).toBe(4.2e12); // the device's own roofs are untouched
  });

  test("trace: one track per rank in the device process, rank tracks per layer in the phase processes", () => {
    const tr = chromeTrace(tpProfile(2));
    const threads = tr.traceEvents.filter((e) => e.name === "thread_name");
    const dev = threads.filter((e) => e.pid === 3).map((e) => [e.tid, e.args!.name]);
    expect(dev).toEqual([[1, "rank 0"], [2, "rank 0 · gaps"], [3, "rank 0 · copies"], [4, "rank 1"], [5, "rank 1 · gaps"], [6, "rank 1 · copies"]]);
    const onTrack = (tid: number) => tr.traceEvents.filter((e) => e.pid === 3 && e.tid === tid && e.ph === "X");
    expect(onTrack(1).every((e) => e.args!.rank === 0)).toBe(true);
    expect(onTrack(4).every((e) => e.args!.rank === 1)).toBe(true);
    expect(onTrack(4).filter((e) => e.name === "all_reduce L0").length).toBe(6); // 2 per layer-0 step × 3 steps
    expect(onTrack(5).map((e) => e.name)).toEqual(["gap", "gap", "gap"]);
    const decode = threads.filter((e) => e.pid === 2).map((e) => String(e.args!.name));
    expect(decode).toContain("rank 1 · layer 0");
    expect(decode).toContain("rank 0 · head/tail");
    // every rank track of a phase process holds only that rank's records
    const x = tr.traceEvents.filter((e) => e.pid === 2 && e.ph === "X" && e.tid > 0);
    expect(x.every((e) => (e.tid >= 20000 ? 1 : 0) === e.args!.rank)).toBe(true);
  });

  test("the roofline SVG of a tp run: the aggregate roofs and the step point are drawn and labelled", () => {
    const c = parseCeilings({ schema: "qwen-workbench/ceilings", version: 1, device: "NVIDIA H200", backend: "cuda", bandwidth_bytes_s: 4.2e12, flops: { bf16: 8e14 } }, "h.json");
    const svg = rooflineSvg([tpProfile(2)], [c], "op");
    expect(svg).toContain("2 × DRAM bandwidth 8.40 TB/s");
    expect(svg).toContain("DRAM bandwidth 4.20 TB/s");
    expect(svg).toContain("step (2 ranks)");
    expect(svg).toMatch(/per-rank points \(r0, r1, …\) against one device's roofs/);
    const one = rooflineSvg([tpProfile(1)], [c], "op");
    expect(one).not.toContain("×");
  });
});

describe.skipIf(!cpuLibraryBuilt())("tensor-parallel HTML report", () => {
  test("the report has the ranks table with the communication share; rank 0 of 2 on the layer tables; none for one rank", async () => {
    const { htmlReport } = await import("../../engine/export/report.ts");
    const html = htmlReport(tpProfile(2), {});
    expect(html).toContain("Ranks side by side (tensor parallelism)");
    expect(html).toContain("<th class=\"n\">rank 0</th><th class=\"n\">rank 1</th>");
    const share = (k: number) => ((100 * expectedStepUs(k).comm) / expectedStepUs(k).step).toFixed(1);
    expect(html).toContain(`communication share of the step</b></td><td class="n">${share(0)} %</td><td class="n">${share(1)} %</td>`);
    expect(html).toContain("decode · rank 0 of 2: ms per step");
    expect(html).toContain("rank 0 of 2, mean of 2 steps");
    const one = htmlReport(tpProfile(1), {});
    expect(one).not.toContain("Ranks side by side");
    expect(one).not.toContain("rank 0 of");
  });
});
