// engine/tuning.ts — toggle "tile" (QWEN-010): the per-device tuning file profiles/tuning/<device>.json, the choice
// of each shape's candidate from the native tuner's samples, and loading the table into a session.
//
// The native library owns every name: shape keys, candidate names and what each candidate sets come from
// qw_session_tile_tune / qw_session_info_json "tile" (cuda/src/opt/tile/). This file only measures through it,
// decides, stores and hands the choices back (qw_session_tile_set).
//
// Choice rule (the one significance rule of engine/measure/stats.ts, min-max band over the repetitions): a shape
// keeps fixed unless a candidate is "faster" than fixed, i.e. its median lies below fixed's min AND fixed's median
// above its max; among those the lowest median wins (screening: every candidate, interleaved repetitions). With
// dozens of candidates one can pass by luck, so the winner is measured again against fixed alone (confirmation,
// fresh repetitions) and must be "faster" there too, else the shape keeps fixed. A candidate whose output is
// neither bitwise equal to fixed nor within the bound of a reordered fp32 sum (withinBound) is never chosen.
//
// Device key: CPU = model name + ISA + thread count ("amd-epyc-...-avx512vnni-t2"); CUDA = device name + compute
// capability. Never a hard-coded GPU name: the key is what the library reports.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { z } from "zod";
import { REPO_ROOT } from "./constants.ts";
import type { NativeSession } from "./ffi.ts";

/** What tuning needs of a native session (engine/ffi.ts NativeSession; Session.tiles() hands it out). */
export type TileNative = Pick<NativeSession, "infoJson" | "tileTune" | "tileSet">;
import { deviceSlug } from "./measure/roofline.ts";
import { spreadOf, verdict } from "./measure/stats.ts";

export const TUNING_SCHEMA = "qwen-workbench/tile-tuning";
export const TUNING_VERSION = 1;

/** $QW_TUNING_DIR, else profiles/tuning of the repository. */
export function tuningDir(): string {
  return process.env.QW_TUNING_DIR ? resolve(process.env.QW_TUNING_DIR) : join(REPO_ROOT, "profiles", "tuning");
}

const DeviceSchema = z.discriminatedUnion("backend", [
  z.object({ backend: z.literal("cpu"), name: z.string().min(1), isa: z.string().min(1), threads: z.number().int().positive() }),
  z.object({ backend: z.literal("cuda"), name: z.string().min(1), cc: z.string().min(1) }),
]);
export type TileDevice = z.infer<typeof DeviceSchema>;

const ConfigSchema = z.record(z.string(), z.number());
const CandidateSchema = z.object({ name: z.string().min(1), config: ConfigSchema });
export const TileInfoSchema = z.object({
  device: DeviceSchema,
  entries: z.number().int().nonnegative(),
  candidates: z.object({ gemv: z.array(CandidateSchema).min(1), gemm: z.array(CandidateSchema) }),
  fixed: z.object({ gemv: z.string(), gemm: z.string() }),
});
export type TileInfo = z.infer<typeof TileInfoSchema>;

const TunedCandidateSchema = CandidateSchema.extend({
  samplesNs: z.array(z.number().nonnegative()).min(1),
  maxAbsDiff: z.number(),
  bitwiseEqual: z.boolean(),
  withinBound: z.boolean(),
});
const TunedShapeSchema = z.object({
  key: z.string().min(1), op: z.string(), kind: z.enum(["gemv", "gemm"]), tokens: z.number().int().positive(),
  cols: z.number().int().positive(), rows: z.array(z.number().int().positive()), layers: z.array(z.number().int()),
  inner: z.number().int().positive(), candidates: z.array(TunedCandidateSchema).min(1),
});
export type TunedShape = z.infer<typeof TunedShapeSchema>;
const TuneAnswerSchema = z.object({
  device: DeviceSchema,
  request: z.object({ reps: z.number(), warmup: z.number(), repMs: z.number(), gemmTokens: z.number() }),
  shapes: z.array(TunedShapeSchema),
});
const DryShapeSchema = z.object({ key: z.string(), op: z.string(), kind: z.enum(["gemv", "gemm"]), cols: z.number(), rows: z.array(z.number()), layers: z.array(z.number()) });

const NsSpreadSchema = z.object({ median: z.number(), min: z.number(), max: z.number(), n: z.number().int() });
const ShapeEntrySchema = z.object({
  op: z.string(), kind: z.enum(["gemv", "gemm"]), rows: z.array(z.number().int().positive()), cols: z.number().int().positive(),
  tokens: z.number().int().positive(),
  /** the candidate tile = auto runs for this shape (= fixed unless one was faster outside both spreads) */
  choice: z.string().min(1),
  fixed: z.string().min(1),
  verdict: z.string(),
  fixedNs: NsSpreadSchema,
  choiceNs: NsSpreadSchema,
  candidates: z.array(z.object({
    name: z.string(), medianNs: z.number(), minNs: z.number(), maxNs: z.number(), bitwiseEqual: z.boolean(), withinBound: z.boolean(),
  })),
});
export type ShapeEntry = z.infer<typeof ShapeEntrySchema>;

/** The end-to-end check of one model's choices (checkSteps): its step with the tuned table against fixed. */
const StepCheckSchema = z.object({
  model: z.string().min(1), kind: z.enum(["gemv", "gemm"]), step: z.enum(["decode", "prefill"]), when: z.string(),
  fixedNs: NsSpreadSchema, tunedNs: NsSpreadSchema,
  /** the step with the table kept after the check (= tunedNs when nothing was reverted) */
  keptNs: NsSpreadSchema,
  verdict: z.string(),
  /** shape keys set back to fixed because the step was slower with their choice */
  reverted: z.array(z.string()),
});
export type StepCheck = z.infer<typeof StepCheckSchema>;

export const TuningFileSchema = z.object({
  schema: z.literal(TUNING_SCHEMA),
  version: z.literal(TUNING_VERSION),
  deviceKey: z.string().min(1),
  device: DeviceSchema,
  /** the candidate names the library offered when this was measured: a library with another set makes it stale */
  candidates: z.object({ gemv: z.array(z.string()), gemm: z.array(z.string()) }),
  created: z.string(),
  updated: z.string(),
  request: z.object({ reps: z.number(), warmup: z.number(), repMs: z.number(), gemmTokens: z.number() }),
  shapes: z.record(z.string(), ShapeEntrySchema),
  /** end-to-end checks, one per model and step kind (the latest); absent in files written before 2026-12-07 */
  stepChecks: z.array(StepCheckSchema).optional(),
}).strict();
export type TuningFile = z.infer<typeof TuningFileSchema>;

export function deviceKey(d: TileDevice): string {
  return d.backend === "cpu" ? deviceSlug(`${d.name}-${d.isa}-t${d.threads}`) : deviceSlug(`${d.name}-${d.cc}`);
}

/** The session's tile facts (null where its backend cannot tune: tile = fixed only). */
export function tileInfo(native: TileNative): TileInfo | null {
  const raw = (JSON.parse(native.infoJson()) as { tile?: unknown }).tile;
  return raw == null ? null : TileInfoSchema.parse(raw);
}

const names = (info: TileInfo) => ({ gemv: info.candidates.gemv.map((c) => c.name), gemm: info.candidates.gemm.map((c) => c.name) });

/** A spread as the file stores it (median / min / max / n, no samples). */
const nsOf = (x: ReturnType<typeof spreadOf>) => ({ median: x.median, min: x.min, max: x.max, n: x.n });

/** The screening's pick: the fastest candidate "faster" than fixed (fixed when none is). */
export function screen(s: TunedShape): string {
  const fs = spreadOf(s.candidates[0].samplesNs);
  let best = s.candidates[0].name, bestMedian = fs.median;
  for (const c of s.candidates.slice(1)) {
    if (!c.bitwiseEqual && !c.withinBound) continue;
    const cs = spreadOf(c.samplesNs);
    if (verdict(fs, cs, "lower", "min-max") === "faster" && cs.median < bestMedian) {
      best = c.name;
      bestMedian = cs.median;
    }
  }
  return best;
}

/** One shape's entry from its screening and, when the screening picked a candidate, its confirmation (a
 *  measurement of fixed and that candidate alone). */
export function chooseShape(s: TunedShape, confirm?: TunedShape): ShapeEntry {
  const fixed = s.candidates[0], pick = screen(s);
  const src = confirm ?? s;
  const cf = src.candidates[0], cc = src.candidates.find((c) => c.name === pick) ?? cf;
  const fs = spreadOf(cf.samplesNs), cs = spreadOf(cc.samplesNs);
  let choice = fixed.name, why = "kept fixed: no candidate faster outside both spreads";
  if (pick !== fixed.name) {
    if (!confirm) why = `kept fixed: ${pick} was faster in the screening, and no confirmation was measured`;
    else if (verdict(fs, cs, "lower", "min-max") !== "faster") why = `kept fixed: ${pick} was faster in the screening, not in the confirmation`;
    else {
      choice = pick;
      why = `faster than fixed outside both spreads, screening and confirmation (${cc.bitwiseEqual ? "same bits" : "reordered sum, within bound"})`;
    }
  }
  return {
    op: s.op, kind: s.kind, rows: s.rows, cols: s.cols, tokens: s.tokens, choice, fixed: fixed.name, verdict: why,
    fixedNs: nsOf(fs), choiceNs: nsOf(choice === fixed.name ? fs : cs),
    candidates: s.candidates.map((c) => {
      const x = spreadOf(c.samplesNs);
      return { name: c.name, medianNs: x.median, minNs: x.min, maxNs: x.max, bitwiseEqual: c.bitwiseEqual, withinBound: c.withinBound };
    }),
  };
}

export type ReadResult = { ok: true; file: TuningFile } | { ok: false; missing: boolean; message: string };

/** Reads and checks a tuning file against the library's device and candidates; never throws. */
export function readTuningFile(path: string, info: TileInfo): ReadResult {
  const fallback = "tile = auto falls back to fixed; re-run `npm run calibrate -- --tile` to measure again";
  if (!existsSync(path)) return { ok: false, missing: true, message: `no tuning file ${path}` };
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    return { ok: false, missing: false, message: `${path} is not JSON (${(e as Error).message}): ${fallback}` };
  }
  const r = TuningFileSchema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    return { ok: false, missing: false, message: `${path} is not a tuning file v${TUNING_VERSION} (${i.path.join(".") || "(top)"}: ${i.message}): ${fallback}` };
  }
  const f = r.data, key = deviceKey(info.device);
  if (f.deviceKey !== key || deviceKey(f.device) !== key) {
    return { ok: false, missing: false, message: `${path} was measured on ${f.deviceKey}, this device is ${key}: ${fallback}` };
  }
  const now = names(info);
  for (const kind of ["gemv", "gemm"] as const) {
    if (now[kind].join(",") !== f.candidates[kind].join(",")) {
      return { ok: false, missing: false, message: `${path} is stale: the library's ${kind} candidates changed since it was measured (${f.candidates[kind].length} then, ${now[kind].length} now): ${fallback}` };
    }
  }
  for (const [k, e] of Object.entries(f.shapes)) {
    if (!now[e.kind].includes(e.choice)) return { ok: false, missing: false, message: `${path}: shape ${k} chose ${e.choice}, not a candidate of this library: ${fallback}` };
  }
  return { ok: true, file: f };
}

export interface TuneOptions {
  reps?: number;
  warmup?: number;
  repMs?: number;
  gemmTokens?: number;
  gemv?: boolean;
  gemm?: boolean;
  /** measure only these shape keys (default: every shape of the model) */
  keys?: string[];
  log?: (msg: string) => void;
}

/** The model's shape keys (no measurement). */
export function modelShapes(native: TileNative, o: { gemv?: boolean; gemm?: boolean } = {}): z.infer<typeof DryShapeSchema>[] {
  const a = JSON.parse(native.tileTune(JSON.stringify({ dryRun: true, gemv: o.gemv ?? true, gemm: o.gemm ?? true }))) as { shapes: unknown };
  return z.array(DryShapeSchema).parse(a.shapes);
}

/** Measures shapes through the native tuner (screening, then a confirmation of the pick) and returns their entries. */
export function measureShapes(native: TileNative, o: TuneOptions = {}): { entries: Record<string, ShapeEntry>; request: TuningFile["request"]; device: TileDevice } {
  const keys = o.keys ?? modelShapes(native, o).map((s) => s.key);
  const entries: Record<string, ShapeEntry> = {};
  let request: TuningFile["request"] | undefined, device: TileDevice | undefined;
  const base = { reps: o.reps ?? 5, warmup: o.warmup ?? 1, repMs: o.repMs ?? 2, gemmTokens: o.gemmTokens ?? 64 };
  const tune = (req: object) => TuneAnswerSchema.parse(JSON.parse(native.tileTune(JSON.stringify(req))));
  for (const [i, key] of keys.entries()) {
    const a = tune({ ...base, only: key });
    const s = a.shapes[0];
    const pick = screen(s);
    const confirm = pick === s.candidates[0].name ? undefined
      : tune({ ...base, reps: Math.max(5, base.reps), only: key, candidates: [pick] }).shapes[0];
    const e = chooseShape(s, confirm);
    entries[key] = e;
    o.log?.(`tile: ${i + 1}/${keys.length} ${key}: ${e.choice} (${e.verdict}); fixed ${(e.fixedNs.median / 1e3).toFixed(1)} µs, chosen ${(e.choiceNs.median / 1e3).toFixed(1)} µs`);
    request = a.request;
    device = a.device;
  }
  if (!request || !device) throw new Error("tile: the model has no GEMV or GEMM shape to tune");
  return { entries, request, device };
}

/** Writes `file` atomically (a temporary beside it, then rename). */
export function writeTuningFile(path: string, file: TuningFile): void {
  mkdirSync(resolve(path, ".."), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(TuningFileSchema.parse(file), null, 1) + "\n");
  renameSync(tmp, path);
}

/** Measures the shapes (all of the model, or o.keys), merges them into the device's file (a missing or invalid
 *  one is replaced) and returns it with its path. */
export function tuneAndSave(native: TileNative, info: TileInfo, dir = tuningDir(), o: TuneOptions = {}): { path: string; file: TuningFile; replaced?: string } {
  const path = join(dir, `${deviceKey(info.device)}.json`);
  const prev = readTuningFile(path, info);
  const m = measureShapes(native, o);
  const now = new Date().toISOString();
  const file: TuningFile = prev.ok ? { ...prev.file, updated: now, request: m.request } : {
    schema: TUNING_SCHEMA, version: TUNING_VERSION, deviceKey: deviceKey(info.device), device: info.device,
    candidates: names(info), created: now, updated: now, request: m.request, shapes: {},
  };
  Object.assign(file.shapes, m.entries);
  writeTuningFile(path, file);
  return { path, file, replaced: prev.ok || prev.missing ? undefined : prev.message };
}

export interface TileStatus {
  /** where the table came from: the file, a measurement just made, or none (tile = auto runs fixed) */
  source: "file" | "tuned" | "none";
  path?: string;
  entries: number;
  message?: string;
}

/** Loads the device's table into the session for tile = auto; measures the model's missing shapes first when
 *  `tune` (first use). A bad or stale file, or a backend that cannot tune, gives a message and no table: auto then
 *  runs fixed everywhere. Never throws for a bad file. */
export function ensureTileTable(native: TileNative, o: { dir?: string; tune?: boolean; log?: (m: string) => void } & TuneOptions = {}): TileStatus {
  const info = tileInfo(native);
  if (!info) return { source: "none", entries: 0, message: "this backend has no tile tuning yet: tile = auto runs the fixed configuration" };
  const dir = o.dir ?? tuningDir();
  const path = join(dir, `${deviceKey(info.device)}.json`);
  let r = readTuningFile(path, info);
  let source: TileStatus["source"] = "file";
  if (!r.ok && !r.missing) {
    o.log?.(`tile: ${r.message}`);
    return { source: "none", path, entries: 0, message: r.message };
  }
  const have = r.ok ? r.file.shapes : {};
  const missing = modelShapes(native).map((s) => s.key).filter((k) => !(k in have));
  if (missing.length > 0 && o.tune) {
    o.log?.(`tile: ${missing.length} shape(s) of this model are not in ${path}: measuring them now, per shape (once; \`npm run calibrate -- --tile\` does it ahead and also checks the model's decode step and prefill end to end)`);
    tuneAndSave(native, info, dir, { ...o, keys: missing });
    r = readTuningFile(path, info);
    source = "tuned";
    if (!r.ok) return { source: "none", path, entries: 0, message: r.message };
  }
  if (!r.ok) return { source: "none", path, entries: 0, message: `${r.message}: tile = auto runs fixed` };
  const table = Object.fromEntries(Object.entries(r.file.shapes).map(([k, e]) => [k, e.choice]));
  native.tileSet(JSON.stringify(table));
  const message = missing.length > 0 && !o.tune ? `${missing.length} shape(s) of this model are not in ${path}: fixed for those` : undefined;
  return { source, path, entries: Object.keys(table).length, message };
}

// ------------------------------------------------------------------------------------------------
// End-to-end check. A shape's choice is measured on its GEMV / GEMM alone (plain prologue and epilogue, launches back
// to back); in a model the same launch runs with its fused prologue / epilogue inside a captured decode graph, and
// a candidate faster alone can make the step slower (H100, 0.5B: every GEMV shape 1.01-1.10x faster alone, the decode
// step 2.7 % slower with all of them: thirteenth run). So calibrate times the model's own step with the tuned table
// against fixed, and sets back to fixed what makes it slower.
// ------------------------------------------------------------------------------------------------

/** ns of one repetition of the model's step with `table` loaded (tile = auto; engine/tuning-step.ts). */
export type StepTimer = (table: Record<string, string>) => number;

const fmtUs = (x: { median: number; min: number; max: number }) =>
  `${(x.median / 1e3).toFixed(1)} µs (${(x.min / 1e3).toFixed(1)}–${(x.max / 1e3).toFixed(1)})`;

/** Repetitions interleaved over the tables (a clock or load change hits them all alike); a spread per table. */
function measureTables(time: StepTimer, tables: Record<string, string>[], reps: number) {
  const samples = tables.map(() => [] as number[]);
  for (let r = 0; r < reps; ++r) tables.forEach((t, i) => samples[i].push(time(t)));
  return samples.map(spreadOf);
}

/** Checks `kind`'s non-fixed choices among `entries` (one model's shapes) on the model's step: kept when the step
 *  is not slower than fixed's outside both spreads; else each choice alone against fixed, the ones the step is slower
 *  with set back to fixed, and the rest checked together again (all set back if still slower). Returns the check
 *  and the entries to store (reverted ones with choice = fixed and a verdict saying why); null when `kind` has no
 *  non-fixed choice. */
export function checkSteps(
  entries: Record<string, ShapeEntry>, kind: "gemv" | "gemm", step: "decode" | "prefill", model: string, time: StepTimer,
  o: { reps?: number; log?: (m: string) => void } = {},
): { check: StepCheck; entries: Record<string, ShapeEntry> } | null {
  const reps = Math.max(3, o.reps ?? 5);
  const tuned: Record<string, string> = {};
  for (const [k, e] of Object.entries(entries)) if (e.kind === kind && e.choice !== e.fixed) tuned[k] = e.choice;
  const keys = Object.keys(tuned);
  if (keys.length === 0) return null;
  const [fs, ts] = measureTables(time, [{}, tuned], reps);
  const v = verdict(fs, ts, "lower", "min-max");
  const base = { model, kind, step, when: new Date().toISOString(), fixedNs: nsOf(fs), tunedNs: nsOf(ts) };
  if (v !== "slower") {
    const check: StepCheck = { ...base, keptNs: nsOf(ts), reverted: [], verdict: `kept: the ${step} step with the ${keys.length} tuned shape(s) ${v === "faster" ? "faster than" : "within noise of"} fixed (${fmtUs(ts)} against ${fmtUs(fs)})` };
    o.log?.(`tile: end to end: ${check.verdict}`);
    return { check, entries };
  }
  o.log?.(`tile: end to end: the ${step} step is slower with the tuned table (${fmtUs(ts)} against fixed ${fmtUs(fs)}): each shape alone`);
  const keep: Record<string, string> = {};
  const reverted: string[] = [];
  const why: Record<string, string> = {};
  for (const k of keys) {
    const [a, b] = measureTables(time, [{}, { [k]: tuned[k] }], reps);
    if (verdict(a, b, "lower", "min-max") === "slower") {
      reverted.push(k);
      why[k] = `the ${step} step was slower with ${tuned[k]} alone (${fmtUs(b)} against fixed ${fmtUs(a)})`;
    } else keep[k] = tuned[k];
    o.log?.(`tile:   ${k} ${tuned[k]}: ${k in keep ? "kept" : "set back to fixed"} (${fmtUs(b)} against fixed ${fmtUs(a)})`);
  }
  let kept = fs;
  if (Object.keys(keep).length > 0) {
    const [a, b] = measureTables(time, [{}, keep], reps);
    kept = b;
    if (verdict(a, b, "lower", "min-max") === "slower") {
      for (const k of Object.keys(keep)) {
        reverted.push(k);
        why[k] = `the ${step} step was slower with the shapes kept alone together (${fmtUs(b)} against fixed ${fmtUs(a)})`;
      }
      kept = a;
    }
  }
  const out: Record<string, ShapeEntry> = { ...entries };
  for (const k of reverted) {
    const e = entries[k];
    out[k] = { ...e, choice: e.fixed, choiceNs: e.fixedNs, verdict: `kept fixed: ${e.choice} was faster alone, but ${why[k]}` };
  }
  const check: StepCheck = {
    ...base, keptNs: nsOf(kept), reverted,
    verdict: `${reverted.length} of ${keys.length} tuned shape(s) set back to fixed: the ${step} step was slower with the tuned table (${fmtUs(ts)} against fixed ${fmtUs(fs)}); with what is kept ${fmtUs(kept)}`,
  };
  o.log?.(`tile: end to end: ${check.verdict}`);
  return { check, entries: out };
}

/** Stores a check's entries and the check itself (replacing the same model's and step's earlier one). */
export function applyStepCheck(file: TuningFile, r: { check: StepCheck; entries: Record<string, ShapeEntry> }): TuningFile {
  const checks = (file.stepChecks ?? []).filter((c) => !(c.model === r.check.model && c.step === r.check.step));
  return { ...file, shapes: { ...file.shapes, ...r.entries }, stepChecks: [...checks, r.check] };
}
