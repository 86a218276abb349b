// engine/metrics.ts — quantization-error metrics (DESIGN.md §6) between a reference and a candidate tensor,
// and logits-level metrics (KL divergence, top-1 agreement, perplexity). All sums run in float64.
// Definitions follow the SageAttention precision_metric (kernel-brief §3.3) for cosine / RelL1 / RMSE.

export interface TensorError {
  cosine: number;   // cos(flatten(c), flatten(r)); 1 when both are all zeros
  rel_l1: number;   // Σ|c − r| / Σ|r|
  rmse: number;     // sqrt(mean((c − r)²))
  sqnr_db: number;  // 10·log10(Σr² / Σ(c − r)²); +Infinity when identical
  max_abs: number;  // max |c − r|
}

function sameLength(a: ArrayLike<number>, b: ArrayLike<number>, what: string): void {
  if (a.length !== b.length) throw new Error(`${what}: lengths differ (${a.length} vs ${b.length})`);
  if (a.length === 0) throw new Error(`${what}: empty input`);
}

/** Error of `candidate` against `reference` (element-wise, flattened). */
export function tensorError(reference: ArrayLike<number>, candidate: ArrayLike<number>): TensorError {
  sameLength(reference, candidate, "tensorError");
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
  return {
    cosine,
    rel_l1: l1r === 0 ? (l1 === 0 ? 0 : Infinity) : l1 / l1r,
    rmse: Math.sqrt(se / n),
    sqnr_db: se === 0 ? Infinity : 10 * Math.log10(rr / se),
    max_abs: mx,
  };
}

export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number { return tensorError(a, b).cosine; }
export function relL1(ref: ArrayLike<number>, c: ArrayLike<number>): number { return tensorError(ref, c).rel_l1; }
export function rmse(ref: ArrayLike<number>, c: ArrayLike<number>): number { return tensorError(ref, c).rmse; }
export function sqnrDb(ref: ArrayLike<number>, c: ArrayLike<number>): number { return tensorError(ref, c).sqnr_db; }
export function maxAbs(ref: ArrayLike<number>, c: ArrayLike<number>): number { return tensorError(ref, c).max_abs; }

/** log-softmax of one row, float64. */
export function logSoftmax(row: ArrayLike<number>): Float64Array {
  let m = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i] > m) m = row[i];
  let z = 0;
  for (let i = 0; i < row.length; i++) z += Math.exp(row[i] - m);
  const lz = m + Math.log(z);
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
 * Logits metrics over `rows` rows of `vocab` logits (row-major): mean KL(P_ref || P_cand) in nats,
 * top-1 agreement (fraction of rows with the same argmax), and cosine / max abs over all logits.
 */
export function logitsError(reference: ArrayLike<number>, candidate: ArrayLike<number>, vocab: number): { kl: number; top1_agreement: number; cosine: number; max_abs: number } {
  sameLength(reference, candidate, "logitsError");
  if (reference.length % vocab !== 0) throw new Error(`logitsError: length ${reference.length} is not a multiple of vocab ${vocab}`);
  const rows = reference.length / vocab;
  let kl = 0, agree = 0;
  for (let r = 0; r < rows; r++) {
    const off = r * vocab;
    const lp = logSoftmax(Array.prototype.slice.call(reference, off, off + vocab) as number[]);
    const lq = logSoftmax(Array.prototype.slice.call(candidate, off, off + vocab) as number[]);
    let k = 0;
    for (let i = 0; i < vocab; i++) {
      const p = Math.exp(lp[i]);
      if (p > 0) k += p * (lp[i] - lq[i]);
    }
    kl += k;
    if (argmax(reference, off, vocab) === argmax(candidate, off, vocab)) agree++;
  }
  const e = tensorError(reference, candidate);
  return { kl: kl / rows, top1_agreement: agree / rows, cosine: e.cosine, max_abs: e.max_abs };
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
