// engine/measure/fidelity.ts — does a profile describe the execution users get? (README.md, "Profiling modes and what they cost")
//
// The sum check: for every step, the records the engine emitted (model ops + gap rows + copies + the CPU pool
// wake-up) against the wall time of the engine call as the caller timed it. In kernels mode (and on the CPU)
// the backend tiles its step with records, so the difference is only what lies outside the backend's step
// (FFI, argument checks, the front); in events mode nothing records the gaps, and the difference shows it.
import type { EngineSession } from "../api.ts";
import { checkStepsPerSync, decodeCall } from "./bench-core.ts";
import { nonModelOps, opNames } from "../catalog.ts";
import {
  statOf, type Fidelity, type OpColumns, type ProfilingMode, type Stat, type SumCheck,
} from "./profile.ts";

export interface StepTimes {
  step: number;
  call: number;  // the step that opened its engine call: a call of N decode steps is timed once, its wall split N ways
  phase: 0 | 1;
  wall_ms: number;
  ops_ms: number;
  gaps_ms: number;
  other_ms: number;
}

/** Per-step sums of the records; `walls` maps a step (OpColumns.step) to its wall time in ms, `calls` a step to the
 *  step that opened its engine call (absent: a call of its own). Rank 0's records only (tensor parallelism: each
 *  rank's records tile the same step, as the step summaries of record.ts count them). */
export function stepTimes(ops: OpColumns, walls: ReadonlyMap<number, number>, calls?: ReadonlyMap<number, number>): StepTimes[] {
  const by = new Map<number, StepTimes>();
  const names = opNames(), nonModel = nonModelOps();
  for (let i = 0; i < ops.step.length; i++) {
    if ((ops.rank?.[i] ?? 0) !== 0) continue;
    const step = ops.step[i];
    const wall = walls.get(step);
    if (wall === undefined) continue;
    let t = by.get(step);
    if (!t) by.set(step, (t = { step, call: calls?.get(step) ?? step, phase: ops.phase[i] === 0 ? 0 : 1, wall_ms: wall, ops_ms: 0, gaps_ms: 0, other_ms: 0 }));
    const ms = (ops.t_end_ns[i] - ops.t_start_ns[i]) / 1e6;
    const op = names[ops.op[i]] ?? "";
    if (op === "gap") t.gaps_ms += ms;
    else if (nonModel.has(op)) t.other_ms += ms;
    else t.ops_ms += ms;
  }
  return [...by.values()].sort((a, b) => a.step - b.step);
}

const median = (xs: number[]) => statOf(xs, "").median; // the profile's one median (non-empty inputs only)

/** The steps of one engine call, summed: the unit the sum check compares (only the call has a wall time of its own;
 *  a multi-step call's wall is split evenly over its steps, while its records are not, so one step's difference
 *  can be negative when another's is positive). */
function callTimes(steps: StepTimes[]): (StepTimes & { n: number })[] {
  const by = new Map<number, StepTimes & { n: number }>();
  for (const s of steps) {
    const c = by.get(s.call);
    if (!c) by.set(s.call, { ...s, step: s.call, n: 1 });
    else {
      c.wall_ms += s.wall_ms; c.ops_ms += s.ops_ms; c.gaps_ms += s.gaps_ms; c.other_ms += s.other_ms; c.n++;
    }
  }
  return [...by.values()];
}

/** One SumCheck per phase that has steps. Compared per engine call (a step's figures are its call's divided by the
 *  call's steps): medians over calls, and the spread of |wall − records| / wall. */
export function sumCheck(steps: StepTimes[]): SumCheck[] {
  const out: SumCheck[] = [];
  for (const [phase, name] of [[0, "prefill"], [1, "decode"]] as const) {
    const st = callTimes(steps.filter((s) => s.phase === phase && s.wall_ms > 0));
    if (!st.length) continue;
    const per = (f: (s: StepTimes) => number) => median(st.map((s) => f(s) / s.n));
    const recorded = (s: StepTimes) => s.ops_ms + s.gaps_ms + s.other_ms;
    const diff = st.map((s) => (100 * Math.abs(s.wall_ms - recorded(s))) / s.wall_ms);
    out.push({
      phase: name,
      steps: st.reduce((a, s) => a + s.n, 0),
      calls: st.length,
      wall_ms: per((s) => s.wall_ms),
      ops_ms: per((s) => s.ops_ms),
      gaps_ms: per((s) => s.gaps_ms),
      other_ms: per((s) => s.other_ms),
      unrecorded_ms: per((s) => s.wall_ms - recorded(s)),
      diff_pct: { median: median(diff), min: Math.min(...diff), max: Math.max(...diff) },
    });
  }
  return out;
}

export interface FidelityOptions {
  modes: ProfilingMode[];  // the modes to check against "off" (e.g. ["kernels", "events"])
  rounds: number;          // >= 3; arms interleaved and rotated each round, so drift hits every arm alike
  steps: number;           // timed decode steps per arm and round
  warmup?: number;         // untimed steps after switching mode (default 3)
  /** Decode steps per engine call (default 1): > 1 runs them through decodeSteps, every arm alike, and gives each
   *  step the call's wall time / N (on CUDA the queued steps hide the host's launch work behind the GPU's). */
  stepsPerSync?: number;
  /** Resets sequence 0 and prefills it; returns the first token to decode from. */
  prime: () => number;
}

export interface FidelityRun {
  fidelity: Fidelity;
  /** Records of the first mode's last round: the per-op table of a profile. */
  ops: OpColumns;
  kernels: string[];
  /** Per mode (and "off"): the median step time of each round, ms. */
  stepMs: Record<string, number[]>;
}

/**
 * Measures what profiling costs and whether its records add up, on batch-1 decode of `s`: for each round,
 * every arm ("off" and each mode) decodes `steps` tokens from a fresh prime. Overhead per mode = per round,
 * (median step of the mode − median step of off) / median step of off, summarized over rounds.
 */
export function measureFidelity(s: EngineSession, o: FidelityOptions): FidelityRun {
  if (o.rounds < 3) throw new Error("measureFidelity: rounds must be >= 3");
  const sync = checkStepsPerSync(s, o.stepsPerSync, "measureFidelity");
  const arms: ProfilingMode[] = ["off", ...o.modes.filter((m) => m !== "off")];
  const stepMs: Record<string, number[]> = Object.fromEntries(arms.map((a) => [a, []]));
  const timesBy = new Map<ProfilingMode, StepTimes[]>();
  let last: { ops: OpColumns; kernels: string[] } | undefined;
  for (let r = 0; r < o.rounds; r++) {
    const order = arms.map((_, i) => arms[(i + r) % arms.length]);
    for (const arm of order) {
      s.setProfiling(arm);
      let tok = o.prime();
      for (let i = 0; i < (o.warmup ?? 3); i++) tok = s.decode([0], [tok])[0];
      s.takeRecords(); // the prime and warm-up steps
      const walls: number[] = [], callOf: number[] = []; // per timed step: its wall, the index of its call's first step
      for (let i = 0; i < o.steps; ) {
        const k = Math.min(sync, o.steps - i);
        const a = performance.now();
        tok = decodeCall(s, [0], [tok], k)[0];
        const w = (performance.now() - a) / k;
        for (let j = 0; j < k; j++) { walls.push(w); callOf.push(i); }
        i += k;
      }
      stepMs[arm].push(median(walls));
      if (arm === "off") continue;
      const rec = s.takeRecords(); // outside the timed steps: CUPTI's buffers are read here
      const ids = [...new Set(rec.ops.step)].sort((a, b) => a - b);
      const wallOf = new Map(ids.map((id, i) => [id, walls[i]] as const).filter(([, w]) => w !== undefined));
      const callsOf = new Map(ids.flatMap((id, i) => (callOf[i] === undefined ? [] : [[id, ids[callOf[i]]] as const])));
      timesBy.set(arm, [...(timesBy.get(arm) ?? []), ...stepTimes(rec.ops, wallOf, callsOf)]);
      if (arm === arms[1]) last = rec;
    }
  }
  s.setProfiling("off");
  const overhead: Record<string, Stat> = {};
  for (const m of arms.slice(1)) {
    overhead[m] = statOf(stepMs[m].map((v, i) => (100 * (v - stepMs.off[i])) / stepMs.off[i]), "%");
  }
  const sum: SumCheck[] = [];
  for (const m of arms.slice(1)) for (const c of sumCheck(timesBy.get(m) ?? [])) sum.push({ ...c, mode: m });
  return {
    fidelity: { mode: arms[1] ?? "off", sum_check: sum, overhead_pct: overhead, ...(sync > 1 ? { steps_per_sync: sync } : {}) },
    ops: last?.ops ?? { step: [], phase: [], layer: [], op: [], kernel: [], t_start_ns: [], t_end_ns: [], flops: [], bytes: [], n_tokens: [] },
    kernels: last?.kernels ?? [],
    stepMs,
  };
}

/** Markdown: each mode's overhead against off and its sum check (what the README and bench.md show). */
export function fidelityLines(f: Fidelity, stepMs?: Record<string, number[]>): string {
  const f2 = (x: number) => x.toFixed(2), f3 = (x: number) => x.toFixed(3);
  const out = ["| mode | decode step ms (median of rounds) | overhead vs off, % median (min–max) | phase | records / wall per step (ms) | gaps ms | |wall − records| %, median (max) |",
    "|---|---:|---:|---|---:|---:|---:|"];
  if (stepMs?.off) out.push(`| off | ${f3(median(stepMs.off))} | – | | | | |`);
  const modes = Object.keys(f.overhead_pct ?? {});
  for (const c of f.sum_check) if (c.mode && !modes.includes(c.mode)) modes.push(c.mode);
  for (const m of modes) {
    const o = f.overhead_pct?.[m];
    const checks = f.sum_check.filter((c) => (c.mode ?? f.mode) === m);
    const head = `| ${m} | ${stepMs?.[m] ? f3(median(stepMs[m])) : "–"} | ${o ? `${f2(o.median)} (${f2(o.min)}–${f2(o.max)})` : "–"}`;
    if (!checks.length) out.push(`${head} | | | | |`);
    for (const c of checks) {
      const rec = c.ops_ms + c.gaps_ms + c.other_ms;
      out.push(`${head} | ${c.phase} ×${c.steps} | ${f3(rec)} / ${f3(c.wall_ms)} | ${f3(c.gaps_ms)} | ${f2(c.diff_pct.median)} (${f2(c.diff_pct.max)}) |`);
    }
  }
  return out.join("\n");
}
