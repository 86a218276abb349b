// engine/measure/counters.ts — profiling mode "counters" on the TypeScript side: the native readout
// (qwen.h qw_session_read_counters, one entry per op of every counters-mode step) validated with zod, and joined
// to the op records of the same steps, so that a profile carries measured DRAM bytes, L2 hit rate and SM / tensor
// throughput as columns beside the modelled bytes (profile.ts CounterColumns). The roofline (roofline.ts) and the
// latency table (aggregate.ts) read them from there.
import { z } from "zod";
import type { CounterColumns, CountersMeta, OpColumns } from "./profile.ts";

const Num = z.number().finite().nullable();
const ReadoutOp = z.object({
  step: z.number().int(), phase: z.number().int(), layer: z.number().int(), op: z.number().int(), nth: z.number().int().nonnegative(),
  kernel: z.string(), kernels: z.number().int().nonnegative(),
  dramRead: Num, dramWrite: Num, l2Hits: Num, l2Misses: Num, l2HitPct: Num, durationNs: Num, smPct: Num, tensorPct: Num,
});
export const CountersReadout = z.object({
  collected: z.array(z.string()),
  unavailable: z.array(z.string()),
  ops: z.array(ReadoutOp),
});
export type CountersReadout = z.infer<typeof CountersReadout>;

/** Parses the engine's JSON; a malformed document is an error naming what was wrong. */
export function parseCountersReadout(json: string): CountersReadout {
  let raw: unknown;
  try { raw = JSON.parse(json); } catch (e) { throw new Error(`counters readout: not JSON (${(e as Error).message})`); }
  const r = CountersReadout.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new Error(`counters readout: invalid at ${i.path.join(".") || "<root>"}: ${i.message}`);
  }
  return r.data;
}

// One op occurrence of a step: phase, step, layer, op, then nth (the occurrence of (layer, op) within the step).
const opKey = (phase: number, step: number, layer: number, op: number) => `${phase}:${step}:${layer}:${op}`;
const nonNeg = (v: number | null) => (v === null || v < 0 ? null : v);

/**
 * The counter columns for `ops` (records as the engine numbered their steps): record i gets the readout entry of
 * the same step, phase, layer, op and occurrence of (layer, op) within its step, or nulls (an op the profiler
 * did not measure: gaps, copies, another mode's steps). Returns the columns and how many readout entries found no
 * record (0 when every measured op has its record).
 */
export function joinCounters(ops: Pick<OpColumns, "step" | "phase" | "layer" | "op">, r: CountersReadout): { columns: CounterColumns; unmatched: number } {
  const byKey = new Map(r.ops.map((e) => [`${opKey(e.phase, e.step, e.layer, e.op)}:${e.nth}`, e]));
  const seen = new Map<string, number>();
  const c = emptyCounterColumns();
  let matched = 0;
  for (let i = 0; i < ops.step.length; i++) {
    const base = opKey(ops.phase[i], ops.step[i], ops.layer[i], ops.op[i]);
    const nth = seen.get(base) ?? 0;
    seen.set(base, nth + 1);
    const e = byKey.get(`${base}:${nth}`);
    if (e) matched++;
    c.dram_read.push(nonNeg(e?.dramRead ?? null));
    c.dram_write.push(nonNeg(e?.dramWrite ?? null));
    c.l2_hits.push(nonNeg(e?.l2Hits ?? null));
    c.l2_misses.push(nonNeg(e?.l2Misses ?? null));
    c.sm_pct.push(nonNeg(e?.smPct ?? null));
    c.tensor_pct.push(nonNeg(e?.tensorPct ?? null));
    c.kernel_ns.push(nonNeg(e?.durationNs ?? null));
    c.kernels.push(e ? e.kernels : null);
  }
  return { columns: c, unmatched: r.ops.length - matched };
}

/** Appends record range [from, to) of `src` columns to `dst` (null-filled when src has none). */
export function appendCounters(dst: CounterColumns, src: CounterColumns | undefined, from: number, to: number): void {
  for (const k of Object.keys(dst) as (keyof CounterColumns)[])
    for (let i = from; i < to; i++) dst[k].push(src ? src[k][i] : null);
}

/** Counter columns of n records, none measured. */
export function emptyCounterColumns(n = 0): CounterColumns {
  const none = () => new Array<number | null>(n).fill(null);
  return { dram_read: none(), dram_write: none(), l2_hits: none(), l2_misses: none(), sm_pct: none(), tensor_pct: none(), kernel_ns: none(), kernels: none() };
}

/** Measured counters of one record, or undefined when it has none (no DRAM bytes measured). */
export interface RecordCounters { dramRead: number; dramWrite: number; l2Hits: number | null; l2Misses: number | null; smPct: number | null; tensorPct: number | null; kernelNs: number | null }
export function recordCounters(c: CounterColumns | undefined, i: number): RecordCounters | undefined {
  if (!c || c.dram_read[i] === null || c.dram_write[i] === null) return undefined;
  return { dramRead: c.dram_read[i]!, dramWrite: c.dram_write[i]!, l2Hits: c.l2_hits[i], l2Misses: c.l2_misses[i], smPct: c.sm_pct[i], tensorPct: c.tensor_pct[i], kernelNs: c.kernel_ns[i] };
}

/** L2 hit rate (%) from summed sector lookups; null without lookups. */
export function l2HitPct(hits: number, misses: number): number | null {
  return hits + misses > 0 ? (100 * hits) / (hits + misses) : null;
}

export function countersMetaOf(r: CountersReadout): CountersMeta {
  return { collected: r.collected, unavailable: r.unavailable };
}
