// The ranks of a tensor-parallel profile side by side (model option parallel = tpN; ops.rank holds each record's
// rank): per phase, every op's time per step on each rank, each rank's step time, and the communication share of
// the step — the time of the collectives (all_reduce, all_gather: engine/catalog.ts collectiveOps) over the rank's
// step time. The Latency page draws this next to rank 0's layer × op matrix (engine/measure/aggregate.ts).
import type { Profile } from "./profile.ts";
import { collectiveOps, opNames } from "../catalog.ts";
import { opRecords, PHASES, ranksOf, type OpRecord, type PhaseName } from "./aggregate.ts";
import { spreadOf } from "./stats.ts";

export interface RankView {
  phase: PhaseName;
  steps: number;
  stat: "mean" | "median";
  ranks: number[];
  ops: string[];             // ops that ran in this phase, in the library's order
  ms: number[][];            // ms[opIdx][rankIdx]: the op's time per step on that rank (mean or median over steps)
  stepMs: number[];          // per rank: every record of the rank in a step (ops, collectives, gaps, copies)
  commMs: number[];          // per rank: the collectives per step
  commPct: number[];         // per rank: 100 × commMs / stepMs (0 where the rank recorded nothing)
  commOps: string[];         // the ops counted as communication (of the ones that ran)
}

export interface RankViews { ranks: number[]; prefill: RankView; decode: RankView }

/** null for a profile of one rank (no rank column, or every record on rank 0). */
export function rankViews(p: Profile, stat: "mean" | "median" = "mean", recs = opRecords(p)): RankViews | null {
  const ranks = ranksOf(recs);
  if (ranks.length < 2) return null;
  const [prefill, decode] = PHASES.map((ph) => rankView(recs.filter((r) => r.phase === ph), ph, ranks, stat));
  return { ranks, prefill, decode };
}

function rankView(rs: OpRecord[], phase: PhaseName, ranks: number[], stat: "mean" | "median"): RankView {
  const stepIds = [...new Set(rs.map((r) => r.step))];
  const ops = opNames().filter((op) => rs.some((r) => r.op === op));
  for (const r of rs) if (!ops.includes(r.op)) ops.push(r.op);
  const comm = collectiveOps();
  // per (row, rank): time per step; rows = the ops, then the step total, then the collectives
  const rows = ops.length + 2;
  const per = Array.from({ length: rows }, () => ranks.map(() => new Map<number, number>()));
  const add = (row: number, k: number, step: number, ms: number) => per[row][k].set(step, (per[row][k].get(step) ?? 0) + ms);
  for (const r of rs) {
    const k = ranks.indexOf(r.rank ?? 0), ms = r.ns / 1e6;
    add(ops.indexOf(r.op), k, r.step, ms);
    add(ops.length, k, r.step, ms);
    if (comm.has(r.op)) add(ops.length + 1, k, r.step, ms);
  }
  const reduce = (m: Map<number, number>) => {
    const v = stepIds.map((s) => m.get(s) ?? 0); // a step where the cell did not run counts 0
    return !v.length ? 0 : stat === "median" ? spreadOf(v).median : v.reduce((a, b) => a + b, 0) / v.length;
  };
  const cells = per.map((row) => row.map(reduce));
  const stepMs = cells[ops.length], commMs = cells[ops.length + 1];
  return {
    phase, steps: stepIds.length, stat, ranks, ops, ms: cells.slice(0, ops.length), stepMs, commMs,
    commPct: stepMs.map((s, k) => (s > 0 ? (100 * commMs[k]) / s : 0)),
    commOps: ops.filter((o) => comm.has(o)),
  };
}
