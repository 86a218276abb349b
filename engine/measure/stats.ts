// engine/measure/stats.ts — the one statistic every summary uses, and the one rule that says whether a difference is
// real. A summary value is the median over the measured repetitions (never the last one), shown with its spread;
// a difference between A and B is "faster"/"slower" only when each median lies outside the other side's spread,
// else "within noise". Profile summaries, the Profiles list, the Latency cards, Compare (web page and
// notebooks/compare.ts), ablation tables and the exports all call these functions.
import type { Profile } from "./profile.ts";

/** Linear-interpolated quantile of an ascending array (NaN when empty). */
export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos), hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

export interface Spread { median: number; p10: number; p90: number; min: number; max: number; n: number }

export function spreadOf(values: number[]): Spread {
  const s = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  return {
    median: quantile(s, 0.5), p10: quantile(s, 0.1), p90: quantile(s, 0.9),
    min: s.length ? s[0] : NaN, max: s.length ? s[s.length - 1] : NaN, n: s.length,
  };
}

/** The band a spread is read as: min–max for repetitions (3–20 samples: every one counts), p10–p90 for
 *  per-step samples (tens to thousands: single preempted steps should not widen the band). */
export type Band = "min-max" | "p10-p90";
export const bandOf = (s: Spread, band: Band): [number, number] => (band === "min-max" ? [s.min, s.max] : [s.p10, s.p90]);

export type Direction = "lower" | "higher";
export type Verdict = "faster" | "slower" | "within noise" | "too few samples";

/** Fewest samples per side for a verdict: with one sample there is no spread to be outside of. */
export const MIN_SAMPLES = 2;

/**
 * THE significance rule. B differs from A only when B's median lies outside A's band AND A's median lies outside
 * B's band; otherwise the difference is "within noise". `better` says which direction is an improvement: "lower"
 * for times (ms), "higher" for rates (tok/s); the verdict names B relative to A ("faster" = B better).
 */
export function verdict(a: Spread, b: Spread, better: Direction, band: Band): Verdict {
  if (a.n < MIN_SAMPLES || b.n < MIN_SAMPLES) return "too few samples";
  const [alo, ahi] = bandOf(a, band), [blo, bhi] = bandOf(b, band);
  const outside = (b.median < alo || b.median > ahi) && (a.median < blo || a.median > bhi);
  if (!outside || b.median === a.median) return "within noise";
  return (b.median < a.median) === (better === "lower") ? "faster" : "slower";
}

// ------------------------------------------------------------------------------------------------
// Summary metrics of a profile (headline numbers), each as the spread over measured repetitions.
// ------------------------------------------------------------------------------------------------
export const SUMMARY_METRICS = [
  { key: "ttft_ms", name: "TTFT", unit: "ms", better: "lower" },
  { key: "tpot_ms", name: "TPOT median", unit: "ms", better: "lower" },
  { key: "prefill_tok_s", name: "prefill", unit: "tok/s", better: "higher" },
  { key: "decode_tok_s", name: "decode", unit: "tok/s", better: "higher" },
] as const satisfies readonly { key: string; name: string; unit: string; better: Direction }[];
export type SummaryKey = (typeof SUMMARY_METRICS)[number]["key"];

/** What a profile stores per metric (summary.stats): every repetition's value and its spread. */
export interface SummaryStat extends Spread { samples: number[] }
export const summaryStat = (samples: number[]): SummaryStat => ({ ...spreadOf(samples), samples: [...samples] });

/**
 * The spread over repetitions of each headline metric of a profile: summary.stats when the profile has it;
 * for ablation and bench profiles the bench rows and ttft samples (every repetition kept there); otherwise the
 * single summary value (n = 1: no verdict can be drawn from it).
 */
export function summaryStats(p: Profile): Record<SummaryKey, SummaryStat | null> {
  const s = p.summary as Record<string, unknown>;
  const stored = (s.stats ?? {}) as Partial<Record<SummaryKey, SummaryStat>>;
  // An ablation's rows are its arm's (one pp, one tg); a bench profile's summary values are the medians of
  // particular rows (the first prompt length, the first batch): the row whose median is that value.
  const rowOf = (prefix: string, value: number | undefined) => p.bench?.find((b) => b.test.startsWith(prefix)
    && (p.kind === "ablation" || (p.kind === "bench" && b.tokens_per_s.median === value)));
  const bench = (prefix: string, value: number | undefined) => rowOf(prefix, value)?.tokens_per_s.samples;
  const ttftRow = p.kind === "bench" ? p.bench?.map((b) => b.extra?.ttft_ms as { median?: number; samples?: number[] } | undefined)
    .find((t) => t?.median === p.summary.ttft_ms && Array.isArray(t?.samples)) : undefined;
  const legacy: Record<SummaryKey, number[] | undefined> = {
    ttft_ms: Array.isArray(s.ttft_ms_samples) ? (s.ttft_ms_samples as number[]) : ttftRow?.samples,
    tpot_ms: undefined,
    prefill_tok_s: bench("pp", p.summary.prefill_tok_s),
    decode_tok_s: bench("tg", p.summary.decode_tok_s),
  };
  const single: Record<SummaryKey, number | undefined> = {
    ttft_ms: p.summary.ttft_ms, tpot_ms: p.summary.tpot_ms?.median,
    prefill_tok_s: p.summary.prefill_tok_s, decode_tok_s: p.summary.decode_tok_s,
  };
  const out = {} as Record<SummaryKey, SummaryStat | null>;
  for (const { key } of SUMMARY_METRICS) {
    const st = stored[key];
    const samples = st?.samples?.length ? st.samples : legacy[key]?.length ? legacy[key]! : single[key] !== undefined ? [single[key]!] : [];
    out[key] = samples.length ? summaryStat(samples) : null;
  }
  return out;
}

export interface SummaryDelta {
  metric: string; key: SummaryKey; unit: string;
  a: number | null; b: number | null;           // medians
  aSpread: SummaryStat | null; bSpread: SummaryStat | null;
  delta: number | null; pct: number | null;     // median(B) − median(A), and in % of median(A)
  status: Verdict;
}

/** Headline metrics of B against A, medians and spreads over repetitions, judged by the one rule (min–max). */
export function compareSummaries(A: Profile, B: Profile): SummaryDelta[] {
  const sa = summaryStats(A), sb = summaryStats(B);
  return SUMMARY_METRICS.map(({ key, name, unit, better }) => {
    const x = sa[key], y = sb[key];
    const a = x ? x.median : null, b = y ? y.median : null;
    const delta = a !== null && b !== null ? b - a : null;
    return {
      metric: name, key, unit, a, b, aSpread: x, bSpread: y, delta,
      pct: delta !== null && a ? (100 * delta) / a : null,
      status: x && y ? verdict(x, y, better, "min-max") : "too few samples",
    };
  });
}

/** "12.3 (11.9–12.8)": a median with its min–max, or the bare value for a single sample. */
export function fmtSpread(s: Spread | null | undefined, digits = 2): string {
  if (!s || !s.n) return "–";
  const f = (v: number) => v.toFixed(digits);
  return s.n > 1 ? `${f(s.median)} (${f(s.min)}–${f(s.max)})` : f(s.median);
}

/** "+12.3 %" / "−0.8 %" / "–" (no value): how every table prints a Δ %. */
export function fmtPct(pct: number | null): string {
  if (pct === null || !Number.isFinite(pct)) return "–";
  return `${pct > 0 ? "+" : ""}${pct.toFixed(1)} %`;
}
