// engine/measure/tp-run.ts — the runs behind the tensor-parallel scaling table (issue 18 item 4), shared by
// notebooks/tp-scaling.ts and `bench --tp` (engine/cli/main.ts): whether a split loads at all (the engine's own
// refusal, asked before any weight is written or read), whether it fits memory (an estimate, said so), the timed
// passes of one load (engine/measure/bench-core.ts runBenchCase: warm-up, >= 3 reps, median and min–max) and a
// profiled decode pass apart from them for the all-reduce share (profiling would distort the timed tok/s).
import { existsSync, readFileSync, rmSync, statfsSync } from "node:fs";
import { dirname, join } from "node:path";
import { tmpdir, totalmem } from "node:os";
import { z } from "zod";
import type { BackendChoice, EngineSession, QwenConfig } from "../api.ts";
import { getEngine } from "../ffi.ts";
import { ggmlTensorBytes } from "../formats/gguf-types.ts";
import { openModel, parallelRefusal, parseSyntheticSource, syntheticGgufPath, type Model } from "../index.ts";
import { planType, synthSpec, tensorList } from "../synth/synthetic.ts";
import { benchPrompt, modelLabel, prefillChunked, runBenchCase, weightLabel } from "./bench-core.ts";
import type { BenchRow, DeviceManifest, Manifest } from "./profile.ts";
import { ceilingsForDevice, dramBandwidth } from "./roofline.ts";
import { aggregateRooflineTokS, commShare, decodeBytesPerStep, mergeShares, type NcclFloor, type RankShare, type TpCell } from "./tp-scaling.ts";

const GB = (b: number) => `${(b / 1e9).toFixed(1)} GB`;

/** Weight bytes of a synthetic preset at a type, as our GGUF writer lays them out (norms and biases f32). */
export function syntheticWeightBytes(cfg: QwenConfig, type: Parameters<typeof planType>[0]): number {
  return tensorList(cfg).reduce((s, t) => s + ggmlTensorBytes(planType(type, t, cfg), t.ne, t.name), 0);
}

/** KV bytes of `tokens` tokens (all layers, K + V) with the default bf16 cache. */
export function kvBytesEstimate(cfg: QwenConfig, tokens: number): number {
  return 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * 2 * tokens;
}

/**
 * Why a split would not fit memory, or null. An estimate (weights as written + the bf16 KV cache of the tests +
 * 10 % and a fixed allowance for activations), not the engine's accounting: it keeps a run from writing a 145 GB
 * checkpoint or starting a load that cannot finish. CUDA: each rank's 1/N against one device's memory. CPU: the
 * emulation holds every rank in this process, so the whole model against the machine's memory. A synthetic
 * checkpoint not written yet also needs its bytes on disk.
 */
export function memoryRefusal(o: {
  backend: "cpu" | "cuda"; ranks: number; weightBytes: number; kvBytes: number; deviceBytes?: number; hostBytes: number;
  file?: { path: string; exists: boolean; freeBytes?: number };
}): string | null {
  const per = o.backend === "cuda" ? o.weightBytes / o.ranks + o.kvBytes / o.ranks : o.weightBytes + o.kvBytes;
  const need = per * 1.1 + (o.backend === "cuda" ? 4e9 : 1e9);
  if (o.backend === "cuda" && o.deviceBytes && need > o.deviceBytes) {
    return `does not fit: each of the ${o.ranks} rank(s) needs ~${GB(need)} (weights ${GB(o.weightBytes / o.ranks)} + KV ${GB(o.kvBytes / o.ranks)} + activations), one device has ${GB(o.deviceBytes)} (estimate)`;
  }
  if (o.backend === "cpu" && need > 0.9 * o.hostBytes) {
    return `does not fit: the CPU emulation holds all ${o.ranks} rank(s) in one process, ~${GB(need)} (weights ${GB(o.weightBytes)} + KV ${GB(o.kvBytes)}) against ${GB(o.hostBytes)} of memory (estimate)`;
  }
  if (o.file && !o.file.exists && o.file.freeBytes !== undefined && o.weightBytes * 1.02 > o.file.freeBytes) {
    return `no room for the synthetic checkpoint: ${o.file.path} needs ~${GB(o.weightBytes)}, ${GB(o.file.freeBytes)} free on its disk`;
  }
  return null;
}

/** Free bytes on the file system that holds `path` (its nearest existing parent); undefined where statfs fails. */
export function freeBytesAt(path: string): number | undefined {
  let d = path;
  while (!existsSync(d) && dirname(d) !== d) d = dirname(d);
  try { const s = statfsSync(d); return s.bavail * s.bsize; } catch { return undefined; }
}

/** The device's memory from the engine (CUDA: memory_bytes of device 0; the ranks' devices are alike). */
export function deviceMemoryBytes(backend: BackendChoice, threads?: number): { backend: "cpu" | "cuda"; bytes?: number } {
  const e = getEngine(backend, { threads });
  let info: { memory_bytes?: unknown } = {};
  try { info = JSON.parse(e.infoJson()) as typeof info; } catch { /* no memory figure: the engine's load decides */ }
  return { backend: e.lib.backend === "cuda" ? "cuda" : "cpu", ...(typeof info.memory_bytes === "number" ? { bytes: info.memory_bytes } : {}) };
}

/** Why `source` at tp `ranks` is skipped (the engine's plan refusal first, then the memory estimate), or null. */
export function tpSkipReason(source: string, ranks: number, o: { backend: BackendChoice; threads?: number; contextTokens: number }): string | null {
  const syn = parseSyntheticSource(source);
  if (!syn) return null;  // a file or directory: the load itself says what is wrong
  const cfg = synthSpec(syn.preset, { seed: syn.seed }).config;
  const refusal = parallelRefusal(cfg, `tp${ranks}`, { backend: o.backend, threads: o.threads });
  if (refusal) return refusal.replace(/^qw_model_create: /, "");
  const dev = deviceMemoryBytes(o.backend, o.threads);
  const inMemory = syn.preset === "tiny" && ["f32", "f16", "bf16"].includes(syn.type);
  const path = syntheticGgufPath(syn);
  return memoryRefusal({
    backend: dev.backend, ranks, weightBytes: syntheticWeightBytes(cfg, syn.type), kvBytes: kvBytesEstimate(cfg, o.contextTokens),
    deviceBytes: dev.bytes, hostBytes: totalmem(),
    ...(inMemory ? {} : { file: { path, exists: existsSync(path), freeBytes: freeBytesAt(path) } }),
  });
}

/**
 * The all-reduce share of decode steps from profiled passes apart from the timed ones: a warm-up pass, then `passes`
 * (>= 3) measured ones, each `steps` decode steps of `batch` sequences after an 8-token prompt each; per rank the
 * median share with its min–max over the passes (mergeShares). Profiling is off again afterwards. The engine
 * refusing profiling comes back as a note, not an error.
 */
export function profiledCommShare(s: EngineSession, vocab: number, batch: number, steps: number, passes = 3): { shares?: RankShare[]; mode?: string; note?: string } {
  try {
    s.setProfiling(true);
  } catch (e) {
    return { note: `no op records: ${(e as Error).message}` };
  }
  try {
    const seqs = Array.from({ length: batch }, (_, i) => i);
    const measured: RankShare[][] = [];
    for (let p = 0; p <= passes; p++) {
      s.reset();
      let tok: number[] = [];
      for (let q = 0; q < batch; q++) tok.push(prefillChunked(s, q, benchPrompt(8, vocab, 300 + q)));
      s.takeRecords();  // the prefills' records: not part of a decode step
      for (let i = 0; i < steps; i++) tok = s.decode(seqs, tok);
      const rec = s.takeRecords();
      if (p === 0) continue;  // warm-up
      const shares = commShare(rec.ops, rec.kernels);
      if (!shares.length) return { mode: s.profilingMode, note: "the profiled passes returned no per-rank decode records" };
      measured.push(shares);
    }
    return { shares: mergeShares(measured), mode: s.profilingMode };
  } finally {
    s.setProfiling(false);
  }
}

export interface TpLoadOptions {
  backend: BackendChoice;
  threads?: number;
  pps: number[];          // prefill lengths (0 entries skipped)
  tg: number;             // decode steps per measured decode
  batches: number[];      // decode batches
  reps: number;
  warmup: number;
  retries?: number;
  maxContention?: number;
  share?: boolean;        // a profiled pass per decode batch at tp > 1 (default true)
  onProgress?: (m: string) => void;
}
export interface TpLoadResult {
  cells: TpCell[];
  rows: BenchRow[];
  device: DeviceManifest;
  weightBytes: number;
  bandwidth?: { bytesS: number; file: string };
  manifest: Manifest;
}

/** Tests need this many tokens in a sequence at most (the memory estimate's context). */
export function tpContextTokens(o: Pick<TpLoadOptions, "pps" | "tg">): number {
  return Math.max(16 + o.tg, ...o.pps.map((p) => p + 8));
}

/** Loads `source` split `ranks` ways, times prefill and decode, then (tp > 1) the profiled share pass. */
export async function runTpLoad(source: string, ranks: number, o: TpLoadOptions): Promise<TpLoadResult> {
  const log = o.onProgress ?? (() => {});
  const m = (await openModel(source, { backend: o.backend, threads: o.threads, parallel: `tp${ranks}` as "tp1" })) as Model;
  try {
    // the preset names a synthetic model in the table ("72b"); weights say the type
    const model = (m.format === "synthetic" ? parseSyntheticSource(m.id)?.preset : undefined) ?? modelLabel(m.id), weights = weightLabel(m), backend = `${m.backend} tp${ranks}`;
    const ceil = ceilingsForDevice(m.device.name, undefined, m.backend);
    const bw = dramBandwidth(ceil);
    const cells: TpCell[] = [], rows: BenchRow[] = [];
    const opts = { reps: o.reps, warmup: o.warmup, retries: o.retries ?? 0, maxContention: o.maxContention, onProgress: (x: string) => log(`tp${ranks} ${x}`) };
    const pps = o.pps.filter((p) => p > 0);
    if (pps.length) {
      const maxPp = Math.max(...pps);
      const s = m.newSession({ maxBatch: 1, maxContext: maxPp + 8, maxPrefill: maxPp });
      try {
        for (const pp of pps) {
          const r = runBenchCase(m, s, { nPrompt: pp, nGen: 0 }, opts);
          rows.push(...r.rows.map((x) => ({ ...x, backend })));
          cells.push({ model, weights, backend, ranks, test: "prefill", label: `pp${pp}`, batch: 1, tokS: r.prefill! });
        }
      } finally { s.close(); }
    }
    if (o.tg > 0 && o.batches.length) {
      const s = m.newSession({ maxBatch: Math.max(...o.batches), maxContext: 16 + o.tg, maxPrefill: 8 });
      try {
        const kvPerToken = s.kvInfo?.().kvBytesPerToken ?? 0;
        for (const b of o.batches) {
          const r = runBenchCase(m, s, { nPrompt: 0, nGen: o.tg, batch: b }, opts);
          rows.push(...r.rows.map((x) => ({ ...x, backend })));
          const cell: TpCell = { model, weights, backend, ranks, test: "decode", label: `tg${o.tg} b${b}`, batch: b, tokS: r.decode! };
          if (bw) cell.rooflineTokS = aggregateRooflineTokS({ bytesPerStep: decodeBytesPerStep(m.weightBytes, kvPerToken, 8 + o.tg / 2, b), batch: b, ranks, bandwidthBytesS: bw });
          if (ranks === 1) cell.commNote = "tp1: no collectives";
          else if (o.share === false) cell.commNote = "not measured (share pass off)";
          else {
            const sh = profiledCommShare(s, m.config.vocab_size, b, Math.min(o.tg, 16));
            if (sh.shares) { cell.commShare = sh.shares; cell.commMode = sh.mode; }
            else cell.commNote = sh.note;
            log(`tp${ranks} tg${o.tg} b${b} all-reduce share: ${sh.shares ? sh.shares.map((x) => `r${x.rank} ${(100 * x.share).toFixed(1)} %`).join(", ") : sh.note}`);
          }
          cells.push(cell);
        }
      } finally { s.close(); }
    }
    return { cells, rows, device: m.device, weightBytes: m.weightBytes, ...(bw && ceil ? { bandwidth: { bytesS: bw, file: ceil.file } } : {}), manifest: m.manifest({}) };
  } finally {
    m.close();
  }
}


// ------------------------------------------------------------------------------------------------ NCCL floor
/** What `tplab --json FILE` writes (cuda/dev/tplab.cu). */
export const TplabJson = z.object({
  preset: z.string(), ranks: z.number().int().min(2), hidden: z.number().int().positive(), checks_passed: z.boolean(), layer_replay_us: z.number(),
  all_reduce: z.array(z.object({ type: z.string(), rows: z.number().int(), bytes: z.number(), us: z.number().positive(), busbw_gb_s: z.number() })).min(1),
});

/**
 * Runs the multi-GPU lab at `ranks` ranks on a layer of `preset` and reads its all-reduce timings (latency and bus
 * bandwidth per message size: the floor one layer pays twice), or says why there are none: tplab's own line (too few
 * devices, no NCCL, a failed check) or an unreadable result. A lab whose correctness checks failed gives no floor.
 */
export function runTplab(bin: string, preset: string, ranks: number, timeoutMs = 300_000): { floor?: NcclFloor; note?: string } {
  const jf = join(tmpdir(), `tplab-${process.pid}-${preset}-${ranks}.json`);
  try {
    let r: ReturnType<typeof Bun.spawnSync>;
    try {
      r = Bun.spawnSync([bin, String(ranks), "--preset", preset, "--json", jf], { stdout: "pipe", stderr: "pipe", timeout: timeoutMs });
    } catch (e) {  // not there, not executable
      return { note: `not measured — ${bin} does not start (${(e as Error).message}; make -C cuda/dev tplab)` };
    }
    const text = String(r.stdout ?? "") + String(r.stderr ?? "");
    if (r.exitCode !== 0 || !existsSync(jf)) {
      const lines = text.split("\n");
      const line = (lines.find((x) => /tplab: (needs|FAIL|cannot)/.test(x)) ?? lines.find((x) => /nccl|error/i.test(x)))?.trim() ?? `exit ${r.exitCode ?? "(killed)"}`;
      return { note: `not measured — ${line}` };
    }
    let raw: unknown;
    try { raw = JSON.parse(readFileSync(jf, "utf8")); } catch (e) { return { note: `not measured — tplab's JSON does not parse: ${(e as Error).message}` }; }
    const p = TplabJson.safeParse(raw);
    if (!p.success) return { note: `not measured — tplab's JSON at ${p.error.issues[0]?.path.join(".") || "<root>"}: ${p.error.issues[0]?.message}` };
    if (!p.data.checks_passed) return { note: "not measured — tplab's correctness checks failed (its log says which)" };
    return { floor: { preset, ranks: p.data.ranks, hidden: p.data.hidden, all_reduce: p.data.all_reduce, layer_replay_us: p.data.layer_replay_us } };
  } finally {
    rmSync(jf, { force: true });
  }
}
