// engine/measure/perplexity.ts — perplexity of a token stream, and KL divergence / top-1 agreement against a reference
// run whose logits were saved once to a file (in the spirit of llama-perplexity and its --kl-divergence-base).
//
// Windowing (`score`):
//   "all"  (default) windows of ctx tokens at stride ctx; window w feeds t[w·ctx .. w·ctx+ctx) and scores every
//          row, row r predicting t[w·ctx+r+1]: every token but the first is scored exactly once, with 1..ctx
//          tokens of context (what the fixture's training recorded: "context 512, stride 512"). The last window
//          may be shorter.
//   "half" llama-perplexity: non-overlapping chunks of ctx tokens, only rows ctx/2 .. ctx−2 are scored (each
//          scored token sees at least ctx/2 tokens of context); an incomplete last chunk is dropped.
// Perplexity = exp(mean NLL); its standard error is ppl · SE(NLL) (delta method, as llama-perplexity).
//
// Phase (`phase`): "prefill" (default) computes a window's rows in prefill calls; "decode" feeds the window one token
// per decode step after a prefill of its unscored context (at least the first token), each scored row's logits from
// the decode step that consumed its token: the numbers of arms that act only in decode (CUDA actQuant = int8 runs in
// the decode GEMVs; its prefill GEMMs stay exact). One engine call per scored token: slower.
//
// Memory stays bounded: logits are read per prefill chunk (at most ~16 M floats at a time, a window is split
// into several prefill calls for large vocabularies), and a reference keeps per scored token only its top-K
// log-probabilities and the NLL of the target (8·K + 4 bytes: 260 bytes at K = 32, 22 MB for the 84,792-token
// Brown validation text, instead of vocab × tokens floats). The KL divergence against such a reference is that
// of the distributions coarsened to {top-K ids of the reference, everything else}: by the data-processing
// inequality a lower bound of the full KL, within ~1e-3 nats of it when the top-K hold almost all the mass
// (tested against the exact KL in test/engine/perplexity.test.ts).
import { closeSync, mkdirSync, openSync, readSync, renameSync, rmSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { createHash } from "node:crypto";
import { z } from "zod";
import type { EngineSession } from "../api.ts";
import { ToggleValues } from "./profile.ts";

export type ScoreMode = "all" | "half";

/** Window w feeds tokens [start, start+len) and scores rows from ≤ r < to, row r predicting token start+r+1. */
export interface Window { start: number; len: number; from: number; to: number }

export function perplexityWindows(n: number, ctx: number, score: ScoreMode): Window[] {
  if (!Number.isInteger(ctx) || ctx < 2) throw new Error(`perplexity: ctx must be an integer >= 2, got ${String(ctx)}`);
  const out: Window[] = [];
  if (score === "all") {
    for (let s = 0; s < n - 1; s += ctx) { const len = Math.min(ctx, n - 1 - s); out.push({ start: s, len, from: 0, to: len }); }
  } else {
    const first = ctx >> 1;
    for (let s = 0; s + ctx <= n; s += ctx) out.push({ start: s, len: ctx, from: first, to: ctx - 1 });
  }
  return out;
}

// ------------------------------------------------------------------------------------------------------
// Reference file: a fixed 16 KiB header ("QWKL1\n" + JSON, space-padded), then one record per scored row:
// top_k int32 ids, top_k float32 log-probs (descending), float32 NLL of the target.
// ------------------------------------------------------------------------------------------------------
const MAGIC = "QWKL1\n";
const HEADER_BYTES = 16384;

export const ReferenceHeader = z.object({
  format: z.literal("qwen-workbench/kl-reference"),
  version: z.literal(1),
  vocab: z.number().int().positive(),
  top_k: z.number().int().min(1).max(1024),
  ctx: z.number().int().min(2),
  score: z.enum(["all", "half"]),
  phase: z.enum(["prefill", "decode"]).optional(),  // absent: prefill (files written before the phase existed)
  tokens: z.number().int().nonnegative(),
  tokens_sha256: z.string(),
  rows: z.number().int().nonnegative(),
  // weights_output: the lm_head's format when requantized at load (weightsLayers.output; absent: as loaded). The
  // toggles give the layers' weights but not the output's, so a reference is reused only when this matches too.
  model: z.object({ id: z.string(), hash: z.string(), weights_output: z.string().optional() }),
  toggles: ToggleValues,
  label: z.string(),
  nll_mean: z.number().nullable(),
  ppl: z.number().nullable(),
  nonfinite_rows: z.number().int().nonnegative(),
  created: z.string(),
}).strict();
export type ReferenceHeader = z.infer<typeof ReferenceHeader>;

export function tokensHash(tokens: readonly number[]): string {
  return createHash("sha256").update(new Uint8Array(Int32Array.from(tokens).buffer)).digest("hex");
}

const rowBytes = (k: number) => 8 * k + 4;

/** Reads a reference file written by measurePerplexity({ save }); validates its header. */
export class ReferenceReader {
  readonly header: ReferenceHeader;
  private fd: number;
  constructor(readonly path: string) {
    let fd: number;
    try { fd = openSync(path, "r"); } catch { throw new Error(`reference logits '${path}' cannot be opened (does it exist?)`); }
    this.fd = fd;
    try {
      const b = new Uint8Array(HEADER_BYTES);
      const n = readSync(fd, b, 0, HEADER_BYTES, 0);
      const text = new TextDecoder().decode(b.subarray(0, n));
      if (n < HEADER_BYTES || !text.startsWith(MAGIC)) throw new Error(`'${path}' is not a qwen-workbench reference-logits file (bad magic or truncated header)`);
      let raw: unknown;
      try { raw = JSON.parse(text.slice(MAGIC.length).trim()); } catch { throw new Error(`'${path}': the reference header is not valid JSON`); }
      const r = ReferenceHeader.safeParse(raw);
      if (!r.success) throw new Error(`'${path}': invalid reference header at ${r.error.issues[0].path.join(".")}: ${r.error.issues[0].message}`);
      this.header = r.data;
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }
  /** Why this reference cannot score `tokens` at (ctx, score), or null when it can. */
  mismatch(tokens: readonly number[], ctx: number, score: ScoreMode, vocab: number): string | null {
    const h = this.header;
    if (h.ctx !== ctx || h.score !== score) return `it was made at ctx ${h.ctx}, score ${h.score}; this run uses ctx ${ctx}, score ${score}`;
    if (h.tokens !== tokens.length || h.tokens_sha256 !== tokensHash(tokens)) return `it was made on a different text (${h.tokens} tokens)`;
    if (h.vocab !== vocab) return `its vocab is ${h.vocab}, this model's is ${vocab}`;
    return null;
  }
  /** Rows [row0, row0 + n) as typed views. */
  read(row0: number, n: number): { ids: Int32Array; lps: Float32Array; nll: Float32Array; k: number } {
    const k = this.header.top_k, rb = rowBytes(k);
    if (row0 < 0 || row0 + n > this.header.rows) throw new Error(`reference '${this.path}': rows ${row0}..${row0 + n} outside its ${this.header.rows} rows`);
    const buf = new Uint8Array(n * rb);
    const got = readSync(this.fd, buf, 0, buf.length, HEADER_BYTES + row0 * rb);
    if (got !== buf.length) throw new Error(`reference '${this.path}' is truncated (rows ${row0}..${row0 + n})`);
    const ids = new Int32Array(n * k), lps = new Float32Array(n * k), nll = new Float32Array(n);
    const dv = new DataView(buf.buffer);
    for (let r = 0; r < n; r++) {
      const o = r * rb;
      for (let j = 0; j < k; j++) { ids[r * k + j] = dv.getInt32(o + 4 * j, true); lps[r * k + j] = dv.getFloat32(o + 4 * (k + j), true); }
      nll[r] = dv.getFloat32(o + 8 * k, true);
    }
    return { ids, lps, nll, k };
  }
  close() { try { closeSync(this.fd); } catch { /* closed */ } }
}

class ReferenceWriter {
  private fd: number;
  private tmp: string;
  private off = HEADER_BYTES;
  rows = 0;
  constructor(readonly path: string, readonly k: number) {
    this.tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
    try {
      mkdirSync(dirname(path), { recursive: true });
      this.fd = openSync(this.tmp, "w");
    } catch (e) {
      throw new Error(`cannot write reference logits to '${path}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    writeSync(this.fd, new Uint8Array(HEADER_BYTES), 0, HEADER_BYTES, 0);
  }
  append(ids: Int32Array, lps: Float32Array, nll: Float32Array, n: number) {
    const k = this.k, rb = rowBytes(k), buf = new Uint8Array(n * rb), dv = new DataView(buf.buffer);
    for (let r = 0; r < n; r++) {
      const o = r * rb;
      for (let j = 0; j < k; j++) { dv.setInt32(o + 4 * j, ids[r * k + j], true); dv.setFloat32(o + 4 * (k + j), lps[r * k + j], true); }
      dv.setFloat32(o + 8 * k, nll[r], true);
    }
    writeSync(this.fd, buf, 0, buf.length, this.off);
    this.off += buf.length;
    this.rows += n;
  }
  finish(h: ReferenceHeader) {
    const text = MAGIC + JSON.stringify(ReferenceHeader.parse(h));
    const b = new TextEncoder().encode(text);
    if (b.length > HEADER_BYTES) throw new Error(`reference header too large (${b.length} bytes; long toggle lists?)`);
    const head = new Uint8Array(HEADER_BYTES).fill(0x20);
    head.set(b);
    writeSync(this.fd, head, 0, HEADER_BYTES, 0);
    closeSync(this.fd);
    renameSync(this.tmp, this.path);
  }
  abort() {
    try { closeSync(this.fd); } catch { /* closed */ }
    rmSync(this.tmp, { force: true });
  }
}

// ------------------------------------------------------------------------------------------------------
// Row math (float64)
// ------------------------------------------------------------------------------------------------------

/** log Σ exp over one row, or NaN when the row holds a non-finite value. */
export function rowLogSumExp(x: Float32Array, off: number, v: number): number {
  let m = -Infinity;
  for (let i = 0; i < v; i++) { const a = x[off + i]; if (!(a > -Infinity && a < Infinity)) return NaN; if (a > m) m = a; }
  let z = 0;
  for (let i = 0; i < v; i++) z += Math.exp(x[off + i] - m);
  return m + Math.log(z);
}

/** The k largest entries of a row, descending, lowest id first on ties. */
export function rowTopK(x: Float32Array, off: number, v: number, k: number, ids: Int32Array, vals: Float64Array, o = 0): void {
  let n = 0;
  for (let i = 0; i < v; i++) {
    const a = x[off + i];
    if (n === k && a <= vals[o + k - 1]) continue;
    let j = n < k ? n++ : k - 1;
    while (j > 0 && vals[o + j - 1] < a) { vals[o + j] = vals[o + j - 1]; ids[o + j] = ids[o + j - 1]; j--; }
    vals[o + j] = a; ids[o + j] = i;
  }
}

/** KL(P_ref ‖ P_cand) over {the reference's top-K ids, the rest} (a lower bound of the full KL). */
export function coarseKl(refIds: Int32Array, refLps: Float32Array, o: number, k: number, x: Float32Array, off: number, lse: number): number {
  let sp = 0, sq = 0, kl = 0;
  for (let j = 0; j < k; j++) {
    const lp = refLps[o + j], p = Math.exp(lp), lq = x[off + refIds[o + j]] - lse;
    kl += p * (lp - lq); sp += p; sq += Math.exp(lq);
  }
  const pr = 1 - sp, qr = Math.max(1e-30, 1 - sq);
  if (pr > 1e-12) kl += pr * (Math.log(pr) - Math.log(qr));
  return Math.max(0, kl);
}

function argmaxRow(x: Float32Array, off: number, v: number): number {
  let b = 0;
  for (let i = 1; i < v; i++) if (x[off + i] > x[off + b]) b = i;
  return b;
}

// ------------------------------------------------------------------------------------------------------
// Measurement
// ------------------------------------------------------------------------------------------------------

export interface KlStats {
  reference_label: string;
  reference_model: string;
  reference_ppl: number | null;
  rows: number;
  top_k: number;
  // null where undefined (no comparable row, or one row for a standard error)
  mean: number | null; se: number | null; median: number | null; p90: number | null; p99: number | null; max: number | null;
  top1_agreement: number | null; top1_se: number | null;
  /** mean of (NLL_candidate − NLL_reference) = ln(PPL_cand / PPL_ref), with its paired standard error */
  ln_ppl_ratio: number | null; ln_ppl_ratio_se: number | null;
}

export interface PerplexityResult {
  phase: PerplexityPhase;
  ctx: number;
  score: ScoreMode;
  tokens: number;
  windows: number;
  scored: number;
  nll_mean: number | null;
  nll_se: number | null;
  ppl: number | null;
  ppl_se: number | null;
  /** scored rows whose logits held NaN/Inf: left out of every statistic and reported as a finding */
  nonfinite_rows: number;
  first_nonfinite_token?: number;
  seconds: number;
  kl?: KlStats;
  saved?: string;
}

export type PerplexityPhase = "prefill" | "decode";

export interface PerplexityOptions {
  ctx: number;
  score?: ScoreMode;
  /** prefill (default): rows from prefill calls; decode: one decode step per scored row (see the header). */
  phase?: PerplexityPhase;
  /** KL / top-1 against this reference (checked to match the tokens, ctx and score). */
  reference?: ReferenceReader;
  /** Save this run's top-K log-probs as a reference file. */
  save?: { path: string; topK?: number; model: { id: string; hash: string; weights_output?: string }; toggles: ToggleValues; label: string };
  signal?: AbortSignal;
  onProgress?: (p: { window: number; windows: number; scored: number; ppl: number | null }) => void;
  /** Floats of logits held at once (bounds memory; default 16 M). */
  maxLogitFloats?: number;
}

const mean = (s: number, n: number) => (n ? s / n : NaN);
const seOf = (s: number, s2: number, n: number) => (n > 1 ? Math.sqrt(Math.max(0, s2 / n - (s / n) ** 2) / (n - 1)) : NaN);
const finiteOrNull = (x: number) => (Number.isFinite(x) ? x : null);

function quantile(sorted: Float64Array, q: number): number {
  if (!sorted.length) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))));
  return sorted[i];
}

/**
 * Scores `tokens` in windows on sequence 0 of `session` (its toggles are the caller's). The session's KV
 * cache is reset per window and its logits mode is left at 0.
 */
export async function measurePerplexity(session: EngineSession, tokens: readonly number[], vocab: number, o: PerplexityOptions): Promise<PerplexityResult> {
  const score = o.score ?? "all";
  const phase = o.phase ?? "prefill";
  const ctx = o.ctx;
  if (ctx > session.maxContext) throw new Error(`perplexity: ctx ${ctx} exceeds the session's max context ${session.maxContext}`);
  const wins = perplexityWindows(tokens.length, ctx, score);
  if (!wins.length) throw new Error(`perplexity: ${tokens.length} tokens give no window at ctx ${ctx} (score ${score}); give a longer text or a smaller ctx`);
  const ref = o.reference;
  if (ref) {
    const why = ref.mismatch(tokens, ctx, score, vocab);
    if (why) throw new Error(`reference logits '${ref.path}' do not fit this run: ${why}`);
  }
  const topK = Math.min(vocab, o.save?.topK ?? 32);
  const writer = o.save ? new ReferenceWriter(o.save.path, topK) : null;
  const maxPrefill = Math.max(1, Math.min(session.maxPrefill ?? ctx, Math.floor((o.maxLogitFloats ?? 16 << 20) / vocab)));
  const t0 = performance.now();
  let n = 0, s = 0, s2 = 0, nonfinite = 0, firstBad = -1, refRow = 0;
  let klN = 0, klS = 0, klS2 = 0, agree = 0, dS = 0, dS2 = 0;
  const kls: number[] = [];
  try {
    session.setLogitsMode(2);
    for (let w = 0; w < wins.length; w++) {
      if (o.signal?.aborted) throw new Error("cancelled");
      const win = wins[w];
      const nRows = win.to - win.from;
      const r = ref ? ref.read(refRow, nRows) : null;
      const wIds = writer ? new Int32Array(nRows * topK) : null, wLps = writer ? new Float32Array(nRows * topK) : null;
      const wNll = writer ? new Float32Array(nRows) : null, vals = new Float64Array(topK), tIds = new Int32Array(topK);
      // row `row` of the window (its logits at data[off ..]) predicting t[win.start + row + 1]
      const scoreRow = (data: Float32Array, off: number, row: number) => {
        const i = row - win.from, target = tokens[win.start + row + 1];
        const lse = rowLogSumExp(data, off, vocab);
        if (Number.isNaN(lse)) {
          nonfinite++;
          if (firstBad < 0) firstBad = win.start + row + 1;
          if (wNll) { wNll[i] = NaN; wIds!.fill(0, i * topK, (i + 1) * topK); wLps!.fill(NaN, i * topK, (i + 1) * topK); }
          return;
        }
        const nll = lse - data[off + target];
        n++; s += nll; s2 += nll * nll;
        if (wNll) {
          wNll[i] = nll;
          rowTopK(data, off, vocab, topK, tIds, vals);
          for (let j = 0; j < topK; j++) { wIds![i * topK + j] = tIds[j]; wLps![i * topK + j] = vals[j] - lse; }
        }
        if (r && Number.isFinite(r.nll[i])) {
          const kl = coarseKl(r.ids, r.lps, i * r.k, r.k, data, off, lse);
          klN++; klS += kl; klS2 += kl * kl; kls.push(kl);
          if (argmaxRow(data, off, vocab) === r.ids[i * r.k]) agree++;
          const d = nll - r.nll[i];
          dS += d; dS2 += d * d;
        }
      };
      session.reset(0);
      if (phase === "decode") {
        // the unscored context (at least one token: a sequence starts with a prefill) in prefill calls, then one
        // decode step per row; a first window scored from row 0 takes row 0 from its one-token prefill
        const p = Math.max(1, win.from);
        for (let c0 = 0; c0 < p; c0 += maxPrefill) session.prefill(0, tokens.slice(win.start + c0, win.start + Math.min(p, c0 + maxPrefill)) as number[]);
        const lastRow = (row: number) => {  // the latest call's last logits row is window row `row`
          const lg = session.logits();
          if (lg.vocab !== vocab || lg.rows < 1) throw new Error(`perplexity: the engine returned ${lg.rows}×${lg.vocab} logits, expected rows of ${vocab}`);
          scoreRow(lg.data, (lg.rows - 1) * vocab, row);
        };
        if (win.from < p) lastRow(p - 1);
        for (let row = p; row < win.to; row++) {
          if (o.signal?.aborted) throw new Error("cancelled");
          session.decode([0], [tokens[win.start + row]]);
          lastRow(row);
        }
      } else {
        for (let c0 = 0; c0 < win.len; c0 += maxPrefill) {
          const c1 = Math.min(win.len, c0 + maxPrefill);
          session.prefill(0, tokens.slice(win.start + c0, win.start + c1) as number[]);
          if (c1 <= win.from) continue;
          const lg = session.logits();
          if (lg.vocab !== vocab || lg.rows !== c1 - c0) throw new Error(`perplexity: the engine returned ${lg.rows}×${lg.vocab} logits, expected ${c1 - c0}×${vocab}`);
          for (let row = Math.max(c0, win.from); row < Math.min(c1, win.to); row++) scoreRow(lg.data, (row - c0) * vocab, row);
        }
      }
      if (writer) writer.append(wIds!, wLps!, wNll!, nRows);
      refRow += nRows;
      o.onProgress?.({ window: w + 1, windows: wins.length, scored: n, ppl: n ? Math.exp(s / n) : null });
      await new Promise<void>((res) => setImmediate(res)); // let a cancel land
    }
  } catch (e) {
    writer?.abort();
    throw e;
  } finally {
    try { session.setLogitsMode(0); } catch { /* session closed */ }
  }
  const nllMean = mean(s, n), nllSe = seOf(s, s2, n), ppl = Math.exp(nllMean);
  const res: PerplexityResult = {
    phase, ctx, score, tokens: tokens.length, windows: wins.length, scored: n + nonfinite,
    nll_mean: finiteOrNull(nllMean), nll_se: finiteOrNull(nllSe), ppl: finiteOrNull(ppl), ppl_se: finiteOrNull(ppl * nllSe),
    nonfinite_rows: nonfinite, ...(firstBad >= 0 ? { first_nonfinite_token: firstBad } : {}),
    seconds: (performance.now() - t0) / 1000,
  };
  if (ref) {
    const sorted = Float64Array.from(kls).sort();
    const p = klN ? agree / klN : NaN, f = finiteOrNull;
    res.kl = {
      reference_label: ref.header.label, reference_model: ref.header.model.id, reference_ppl: ref.header.ppl, rows: klN, top_k: ref.header.top_k,
      mean: f(mean(klS, klN)), se: f(seOf(klS, klS2, klN)), median: f(quantile(sorted, 0.5)), p90: f(quantile(sorted, 0.9)),
      p99: f(quantile(sorted, 0.99)), max: f(sorted.length ? sorted[sorted.length - 1] : NaN),
      top1_agreement: f(p), top1_se: f(klN > 1 ? Math.sqrt((p * (1 - p)) / (klN - 1)) : NaN),
      ln_ppl_ratio: f(mean(dS, klN)), ln_ppl_ratio_se: f(seOf(dS, dS2, klN)),
    };
  }
  if (writer && o.save) {
    writer.finish({
      format: "qwen-workbench/kl-reference", version: 1, vocab, top_k: topK, ctx, score, phase, tokens: tokens.length,
      tokens_sha256: tokensHash(tokens), rows: writer.rows, model: o.save.model, toggles: o.save.toggles, label: o.save.label,
      nll_mean: res.nll_mean, ppl: res.ppl, nonfinite_rows: nonfinite, created: new Date().toISOString(),
    });
    res.saved = o.save.path;
  }
  return res;
}
