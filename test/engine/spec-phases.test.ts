// The per-phase breakdown of speculative steps (engine/spec/phases.ts): the clock's bookkeeping on hand-made
// steps (host = the step minus the timed phases, calls counted, levels kept, a throwing call still counted), the
// summary's statistics and its zod schema, and — on the CPU backend — the call structure the EAGLE and draft
// loops record per step (head passes = tree levels, verify passes = chunks of <= CPU_VERIFY_CHUNK rows, one
// compaction), with every step's phases adding up to its draft + verify time. No wall-clock value is asserted.
import { test, expect, describe, beforeAll, afterAll } from "bun:test";
import { openModel, type Model } from "../../engine/index.ts";
import { CPU_VERIFY_CHUNK, specHost, speculativeGenerate } from "../../engine/spec/draft.ts";
import { openEagleHead } from "../../engine/spec/eagle-head.ts";
import { eagleGenerate } from "../../engine/spec/eagle.ts";
import { DRAFT_PHASES, EAGLE_PHASES, mergePhases, PhaseClock, summarizePhases, type PhaseTrace } from "../../engine/spec/phases.ts";
import { SpecSummary, summarizeSpec, type SpecTrace } from "../../engine/spec/stats.ts";
import { REPO_ROOT } from "../../engine/constants.ts";
import { join } from "node:path";
import { cpuLibraryBuilt } from "../reference/fixtures.ts";
import { brownPrompts } from "./spec-helpers.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout();

describe("PhaseClock and the phase summary", () => {
  test("a step: calls counted per phase, host = the step's time minus the timed phases, levels kept", () => {
    const c = new PhaseClock(["a", "b", "host"], true);
    expect(c.time("a", () => 7)).toBe(7);
    c.time("a", () => 0);
    c.level(1.5);
    expect(() => c.time("b", () => { throw new Error("boom"); })).toThrow("boom");
    const timed = c.sofar("a") + c.sofar("b");
    c.endStep(timed + 10);
    c.endStep(0);  // a step without calls
    const t = c.trace;
    expect(t.calls).toEqual({ a: [2, 0], b: [1, 0], host: [0, 0] });
    expect(t.ms.host[0]).toBeCloseTo(10, 9);
    expect(t.ms.a[1] + t.ms.b[1] + t.ms.host[1]).toBe(0);
    expect(t.levelMs).toEqual([[1.5], []]);
  });

  test("merge and summary: per-step statistics, calls per step, shares adding to 1, per-level medians", () => {
    const one: PhaseTrace = { ms: { a: [1, 3], host: [0, 2] }, calls: { a: [1, 3], host: [0, 0] }, levelMs: [[1, 2], [3]] };
    const two: PhaseTrace = { ms: { a: [5], host: [1] }, calls: { a: [2], host: [0] }, levelMs: [[5, 4]] };
    const m = mergePhases([one, two]);
    expect(m.ms.a).toEqual([1, 3, 5]);
    const s = summarizePhases(m);
    expect(s.phases.map((p) => p.phase)).toEqual(["a", "host"]);
    expect(s.phases[0].ms_per_step).toEqual({ median: 3, mean: 3, min: 1, max: 5 });
    expect(s.phases[0].calls_per_step).toBe(2);
    expect(s.phases[0].share).toBeCloseTo(9 / 12, 12);
    expect(s.phases.reduce((a, p) => a + p.share, 0)).toBeCloseTo(1, 12);
    expect(s.levels!.map((l) => l.median)).toEqual([3, 3]);  // level 2: 1, 3, 5; level 3: 2, 4
    expect(s.levels![1].min).toBe(2);
  });

  test("summarizeSpec carries the phases; the schema accepts it and refuses a malformed phase", () => {
    const tr: SpecTrace = {
      k: 2, proposed: [2, 2], accepted: [1, 2], draftMs: [1, 1], verifyMs: [2, 2],
      phases: { ms: { verify: [2, 2], host: [1, 1] }, calls: { verify: [1, 1], host: [0, 0] } },
    };
    const s = summarizeSpec(tr, "d");
    expect(SpecSummary.parse(s).phases!.map((p) => p.phase)).toEqual(["verify", "host"]);
    expect(s.expand_ms_by_level).toBeUndefined();
    expect(SpecSummary.safeParse({ ...s, phases: [{ phase: "verify", ms_per_step: { median: 1 }, calls_per_step: 1, share: 0.5 }] }).success).toBe(false);
    expect(SpecSummary.safeParse({ ...s, phases: [{ ...s.phases![0], share: 2 }] }).success).toBe(false);
    const { phases: _p, ...plain } = tr;
    expect(summarizeSpec(plain, "d").phases).toBeUndefined();
  });
});

describe.skipIf(!cpuLibraryBuilt())("the call structure of a speculative step (CPU)", () => {
  let target: Model, draft: Model, head: Model;
  beforeAll(async () => {
    target = (await openModel("default", { backend: "cpu", threads: 2 })) as Model;
    draft = (await openModel(join(REPO_ROOT, "models/tiny-qwen2-brown-draft"), { backend: "cpu", threads: 2 })) as Model;
    head = await openEagleHead(join(REPO_ROOT, "models/tiny-qwen2-brown-eagle"), target);
  });
  afterAll(() => { head?.close(); draft?.close(); target?.close(); });

  const stepSums = (t: SpecTrace, names: readonly string[]) =>
    t.proposed.map((_, s) => ({ phases: names.reduce((a, n) => a + t.phases!.ms[n][s], 0), step: t.draftMs[s] + t.verifyMs[s] }));

  test("EAGLE: one catch-up pass, one head pass per tree level, verify chunks of <= 7 rows, one compaction", async () => {
    const ts = target.newSession({ maxContext: 256 }), hs = head.newSession({ maxContext: 256 });
    const tree = { depth: 5, topK: 4, budget: 16 };
    for (const prompt of brownPrompts(3)) {
      let done: SpecTrace | undefined;
      for await (const ev of eagleGenerate(ts, hs, specHost(target), { prompt, maxTokens: 24, tree })) if (ev.type === "done") done = ev.speculative;
      const t = done!, p = t.phases!;
      expect(Object.keys(p.ms)).toEqual([...EAGLE_PHASES]);
      for (const n of EAGLE_PHASES) expect(p.ms[n].length).toBe(t.proposed.length);
      t.proposed.forEach((depth, s) => {
        const levels = p.levelMs![s].length;
        // levels 2..D drafted, one head pass each; the budget may keep a shallower tree (proposed = its depth)
        expect(levels).toBeGreaterThanOrEqual(Math.max(0, depth - 1));
        expect(levels).toBeLessThanOrEqual(tree.depth - 1);
        expect(p.calls.head_catchup[s]).toBe(1);
        expect(p.calls.head_expand[s]).toBe(levels);
        expect(p.calls.head_readback[s]).toBe(2 * (1 + levels));          // its capture and its top-k, every head pass
        const chunks = Math.ceil((t.nodes![s] + 1) / CPU_VERIFY_CHUNK);
        expect(p.calls.verify[s]).toBe(chunks);
        expect(p.calls.verify_readback[s]).toBe(2 * chunks);             // argmax and the feature capture
        expect(p.calls.compact[s]).toBe(2);                              // the target's compaction, the head's truncate
      });
      for (const x of stepSums(t, EAGLE_PHASES)) expect(x.phases).toBeCloseTo(x.step, 6);
      const sum = summarizeSpec(t, "head", false, tree);
      expect(SpecSummary.parse(sum).phases!.map((x) => x.phase)).toEqual([...EAGLE_PHASES]);
      expect(sum.expand_ms_by_level!.length).toBe(Math.max(...p.levelMs!.map((l) => l.length)));
    }
    ts.close(); hs.close();
  });

  test("draft model: one catch-up call, k - 1 decodes, verify chunks of <= 7 rows, two truncates", async () => {
    const ts = target.newSession({ maxContext: 256 }), ds = draft.newSession({ maxContext: 256 });
    for (const k of [1, 4, 8]) {
      let done: SpecTrace | undefined;
      for await (const ev of speculativeGenerate(ts, ds, specHost(target), { prompt: brownPrompts(2)[1], maxTokens: 20, k })) if (ev.type === "done") done = ev.speculative;
      const t = done!, p = t.phases!;
      expect(Object.keys(p.ms)).toEqual([...DRAFT_PHASES]);
      t.proposed.forEach((kEff, s) => {
        expect(p.calls.draft_prefill[s]).toBe(kEff > 0 ? 1 : 0);
        expect(p.calls.draft_decode[s]).toBe(Math.max(0, kEff - 1));
        expect(p.calls.draft_readback[s]).toBe(0);                       // greedy: the draft's logits are not read
        expect(p.calls.verify[s]).toBe(Math.ceil((kEff + 1) / CPU_VERIFY_CHUNK));
        expect(p.calls.verify_readback[s]).toBe(p.calls.verify[s]);
        expect(p.calls.rollback[s]).toBe(kEff > 0 ? 2 : 1);
      });
      for (const x of stepSums(t, DRAFT_PHASES)) expect(x.phases).toBeCloseTo(x.step, 6);
    }
    ts.close(); ds.close();
  });

  test("notebooks/topk-readout.ts: one line per readout with its µs per row; bad options exit 2 with the usage", () => {
    const run = (...args: string[]) => Bun.spawnSync([process.execPath, join(REPO_ROOT, "notebooks/topk-readout.ts"), ...args], { cwd: REPO_ROOT });
    const r = run("--backend", "cpu", "--threads", "1", "--rows", "3", "--reps", "3", "--reads", "2");
    expect(r.exitCode).toBe(0);
    const out = r.stdout.toString();
    expect(out).toMatch(/3 rows × 8256 logits, 3 repetitions of 2 reads/);
    expect(out).toMatch(/top-4 with log-probabilities: [\d.]+ µs per row \([\d.]+–[\d.]+\)/);
    expect(out).toMatch(/argmax \(no softmax pass\): [\d.]+ µs per row/);
    const bad = run("--rows", "99");
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr.toString()).toMatch(/--rows must be <= 32[\s\S]*usage: npx bun notebooks\/topk-readout\.ts/);
  });
});
