// engine/measure/tp-scaling.ts — the arithmetic and tables of tensor-parallel scaling (issue 18 item 4), shared by
// `bench --tp 1,2,4` (engine/cli/main.ts) and notebooks/tp-scaling.ts. No engine calls here (the runs are in
// tp-run.ts), so the efficiency arithmetic, the all-reduce share and the --tp list are unit-tested on their own (the
// share reads op names from the library's catalog).
//
// Scaling efficiency against the aggregate-bandwidth roofline: decode is bandwidth-bound, a step reads every weight
// once (+ the KV cache), and N ranks read their 1/N shards at the same time, so the least step time at tp N is
// bytes per step / (N × one device's bandwidth). Efficiency = measured tok/s / that roofline's tok/s. The same
// measured tok/s against tp1's own roofline fraction (speedup / N) says how much of the N-fold bandwidth the split
// turned into speed.
import { statOf, type OpColumns, type Profile, type Stat } from "./profile.ts";
import { rankViews } from "./ranks.ts";

/** The degrees `--tp` accepts, from the library's registry values ("tp1", "tp2", … → 1, 2, …). */
export function tpDegreesOf(parallelValues: string[]): number[] {
  return parallelValues.map((v) => /^tp(\d+)$/.exec(v)).filter((m): m is RegExpExecArray => !!m).map((m) => Number(m[1]));
}

/**
 * Parses "1", "2,4" … into rank counts, each one of `accepted` (the registry's degrees), no repeats. Throws an Error
 * whose message names the bad value and the accepted ones (the CLI prints it as one line).
 */
export function parseTpList(v: string, accepted: number[], flag = "--tp"): number[] {
  const ok = `accepted: ${accepted.join(", ")}, or a list such as ${accepted.slice(0, 3).join(",")}`;
  if (!accepted.length) throw new Error(`${flag}: this library has no tensor parallelism (its registry lists no parallel values)`);
  const parts = v.split(",").map((s) => s.trim());
  const out: number[] = [];
  for (const p of parts) {
    if (!/^\d+$/.test(p)) throw new Error(`${flag} ${JSON.stringify(v)}: '${p}' is not a number of ranks (${ok})`);
    const n = Number(p);
    if (!accepted.includes(n)) throw new Error(`${flag} ${v}: tensor parallelism runs over ${accepted.join(", ")} ranks, not ${n} (${ok})`);
    if (out.includes(n)) throw new Error(`${flag} ${v}: ${n} is listed twice`);
    out.push(n);
  }
  return out;
}

/** Bytes a decode step reads: every weight once, plus each sequence's KV cache at the mean context of the test. */
export function decodeBytesPerStep(weightBytes: number, kvBytesPerToken: number, meanContext: number, batch: number): number {
  return weightBytes + kvBytesPerToken * meanContext * batch;
}

/** tok/s of the aggregate-bandwidth roofline: batch tokens per step, a step no faster than bytes / (N × bandwidth). */
export function aggregateRooflineTokS(o: { bytesPerStep: number; batch: number; ranks: number; bandwidthBytesS: number }): number {
  if (!(o.bytesPerStep > 0) || !(o.bandwidthBytesS > 0) || !(o.ranks >= 1) || !(o.batch >= 1)) {
    throw new Error(`roofline: bytes per step, bandwidth, ranks and batch must be positive (got ${o.bytesPerStep}, ${o.bandwidthBytesS}, ${o.ranks}, ${o.batch})`);
  }
  return (o.batch * o.ranks * o.bandwidthBytesS) / o.bytesPerStep;
}

/**
 * One row's scaling numbers. efficiency = measured / aggregate roofline (0..1 on a real device); speedup = measured /
 * tp1 measured in the same run; scaling = speedup / N (1 = all of the N-fold bandwidth turned into speed).
 */
export function scalingOf(o: { tokS: number; tp1TokS?: number; ranks: number; rooflineTokS?: number }): { speedup?: number; scaling?: number; efficiency?: number } {
  const speedup = o.tp1TokS && o.tp1TokS > 0 ? o.tokS / o.tp1TokS : undefined;
  return {
    ...(speedup !== undefined ? { speedup, scaling: speedup / o.ranks } : {}),
    ...(o.rooflineTokS && o.rooflineTokS > 0 ? { efficiency: o.tokS / o.rooflineTokS } : {}),
  };
}

export interface RankShare {
  rank: number;
  steps: number;       // decode steps of the records
  step_ms: number;     // mean per step: every record of the rank (ops, collectives, gaps, copies)
  comm_ms: number;     // mean per step: the rank's collectives (all_reduce, all_gather: engine/catalog.ts collectiveOps)
  share: number;       // comm_ms / step_ms (over several passes: the median pass's, with share_min / share_max)
  share_min?: number;
  share_max?: number;
  passes?: number;
}

/**
 * The all-reduce share of a decode step per rank, from a session's op records: the Latency page's per-rank numbers
 * (engine/measure/ranks.ts rankViews, mean over steps), so `bench --tp`, the notebook and the page agree. Empty for
 * records of one rank (tp1, or a backend that records rank 0 only) or without decode steps.
 */
export function commShare(ops: OpColumns, kernels: string[] = []): RankShare[] {
  const v = rankViews({ ops, kernels } as Pick<Profile, "ops" | "kernels"> as Profile, "mean")?.decode;  // reads only ops and kernels
  if (!v || !v.steps) return [];
  return v.ranks.map((rank, k) => ({ rank, steps: v.steps, step_ms: v.stepMs[k], comm_ms: v.commMs[k], share: v.commPct[k] / 100 }));
}

/**
 * Per rank over several profiled passes (each commShare of one pass): the median share with min–max, and the
 * medians of step and collective time; steps summed.
 */
export function mergeShares(passes: RankShare[][]): RankShare[] {
  const ranks = [...new Set(passes.flat().map((r) => r.rank))].sort((a, b) => a - b);
  return ranks.map((rank) => {
    const rs = passes.map((p) => p.find((r) => r.rank === rank)).filter((r): r is RankShare => !!r);
    const med = (f: (r: RankShare) => number) => statOf(rs.map(f), "").median;
    const sh = statOf(rs.map((r) => r.share), "");
    return { rank, steps: rs.reduce((a, r) => a + r.steps, 0), step_ms: med((r) => r.step_ms), comm_ms: med((r) => r.comm_ms),
      share: sh.median, share_min: sh.min, share_max: sh.max, passes: rs.length };
  });
}

/** "12.3 % (12.1–12.6) r0 / 12.9 % (…) r1" — the per-rank shares in one cell, min–max when over passes; "" when none. */
export function shareLabel(ranks: RankShare[] | undefined): string {
  if (!ranks?.length) return "";
  const pct = (x: number) => (100 * x).toFixed(1);
  return ranks.map((r) => `${pct(r.share)} %${r.share_min !== undefined && r.share_max !== undefined ? ` (${pct(r.share_min)}–${pct(r.share_max)})` : ""}` +
    `${ranks.length > 1 ? ` r${r.rank}` : ""}`).join(" / ");
}

// ------------------------------------------------------------------------------------------------ the table
export type TpTest = "decode" | "prefill";
export interface TpCell {
  model: string;            // preset or label
  weights: string;
  backend: string;          // "cuda tp2", "cpu tp2" (emulation) …
  ranks: number;
  test: TpTest;
  label: string;            // "tg32 b1", "pp512"
  batch: number;
  tokS: Stat;
  rooflineTokS?: number;    // decode only, when the device has a bandwidth ceiling
  speedup?: number;
  scaling?: number;
  efficiency?: number;
  commShare?: RankShare[];  // decode only, from profiled passes apart from the timed ones
  commMode?: string;        // the profiling mode of those passes
  commNote?: string;        // why there is no share (tp1, records refused …)
}
export interface TpSkip { model: string; ranks: number; reason: string }

/** Fills speedup / scaling / efficiency of each cell from the tp1 cell of the same model and test in `cells`. */
export function withScaling(cells: TpCell[]): TpCell[] {
  return cells.map((c) => {
    const base = cells.find((b) => b.model === c.model && b.weights === c.weights && b.label === c.label && b.ranks === 1);
    return { ...c, ...scalingOf({ tokS: c.tokS.median, tp1TokS: base?.tokS.median, ranks: c.ranks, rooflineTokS: c.rooflineTokS }) };
  });
}

const f2 = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));

/** The scaling table (README layout: median (min–max) of the reps; "–" where a number does not apply). */
export function tpTableMd(cells: TpCell[], skips: TpSkip[] = []): string {
  const head = "| model | weights | backend | test | tok/s median (min–max) | reps | × tp1 | ÷ N | roofline tok/s (N × bw) | % of roofline | all-reduce share of a step |\n" +
    "|---|---|---|---|---:|---:|---:|---:|---:|---:|---|";
  const dash = "–";
  // long notes (an engine refusal) go under the table, numbered, so the cells stay short
  const notes: string[] = [];
  const note = (n: string | undefined) => {
    if (!n) return dash;
    if (n.length <= 40) return n;
    const i = notes.indexOf(n) < 0 ? notes.push(n) - 1 : notes.indexOf(n);
    return `see note ${i + 1}`;
  };
  const lines = cells.map((c) => `| ${c.model} | ${c.weights} | ${c.backend} | ${c.label} | ${f2(c.tokS.median)} (${f2(c.tokS.min)}–${f2(c.tokS.max)}) | ` +
    `${c.tokS.samples.length} | ${c.speedup !== undefined ? `${c.speedup.toFixed(2)}×` : dash} | ${c.scaling !== undefined ? `${(100 * c.scaling).toFixed(0)} %` : dash} | ` +
    `${c.rooflineTokS !== undefined ? f2(c.rooflineTokS) : dash} | ${c.efficiency !== undefined ? `${(100 * c.efficiency).toFixed(1)} %` : dash} | ` +
    `${shareLabel(c.commShare) || note(c.commNote)} |`);
  const skipped = skips.map((s) => `- ${s.model} tp${s.ranks}: skipped — ${s.reason}`);
  const numbered = notes.map((n, i) => `${i + 1}. ${n}`);
  return [head, ...lines, ...(numbered.length ? ["", ...numbered] : []), ...(skipped.length ? ["", ...skipped] : [])].join("\n");
}

// ------------------------------------------------------------------------------------------------ NCCL floor
/** One all-reduce measurement of cuda/dev/tplab (its --json output). */
export interface AllReduceRow { type: string; rows: number; bytes: number; us: number; busbw_gb_s: number }
export interface NcclFloor { preset: string; ranks: number; hidden: number; all_reduce: AllReduceRow[]; layer_replay_us?: number }

/** The floor as a table: what one all-reduce of a layer costs at each message size (a layer pays two). */
export function ncclFloorMd(floors: NcclFloor[]): string {
  const head = "| model shape | ranks | type | rows (tokens) | bytes | latency µs | bus bandwidth GB/s |\n|---|---:|---|---:|---:|---:|---:|";
  const lines = floors.flatMap((f) => f.all_reduce.map((r) => `| ${f.preset} (hidden ${f.hidden}) | ${f.ranks} | ${r.type} | ${r.rows} | ${r.bytes} | ${r.us.toFixed(1)} | ${r.busbw_gb_s.toFixed(1)} |`));
  const layer = floors.filter((f) => f.layer_replay_us !== undefined).map((f) => `- ${f.preset} tp${f.ranks}: captured layer (o matvec + all-reduce + down matvec + all-reduce, 1 row) ${f.layer_replay_us!.toFixed(1)} µs per replay`);
  return [head, ...lines, ...(layer.length ? ["", ...layer] : [])].join("\n");
}
