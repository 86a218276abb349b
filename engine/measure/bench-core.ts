// engine/measure/bench-core.ts — the one bench loop (docs/ARCHITECTURE.md §Measurement), shared by the CLI `bench` and notebooks/bench.ts.
// Warm-up excluded, ≥ 3 repetitions, every sample kept, median and min–max; tokenization excluded (prompts
// are token ids); TTFT = time of the prefill call that returns the first token; TPOT per decode step.
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import type { EngineModel, EngineSession } from "../api.ts";
import { statOf, type BenchRow, type Stat } from "./profile.ts";
import { weightsLabel } from "../formats/requant.ts";
import { shareLabel, type RankShare } from "./tp-scaling.ts";

export interface BenchCase {
  /** Prompt length (prefill test, "pp<N>") — 0 to skip the prefill measurement. */
  nPrompt: number;
  /** Tokens to generate (decode test, "tg<N>") — 0 to skip the decode measurement. */
  nGen: number;
  /** Decode batch (sequences decoded together per step). */
  batch?: number;
  /** Tokens already in each sequence's KV cache before the measured prefill / decode (llama-bench -d); their
   * prefill is not timed. 0 (default): decode starts after an 8-token prompt. */
  depth?: number;
}

export interface BenchOptions {
  reps?: number;       // measured repetitions (default 3, at least 3 are enforced unless allowFewer)
  warmup?: number;     // untimed repetitions first (default 1)
  seed?: number;       // prompt token seed
  allowFewer?: boolean;
  onProgress?: (msg: string) => void;
  /** A measured sample during which other processes used more than this share of the machine's CPU counts as
   * contended (default 0.1). */
  maxContention?: number;
  /** Re-runs of a contended sample before it is kept anyway (default 0; the CLI uses 3). */
  retries?: number;
  /** Decode steps per engine call (default 1, as llama-bench: one synchronization per token). N > 1 runs N steps
   * back to back per call (decodeSteps: on CUDA the tokens stay on the GPU), hiding the host's turnaround between
   * steps; the row's test name says so (tg128 b1 s8) and each step's time is the call's / N. */
  stepsPerSync?: number;
}

export interface BenchCaseResult {
  prefill?: Stat;          // tok/s
  decode?: Stat;           // tok/s (all sequences of the batch together)
  ttft?: Stat;             // ms
  tpot?: { median: number; p90: number; min: number; max: number }; // ms, over all measured steps
  rows: BenchRow[];
}

export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

/** Deterministic "random" prompt ids in [10, min(vocab, 8192)) so the trained tiny model sees real tokens. */
export function benchPrompt(n: number, vocab: number, seed = 1): number[] {
  const hi = Math.min(vocab, 8192);
  const out: number[] = [];
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out.push(10 + (x % (hi - 10)));
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// Contention: on a shared machine other processes steal cores from the engine's threads (with OpenMP barriers
// one preempted thread stalls the whole step). Each sample records the share of the machine's CPU time that
// other processes used while it ran (Linux /proc/stat minus this process's own CPU time); samples above
// `maxContention` are re-run (up to `retries` times) and flagged when they stay contended.
// ------------------------------------------------------------------------------------------------
/** A sample during which other processes used more than this share of the machine's CPU counts as contended. */
export const DEFAULT_MAX_CONTENTION = 0.1;
export interface MachineMark { t: number; busyJ: number; totalJ: number; ownUs: number }
const USER_HZ = 100;
export function machineMark(): MachineMark | undefined {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0];
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    const u = process.cpuUsage();
    return { t: performance.now(), busyJ: total - idle, totalJ: total, ownUs: u.user + u.system };
  } catch {
    return undefined;
  }
}
/** Fraction (0..1) of all CPUs' time used by other processes between two marks; undefined off Linux. */
export function othersShare(a: MachineMark | undefined, b: MachineMark | undefined): number | undefined {
  // /proc/stat counts in 10 ms jiffies: below ~0.2 CPU-seconds of machine time the share is too coarse to judge.
  if (!a || !b || b.totalJ - a.totalJ < 20) return undefined;
  const ownJ = ((b.ownUs - a.ownUs) / 1e6) * USER_HZ;
  return Math.min(1, Math.max(0, (b.busyJ - a.busyJ - ownJ) / (b.totalJ - a.totalJ)));
}

/** A steps-per-call option checked against the session (`who` names the caller in the error): an integer >= 1, and
 * > 1 only where the session has decodeSteps. */
export function checkStepsPerSync(session: EngineSession, v: number | undefined, who: string): number {
  const sync = v ?? 1;
  if (!Number.isInteger(sync) || sync < 1) throw new Error(`${who}: stepsPerSync must be an integer >= 1, got ${String(v)}`);
  if (sync > 1 && !session.decodeSteps) throw new Error(`${who}: stepsPerSync > 1 needs a session with decodeSteps`);
  return sync;
}

/** k decode steps of `seqs` in one engine call (decodeSteps where k > 1), fed with `tok`: the last step's tokens. */
export function decodeCall(session: EngineSession, seqs: number[], tok: number[], k: number): number[] {
  return k > 1 ? session.decodeSteps!(seqs, tok, k)[k - 1] : session.decode(seqs, tok);
}

/**
 * Runs one bench case on a session (greedy sampling; the session's toggles as set by the caller).
 * Prefill: tokens/s of one prefill of nPrompt tokens. Decode: batch sequences each prefilled with a short
 * prompt, then nGen decode steps of all of them; tok/s = batch·nGen / time of the decode steps.
 */
export function runBenchCase(model: EngineModel, session: EngineSession, c: BenchCase, opts: BenchOptions = {}): BenchCaseResult {
  const reps = Math.max(opts.allowFewer ? 1 : 3, opts.reps ?? 3);
  const warmup = opts.warmup ?? 1;
  const batch = c.batch ?? 1;
  const maxContention = opts.maxContention ?? DEFAULT_MAX_CONTENTION;
  const retries = opts.retries ?? 0;
  const sync = checkStepsPerSync(session, opts.stepsPerSync, "bench");
  // a row of several steps per call must never pass for the one-sync-per-token row (llama-bench's)
  const sTag = sync > 1 ? ` s${sync}` : "";
  if (batch > session.maxBatch) throw new Error(`bench: batch ${batch} exceeds the session's max batch ${session.maxBatch}`);
  const depth = c.depth ?? 0;
  if (!Number.isInteger(depth) || depth < 0) throw new Error(`bench: depth must be an integer >= 0, got ${String(c.depth)}`);
  if (depth + c.nPrompt > session.maxContext) throw new Error(`bench: depth ${depth} + prompt ${c.nPrompt} exceed max context ${session.maxContext}`);
  const start = depth || 8;  // tokens in each sequence before the decode steps
  if (c.nGen > 0 && start + c.nGen > session.maxContext) throw new Error(`bench: ${start} + ${c.nGen} tokens exceed max context ${session.maxContext}`);
  const vocab = model.config.vocab_size;
  for (let s = 0; s < batch; s++) session.setSampling(s, { temperature: 0 });
  const load0 = loadavg()[0];

  let filled: number[] | null = null;  // the first tokens the filled sequences decode from
  const onePrefill = (r: number) => {
    session.reset(0);
    filled = null;  // sequence 0 no longer holds the decode fill
    if (depth) prefillChunked(session, 0, benchPrompt(depth, vocab, 50));
    const p = benchPrompt(c.nPrompt, vocab, (opts.seed ?? 1) + r);
    const m0 = machineMark();
    const t0 = performance.now();
    session.prefill(0, p);
    const ms = performance.now() - t0;
    return { tps: (c.nPrompt / ms) * 1000, ms, others: othersShare(m0, machineMark()) };
  };
  // At depth, the sequences are filled once and every later decode rep starts from the same cache, cut back to
  // `start` tokens (truncate), where the cache can roll back that far: a rep then times the same decode steps on the
  // same keys without refilling (7B batch 8 at 32k with a q8 cache: ~100 s of prefill per rep on an H100). A kivi cache
  // that rolls back less than nGen tokens, or no depth, refills as before.
  const rollback = session.kvInfo?.().kvMaxRollback ?? 0;
  const refill = !depth || (rollback >= 0 && rollback < c.nGen);
  const oneDecode = () => {
    let next: number[];
    if (filled && !refill) {
      for (let s = 0; s < batch; s++) if (session.seqLen(s) > start) session.truncate(s, start);
      next = filled;
    } else {
      session.reset();
      next = [];
      for (let s = 0; s < batch; s++) next.push(prefillChunked(session, s, benchPrompt(start, vocab, 100 + s)));
      filled = next;
    }
    const seqs = Array.from({ length: batch }, (_, i) => i);
    let tok = next;
    const steps: number[] = [];
    const m0 = machineMark();
    const t0 = performance.now();
    let tp = t0;
    for (let i = 0; i < c.nGen; ) {
      const k = Math.min(sync, c.nGen - i);
      tok = decodeCall(session, seqs, tok, k);
      const now = performance.now();
      for (let j = 0; j < k; j++) steps.push((now - tp) / k);
      tp = now;
      i += k;
    }
    const ms = performance.now() - t0;
    return { tps: ((batch * c.nGen) / ms) * 1000, steps, others: othersShare(m0, machineMark()) };
  };
  /** Runs f until its sample is not contended (or retries run out). */
  const measure = <T extends { others?: number }>(f: () => T): { v: T; retried: number } => {
    let v = f(), k = 0;
    while (k < retries && v.others !== undefined && v.others > maxContention) {
      v = f();
      k++;
    }
    return { v, retried: k };
  };
  const fmtO = (o?: number) => (o === undefined ? "" : `, others ${(100 * o).toFixed(0)}% CPU`);

  const prefillSamples: number[] = [], ttftSamples: number[] = [], decodeSamples: number[] = [], tpot: number[] = [];
  const prefillOthers: (number | null)[] = [], decodeOthers: (number | null)[] = [];
  let retriedP = 0, retriedD = 0;
  for (let r = 0; r < warmup + reps; r++) {
    const measured = r >= warmup;
    const tag = measured ? `rep ${r - warmup + 1}/${reps}` : `warm-up ${r + 1}/${warmup}`;
    if (c.nPrompt > 0) {
      const { v, retried } = measured ? measure(() => onePrefill(r)) : { v: onePrefill(r), retried: 0 };
      if (measured) {
        prefillSamples.push(v.tps);
        ttftSamples.push(v.ms);
        prefillOthers.push(v.others === undefined ? null : Number(v.others.toFixed(3)));
        retriedP += retried;
      }
      opts.onProgress?.(`pp${c.nPrompt} ${tag}: ${v.tps.toFixed(1)} tok/s${fmtO(v.others)}${retried ? ` (after ${retried} contended re-runs)` : ""}`);
    }
    if (c.nGen > 0) {
      const { v, retried } = measured ? measure(oneDecode) : { v: oneDecode(), retried: 0 };
      if (measured) {
        decodeSamples.push(v.tps);
        tpot.push(...v.steps);
        decodeOthers.push(v.others === undefined ? null : Number(v.others.toFixed(3)));
        retriedD += retried;
      }
      opts.onProgress?.(`tg${c.nGen} b${batch}${sTag} ${tag}: ${v.tps.toFixed(1)} tok/s${fmtO(v.others)}${retried ? ` (after ${retried} contended re-runs)` : ""}`);
    }
  }

  const rows: BenchRow[] = [];
  const load = { loadavg_1m_start: Number(load0.toFixed(2)), loadavg_1m_end: Number(loadavg()[0].toFixed(2)) };
  const contended = (o: (number | null)[]) => o.filter((x) => x !== null && x > maxContention).length;
  const weights = weightLabel(model);
  // a tensor-parallel load shows in the backend column ("cpu tp2": on the CPU, an emulation of the ranks)
  const backend = model.parallel && model.parallel !== "tp1" ? `${model.backend} ${model.parallel}` : model.backend;
  const base = { model: modelLabel(model.id), weights, backend, system: "qwen-workbench" };
  const at = depth ? ` @ d${depth}` : "";
  const kv = session.kvInfo?.();
  // KV memory: what the cache type costs per token, what the session allocated, what this test's tokens use.
  const kvExtra = (tokensPerSeq: number, seqs: number) => kv ? { kv_cache: kv.kvCache, kv_bytes_per_token: kv.kvBytesPerToken,
    kv_bytes_allocated: kv.kvBytes, kv_bytes_used: Math.round(kv.kvBytesPerToken * tokensPerSeq * seqs) } : {};
  const res: BenchCaseResult = { rows };
  if (prefillSamples.length) {
    res.prefill = statOf(prefillSamples, "tok/s");
    res.ttft = statOf(ttftSamples, "ms");
    rows.push({ ...base, test: `pp${c.nPrompt}${at}`, batch: 1, n_prompt: c.nPrompt, n_gen: 0, tokens_per_s: res.prefill,
      extra: { ttft_ms: res.ttft, depth, ...kvExtra(depth + c.nPrompt, 1), ...load, others_cpu_share: prefillOthers, contended_samples: contended(prefillOthers), contended_reruns: retriedP } });
  }
  if (decodeSamples.length) {
    res.decode = statOf(decodeSamples, "tok/s");
    const s = [...tpot].sort((a, b) => a - b);
    res.tpot = { median: percentile(s, 50), p90: percentile(s, 90), min: s[0], max: s[s.length - 1] };
    rows.push({ ...base, test: `tg${c.nGen} b${batch}${sTag}${at}`, batch, n_prompt: 0, n_gen: c.nGen, tokens_per_s: res.decode,
      extra: { tpot_ms: res.tpot, depth, steps_per_sync: sync, ...kvExtra(start + c.nGen, batch), ...load, others_cpu_share: decodeOthers, contended_samples: contended(decodeOthers), contended_reruns: retriedD } });
  }
  return res;
}

/** Prefills `tokens` into `seq` in chunks the session accepts (maxPrefill); returns the sampled next token. */
export function prefillChunked(session: EngineSession, seq: number, tokens: number[]): number {
  const chunk = session.maxPrefill ?? session.maxContext;
  let next = -1;
  for (let i = 0; i < tokens.length; i += chunk) next = session.prefill(seq, tokens.slice(i, i + chunk));
  return next;
}

/** "q8 1.2 MiB" from a row's KV extras ("" when the row has none). */
export function kvLabel(r: BenchRow): string {
  const e = r.extra as { kv_cache?: string; kv_bytes_used?: number } | undefined;
  if (!e?.kv_cache) return "";
  const b = e.kv_bytes_used ?? 0;
  return `${e.kv_cache} ${b < 1048576 ? `${(b / 1024).toFixed(1)} KiB` : `${(b / 1048576).toFixed(1)} MiB`}`;
}

/** A short model label for tables: the file or directory name of a path, else the id itself. */
export function modelLabel(id: string): string {
  return id.includes("/") ? (id.replace(/\/+$/, "").split("/").pop() ?? id).replace(/\.gguf$/, "") : id;
}

/** A short label of a model's weight types, e.g. "f16", "q8_0", or "q4_k+q6_k+q5_0". */
export function weightLabel(model: EngineModel): string {
  const all = Object.entries(model.weightTypes);
  const names = all.filter(([k]) => k.toLowerCase() !== "f32" || all.length === 1)
    .sort((a, b) => b[1] - a[1]).map(([k]) => k.toLowerCase());
  const rq = model.weights?.weights || Object.keys(model.weights?.weightsLayers ?? {}).length ? `→${weightsLabel(model.weights)}` : "";
  return (names.length ? names.join("+") : "unknown") + rq;
}

/** llama-bench-style markdown table; an "all-reduce share" column when a row has one (`bench --tp` at tp > 1 with
 *  per-rank op records: extra.comm_share, engine/measure/tp-scaling.ts). */
export function benchTableMd(rows: BenchRow[]): string {
  const share = (r: BenchRow) => shareLabel((r.extra as { comm_share?: RankShare[] } | undefined)?.comm_share);
  const withShare = rows.some((r) => share(r) !== "");
  const head = `| model | weights | backend | test | t/s (median) | min–max | reps | KV (type, used) |${withShare ? " all-reduce share of a decode step |" : ""}\n` +
    `|---|---|---|---|---:|---:|---:|---|${withShare ? "---|" : ""}`;
  const lines = rows.map((r) => `| ${r.model} | ${r.weights} | ${r.backend} | ${r.test} | ${r.tokens_per_s.median.toFixed(2)} | ${r.tokens_per_s.min.toFixed(2)}–${r.tokens_per_s.max.toFixed(2)} | ${r.tokens_per_s.samples.length} | ${kvLabel(r)} |` +
    (withShare ? ` ${share(r) || "–"} |` : ""));
  return [head, ...lines].join("\n");
}

export function benchTableCsv(rows: BenchRow[]): string {
  const head = "model,weights,backend,test,batch,n_prompt,n_gen,tps_median,tps_min,tps_max,reps";
  return [head, ...rows.map((r) => [r.model, r.weights, r.backend, r.test, r.batch, r.n_prompt, r.n_gen,
    r.tokens_per_s.median, r.tokens_per_s.min, r.tokens_per_s.max, r.tokens_per_s.samples.length].join(","))].join("\n");
}
