// engine/measure/metrics.ts — quantization-error metrics (docs/ARCHITECTURE.md §Measurement) between a reference and a candidate tensor,
// and logits-level metrics (KL divergence, top-1 agreement, perplexity). All sums run in float64.
// Definitions follow the SageAttention precision_metric (kernel-brief §3.3) for cosine / RelL1 / RMSE.
// The single implementation: engine/measure/quant-error.ts (quant-error profiles) calls it with { jsonSafe: true }.

export interface TensorError {
  cosine: number;   // cos(flatten(c), flatten(r)); 1 when both are all zeros
  rel_l1: number;   // Σ|c − r| / Σ|r|
  rmse: number;     // sqrt(mean((c − r)²))
  sqnr_db: number;  // 10·log10(Σr² / Σ(c − r)²); +Infinity when identical
  max_abs: number;  // max |c − r|
}

/** SQNR reported for identical tensors (and the upper cap) when `jsonSafe` is set: JSON has no Infinity. */
export const SQNR_CAP_DB = 300;

export interface MetricOptions {
  /**
   * Output meant for JSON profiles: SQNR capped at SQNR_CAP_DB (identical tensors give 300 dB, not +Infinity),
   * rel L1 of an all-zero reference is Σ|c − r| (not Infinity), empty inputs score as identical instead of
   * throwing, and logitsError takes floor(length / vocab) rows.
   */
  jsonSafe?: boolean;
}

function sameLength(a: ArrayLike<number>, b: ArrayLike<number>, what: string, allowEmpty = false): void {
  if (a.length !== b.length) throw new Error(`${what}: lengths differ (${a.length} vs ${b.length})`);
  if (a.length === 0 && !allowEmpty) throw new Error(`${what}: empty input`);
}

/** Error of `candidate` against `reference` (element-wise, flattened). */
export function tensorError(reference: ArrayLike<number>, candidate: ArrayLike<number>, opts: MetricOptions = {}): TensorError {
  const safe = opts.jsonSafe === true;
  sameLength(reference, candidate, "tensorError", safe);
  let dot = 0, rr = 0, cc = 0, l1 = 0, l1r = 0, se = 0, mx = 0;
  for (let i = 0; i < reference.length; i++) {
    const r = reference[i], c = candidate[i], e = c - r;
    dot += r * c; rr += r * r; cc += c * c;
    l1 += Math.abs(e); l1r += Math.abs(r);
    se += e * e;
    const ae = Math.abs(e);
    if (ae > mx || Number.isNaN(ae)) mx = ae;
  }
  const n = reference.length;
  const cosine = rr === 0 && cc === 0 ? 1 : dot / (Math.sqrt(rr) * Math.sqrt(cc) || Number.MIN_VALUE);
  const sqnr = se === 0 ? Infinity : 10 * Math.log10(rr / se);
  return {
    cosine,
    rel_l1: l1r === 0 ? (l1 === 0 || safe ? l1 : Infinity) : l1 / l1r,
    rmse: n === 0 ? 0 : Math.sqrt(se / n),
    sqnr_db: safe ? Math.min(SQNR_CAP_DB, sqnr) : sqnr,
    max_abs: mx,
  };
}

export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number { return tensorError(a, b).cosine; }
export function relL1(ref: ArrayLike<number>, c: ArrayLike<number>): number { return tensorError(ref, c).rel_l1; }
export function rmse(ref: ArrayLike<number>, c: ArrayLike<number>): number { return tensorError(ref, c).rmse; }
export function sqnrDb(ref: ArrayLike<number>, c: ArrayLike<number>): number { return tensorError(ref, c).sqnr_db; }
export function maxAbs(ref: ArrayLike<number>, c: ArrayLike<number>): number { return tensorError(ref, c).max_abs; }

/** log Σ exp(x[off .. off + n)), float64, max-shifted. */
function logSumExp(x: ArrayLike<number>, off: number, n: number): number {
  let m = -Infinity;
  for (let i = 0; i < n; i++) if (x[off + i] > m) m = x[off + i];
  let z = 0;
  for (let i = 0; i < n; i++) z += Math.exp(x[off + i] - m);
  return m + Math.log(z);
}

/** log-softmax of one row, float64. */
export function logSoftmax(row: ArrayLike<number>): Float64Array {
  const lz = logSumExp(row, 0, row.length);
  const out = new Float64Array(row.length);
  for (let i = 0; i < row.length; i++) out[i] = row[i] - lz;
  return out;
}

function argmax(row: ArrayLike<number>, off: number, n: number): number {
  let best = 0;
  for (let i = 1; i < n; i++) if (row[off + i] > row[off + best]) best = i;
  return best;
}

/**
 * Logits metrics over `rows` rows of `vocab` logits (row-major): mean KL(P_ref || P_cand) in nats (each row
 * clamped at 0 against rounding), top-1 agreement (fraction of rows with the same argmax, lowest id on ties),
 * and cosine / max abs over all logits.
 */
export function logitsError(reference: ArrayLike<number>, candidate: ArrayLike<number>, vocab: number, opts: MetricOptions = {}): { kl: number; top1_agreement: number; cosine: number; max_abs: number } {
  const safe = opts.jsonSafe === true;
  sameLength(reference, candidate, "logitsError", safe);
  if (!(vocab > 0) || !Number.isInteger(vocab)) throw new Error(`logitsError: vocab ${vocab} is not a positive integer`);
  if (!safe && reference.length % vocab !== 0) throw new Error(`logitsError: length ${reference.length} is not a multiple of vocab ${vocab}`);
  const rows = Math.floor(reference.length / vocab);
  let kl = 0, agree = 0;
  for (let r = 0; r < rows; r++) {
    const off = r * vocab;
    const lzp = logSumExp(reference, off, vocab), lzq = logSumExp(candidate, off, vocab);
    let k = 0;
    for (let i = 0; i < vocab; i++) {
      const lp = reference[off + i] - lzp, lq = candidate[off + i] - lzq;
      const p = Math.exp(lp);
      if (p > 0) k += p * (lp - lq);
    }
    kl += Math.max(0, k);
    if (argmax(reference, off, vocab) === argmax(candidate, off, vocab)) agree++;
  }
  const e = tensorError(reference, candidate, opts);
  return { kl: rows ? kl / rows : 0, top1_agreement: rows ? agree / rows : 1, cosine: e.cosine, max_abs: e.max_abs };
}

/**
 * Perplexity of `targets` under logits: rows[i] predicts targets[i] (so for a text t0..tn with logits of
 * every position, pass rows 0..n-1 and targets t1..tn). exp(mean negative log-likelihood).
 */
export function perplexity(logits: ArrayLike<number>, vocab: number, targets: ArrayLike<number>): number {
  const rows = logits.length / vocab;
  if (!Number.isInteger(rows) || rows !== targets.length || rows === 0) {
    throw new Error(`perplexity: ${rows} logit rows for ${targets.length} targets`);
  }
  let nll = 0;
  for (let r = 0; r < rows; r++) {
    const off = r * vocab;
    const t = targets[r];
    if (!(t >= 0 && t < vocab)) throw new Error(`perplexity: target ${t} outside the vocab`);
    let m = -Infinity;
    for (let i = 0; i < vocab; i++) if (logits[off + i] > m) m = logits[off + i];
    let z = 0;
    for (let i = 0; i < vocab; i++) z += Math.exp(logits[off + i] - m);
    nll += m + Math.log(z) - logits[off + t];
  }
  return Math.exp(nll / rows);
}
