// Tensor-parallel scaling (issue 18 item 4): the pure parts (the --tp list, the aggregate-bandwidth roofline and
// scaling arithmetic on constructed inputs, the all-reduce share of constructed per-rank records, the tables), the
// memory estimate, then the runs on the CPU emulation with synthetic:tiny at tp1 / tp2 (tp4 refused by the engine:
// 2 KV heads): runTpLoad, the notebook and `bench --tp`. Nothing here asserts a time: the emulation runs its ranks one
// after another, so its tok/s mean nothing.
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  aggregateRooflineTokS, commShare, decodeBytesPerStep, mergeShares, ncclFloorMd, parseTpList, scalingOf, shareLabel, tpDegreesOf, tpTableMd, withScaling,
  type TpCell,
} from "../../engine/measure/tp-scaling.ts";
import { memoryRefusal, runTplab } from "../../engine/measure/tp-run.ts";
import { benchTableMd } from "../../engine/measure/bench-core.ts";
import { readProfile, type BenchRow, type OpColumns, type Stat } from "../../engine/measure/profile.ts";
import { opIndex } from "../../engine/catalog.ts";
import { cpuLibraryBuilt, ROOT } from "../reference/fixtures.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout();

const stat = (samples: number[]): Stat => {
  const s = [...samples].sort((a, b) => a - b);
  return { samples, median: s[s.length >> 1], min: s[0], max: s[s.length - 1], unit: "tok/s" };
};
const tmp = mkdtempSync(join(tmpdir(), "qwb-tp-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("--tp lists", () => {
  const acc = tpDegreesOf(["tp1", "tp2", "tp4", "tp8"]);
  test("degrees come from the registry's values", () => {
    expect(acc).toEqual([1, 2, 4, 8]);
    expect(tpDegreesOf(["tp1", "other", "tp16"])).toEqual([1, 16]);
  });
  test("single values and lists", () => {
    expect(parseTpList("2", acc)).toEqual([2]);
    expect(parseTpList("1,2,4", acc)).toEqual([1, 2, 4]);
    expect(parseTpList(" 8 , 1", acc)).toEqual([8, 1]);
  });
  test("bad input: the value and the accepted ones named", () => {
    expect(() => parseTpList("3", acc)).toThrow(/--tp 3: tensor parallelism runs over 1, 2, 4, 8 ranks, not 3/);
    expect(() => parseTpList("x", acc)).toThrow(/'x' is not a number of ranks \(accepted: 1, 2, 4, 8/);
    expect(() => parseTpList("2,", acc)).toThrow(/'' is not a number of ranks/);
    expect(() => parseTpList("1.5", acc)).toThrow(/'1.5' is not a number of ranks/);
    expect(() => parseTpList("-2", acc)).toThrow(/'-2' is not a number of ranks/);
    expect(() => parseTpList("2,2", acc)).toThrow(/2 is listed twice/);
    expect(() => parseTpList("1", [])).toThrow(/no tensor parallelism/);
  });
});

describe("roofline and scaling arithmetic", () => {
  test("aggregate-bandwidth roofline: batch x N x bandwidth / bytes per step", () => {
    // 72B bf16 (~145.4 GB) over 4 x 4.8 TB/s: ~132 tok/s at batch 1
    expect(aggregateRooflineTokS({ bytesPerStep: 145.4e9, batch: 1, ranks: 4, bandwidthBytesS: 4.8e12 })).toBeCloseTo(132.05, 1);
    expect(aggregateRooflineTokS({ bytesPerStep: 1e9, batch: 16, ranks: 2, bandwidthBytesS: 1e12 })).toBe(32000);
    expect(() => aggregateRooflineTokS({ bytesPerStep: 0, batch: 1, ranks: 1, bandwidthBytesS: 1 })).toThrow(/must be positive/);
    expect(() => aggregateRooflineTokS({ bytesPerStep: 1, batch: 1, ranks: 0, bandwidthBytesS: 1 })).toThrow(/must be positive/);
  });
  test("bytes per step: weights once + every sequence's KV at the mean context", () => {
    expect(decodeBytesPerStep(1000, 10, 24, 4)).toBe(1000 + 10 * 24 * 4);
  });
  test("speedup, scaling (speedup / N) and efficiency (measured / roofline)", () => {
    expect(scalingOf({ tokS: 180, tp1TokS: 100, ranks: 2, rooflineTokS: 300 })).toEqual({ speedup: 1.8, scaling: 0.9, efficiency: 0.6 });
    expect(scalingOf({ tokS: 50, ranks: 4 })).toEqual({});                  // no tp1 in the run, no ceiling
    expect(scalingOf({ tokS: 50, tp1TokS: 0, ranks: 4, rooflineTokS: 100 })).toEqual({ efficiency: 0.5 });
  });
  test("withScaling pairs each cell with tp1 of the same model, weights and test", () => {
    const c = (ranks: number, label: string, med: number, model = "7b"): TpCell => ({
      model, weights: "bf16", backend: `cuda tp${ranks}`, ranks, test: label.startsWith("pp") ? "prefill" : "decode", label, batch: 1, tokS: stat([med, med, med]),
      ...(label.startsWith("tg") ? { rooflineTokS: 200 * ranks } : {}),
    });
    const out = withScaling([c(1, "tg32 b1", 100), c(2, "tg32 b1", 160), c(1, "pp512", 1000), c(2, "pp512", 1500), c(2, "tg32 b1", 90, "32b")]);
    expect(out[1]).toMatchObject({ speedup: 1.6, scaling: 0.8, efficiency: 0.4 });
    expect(out[3]).toMatchObject({ speedup: 1.5, scaling: 0.75 });
    expect(out[3].efficiency).toBeUndefined();    // prefill: no bandwidth roofline
    expect(out[4].speedup).toBeUndefined();       // no 32b tp1 in this run
    expect(out[4].efficiency).toBeCloseTo(90 / 400, 12);
  });
});

describe.skipIf(!cpuLibraryBuilt())("all-reduce share from per-rank records (op names from the library's catalog)", () => {
  const rec = (rows: [number, number, number, string, number, number][]): OpColumns => ({
    step: rows.map((r) => r[0]), phase: rows.map((r) => r[1]), rank: rows.map((r) => r[2]), op: rows.map((r) => opIndex(r[3])),
    t_start_ns: rows.map((r) => r[4]), t_end_ns: rows.map((r) => r[4] + r[5]),
    layer: rows.map(() => 0), kernel: rows.map(() => 0), flops: rows.map(() => 0), bytes: rows.map(() => 0), n_tokens: rows.map(() => 1),
  });
  test("Σ collectives / Σ the rank's records per decode step (mean over steps); prefill ignored; ranks apart", () => {
    const ops = rec([
      // step, phase, rank, op, start, ns
      [0, 0, 0, "all_reduce", 0, 5_000_000],          // prefill all_reduce: not counted
      [1, 1, 0, "qkv", 0, 3_000_000], [1, 1, 0, "all_reduce", 3_000_000, 1_000_000],
      [1, 1, 1, "qkv", 0, 2_000_000], [1, 1, 1, "all_reduce", 2_000_000, 2_000_000],
      [2, 1, 0, "qkv", 0, 3_000_000], [2, 1, 0, "all_gather", 3_000_000, 500_000], [2, 1, 0, "o_proj", 3_500_000, 500_000],
      [2, 1, 1, "qkv", 0, 2_000_000], [2, 1, 1, "all_gather", 2_000_000, 2_000_000],
    ]);
    const s = commShare(ops, ["k"]);
    expect(s.map((x) => x.rank)).toEqual([0, 1]);
    expect(s[0].steps).toBe(2);
    expect(s[0].share).toBeCloseTo(1.5 / 8, 12);          // (1 + 0.5) / (4 + 4)
    expect(s[0].step_ms).toBeCloseTo(4, 12);
    expect(s[0].comm_ms).toBeCloseTo(0.75, 12);
    expect(s[1].share).toBeCloseTo(4 / 8, 12);
    expect(shareLabel(s)).toBe("18.8 % r0 / 50.0 % r1");
  });
  test("over passes: the median share per rank with min–max, medians of the times", () => {
    const pass = (r0: number, r1: number) => [{ rank: 0, steps: 16, step_ms: 10, comm_ms: 10 * r0, share: r0 }, { rank: 1, steps: 16, step_ms: 12, comm_ms: 12 * r1, share: r1 }];
    const m = mergeShares([pass(0.1, 0.3), pass(0.12, 0.2), pass(0.11, 0.25)]);
    expect(m[0]).toEqual({ rank: 0, steps: 48, step_ms: 10, comm_ms: 1.1, share: 0.11, share_min: 0.1, share_max: 0.12, passes: 3 });
    expect(m[1]).toMatchObject({ share: 0.25, share_min: 0.2, share_max: 0.3, comm_ms: 3 });
    expect(shareLabel(m)).toBe("11.0 % (10.0–12.0) r0 / 25.0 % (20.0–30.0) r1");
  });
  test("records of one rank (tp1) or without decode steps: no shares", () => {
    const ops = rec([[1, 1, 0, "qkv", 0, 1_000_000], [1, 1, 0, "all_reduce", 1_000_000, 1_000_000]]);
    expect(commShare(ops)).toEqual([]);
    delete ops.rank;
    expect(commShare(ops)).toEqual([]);
    expect(commShare(rec([[0, 0, 0, "all_reduce", 0, 10], [0, 0, 1, "all_reduce", 0, 10]]))).toEqual([]);
    expect(shareLabel([])).toBe("");
  });
});

describe("tables", () => {
  const cell: TpCell = { model: "tiny", weights: "bf16", backend: "cpu tp2", ranks: 2, test: "decode", label: "tg8 b1", batch: 1, tokS: stat([10, 12, 11]),
    rooflineTokS: 100, speedup: 1.1, scaling: 0.55, efficiency: 0.11, commNote: "no op records: a long engine refusal message that goes under the table" };
  test("scaling table: README layout, long notes numbered under it, skips with their reason", () => {
    const md = tpTableMd([cell, { ...cell, backend: "cpu tp1", ranks: 1, commNote: "tp1: no collectives", speedup: 1, scaling: 1 }], [{ model: "tiny", ranks: 4, reason: "the model has 2 KV heads" }]);
    const lines = md.split("\n");
    expect(lines[0].split("|").length - 2).toBe(11);
    expect(lines[2]).toBe("| tiny | bf16 | cpu tp2 | tg8 b1 | 11.0 (10.0–12.0) | 3 | 1.10× | 55 % | 100 | 11.0 % | see note 1 |");
    expect(lines[3]).toMatch(/\| tp1: no collectives \|$/);
    expect(md).toContain("1. no op records: a long engine refusal");
    expect(md).toContain("- tiny tp4: skipped — the model has 2 KV heads");
  });
  test("NCCL floor table", () => {
    const md = ncclFloorMd([{ preset: "72b", ranks: 4, hidden: 8192, layer_replay_us: 41.5, all_reduce: [{ type: "bf16", rows: 1, bytes: 16384, us: 12.34, busbw_gb_s: 1.99 }] }]);
    expect(md).toContain("| 72b (hidden 8192) | 4 | bf16 | 1 | 16384 | 12.3 | 2.0 |");
    expect(md).toContain("72b tp4: captured layer");
  });
  test("bench table: the all-reduce share column only when a row has one", () => {
    const row = (extra?: Record<string, unknown>): BenchRow => ({ test: "tg8 b1", model: "m", weights: "bf16", backend: "cuda tp2", batch: 1, n_prompt: 0, n_gen: 8,
      tokens_per_s: stat([1, 2, 3]), system: "qwen-workbench", ...(extra ? { extra } : {}) });
    expect(benchTableMd([row()])).not.toContain("all-reduce");
    const md = benchTableMd([row({ comm_share: [{ rank: 0, steps: 2, step_ms: 4, comm_ms: 1, share: 0.25 }, { rank: 1, steps: 2, step_ms: 4, comm_ms: 2, share: 0.5 }] }), row()]);
    expect(md.split("\n")[0]).toContain("all-reduce share of a decode step");
    expect(md).toContain("| 25.0 % r0 / 50.0 % r1 |");
    expect(md.split("\n")[3]).toMatch(/\| – \|$/);
  });
});

describe("the NCCL floor from tplab --json (a stand-in lab: the real one needs >= 2 GPUs)", () => {
  // args as the notebook passes them: RANKS --preset P --json FILE
  const lab = (name: string, body: string) => { const f = join(tmp, name); writeFileSync(f, `#!/usr/bin/env bash\n${body}\n`); chmodSync(f, 0o755); return f; };
  const good = { preset: "72b", ranks: 4, hidden: 8192, checks_passed: true, layer_replay_us: 40.5,
    all_reduce: [{ type: "bf16", rows: 1, bytes: 16384, us: 11.2, busbw_gb_s: 2.2 }, { type: "bf16", rows: 4096, bytes: 67108864, us: 310.4, busbw_gb_s: 324.3 }] };
  test("its JSON becomes the floor; the temp file is removed", () => {
    const r = runTplab(lab("ok.sh", `echo "tplab: NCCL 2.21 loaded; $1 of 8 devices"; echo '${JSON.stringify(good)}' > "$5"`), "72b", 4);
    expect(r.note).toBeUndefined();
    expect(r.floor).toEqual({ preset: "72b", ranks: 4, hidden: 8192, all_reduce: good.all_reduce, layer_replay_us: 40.5 });
    expect(ncclFloorMd([r.floor!])).toContain("| 72b (hidden 8192) | 4 | bf16 | 4096 | 67108864 | 310.4 | 324.3 |");
  });
  test("too few devices, failed checks, a malformed result: a note saying so, no floor", () => {
    const few = runTplab(lab("few.sh", `echo "tplab: NCCL 2.21 loaded; 0 of 1 devices"; echo "tplab: needs >= 2 CUDA devices (found 1)"; exit 2`), "7b", 2);
    expect(few).toEqual({ note: "not measured — tplab: needs >= 2 CUDA devices (found 1)" });
    const failed = runTplab(lab("fail.sh", `echo '${JSON.stringify({ ...good, checks_passed: false })}' > "$5"`), "72b", 4);
    expect(failed.note).toMatch(/correctness checks failed/);
    const bad = runTplab(lab("bad.sh", `echo '{"preset": "72b", "ranks": 4}' > "$5"`), "72b", 4);
    expect(bad.note).toMatch(/tplab's JSON at hidden: /);
    const junk = runTplab(lab("junk.sh", `echo 'not json' > "$5"`), "72b", 4);
    expect(junk.note).toMatch(/does not parse/);
    expect(runTplab(join(tmp, "missing-lab"), "72b", 4).note).toMatch(/not measured/);
  });
});

describe("memory estimate", () => {
  const GiB = 2 ** 30;
  test("CUDA: a rank's 1/N against one device; CPU: the whole model against the machine; disk for a new checkpoint", () => {
    const w72 = 145.4e9, kv = 1.4e9;
    expect(memoryRefusal({ backend: "cuda", ranks: 1, weightBytes: w72, kvBytes: kv, deviceBytes: 139 * GiB, hostBytes: 1e12 })).toMatch(/does not fit: each of the 1 rank/);
    expect(memoryRefusal({ backend: "cuda", ranks: 2, weightBytes: w72, kvBytes: kv, deviceBytes: 139 * GiB, hostBytes: 1e12 })).toBeNull();
    expect(memoryRefusal({ backend: "cuda", ranks: 2, weightBytes: w72, kvBytes: kv, deviceBytes: 78 * GiB, hostBytes: 1e12 })).toMatch(/does not fit/);
    expect(memoryRefusal({ backend: "cuda", ranks: 4, weightBytes: w72, kvBytes: kv, deviceBytes: 78 * GiB, hostBytes: 1e12 })).toBeNull();
    expect(memoryRefusal({ backend: "cpu", ranks: 2, weightBytes: 15e9, kvBytes: 1e8, hostBytes: 8e9 })).toMatch(/CPU emulation holds all 2 rank/);
    expect(memoryRefusal({ backend: "cpu", ranks: 2, weightBytes: 1e9, kvBytes: 1e8, hostBytes: 8e9, file: { path: "/x.gguf", exists: false, freeBytes: 5e8 } })).toMatch(/no room for the synthetic checkpoint/);
    expect(memoryRefusal({ backend: "cpu", ranks: 2, weightBytes: 1e9, kvBytes: 1e8, hostBytes: 8e9, file: { path: "/x.gguf", exists: true, freeBytes: 5e8 } })).toBeNull();
  });
});

describe.skipIf(!cpuLibraryBuilt())("on the CPU emulation (synthetic:tiny, tp1 / tp2)", () => {
  test("the engine's refusal names the reason before anything loads", async () => {
    const { tpSkipReason } = await import("../../engine/measure/tp-run.ts");
    expect(tpSkipReason("synthetic:tiny:bf16", 2, { backend: "cpu", contextTokens: 32 })).toBeNull();
    expect(tpSkipReason("synthetic:tiny:bf16", 4, { backend: "cpu", contextTokens: 32 })).toMatch(/2 KV heads, which 4 ranks cannot split.*splits as tp1, tp2/);
    // a 72B split is asked without a byte of weights: nothing is written (here it does not fit; a big host may take it)
    const { syntheticGgufPath, parseSyntheticSource } = await import("../../engine/index.ts");
    const f72 = syntheticGgufPath(parseSyntheticSource("synthetic:72b:bf16")!), had = existsSync(f72);
    const r72 = tpSkipReason("synthetic:72b:bf16", 2, { backend: "cpu", contextTokens: 32 });
    if (r72 !== null) expect(r72).toMatch(/does not fit|no room/);
    expect(existsSync(f72)).toBe(had);
  });

  test("runTpLoad: prefill and decode cells per load, the share pass at tp2 (records or the engine's reason)", async () => {
    const { runTpLoad } = await import("../../engine/measure/tp-run.ts");
    const o = { backend: "cpu" as const, pps: [16], tg: 4, batches: [1, 2], reps: 3, warmup: 0 };
    const r1 = await runTpLoad("synthetic:tiny:bf16", 1, o);
    const r2 = await runTpLoad("synthetic:tiny:bf16", 2, o);
    expect(r1.cells.map((c) => `${c.backend} ${c.label}`)).toEqual(["cpu tp1 pp16", "cpu tp1 tg4 b1", "cpu tp1 tg4 b2"]);
    expect(r2.cells.map((c) => `${c.backend} ${c.label}`)).toEqual(["cpu tp2 pp16", "cpu tp2 tg4 b1", "cpu tp2 tg4 b2"]);
    for (const c of [...r1.cells, ...r2.cells]) expect(c.tokS.samples.length).toBe(3);
    expect(r1.cells[1].commNote).toBe("tp1: no collectives");
    for (const c of r2.cells.filter((x) => x.test === "decode")) {
      if (c.commShare) {  // the emulation keeps per-rank records: both ranks, collectives a part of the step
        expect(c.commShare.map((x) => x.rank)).toEqual([0, 1]);
        for (const x of c.commShare) {
          expect(x.passes).toBe(3);  // a warm-up pass, then 3 measured, apart from the timed ones
          expect(x.share).toBeGreaterThan(0);
          expect(x.share).toBeLessThan(1);
          expect(x.share_min!).toBeLessThanOrEqual(x.share);
          expect(x.share_max!).toBeGreaterThanOrEqual(x.share);
        }
      } else expect(c.commNote).toMatch(/no op records: .*parallel = tp2/);
    }
    if (r1.bandwidth) {  // a measured ceiling for this CPU: the roofline doubles with the ranks (same bytes per step)
      expect(r1.cells[1].rooflineTokS).toBeGreaterThan(0);
      expect(r2.cells[1].rooflineTokS! / r1.cells[1].rooflineTokS!).toBeCloseTo(2, 6);
    }
    const t = withScaling([...r1.cells, ...r2.cells]);
    expect(t[4].speedup).toBeCloseTo(t[4].tokS.median / t[1].tokS.median, 12);
  });

  test("the notebook: table, refusal, emulation and NCCL notes, JSON", () => {
    const out = join(tmp, "nb");
    const p = Bun.spawnSync([process.execPath, join(ROOT, "notebooks/tp-scaling.ts"), "--backend", "cpu", "--models", "tiny", "--tp", "1,2,4",
      "--pp", "16", "--tg", "4", "--batches", "1", "--reps", "3", "--warmup", "0", "--out", out], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    expect(p.stderr.toString()).not.toMatch(/\n\s+at /);
    expect(p.exitCode).toBe(0);
    const j = JSON.parse(readFileSync(join(out, "tp-scaling.json"), "utf8"));
    expect(j.emulation).toBe(true);
    expect(j.cells.map((c: TpCell) => `${c.ranks} ${c.label}`)).toEqual(["1 pp16", "1 tg4 b1", "2 pp16", "2 tg4 b1"]);
    expect(j.skips).toEqual([expect.objectContaining({ model: "tiny", ranks: 4, reason: expect.stringMatching(/2 KV heads/) })]);
    expect(j.nccl.notes[0]).toMatch(/not measured: the CPU emulation has no NCCL/);
    const md = readFileSync(join(out, "tp-scaling.md"), "utf8");
    expect(md).toContain("CPU emulation: the ranks run one after another");
    expect(md).toContain("- tiny tp4: skipped — parallel = tp4");
    expect(md).toMatch(/\| cpu tp2 \| tg4 b1 \| [\d.]+ \([\d.]+–[\d.]+\) \| 3 \| [\d.]+× \|/);
    const prof = readProfile(join(out, "tp-tiny-bf16.json"));  // the model's rows over both loads as one bench profile
    expect(prof.kind).toBe("bench");
    expect(prof.bench!.map((r) => `${r.backend} ${r.test}`)).toEqual(["cpu tp1 pp16", "cpu tp1 tg4 b1", "cpu tp2 pp16", "cpu tp2 tg4 b1"]);
  });

  test("the notebook refuses bad input with the usage", () => {
    for (const [args, re] of [[["--tp", "3"], /--tp 3: tensor parallelism runs over/], [["--tp", "x"], /'x' is not a number of ranks/],
      [["--models", "13b"], /unknown synthetic preset '13b'/], [["--reps", "2"], /--reps expects an integer >= 3/], [["--nope"], /Unknown option '--nope'/]] as [string[], RegExp][]) {
      const p = Bun.spawnSync([process.execPath, join(ROOT, "notebooks/tp-scaling.ts"), "--backend", "cpu", ...args], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
      expect(p.exitCode).toBe(2);
      expect(p.stderr.toString()).toMatch(re);
      expect(p.stderr.toString()).toContain("usage: npx bun notebooks/tp-scaling.ts");
    }
  });

  test("bench --tp 1,2: every row labelled; --tp 3 / x / 4,8 (all refused): one clear line, exit 1", () => {
    const cli = (...a: string[]) => {
      const r = Bun.spawnSync([process.execPath, join(ROOT, "engine/cli/main.ts"), ...a], { cwd: ROOT, stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, QW_DEBUG: "" } });
      return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
    };
    const prof = join(tmp, "bench-tp.json");
    const ok = cli("bench", "synthetic:tiny", "--backend", "cpu", "--tp", "1,2,4", "--pp", "16", "--tg", "4", "--format", "json", "--out", prof);
    expect(ok.code).toBe(0);
    const rows = JSON.parse(ok.out) as BenchRow[];
    expect(rows.map((r) => `${r.backend} ${r.test}`)).toEqual(["cpu tp1 pp16", "cpu tp1 tg4 b1", "cpu tp2 pp16", "cpu tp2 tg4 b1"]);
    expect(ok.err).toMatch(/tp4 skipped: .*2 KV heads/);
    const [d1, d2] = [rows[1], rows[3]];
    if (d1.roofline_pct !== undefined) {  // a ceiling for this CPU: tp2's roof is 2 x the bandwidth (same bytes per step)
      expect(d2.roofline_pct! / d2.tokens_per_s.median).toBeCloseTo(d1.roofline_pct / d1.tokens_per_s.median / 2, 9);
    }
    const p = JSON.parse(readFileSync(prof, "utf8"));
    expect(Object.keys(p.summary.by_tp)).toEqual(["tp1", "tp2"]);
    expect(p.notes.join("\n")).toMatch(/one load per --tp value \(tp1, tp2, tp4\)/);
    // a single value as before (with --out: the fidelity pass no longer stops a tp2 bench whose engine refuses profiling)
    const prof2 = join(tmp, "bench-tp2.json");
    const single = cli("bench", "synthetic:tiny", "--backend", "cpu", "--tp", "2", "--pp", "16", "--tg", "4", "--format", "json", "--out", prof2);
    expect(single.code).toBe(0);
    expect((JSON.parse(single.out) as BenchRow[]).map((r) => r.backend)).toEqual(["cpu tp2", "cpu tp2"]);
    expect(readProfile(prof2).bench!.length).toBe(2);
    for (const [v, re] of [["3", /--tp 3: tensor parallelism runs over 1, 2, 4, 8 ranks, not 3/], ["x", /--tp "x": 'x' is not a number of ranks/],
      ["4,8", /the engine refused every --tp value: tp4 skipped: .*2 KV heads/]] as [string, RegExp][]) {
      const r = cli("bench", "synthetic:tiny", "--backend", "cpu", "--tp", v, "--pp", "16", "--tg", "4");
      expect(r.code).toBe(1);
      expect(r.err).toMatch(re);
      expect(r.err).not.toMatch(/\n\s+at /);
    }
    expect(existsSync(prof)).toBe(true);
  });
});
