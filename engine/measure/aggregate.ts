// Derived views of a profile's op records: per layer × op latency, per-step timeline and A/B comparison (the
// roofline points are in engine/measure/roofline.ts). Pure functions over the Profile document, shared by the web server,
// the exporters and the notebooks, so every plot in the workbench is computed one way.
import type { Profile } from "./profile.ts";
import { opIndex, opName, opNames } from "../catalog.ts";
import { l2HitPct, recordCounters, type RecordCounters } from "./counters.ts";
import { compareSummaries, spreadOf, verdict, type Spread, type SummaryDelta, type Verdict } from "./stats.ts";

export type PhaseName = "prefill" | "decode";
export const PHASES: PhaseName[] = ["prefill", "decode"];

export interface OpRecord {
  step: number;
  phase: PhaseName;
  layer: number;
  op: string;
  kernel: string;
  ns: number;
  flops: number;
  bytes: number;
  nTokens: number;
  tStartNs: number;
  rank?: number;             // tensor parallelism: the rank that ran it (only in profiles with a rank column)
  ctr?: RecordCounters;      // profiling mode counters: what the GPU measured for this op
}

/** The profile's columnar op records as objects (cheap enough for the sizes profiles hold). */
export function opRecords(p: Profile): OpRecord[] {
  const o = p.ops;
  if (!o) return [];
  const out: OpRecord[] = [];
  for (let i = 0; i < o.step.length; i++) {
    out.push({
      step: o.step[i],
      phase: o.phase[i] === 0 ? "prefill" : "decode",
      layer: o.layer[i],
      op: opName(o.op[i]),
      kernel: p.kernels[o.kernel[i]] ?? `kernel${o.kernel[i]}`,
      ns: Math.max(0, o.t_end_ns[i] - o.t_start_ns[i]),
      flops: o.flops[i],
      bytes: o.bytes[i],
      nTokens: o.n_tokens[i],
      tStartNs: o.t_start_ns[i],
      ...(o.rank ? { rank: o.rank[i] } : {}),
      ...withCtr(recordCounters(o.counters, i)),
    });
  }
  return out;
}

const withCtr = (c: RecordCounters | undefined) => (c ? { ctr: c } : {});

/** The ranks of a profile's records, ascending ([0] for a profile without a rank column). */
export function ranksOf(recs: OpRecord[]): number[] {
  const s = new Set(recs.map((r) => r.rank ?? 0));
  return s.size ? [...s].sort((a, b) => a - b) : [0];
}

/** The records of one rank. The step views (latency matrix, step timeline, comparison) read rank 0's, as the step
 *  summaries do (engine/measure/record.ts): the ranks run the same ops in step, and summing them would count a
 *  step N times. engine/measure/ranks.ts puts the ranks side by side. */
export function rankRecords(recs: OpRecord[], rank = 0): OpRecord[] {
  return recs.some((r) => (r.rank ?? 0) !== 0) ? recs.filter((r) => (r.rank ?? 0) === rank) : recs;
}

/** Which profiling mode produced a profile's op times (older profiles: events, the only mode there was). */
export function profilingModeOf(p: Profile): string {
  const s = p.summary as { profiling_mode?: string };
  return p.fidelity?.mode ?? s.profiling_mode ?? (p.ops ? "events" : "off");
}

export function layerLabel(layer: number, nLayers?: number): string {
  if (layer >= 0) return `L${layer}`;
  return "head/tail";
}

export { spreadOf, type Spread } from "./stats.ts";

/** Per phase: layers (rows) × ops (columns), milliseconds per step (mean over the steps of that phase). */
export interface LatencyMatrix {
  phase: PhaseName;
  steps: number;
  layers: number[];          // layer indices, -1 (embedding, final norm, lm_head, sampling) last
  layerLabels: string[];
  ops: string[];
  ms: number[][];            // ms[layerIdx][opIdx], per step (mean, or median over steps)
  totalMs: number;           // sum of the cells
  stat: "mean" | "median";
  // profiling mode counters, per layer row (null where none of its ops was measured): measured DRAM bytes (read +
  // write) over the measured kernel time, and the L2 hit rate from the row's summed sector lookups
  gbpsMeasured?: (number | null)[];
  l2HitPct?: (number | null)[];
  // tensor parallelism (profiles with more than one rank): the rank shown and how many there are
  rank?: number;
  ranks?: number;
}

/** Per layer row: measured GB/s and L2 hit % (latency table columns); undefined when no record has counters. */
function measuredColumns(rs: OpRecord[], layers: number[]): Pick<LatencyMatrix, "gbpsMeasured" | "l2HitPct"> {
  if (!rs.some((r) => r.ctr)) return {};
  const acc = layers.map(() => ({ bytes: 0, ns: 0, hits: 0, lookups: 0 }));
  for (const r of rs) {
    if (!r.ctr) continue;
    const a = acc[layers.indexOf(r.layer)];
    if (r.ctr.kernelNs !== null) { a.bytes += r.ctr.dramRead + r.ctr.dramWrite; a.ns += r.ctr.kernelNs; }
    if (r.ctr.l2Hits !== null && r.ctr.l2Misses !== null) { a.hits += r.ctr.l2Hits; a.lookups += r.ctr.l2Hits + r.ctr.l2Misses; }
  }
  return {
    gbpsMeasured: acc.map((a) => (a.ns > 0 ? a.bytes / a.ns : null)), // bytes per ns = GB/s
    l2HitPct: acc.map((a) => l2HitPct(a.hits, a.lookups - a.hits)),
  };
}

export function latencyMatrix(p: Profile, phase: PhaseName, recs = opRecords(p), stat: "mean" | "median" = "mean", rank = 0): LatencyMatrix {
  const nRanks = ranksOf(recs).length;
  const rs = rankRecords(recs, rank).filter((r) => r.phase === phase);
  const stepIds = [...new Set(rs.map((r) => r.step))];
  const steps = stepIds.length;
  const layers = [...new Set(rs.map((r) => r.layer))].sort((a, b) => (a < 0 ? 1e9 : a) - (b < 0 ? 1e9 : b));
  const ops = opNames().filter((op) => rs.some((r) => r.op === op));
  for (const r of rs) if (!ops.includes(r.op)) ops.push(r.op);
  let ms: number[][];
  if (stat === "median") {
    // per (layer, op): the median over steps of that cell's time per step (steps where it did not run count 0)
    const per = layers.map(() => ops.map(() => new Map<number, number>()));
    for (const r of rs) {
      const m = per[layers.indexOf(r.layer)][ops.indexOf(r.op)];
      m.set(r.step, (m.get(r.step) ?? 0) + r.ns / 1e6);
    }
    ms = per.map((row) => row.map((m) => spreadOf(stepIds.map((s) => m.get(s) ?? 0)).median));
  } else {
    ms = layers.map(() => ops.map(() => 0));
    for (const r of rs) ms[layers.indexOf(r.layer)][ops.indexOf(r.op)] += r.ns / 1e6;
    const div = Math.max(1, steps);
    for (const row of ms) for (let j = 0; j < row.length; j++) row[j] /= div;
  }
  const totalMs = ms.reduce((a, row) => a + row.reduce((x, y) => x + y, 0), 0);
  return {
    phase, steps, layers, layerLabels: layers.map((l) => layerLabel(l)), ops, ms, totalMs, stat, ...measuredColumns(rs, layers),
    ...(nRanks > 1 ? { rank, ranks: nRanks } : {}),
  };
}

export interface StepPoint { step: number; phase: PhaseName; ms: number; tokens: number }

/** Engine time per step (sum of its op records; rank 0's with tensor parallelism). */
export function stepTimeline(p: Profile, recs = opRecords(p)): StepPoint[] {
  const m = new Map<number, StepPoint>();
  for (const r of rankRecords(recs)) {
    let s = m.get(r.step);
    if (!s) m.set(r.step, (s = { step: r.step, phase: r.phase, ms: 0, tokens: 0 }));
    s.ms += r.ns / 1e6;
    if (r.op === "embed") s.tokens += r.nTokens;
  }
  return [...m.values()].sort((a, b) => a.step - b.step);
}

/** Wall-clock per token from the token events (ms between consecutive tokens; the first is the TTFT). */
export function tokenTimeline(p: Profile): { index: number; t_ms: number; dt_ms: number; phase: string; text: string }[] {
  const toks = p.tokens ?? [];
  const out = [];
  for (let i = 0; i < toks.length; i++) {
    const prev = i > 0 && toks[i].index > 0 ? toks[i - 1].t_ms : 0;
    out.push({ index: i, t_ms: toks[i].t_ms, dt_ms: toks[i].t_ms - prev, phase: toks[i].phase, text: toks[i].text });
  }
  return out;
}

export interface CompareRow {
  phase: PhaseName;
  layer: number;
  op: string;
  a: Spread;                 // ms per step in A
  b: Spread;                 // ms per step in B
  deltaMs: number;           // median(B) - median(A)
  ratio: number;             // median(B) / median(A)
  status: RowStatus;
}

/** A row's status: the one significance rule of engine/measure/stats.ts on the per-step p10–p90 bands, or added/removed. */
export type RowStatus = "added" | "removed" | Verdict;
function rowStatus(a: Spread, b: Spread): RowStatus {
  return !a.n ? "added" : !b.n ? "removed" : verdict(a, b, "lower", "p10-p90");
}

function perStepGroups(recs: OpRecord[]): Map<string, Map<number, number>> {
  const m = new Map<string, Map<number, number>>();
  for (const r of recs) {
    const key = `${r.phase}|${r.layer}|${r.op}`;
    let s = m.get(key);
    if (!s) m.set(key, (s = new Map()));
    s.set(r.step, (s.get(r.step) ?? 0) + r.ns / 1e6);
  }
  return m;
}

export interface Comparison {
  a: { id: string; label: string; toggles: Record<string, unknown> };
  b: { id: string; label: string; toggles: Record<string, unknown> };
  toggleDiff: { id: string; a: unknown; b: unknown }[];
  summary: SummaryDelta[];   // headline metrics: medians over repetitions, min–max spreads, verdict
  rows: CompareRow[];
  byLayer: { phase: PhaseName; layer: number; a: Spread; b: Spread; deltaMs: number; status: RowStatus }[];   // per-step layer totals (ms)
  byOp: { phase: PhaseName; op: string; a: Spread; b: Spread; deltaMs: number; status: RowStatus }[];         // per-step op totals (ms)
  sameTokens: boolean | null;
}

/** A/B comparison (HTA TraceDiff style): per phase, layer and op, the per-step spread in each run and the delta;
 *  every status, colour and summary verdict comes from the one rule in engine/measure/stats.ts. */
export function compareProfiles(A: Profile, B: Profile): Comparison {
  const ra = rankRecords(opRecords(A)), rb = rankRecords(opRecords(B)); // a step's time: rank 0's (rankRecords)
  const ga = perStepGroups(ra), gb = perStepGroups(rb);
  const keys = [...new Set([...ga.keys(), ...gb.keys()])];
  const rows: CompareRow[] = [];
  for (const key of keys) {
    const [phase, layer, op] = key.split("|");
    const a = spreadOf([...(ga.get(key)?.values() ?? [])]);
    const b = spreadOf([...(gb.get(key)?.values() ?? [])]);
    const am = a.n ? a.median : 0, bm = b.n ? b.median : 0;
    const ratio = am > 0 ? bm / am : NaN;
    rows.push({ phase: phase as PhaseName, layer: Number(layer), op, a, b, deltaMs: bm - am, ratio, status: rowStatus(a, b) });
  }
  rows.sort((x, y) => x.phase.localeCompare(y.phase) || (x.layer < 0 ? 1e9 : x.layer) - (y.layer < 0 ? 1e9 : y.layer)
    || opIndex(x.op) - opIndex(y.op));
  // Per layer and per op: the spread of the per-step totals (median and p10–p90 over the steps of a phase).
  const totals = (recs: OpRecord[], key: (r: OpRecord) => string) => {
    const m = new Map<string, Map<number, number>>();
    for (const r of recs) {
      const k = `${r.phase}|${key(r)}`;
      let s = m.get(k);
      if (!s) m.set(k, (s = new Map()));
      s.set(r.step, (s.get(r.step) ?? 0) + r.ns / 1e6);
    }
    return m;
  };
  const side = (m: Map<string, Map<number, number>>, k: string) => spreadOf([...(m.get(k)?.values() ?? [])]);
  const la = totals(ra, (r) => String(r.layer)), lb = totals(rb, (r) => String(r.layer));
  const byLayer: Comparison["byLayer"] = [...new Set([...la.keys(), ...lb.keys()])].map((k) => {
    const [phase, layer] = k.split("|");
    const a = side(la, k), b = side(lb, k);
    return { phase: phase as PhaseName, layer: Number(layer), a, b, deltaMs: (b.n ? b.median : 0) - (a.n ? a.median : 0), status: rowStatus(a, b) };
  }).sort((x, y) => x.phase.localeCompare(y.phase) || (x.layer < 0 ? 1e9 : x.layer) - (y.layer < 0 ? 1e9 : y.layer));
  const oa = totals(ra, (r) => r.op), ob = totals(rb, (r) => r.op);
  const byOp: Comparison["byOp"] = [...new Set([...oa.keys(), ...ob.keys()])].map((k) => {
    const [phase, op] = k.split("|");
    const a = side(oa, k), b = side(ob, k);
    return { phase: phase as PhaseName, op, a, b, deltaMs: (b.n ? b.median : 0) - (a.n ? a.median : 0), status: rowStatus(a, b) };
  }).sort((x, y) => x.phase.localeCompare(y.phase) || opIndex(x.op) - opIndex(y.op));
  const summary = compareSummaries(A, B);
  const ta = A.manifest.toggles, tb = B.manifest.toggles;
  const toggleDiff = [...new Set([...Object.keys(ta), ...Object.keys(tb)])]
    .filter((k) => JSON.stringify(ta[k]) !== JSON.stringify(tb[k]))
    .map((id) => ({ id, a: ta[id], b: tb[id] }));
  const tokA = A.tokens?.map((t) => t.token), tokB = B.tokens?.map((t) => t.token);
  return {
    a: { id: A.id, label: A.manifest.label ?? A.id, toggles: ta },
    b: { id: B.id, label: B.manifest.label ?? B.id, toggles: tb },
    toggleDiff, summary, rows, byLayer, byOp,
    sameTokens: tokA && tokB ? JSON.stringify(tokA) === JSON.stringify(tokB) : null,
  };
}

export function fmtBytes(n: number): string {
  const u = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (Math.abs(n) >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(n < 10 && i > 0 ? 2 : 1)} ${u[i]}`;
}
