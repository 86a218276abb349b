// Profiling fidelity (issue 16) on the CPU backend: the mode label, records that tile each step (so op times +
// gaps add up to the step), the pool wake-up as its own row, the sum check and the fidelity benchmark's shape.
// No wall-clock bound is asserted: only that records lie inside the engine call that produced them.
import { test, expect, describe, beforeAll, afterAll } from "bun:test";
import { openSyntheticInMemory, SessionError, type Model } from "../../engine/index.ts";
import type { OpColumns } from "../../engine/measure/profile.ts";
import { opNames } from "../../engine/catalog.ts";

const OP_NAMES = opNames();
import { fidelityLines, measureFidelity, stepTimes, sumCheck } from "../../engine/measure/fidelity.ts";
import { recordRun } from "../../engine/measure/record.ts";
import { chromeTrace } from "../../engine/export/trace.ts";
import { htmlReport } from "../../engine/export/report.ts";
import { latencySvg } from "../../engine/export/svg.ts";
import { cpuLibraryBuilt, prompt, tinyTestSpec } from "../reference/fixtures.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)


function cols(rows: [step: number, phase: number, op: string, t0: number, t1: number][]): OpColumns {
  const c: OpColumns = { step: [], phase: [], layer: [], op: [], kernel: [], t_start_ns: [], t_end_ns: [], flops: [], bytes: [], n_tokens: [] };
  for (const [step, phase, op, t0, t1] of rows) {
    c.step.push(step); c.phase.push(phase); c.layer.push(0); c.op.push(OP_NAMES.indexOf(op)); c.kernel.push(0);
    c.t_start_ns.push(t0); c.t_end_ns.push(t1); c.flops.push(0); c.bytes.push(0); c.n_tokens.push(1);
  }
  return c;
}

describe("sum check (pure)", () => {
  test("splits ops, gaps and other rows; unrecorded = wall − records; medians per phase", () => {
    const ops = cols([
      [0, 0, "qkv", 0, 3e6], [0, 0, "gap", 3e6, 4e6], // prefill: 3 ms op + 1 ms gap
      [1, 1, "pool_wake", 0, 1e5], [1, 1, "attention", 1e5, 9e5], [1, 1, "gap", 9e5, 1e6],
      [2, 1, "memcpy", 0, 2e5], [2, 1, "down", 2e5, 1e6],
      [3, 1, "down", 0, 1e6], // no wall for step 3: ignored
    ]);
    const st = stepTimes(ops, new Map([[0, 5], [1, 1.25], [2, 1]]));
    expect(st.map((s) => s.step)).toEqual([0, 1, 2]);
    expect(st[1]).toEqual({ step: 1, call: 1, phase: 1, wall_ms: 1.25, ops_ms: 0.8, gaps_ms: 0.1, other_ms: 0.1 });
    const [pre, dec] = sumCheck(st);
    expect(pre.phase).toBe("prefill");
    expect(pre.unrecorded_ms).toBeCloseTo(1, 9);
    expect(pre.diff_pct.median).toBeCloseTo(20, 9);
    expect(dec.phase).toBe("decode");
    expect(dec.steps).toBe(2);
    expect(dec.diff_pct.min).toBeCloseTo(0, 9);
    expect(dec.diff_pct.max).toBeCloseTo(20, 9);
    expect(dec.gaps_ms).toBeCloseTo(0.05, 9);
  });

  test("a call of several steps is compared whole: its wall is split evenly, its records are not", () => {
    // one decode call of 3 steps timed at 6 ms (2 ms a step); the records (1, 1, 3.5 ms: the third step was
    // preempted) lie inside the call. Per step, two differences are +1 and the median is +1 but one is −1.5; per call
    // the difference is 0.5 ms (÷ 3 per step), never below zero
    const ops = cols([[4, 1, "down", 0, 1e6], [5, 1, "down", 1e6, 2e6], [6, 1, "down", 2e6, 5.5e6]]);
    const walls = new Map([[4, 2], [5, 2], [6, 2]]);
    const split = sumCheck(stepTimes(ops, walls))[0];
    expect(split.calls).toBe(3);
    expect(split.diff_pct.max).toBeCloseTo(75, 9); // step 6: |2 − 3.5| / 2
    const whole = sumCheck(stepTimes(ops, walls, new Map([[4, 4], [5, 4], [6, 4]])))[0];
    expect(whole.steps).toBe(3);
    expect(whole.calls).toBe(1);
    expect(whole.wall_ms).toBeCloseTo(2, 9);
    expect(whole.unrecorded_ms).toBeCloseTo(0.5 / 3, 9);
    expect(whole.diff_pct.median).toBeCloseTo((100 * 0.5) / 6, 9);
    // two calls: medians over the calls of their per-step figures
    const two = sumCheck(stepTimes(ops, new Map([[4, 1.5], [5, 3], [6, 3]]), new Map([[4, 4], [5, 5], [6, 5]])))[0];
    expect(two.calls).toBe(2);
    expect(two.unrecorded_ms).toBeCloseTo((0.5 + 0.75) / 2, 9); // call 4: 1.5 − 1; call 5: (6 − 4.5) / 2
  });
});

describe.skipIf(!cpuLibraryBuilt())("profiling modes on the CPU backend", () => {
  let syn: Model;
  beforeAll(async () => {
    syn = await openSyntheticInMemory(tinyTestSpec(), "f32", { backend: "cpu", threads: 2 });
  });
  afterAll(() => syn?.close());

  test("mode names come from the library; true = kernels; bad modes are clear errors", () => {
    const s = syn.newSession({ maxContext: 64 });
    expect(s.profilingMode).toBe("off");
    s.setProfiling(true);
    expect(s.profilingMode).toBe("kernels");
    s.setProfiling("events");
    expect(s.profilingMode).toBe("events");
    expect(() => s.setProfiling("nsys" as never)).toThrow(SessionError);
    expect(() => s.setProfiling("nsys" as never)).toThrow(/off, events, kernels/);
    expect(s.profilingMode).toBe("events");
    s.setProfiling(false);
    expect(s.profilingMode).toBe("off");
    s.close();
  });

  test("records tile every step inside the engine call: op times + gaps add up", () => {
    const s = syn.newSession({ maxContext: 64 });
    s.setProfiling("kernels");
    const walls: number[] = [];
    let a = performance.now();
    let t = s.prefill(0, prompt(8, 3));
    walls.push(performance.now() - a);
    for (let i = 0; i < 4; i++) {
      a = performance.now();
      t = s.decode([0], [t])[0];
      walls.push(performance.now() - a);
    }
    const r = s.takeRecords();
    const steps = [...new Set(r.ops.step)].sort((x, y) => x - y);
    expect(steps.length).toBe(5);
    for (const step of steps) {
      const idx = r.ops.step.flatMap((v, i) => (v === step ? [i] : []));
      // contiguous: each record starts where the previous ended
      for (let k = 1; k < idx.length; k++) expect(r.ops.t_start_ns[idx[k]]).toBe(r.ops.t_end_ns[idx[k - 1]]);
      const names = idx.map((i) => OP_NAMES[r.ops.op[i]]);
      expect(names.filter((n) => n === "pool_wake").length).toBe(1);
      expect(names).toContain("sample");
    }
    const st = stepTimes(r.ops, new Map(steps.map((id, i) => [id, walls[i]])));
    for (const x of st) expect(x.ops_ms + x.gaps_ms + x.other_ms).toBeLessThanOrEqual(x.wall_ms + 1e-3);
    const checks = sumCheck(st);
    expect(checks.map((c) => c.phase)).toEqual(["prefill", "decode"]);
    expect(checks[1].steps).toBe(4);
    s.close();
  });

  test("measureFidelity: every mode against off, >= 3 interleaved rounds, a sum check per mode", () => {
    const s = syn.newSession({ maxContext: 64 });
    const pr = prompt(8, 5);
    const fr = measureFidelity(s, { modes: ["kernels"], rounds: 3, steps: 6, prime: () => { s.reset(); return s.prefill(0, pr); } });
    expect(fr.stepMs.off.length).toBe(3);
    expect(fr.stepMs.kernels.length).toBe(3);
    expect(fr.fidelity.mode).toBe("kernels");
    expect(fr.fidelity.overhead_pct?.kernels.samples.length).toBe(3);
    const dec = fr.fidelity.sum_check.find((c) => c.phase === "decode" && c.mode === "kernels");
    expect(dec?.steps).toBe(18);
    expect(fr.ops.step.length).toBeGreaterThan(0);
    expect(s.profilingMode).toBe("off");
    const md = fidelityLines(fr.fidelity, fr.stepMs);
    expect(md).toContain("| kernels |");
    expect(md).toContain("| off |");
    expect(() => measureFidelity(s, { modes: ["kernels"], rounds: 2, steps: 1, prime: () => 0 })).toThrow(/rounds/);
    expect(() => measureFidelity(s, { modes: ["kernels"], rounds: 3, steps: 1, stepsPerSync: 0, prime: () => 0 })).toThrow(/stepsPerSync/);
    // several steps per call: 6 steps as calls of 4 and 2, each step timed at its call's wall / steps; every step recorded
    const f4 = measureFidelity(s, { modes: ["kernels"], rounds: 3, steps: 6, stepsPerSync: 4, prime: () => { s.reset(); return s.prefill(0, pr); } });
    expect(f4.fidelity.steps_per_sync).toBe(4);
    const d4 = f4.fidelity.sum_check.find((c) => c.phase === "decode" && c.mode === "kernels");
    expect(d4?.steps).toBe(18);
    expect(d4?.calls).toBe(6);  // per round a call of 4 steps and one of 2, compared whole
    expect(d4!.unrecorded_ms).toBeGreaterThanOrEqual(0);  // a call's records lie inside it (per step they need not)
    s.close();
  });
});

describe.skipIf(!cpuLibraryBuilt())("a profiled run: mode label, sum check, host spans and the timeline export", () => {
  test("several decode steps per call: a call's span goes to its first step and holds the records of all its steps", async () => {
    const model = await openSyntheticInMemory(tinyTestSpec(), "f32", { backend: "cpu", threads: 2 });
    const s = model.newSession({ maxContext: 64 });
    try {
      const run = (stepsPerSync: number) => recordRun(model, s, {
        id: "steps-run", prompts: [{ tokens: prompt(6, 2) }], maxTokens: 6,
        sampling: { temperature: 0, topK: 0, topP: 1, seed: 1 }, toggles: {}, profiling: true, capture: [], stepsPerSync,
      }, { yieldToLoop: false });
      const one = (await run(1)).profile, four = (await run(4)).profile;
      expect(four.summary.steps_per_sync).toBe(4);
      expect(four.tokens!.map((t) => t.token)).toEqual(one.tokens!.map((t) => t.token));
      const ffi = (four.host_spans ?? []).filter((h) => h.kind === "ffi");
      const steps = [...new Set(four.ops!.step)].sort((a, b) => a - b);
      expect(steps.length).toBe(6);  // the prefill and 5 decode steps: one record set each
      expect(ffi.map((h) => h.step)).toEqual([steps[0], steps[1], steps[5]]);  // prefill, a call of 4, a call of 1
      const dsum = four.fidelity!.sum_check.find((c) => c.phase === "decode")!;
      expect([dsum.steps, dsum.calls]).toEqual([5, 2]);  // the sum check compares the two decode calls whole
      for (let c = 0; c < ffi.length; c++) {
        const mine = steps.slice(c === 0 ? 0 : c === 1 ? 1 : 5, c === 0 ? 1 : c === 1 ? 5 : 6);
        for (let i = 0; i < four.ops!.step.length; i++) {
          if (!mine.includes(four.ops!.step[i])) continue;
          expect(four.ops!.t_start_ns[i]).toBeGreaterThanOrEqual(ffi[c].t_start_ns);
          expect(four.ops!.t_end_ns[i]).toBeLessThanOrEqual(ffi[c].t_end_ns);
        }
      }
    } finally {
      s.close();
      model.close();
    }
  });

  test("recordRun in kernels mode: fidelity per phase, ffi spans correlated to steps, device + host tracks", async () => {
    const model = await openSyntheticInMemory(tinyTestSpec(), "f32", { backend: "cpu", threads: 2 });
    const s = model.newSession({ maxContext: 64 });
    try {
      const { profile } = await recordRun(model, s, {
        id: "fidelity-run", prompts: [{ tokens: prompt(6, 2) }], maxTokens: 5,
        sampling: { temperature: 0, topK: 0, topP: 1, seed: 1 }, toggles: {}, profiling: true, capture: [], stepsPerSync: 1,
      }, { yieldToLoop: false });
      expect(profile.summary.profiling_mode).toBe("kernels");
      expect(profile.summary.steps_per_sync).toBe(1);
      expect(profile.fidelity?.mode).toBe("kernels");
      expect(profile.fidelity?.sum_check.map((c) => c.phase)).toEqual(["prefill", "decode"]);
      const ffi = (profile.host_spans ?? []).filter((h) => h.kind === "ffi");
      const steps = [...new Set(profile.ops!.step)].sort((a, b) => a - b);
      expect(ffi.map((h) => h.step)).toEqual(steps); // one engine call per step, in order
      // every step's records lie inside its engine call (one clock for both)
      for (const h of ffi) {
        const idx = profile.ops!.step.flatMap((v, i) => (v === h.step ? [i] : []));
        for (const i of idx) {
          expect(profile.ops!.t_start_ns[i]).toBeGreaterThanOrEqual(h.t_start_ns);
          expect(profile.ops!.t_end_ns[i]).toBeLessThanOrEqual(h.t_end_ns);
        }
      }
      const tok = profile.host_spans!.find((h) => h.kind === "tokenize")!;
      expect(tok.t_end_ns).toBeLessThanOrEqual(ffi[0].t_start_ns);
      const tr = chromeTrace(profile).traceEvents;
      const procs = tr.filter((e) => e.name === "process_name").map((e) => String(e.args?.name));
      expect(procs.some((n) => n.startsWith("CPU engine thread") && n.endsWith("profiling kernels"))).toBe(true);
      expect(procs).toContain("host · Bun");
      const flowsS = tr.filter((e) => e.ph === "s").map((e) => e.id), flowsF = tr.filter((e) => e.ph === "f").map((e) => e.id);
      expect(flowsS).toEqual(steps);
      expect(flowsF).toEqual(steps);
      expect(tr.some((e) => e.ph === "X" && e.pid === 3 && e.name === "gap")).toBe(true);
      // every export says which mode produced the numbers
      expect(htmlReport(profile)).toContain("profiling mode");
      expect(htmlReport(profile)).toMatch(/sum check · kernels · decode/);
      expect(latencySvg(profile)).toContain("profiling kernels");
    } finally {
      s.close();
      model.close();
    }
  });
});
