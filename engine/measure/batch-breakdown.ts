// engine/measure/batch-breakdown.ts — where a batched decode step's time goes, per batch size: the step's wall time
// (unprofiled, median and min–max over repetitions) and, from one profiled run of a few steps (profiling =
// kernels), the kernel time per op per step and what is left between the kernels (launch gaps, host work:
// sampling, the token read back). Written for issue 10's "batch 16 never slower than batch 8": bench gives the
// totals, this says which op grows with the batch. Shared by notebooks/batch-breakdown.ts.
import type { EngineSession } from "../api.ts";
import { benchPrompt } from "./bench-core.ts";
import { statOf, type Stat } from "./profile.ts";
import { profilePass } from "../spec/verify-cost.ts";

export interface BatchOp { op: string; us: number; kernels: number; names: string[] }  // us and kernels: per step
export interface BatchBreakdown {
  batch: number;
  stepMs: Stat;          // wall ms of one decode step of the whole batch, profiling off
  profiledStepMs: number; // wall ms per step of the profiled run
  kernelUs: number;      // kernel µs per step (sum over ops, the engine's "gap" records excluded)
  ops: BatchOp[];
}

export interface BatchBreakdownOptions {
  batches: readonly number[];
  context: number;       // prompt tokens per sequence before the measured steps (untimed)
  steps: number;         // decode steps per repetition and in the profiled run
  reps: number;          // measured repetitions (after one warm-up)
  onProgress?: (m: string) => void;
}

/** Tokens per sequence the measurement needs: the prompt, then `steps` decode steps for the warm-up, each repetition
 *  and the profiled run, and the last sampled token. */
export function batchBreakdownContext(o: Pick<BatchBreakdownOptions, "context" | "steps" | "reps">): number {
  return o.context + (o.reps + 2) * o.steps + 1;
}

/** Checks the options against the session; a message saying what is wrong, or null. */
export function batchBreakdownProblem(s: Pick<EngineSession, "maxBatch" | "maxContext">, o: BatchBreakdownOptions): string | null {
  if (!o.batches.length) return "no batch sizes";
  for (const b of o.batches) if (!Number.isInteger(b) || b < 1) return `batch ${b} must be an integer >= 1`;
  const maxB = Math.max(...o.batches);
  if (maxB > s.maxBatch) return `batch ${maxB} exceeds the session's max batch ${s.maxBatch}`;
  const need = batchBreakdownContext(o);
  if (need > s.maxContext) return `context ${o.context} + ${o.reps + 2} runs x ${o.steps} steps needs ${need} tokens per sequence, the session holds ${s.maxContext}`;
  if (o.reps < 3) return `reps ${o.reps}: at least 3 measured repetitions`;
  return null;
}

/** Measures every batch size on `s` (greedy sampling; every sequence reset first). */
export function measureBatchBreakdown(s: EngineSession, vocab: number, o: BatchBreakdownOptions): BatchBreakdown[] {
  const why = batchBreakdownProblem(s, o);
  if (why) throw new Error(`batch breakdown: ${why}`);
  const out: BatchBreakdown[] = [];
  for (const b of o.batches) {
    s.reset();
    const seqs = Array.from({ length: b }, (_, i) => i);
    for (const q of seqs) s.setSampling(q, { temperature: 0 });
    let tok = seqs.map((q) => s.prefill(q, benchPrompt(o.context, vocab, 100 + q)));
    const run = (): number => {
      const t0 = performance.now();
      for (let i = 0; i < o.steps; i++) tok = s.decode(seqs, tok);
      return (performance.now() - t0) / o.steps;
    };
    run();  // warm-up: first-use allocations, graph capture
    const ms: number[] = [];
    for (let r = 0; r < o.reps; r++) ms.push(run());
    let profiledStepMs = 0;
    const pass = profilePass(s, `b${b}`, () => { profiledStepMs = run(); });
    const ops = pass.ops.map((x) => ({ op: x.op, us: x.us / o.steps, kernels: x.kernels / o.steps, names: x.names }));
    const row: BatchBreakdown = { batch: b, stepMs: statOf(ms, "ms"), profiledStepMs, kernelUs: ops.reduce((a, x) => a + (x.op === "gap" ? 0 : x.us), 0), ops };
    o.onProgress?.(`b${b}: ${row.stepMs.median.toFixed(3)} ms a step (${row.stepMs.min.toFixed(3)}–${row.stepMs.max.toFixed(3)}), kernels ${(row.kernelUs / 1e3).toFixed(3)} ms`);
    out.push(row);
  }
  return out;
}

/** Markdown: per op (rows, by time at the largest batch) the kernel µs per step at each batch size (columns). */
export function batchBreakdownTable(rows: BatchBreakdown[]): string[] {
  if (!rows.length) return [];
  const last = rows[rows.length - 1];
  const ops = [...new Set(rows.flatMap((r) => r.ops.map((x) => x.op)))]
    .sort((a, b) => (last.ops.find((x) => x.op === b)?.us ?? 0) - (last.ops.find((x) => x.op === a)?.us ?? 0));
  const f = (x: number, d = 1) => x.toFixed(d);
  const us = (r: BatchBreakdown, op: string) => r.ops.find((x) => x.op === op)?.us;
  const names = (op: string) => [...new Set(rows.flatMap((r) => r.ops.find((x) => x.op === op)?.names ?? []))].join(", ");
  return [
    `| op (µs per step) | ${rows.map((r) => `b${r.batch}`).join(" | ")} | kernels |`,
    `|---|${rows.map(() => "---:").join("|")}|---|`,
    ...ops.map((op) => `| ${op} | ${rows.map((r) => { const v = us(r, op); return v === undefined ? "–" : f(v); }).join(" | ")} | ${names(op)} |`),
    `| **kernels** (ops without gap) | ${rows.map((r) => f(r.kernelUs)).join(" | ")} | |`,
    `| **step, profiled** | ${rows.map((r) => f(r.profiledStepMs * 1e3)).join(" | ")} | |`,
    `| **between kernels** | ${rows.map((r) => f(r.profiledStepMs * 1e3 - r.kernelUs)).join(" | ")} | launch gaps, host work (the gap op's share of it where the backend records one) |`,
    `| **step, profiling off** (median, min–max) | ${rows.map((r) => `${f(r.stepMs.median * 1e3)} (${f(r.stepMs.min * 1e3)}–${f(r.stepMs.max * 1e3)})`).join(" | ")} | |`,
    `| **tok/s** (all sequences) | ${rows.map((r) => f((r.batch / r.stepMs.median) * 1e3, 0)).join(" | ")} | |`,
  ];
}
