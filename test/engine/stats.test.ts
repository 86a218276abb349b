// One statistic everywhere (engine/measure/stats.ts): summaries are the median over measured repetitions (not the last
// one), with their spread; one significance rule drives ablate, compare.ts and the web Compare page.
import { describe, expect, test, afterAll } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compareSummaries, spreadOf, summaryStats, verdict, type Spread } from "../../engine/measure/stats.ts";
import { recordRun, type RecordResult } from "../../engine/measure/record.ts";
import { mergeResults } from "../../engine/measure/passes.ts";
import { compareProfiles } from "../../engine/measure/aggregate.ts";
import { tableRows } from "../../engine/export/table.ts";
import { htmlReport } from "../../engine/export/report.ts";
import { readProfile, statOf, type Profile } from "../../engine/measure/profile.ts";
import { ProfileStore } from "../../web/store.ts";
import { makeFakeOpenModel } from "../web/fake-engine.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const tmp = mkdtempSync(join(tmpdir(), "qwb-stats-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const sp = (...v: number[]): Spread => spreadOf(v);

describe("the significance rule", () => {
  test("overlapping spreads are within noise, whatever the medians", () => {
    expect(verdict(sp(10, 11, 14), sp(12, 13, 15), "lower", "min-max")).toBe("within noise");
  });
  test("separated spreads: the direction that counts as better decides faster / slower", () => {
    expect(verdict(sp(10, 11, 12), sp(20, 21, 22), "lower", "min-max")).toBe("slower");   // times: B took longer
    expect(verdict(sp(10, 11, 12), sp(20, 21, 22), "higher", "min-max")).toBe("faster");  // rates: B is higher
    expect(verdict(sp(20, 21, 22), sp(10, 11, 12), "lower", "min-max")).toBe("faster");
  });
  test("outside ONE spread is not enough: each median must lie outside the other side's spread", () => {
    // B's median (30) is outside A's [10, 12], but A's median (11) is inside B's [5, 40]
    expect(verdict(sp(10, 11, 12), sp(5, 30, 40), "lower", "min-max")).toBe("within noise");
  });
  test("one sample has no spread: no verdict", () => {
    expect(verdict(sp(10), sp(20, 21, 22), "lower", "min-max")).toBe("too few samples");
  });
  test("the p10–p90 band ignores a single outlier step, min–max does not", () => {
    const a = sp(...Array.from({ length: 50 }, (_, i) => 10 + (i % 5) * 0.01), 25);
    const b = sp(...Array.from({ length: 50 }, (_, i) => 12 + (i % 5) * 0.01));
    expect(verdict(a, b, "lower", "p10-p90")).toBe("slower");
    expect(verdict(a, b, "lower", "min-max")).toBe("within noise");
  });
});

async function onePass(): Promise<RecordResult> {
  const m = await makeFakeOpenModel()("default");
  return recordRun(m, m.newSession(), {
    id: "stats", prompts: [{ prompt: "abc" }], maxTokens: 5, sampling: { temperature: 0, topK: 0, topP: 1, seed: 0 },
    toggles: {}, profiling: true, capture: [],
  });
}

/** n passes whose headline values are given (the op records are the fake engine's). */
async function passesWith(values: { ttft: number; tpot: number; pp: number; tg: number }[]): Promise<RecordResult[]> {
  const base = await onePass();
  return values.map((v) => ({
    ...base,
    passes: [{ ttft_ms: v.ttft, tpot_ms: v.tpot, prefill_tok_s: v.pp, decode_tok_s: v.tg, tpots: [v.tpot, v.tpot], others: null }],
  }));
}

describe("a profile of several repetitions", () => {
  test("its summary is the median, not the last repetition, and every view shows that median with its spread", async () => {
    // the last repetition differs wildly from the other two
    const passes = await passesWith([
      { ttft: 2.0, tpot: 1.0, pp: 1000, tg: 500 },
      { ttft: 2.2, tpot: 1.1, pp: 1100, tg: 520 },
      { ttft: 9.0, tpot: 4.0, pp: 300, tg: 150 },
    ]);
    const p = mergeResults(passes, { warmup: 1 }).profile;
    expect(p.summary.repeats).toBe(3);
    expect(p.summary.warmup).toBe(1);
    expect(p.summary.ttft_ms).toBe(2.2);
    expect(p.summary.tpot_ms!.median).toBe(1.1);
    expect(p.summary.prefill_tok_s).toBe(1000);
    expect(p.summary.decode_tok_s).toBe(500);
    expect(p.summary.tpot_ms!.max).toBe(4.0); // p90 / min / max pool every step of every repetition
    const st = summaryStats(p);
    expect(st.decode_tok_s).toMatchObject({ median: 500, min: 150, max: 520, n: 3 });
    // the op records of all three repetitions, steps renumbered so none collide
    const steps = new Set(p.ops!.step);
    expect(steps.size).toBe(3 * new Set(passes[0].profile.ops!.step).size);
    // the Profiles list (/api/profiles)
    const store = new ProfileStore(join(tmp, "profiles"));
    const key = store.save({ ...p, id: "three-reps" });
    const e = store.list().find((x) => x.key === key)!;
    expect(e.decode_tok_s).toBe(500);
    expect(e.spread.decode_tok_s).toEqual([150, 520]);
    expect(e.repeats).toBe(3);
    // tables and exports
    const tg = tableRows([p]).find((r) => r.test.startsWith("tg"))!;
    expect([tg.tokens_per_s, tg.tokens_per_s_min, tg.tokens_per_s_max, tg.samples]).toEqual([500, 150, 520, 3]);
    expect(htmlReport(p)).toContain("500.0 (150.0–520.0)");
  });

  test("old ablation profiles (summary = last repetition) are read through their per-repetition bench rows", async () => {
    // The reported bug: compare.ts read the last repetition and showed the opposite sign to comparison.md.
    const { stats: _s, repeats: _r, warmup: _w, ...oldSummary } = (await onePass()).profile.summary; // written before stats existed
    const base = { ...(await onePass()).profile, summary: oldSummary };
    const ablation = (label: string, tg: number[], ttft: number[]): Profile => ({
      ...base, id: label, kind: "ablation", manifest: { ...base.manifest, label },
      summary: { ...base.summary, decode_tok_s: tg[tg.length - 1], ttft_ms: ttft[ttft.length - 1], ttft_ms_samples: ttft },
      bench: [{ test: "tg4", model: "m", weights: "bf16", backend: "cpu", batch: 1, n_prompt: 0, n_gen: 4, tokens_per_s: statOf(tg, "tok/s"), system: "qwen-workbench" }],
    });
    const A = ablation("A", [100, 101, 150], [1, 1, 1]);
    const B = ablation("B", [120, 121, 122], [1, 1, 1]);
    const d = compareProfiles(A, B).summary.find((x) => x.key === "decode_tok_s")!;
    expect(d.a).toBe(101);
    expect(d.b).toBe(121);
    expect(d.pct!).toBeCloseTo((100 * 20) / 101, 9); // + (B faster by the medians); the last repetitions say −18.7 %
    expect(d.status).toBe("within noise");            // 121 lies inside A's 100–150
  });

  test("bench profiles (CLI / notebooks/bench.ts) are read through the bench rows behind their summary medians", () => {
    const p = readProfile(join(import.meta.dir, "../../profiles/cpu-bench-0.5b-f16.json"));
    const st = summaryStats(p);
    const tg = p.bench!.find((b) => b.test.startsWith("tg") && b.tokens_per_s.median === p.summary.decode_tok_s)!;
    expect(st.decode_tok_s).toMatchObject({ median: p.summary.decode_tok_s, min: tg.tokens_per_s.min, max: tg.tokens_per_s.max, n: tg.tokens_per_s.samples.length });
    expect(st.ttft_ms!.median).toBe(p.summary.ttft_ms!);
    expect(st.ttft_ms!.n).toBeGreaterThanOrEqual(3);
  });

  test("compareSummaries and compareProfiles give the same numbers (one function behind both)", async () => {
    const a = mergeResults(await passesWith([{ ttft: 2, tpot: 1, pp: 1000, tg: 500 }, { ttft: 2.1, tpot: 1.05, pp: 1010, tg: 505 }, { ttft: 2.2, tpot: 1.1, pp: 1020, tg: 510 }]), { warmup: 1 }).profile;
    const b = mergeResults(await passesWith([{ ttft: 1, tpot: 0.5, pp: 2000, tg: 900 }, { ttft: 1.1, tpot: 0.55, pp: 2010, tg: 905 }, { ttft: 1.2, tpot: 0.6, pp: 2020, tg: 910 }]), { warmup: 1 }).profile;
    const s = compareSummaries(a, b);
    expect(compareProfiles(a, b).summary).toEqual(s);
    expect(s.map((x) => x.status)).toEqual(["faster", "faster", "faster", "faster"]);
    expect(compareSummaries(b, a).map((x) => x.status)).toEqual(["slower", "slower", "slower", "slower"]);
  });
});
