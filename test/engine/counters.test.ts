// Profiling mode "counters" in TypeScript (engine/measure/counters.ts and its readers): the native readout's schema,
// its join to the op records (the two residual adds of a layer by occurrence), the profile schema with counter
// columns (accepted, and refused when a column is short or negative), roofline points with measured bytes beside
// the modelled ones, the latency table's "GB/s measured" and "L2 hit" columns, repetitions merged with their
// counters, and the CPU backend refusing the mode with a clear error while the session stays usable.
// The GPU side (real counters) is test/gpu/counters.test.ts.
import { describe, expect, test } from "bun:test";
import { join, resolve } from "node:path";
import { appendCounters, emptyCounterColumns, joinCounters, parseCountersReadout, type CountersReadout } from "../../engine/measure/counters.ts";
import { Profile, readProfile, type OpColumns } from "../../engine/measure/profile.ts";
import { latencyMatrix, opRecords } from "../../engine/measure/aggregate.ts";
import { rooflinePoints } from "../../engine/measure/roofline.ts";
import { rooflineSvg } from "../../engine/export/svg.ts";
import { mergeResults, type RecordResult } from "../../engine/measure/passes.ts";
import { nonModelOps, opIndex, opName } from "../../engine/catalog.ts";
import { openModel, QwenError, type Model } from "../../engine/index.ts";
import { cpuLibraryBuilt, prompt } from "../reference/fixtures.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const REPO = resolve(import.meta.dir, "../..");
const base = readProfile(join(REPO, "profiles/cpu-run-tiny-brown-bf16.json"));

const entry = (step: number, layer: number, op: string, nth: number, dramRead: number | null, extra: Partial<CountersReadout["ops"][number]> = {}) => ({
  step, phase: 1, layer, op: opIndex(op), nth, kernel: "k", kernels: 1, dramRead, dramWrite: 100, l2Hits: 30, l2Misses: 10,
  l2HitPct: 75, durationNs: 1000, smPct: 40, tensorPct: null, ...extra,
});

/** The committed tiny CPU profile with counters on every model op: DRAM reads 1.1 x the modelled bytes, writes 64 B,
 *  3 of 4 L2 lookups hit, each kernel 2 x the record's time. Gaps and copies have none (as the engine gives). */
function withCounters(p: Profile): Profile {
  const o = p.ops!;
  const c = emptyCounterColumns(o.step.length);
  const skip = nonModelOps();
  for (let i = 0; i < o.step.length; i++) {
    if (skip.has(opName(o.op[i]))) continue;
    c.dram_read[i] = 1.1 * o.bytes[i]; c.dram_write[i] = 64; c.l2_hits[i] = 300; c.l2_misses[i] = 100;
    c.sm_pct[i] = 50; c.tensor_pct[i] = 0; c.kernel_ns[i] = 2 * (o.t_end_ns[i] - o.t_start_ns[i]); c.kernels[i] = 1;
  }
  return { ...p, ops: { ...o, counters: c }, counters_meta: { collected: ["dram__bytes_read.sum"], unavailable: ["metric x not available on this GPU: test"] } };
}

describe("native readout", () => {
  test("accepts the engine's document and refuses a malformed one with the path", () => {
    const ok = parseCountersReadout(JSON.stringify({ collected: ["dram__bytes_read.sum"], unavailable: [], ops: [entry(0, 0, "qkv", 0, 5)] }));
    expect(ok.ops[0].dramRead).toBe(5);
    expect(() => parseCountersReadout("{")).toThrow(/counters readout: not JSON/);
    expect(() => parseCountersReadout(JSON.stringify({ collected: [], unavailable: [], ops: [{ ...entry(0, 0, "qkv", 0, 5), nth: -1 }] })))
      .toThrow(/counters readout: invalid at ops\.0\.nth/);
    expect(() => parseCountersReadout(JSON.stringify({ collected: [], ops: [] }))).toThrow(/invalid at unavailable/);
  });

  test("joins by step, layer, op and occurrence: the second residual gets the second entry", () => {
    const res = opIndex("residual"), down = opIndex("down");
    const ops: Pick<OpColumns, "step" | "phase" | "layer" | "op"> = {
      step: [3, 3, 3, 3, 4], phase: [1, 1, 1, 1, 1], layer: [0, 0, 0, -1, 0], op: [res, down, res, opIndex("gap"), res],
    };
    const r = parseCountersReadout(JSON.stringify({ collected: [], unavailable: [], ops: [
      entry(3, 0, "residual", 0, 10), entry(3, 0, "down", 0, 20), entry(3, 0, "residual", 1, 30), entry(4, 0, "residual", 0, null), entry(9, 0, "qkv", 0, 1),
    ] }));
    const { columns, unmatched } = joinCounters(ops, r);
    expect(columns.dram_read).toEqual([10, 20, 30, null, null]); // gap: no entry; step 4: metric not collected
    expect(columns.kernels).toEqual([1, 1, 1, null, 1]);
    expect(columns.tensor_pct).toEqual([null, null, null, null, null]);
    expect(unmatched).toBe(1); // the step-9 entry has no record
  });
});

describe("profiles with counters", () => {
  const p = withCounters(base);

  test("the schema accepts counter columns and refuses short or negative ones", () => {
    expect(() => Profile.parse(p)).not.toThrow();
    const short = { ...p, ops: { ...p.ops!, counters: { ...p.ops!.counters!, dram_read: p.ops!.counters!.dram_read.slice(1) } } };
    expect(() => Profile.parse(short)).toThrow(/every counter column must have one entry per op record/);
    const neg = { ...p, ops: { ...p.ops!, counters: { ...p.ops!.counters!, l2_hits: p.ops!.counters!.l2_hits.map(() => -1) } } };
    expect(() => Profile.parse(neg)).toThrow();
    expect(() => Profile.parse({ ...p, counters_meta: { collected: [] } })).toThrow();
  });

  test("roofline: measured bytes beside the modelled ones, the L2 hit rate from summed lookups", () => {
    const pts = rooflinePoints(p, "op");
    const plain = rooflinePoints(base, "op");
    expect(pts.length).toBe(plain.length);
    for (const pt of pts) {
      const steps = new Set(opRecords(p).filter((r) => r.phase === pt.phase).map((r) => r.step)).size;
      const n = opRecords(p).filter((r) => r.phase === pt.phase && r.op === pt.op).length;
      expect(pt.measuredBytes).toBeCloseTo(1.1 * pt.bytes + (64 * n) / steps, 3);
      expect(pt.measuredIntensity).toBeCloseTo(pt.flops / pt.measuredBytes!, 9);
      expect(pt.l2HitPct).toBeCloseTo(75, 9);
      expect(pt.measuredBytesPerS).toBeGreaterThan(0);
      expect(pt.intensity).toBeCloseTo(plain.find((q) => q.label === pt.label && q.phase === pt.phase)!.intensity, 12); // modelled unchanged
    }
    expect(plain.every((q) => q.measuredBytes === undefined)).toBe(true);
    // one record of an op without counters: that op's point is not "measured" (a partial sum would mislead)
    const c = structuredClone(p.ops!.counters!);
    const firstDown = p.ops!.op.findIndex((o) => opName(o) === "down");
    c.dram_read[firstDown] = null;
    const partial = rooflinePoints({ ...p, ops: { ...p.ops!, counters: c } }, "op");
    const downPhase = p.ops!.phase[firstDown] === 0 ? "prefill" : "decode";
    expect(partial.find((q) => q.op === "down" && q.phase === downPhase)!.measuredBytes).toBeUndefined();
  });

  test("roofline SVG: measured points carry their measured bytes, the modelled ones a hollow dot of their own", () => {
    const svg = rooflineSvg([p], [], "op");
    expect(svg).toMatch(/measured DRAM [0-9.]+ MB, L2 hit 75\.0 %/);
    expect(svg).toContain("(modelled bytes)");
    const plain = rooflineSvg([base], [], "op");
    expect(plain).not.toContain("measured DRAM");
    expect(plain).not.toContain("(modelled bytes)");
  });

  test("latency table: GB/s measured and L2 hit per layer row; absent without counters", () => {
    const m = latencyMatrix(p, "decode");
    expect(m.gbpsMeasured!.length).toBe(m.layers.length);
    const recs = opRecords(p).filter((r) => r.phase === "decode" && r.layer === m.layers[0] && r.ctr);
    const bytes = recs.reduce((a, r) => a + r.ctr!.dramRead + r.ctr!.dramWrite, 0), ns = recs.reduce((a, r) => a + r.ctr!.kernelNs!, 0);
    expect(m.gbpsMeasured![0]).toBeCloseTo(bytes / ns, 9);
    expect(m.l2HitPct![0]).toBeCloseTo(75, 9);
    const plain = latencyMatrix(base, "decode");
    expect(plain.gbpsMeasured).toBeUndefined();
    expect(plain.l2HitPct).toBeUndefined();
  });

  test("repetitions merge with their counters; a pass without them gets nulls", () => {
    const pass = (prof: Profile): RecordResult => ({ profile: prof, cancelled: false, captures: [], tokens: [], passes: [{ tpots: [], others: null }] });
    const m = mergeResults([pass(p), pass(base)], { warmup: 0 });
    const n = p.ops!.step.length;
    expect(m.profile.ops!.counters!.dram_read.length).toBe(2 * n);
    expect(m.profile.ops!.counters!.dram_read.slice(n).every((v) => v === null)).toBe(true);
    expect(m.profile.counters_meta?.unavailable[0]).toMatch(/not available on this GPU/);
    const dst = emptyCounterColumns();
    appendCounters(dst, undefined, 0, 2);
    expect(dst.sm_pct).toEqual([null, null]);
  });
});

function cli(...args: string[]): { code: number; err: string } {
  const r = Bun.spawnSync([process.execPath, join(REPO, "engine/cli/main.ts"), ...args], { cwd: REPO, stdin: "ignore", env: { ...process.env, QW_DEBUG: "" } });
  return { code: r.exitCode ?? -1, err: r.stderr.toString() };
}

describe.skipIf(!cpuLibraryBuilt())("CPU backend", () => {
  test("CLI generate --profiling: counters refused on the CPU with the engine's reason; unknown modes and a missing --profile named", () => {
    const out = join(import.meta.dir, `.counters-cli-${process.pid}.json`);
    const r = cli("generate", "--backend", "cpu", "-n", "2", "--profile", out, "--profiling", "counters", "the cat");
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/--profiling counters: .*needs the CUDA backend and CUPTI/);
    expect(cli("generate", "--backend", "cpu", "-n", "2", "--profile", out, "--profiling", "bogus", "x").err).toMatch(/not one of off, events, kernels, counters/);
    expect(cli("generate", "--backend", "cpu", "-n", "2", "--profiling", "events", "x").err).toMatch(/--profiling needs --profile/);
  });

  test("refuses counters with a clear error naming CUDA and CUPTI; the session keeps its mode and runs", async () => {
    const m = (await openModel("default", { backend: "cpu", threads: 2 })) as Model;
    try {
      expect(m.profilingModes()).toContain("counters");
      const s = m.newSession({ maxContext: 64 });
      s.setProfiling("events");
      let err: unknown;
      try { s.setProfiling("counters"); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(QwenError);
      expect((err as Error).message).toMatch(/counters.*CUDA backend and CUPTI/);
      expect(s.profilingMode).toBe("events");
      s.prefill(0, prompt(6, 1, 0, 200));
      const r = s.takeRecords();
      expect(r.ops.op.length).toBeGreaterThan(10);
      expect(r.ops.counters).toBeUndefined();
      s.close();
    } finally {
      m.close();
    }
  });
});
