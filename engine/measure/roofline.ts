// engine/measure/roofline.ts — the one roofline module: the device ceilings files (profiles/ceilings/*.json, written by
// notebooks/calibrate.ts, read through one zod schema), matching a run's device to its ceilings, the roofline
// points of a profile's op records, and the bandwidth roofline of a decode step. The web server, the SVG
// exporters, the CLI and the notebooks all read ceilings and points from here.
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import type { Profile } from "./profile.ts";
import { collectiveOps, nonModelOps } from "../catalog.ts";
import { REPO_ROOT } from "../constants.ts";
import { readJsonFile, realInside } from "../io/fsafe.ts";
import { layerLabel, opRecords, PHASES, ranksOf, type OpRecord, type PhaseName } from "./aggregate.ts";
import { l2HitPct } from "./counters.ts";

// ------------------------------------------------------------------------------------------------ ceilings
const Pos = z.number().finite().positive();

/** The ceilings file. Extra fields (measurements with every sample, notes, device_info, …) are for people. */
export const CeilingsFileSchema = z.object({
  schema: z.literal("qwen-workbench/ceilings"),
  version: z.literal(1),
  device: z.string().min(1).max(200),            // as the engine reports it (manifest.device.name)
  backend: z.enum(["cpu", "cuda"]).optional(),
  bandwidth_bytes_s: Pos.optional(),             // DRAM / HBM
  cache_bandwidth_bytes_s: z.object({ l2: Pos.optional(), l3: Pos.optional() }).strict().optional(),
  cache_bytes: z.object({ l2: Pos.optional(), l3: Pos.optional() }).strict().optional(),
  flops: z.record(z.string().regex(/^[a-z0-9_]+$/, "flops keys: lower-case type names (bf16, fp32, int8 …)"), Pos).default({}),
  roof_names: z.record(z.string(), z.string().max(80)).default({}),
}).passthrough();
export type CeilingsFile = z.infer<typeof CeilingsFileSchema>;

export type MemoryLevel = "dram" | "l2" | "l3";
export interface Roof { name: string; value: number; level?: MemoryLevel } // bytes/s for memory, FLOP/s for compute
export interface Ceilings {
  device: string;
  backend?: "cpu" | "cuda";
  file: string;
  dir?: string;                                  // the directory it was read from (loadCeilings)
  memory: Roof[];                                // DRAM first, then the caches (L3, L2)
  compute: Roof[];
  cacheBytes: { l2?: number; l3?: number };
}

const DEFAULT_MEMORY_NAME: Record<MemoryLevel, string> = { dram: "DRAM bandwidth", l2: "L2 bandwidth", l3: "L3 bandwidth" };

/**
 * Where ceilings are read from, first match wins: profiles/raw/ceilings (what notebooks/calibrate.ts measured on
 * this machine, git-ignored), then profiles/ceilings (committed).
 */
export const DEFAULT_CEILINGS_DIRS = [join(REPO_ROOT, "profiles", "raw", "ceilings"), join(REPO_ROOT, "profiles", "ceilings")];

/** Turns a device name into the ceilings file stem: lower case, non-alphanumerics to '-'. */
export function deviceSlug(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
}

/** Validates a parsed ceilings document; throws an Error naming the file and the first problem. */
export function parseCeilings(raw: unknown, file: string): Ceilings {
  const r = CeilingsFileSchema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new Error(`ceilings ${file}: invalid at ${i.path.join(".") || "<root>"}: ${i.message} (expected the schema notebooks/calibrate.ts writes)`);
  }
  const d = r.data;
  const nameOf = (k: string, dflt: string) => d.roof_names[k] ?? dflt;
  const memory: Roof[] = [];
  if (d.bandwidth_bytes_s) memory.push({ name: nameOf("bandwidth", DEFAULT_MEMORY_NAME.dram), value: d.bandwidth_bytes_s, level: "dram" });
  for (const level of ["l3", "l2"] as const) {
    const v = d.cache_bandwidth_bytes_s?.[level];
    if (v) memory.push({ name: nameOf(level, DEFAULT_MEMORY_NAME[level]), value: v, level });
  }
  const compute = Object.entries(d.flops).map(([k, v]) => ({ name: nameOf(k, d.backend === "cpu" ? `${k} peak` : `${k} tensor core`), value: v }));
  if (!memory.length && !compute.length) throw new Error(`ceilings ${file}: no roof (neither bandwidth_bytes_s nor flops)`);
  return { device: d.device, ...(d.backend ? { backend: d.backend } : {}), file, memory, compute, cacheBytes: { ...(d.cache_bytes ?? {}) } };
}

/**
 * Every ceilings file in `dirs` (in order; a missing dir gives none); files that do not parse are listed with the
 * reason instead.
 */
export function loadCeilingsReport(dirs: string | string[] = DEFAULT_CEILINGS_DIRS): { ceilings: Ceilings[]; skipped: { file: string; error: string }[] } {
  const ceilings: Ceilings[] = [], skipped: { file: string; error: string }[] = [];
  for (const dir of typeof dirs === "string" ? [dirs] : dirs) readDir(dir, ceilings, skipped);
  return { ceilings, skipped };
}

function readDir(dir: string, ceilings: Ceilings[], skipped: { file: string; error: string }[]): void {
  let names: string[];
  try { names = readdirSync(dir).filter((n) => n.endsWith(".json")); } catch { return; }
  for (const n of names.sort()) {
    try {
      // Only regular files whose real path stays in `dir` (no FIFO that blocks, no symlink out: server faults
      // D2, D3); errors name the file, never its content.
      const p = realInside(dir, join(dir, n), `ceilings ${n}`);
      ceilings.push({ ...parseCeilings(readJsonFile(p, 8 << 20, `ceilings ${n}`), n), dir });
    } catch (e) {
      skipped.push({ file: n, error: (e as Error).message });
    }
  }
}

export function loadCeilings(dirs: string | string[] = DEFAULT_CEILINGS_DIRS): Ceilings[] {
  return loadCeilingsReport(dirs).ceilings;
}

/** The ceilings of a device name (exact, then substring), preferring a file of the same backend; or null. */
export function ceilingsFor(all: Ceilings[], deviceName: string, backend?: string): Ceilings | null {
  const d = deviceName.toLowerCase();
  const ok = all.filter((c) => !backend || !c.backend || c.backend === backend);
  return ok.find((c) => c.device.toLowerCase() === d)
    ?? ok.find((c) => d.length > 2 && (d.includes(c.device.toLowerCase()) || c.device.toLowerCase().includes(d)))
    ?? null;
}

/** The ceilings of one device from a directory (the CLI and bench.ts). */
export function ceilingsForDevice(deviceName: string, dirs: string | string[] = DEFAULT_CEILINGS_DIRS, backend?: string): Ceilings | null {
  return ceilingsFor(loadCeilings(dirs), deviceName, backend);
}

export function dramBandwidth(c: Ceilings | null | undefined): number | undefined {
  return c?.memory.find((m) => m.level === "dram")?.value;
}

/** The compute roof used for "% of roof": the named type, else bf16, fp32, else the highest. */
export function peakFlops(c: Ceilings | null | undefined, key?: string): number | undefined {
  if (!c?.compute.length) return undefined;
  const by = (k: string) => c.compute.find((r) => r.name.startsWith(`${k} `))?.value;
  return (key ? by(key) : undefined) ?? by("bf16") ?? by("fp32") ?? Math.max(...c.compute.map((r) => r.value));
}

// ------------------------------------------------------------------------------------------------ runs and devices
/** One roofline panel per device: runs on the same device (name and backend) share roofs. */
export interface DeviceGroup<T> { key: string; device: string; backend: string; items: { item: T; index: number }[] }

export function deviceKey(p: Profile): string {
  return `${p.manifest.device.name} (${p.manifest.device.backend})`;
}

/** Groups runs by device, in order of first appearance; `index` is the run's position in `profiles`. */
export function groupByDevice(profiles: Profile[]): DeviceGroup<Profile>[] {
  const m = new Map<string, DeviceGroup<Profile>>();
  profiles.forEach((p, index) => {
    const key = deviceKey(p);
    let g = m.get(key);
    if (!g) m.set(key, (g = { key, device: p.manifest.device.name, backend: p.manifest.device.backend, items: [] }));
    g.items.push({ item: p, index });
  });
  return [...m.values()];
}

/** The warning every roofline view shows when it holds runs of more than one device. */
export function mixedDeviceWarning(groups: { key: string }[]): string | null {
  if (groups.length < 2) return null;
  return `Runs from ${groups.length} devices (${groups.map((g) => g.key).join("; ")}): each panel has its own device's roofs; positions are not comparable across panels.`;
}

// ------------------------------------------------------------------------------------------------ points
export type RooflineGroup = "op" | "layer" | "layer-op";

export interface RooflinePoint {
  label: string;
  phase: PhaseName;
  layer: number | null;
  op: string | null;
  kernels: string[];
  flops: number;             // per step (mean)
  bytes: number;             // per step (mean)
  seconds: number;           // per step (mean)
  intensity: number;         // FLOP / byte
  flopPerS: number;          // achieved FLOP/s
  bytesPerS: number;         // achieved bytes/s
  // profiling mode counters (only when every record of the point was measured): DRAM bytes read + written per
  // step as the GPU counted them, the intensity they give, their rate over the measured kernel time, the L2 hit
  // rate from summed sector lookups. The page plots the measured intensity, the modelled one as a second marker.
  measuredBytes?: number;
  measuredIntensity?: number;
  measuredBytesPerS?: number;
  l2HitPct?: number;
  // tensor parallelism: the rank of a per-rank point (profiles with more than one rank), or, on a step point
  // (stepRooflinePoints), how many ranks its FLOPs and bytes add up over (plotted against `ranks` × the roofs)
  rank?: number;
  ranks?: number;
}

interface Measured { bytes: number; ns: number; hits: number; lookups: number }
// A point is measured only when all of its records are (a partial sum would sit between the two markers).
function addMeasured(m: Measured | null, r: OpRecord): Measured | null {
  if (!m || !r.ctr) return null;
  const c = r.ctr;
  return {
    bytes: m.bytes + c.dramRead + c.dramWrite, ns: m.ns + (c.kernelNs ?? 0),
    hits: m.hits + (c.l2Hits ?? 0), lookups: m.lookups + (c.l2Hits ?? 0) + (c.l2Misses ?? 0),
  };
}
function measuredFields(m: Measured | null, flops: number, steps: number): Partial<RooflinePoint> {
  if (!m || m.bytes <= 0) return {};
  const l2 = l2HitPct(m.hits, m.lookups - m.hits);
  return {
    measuredBytes: m.bytes / steps, measuredIntensity: flops / m.bytes,
    ...(m.ns > 0 ? { measuredBytesPerS: m.bytes / (m.ns / 1e9) } : {}),
    ...(l2 !== null ? { l2HitPct: l2 } : {}),
  };
}

/**
 * One point per op, layer or (layer, op) and phase: FLOPs, bytes and time per step (mean over the phase's steps).
 * With tensor parallelism, one such point per rank (label "r1 …"): a rank is one device, so its points belong
 * against one device's roofs; the collectives are not points (their bytes cross the interconnect, not memory).
 */
export function rooflinePoints(p: Profile, group: RooflineGroup = "op", recs = opRecords(p)): RooflinePoint[] {
  const out: RooflinePoint[] = [];
  const multi = ranksOf(recs).length > 1;
  const skip = new Set([...nonModelOps(), ...(multi ? collectiveOps() : [])]);
  for (const phase of PHASES) {
    const rs = recs.filter((r) => r.phase === phase);
    const steps = Math.max(1, new Set(rs.map((r) => r.step)).size);
    const g = new Map<string, { rank: number; layer: number | null; op: string | null; k: Set<string>; f: number; b: number; ns: number; m: Measured | null }>();
    // gaps, copies and pool wake-ups are time without model work: not roofline points (nor part of a layer's)
    for (const r of rs) {
      if (skip.has(r.op)) continue;
      const layer = group === "op" ? null : r.layer;
      const op = group === "layer" ? null : r.op;
      const rank = r.rank ?? 0;
      const key = `${rank}|${layer}|${op}`;
      let e = g.get(key);
      if (!e) g.set(key, (e = { rank, layer, op, k: new Set(), f: 0, b: 0, ns: 0, m: { bytes: 0, ns: 0, hits: 0, lookups: 0 } }));
      e.k.add(r.kernel); e.f += r.flops; e.b += r.bytes; e.ns += r.ns;
      e.m = addMeasured(e.m, r);
    }
    for (const e of g.values()) {
      if (e.ns <= 0 || e.b <= 0 || e.f <= 0) continue; // no point on a log-log plot
      const s = e.ns / 1e9 / steps;
      const label = [multi ? `r${e.rank}` : null, e.layer === null ? null : layerLabel(e.layer), e.op].filter((x) => x !== null).join(" ");
      out.push({
        label, phase, layer: e.layer, op: e.op, kernels: [...e.k],
        flops: e.f / steps, bytes: e.b / steps, seconds: s,
        intensity: e.f / e.b, flopPerS: e.f / steps / s, bytesPerS: e.b / steps / s,
        ...measuredFields(e.m, e.f, steps),
        ...(multi ? { rank: e.rank } : {}),
      });
    }
  }
  return out;
}

/**
 * Tensor parallelism: one point per phase for the whole step, against the aggregate roofs of the ranks
 * (aggregateCeilings). FLOPs and bytes: every rank's model ops per step (what the N devices did together); time:
 * per step the busiest rank's records of ops and collectives (the ranks wait for each other at every collective,
 * so the step lasts as long as its slowest rank; gaps and copies are left out as in the per-op points), mean over
 * the steps. The collectives' time is in it, their bytes are not (they cross the interconnect). Empty for a
 * profile of one rank.
 */
export function stepRooflinePoints(p: Profile, recs = opRecords(p)): RooflinePoint[] {
  const ranks = ranksOf(recs);
  if (ranks.length < 2) return [];
  const nonModel = nonModelOps(), comm = collectiveOps();
  const out: RooflinePoint[] = [];
  for (const phase of PHASES) {
    const busy = new Map<number, Map<number, number>>(); // step → rank → ns
    let f = 0, b = 0;
    const k = new Set<string>();
    for (const r of recs) {
      if (r.phase !== phase || nonModel.has(r.op)) continue;
      let s = busy.get(r.step);
      if (!s) busy.set(r.step, (s = new Map()));
      s.set(r.rank ?? 0, (s.get(r.rank ?? 0) ?? 0) + r.ns);
      if (comm.has(r.op)) continue;
      f += r.flops; b += r.bytes; k.add(r.kernel);
    }
    const steps = busy.size;
    const ns = [...busy.values()].reduce((a, s) => a + Math.max(...s.values()), 0);
    if (!steps || ns <= 0 || f <= 0 || b <= 0) continue;
    const sec = ns / 1e9 / steps;
    out.push({
      label: `step (${ranks.length} ranks)`, phase, layer: null, op: null, kernels: [...k],
      flops: f / steps, bytes: b / steps, seconds: sec, intensity: f / b, flopPerS: f / steps / sec, bytesPerS: b / steps / sec,
      ranks: ranks.length,
    });
  }
  return out;
}

/** What every roofline view says about a tensor-parallel run (web page, SVG). */
export const TP_ROOFLINE_NOTE = "Tensor parallelism: per-rank points (r0, r1, …) against one device's roofs (a rank is one device); "
  + "◆ step (N ranks) = every rank's FLOPs and bytes per step over the busiest rank's time (collectives included), against N × the roofs "
  + "(the aggregate bandwidth and compute of the ranks). Collectives are not points: their bytes cross the interconnect, not memory.";

/** The roofs of `n` devices working together: every bandwidth and compute peak times n, named so. */
export function aggregateCeilings(c: Ceilings, n: number): Ceilings {
  const times = (r: Roof): Roof => ({ ...r, name: `${n} × ${r.name}`, value: r.value * n });
  const cache = Object.fromEntries(Object.entries(c.cacheBytes).map(([k, v]) => [k, v * n])); // each device has its own
  return { ...c, memory: c.memory.map(times), compute: c.compute.map(times), cacheBytes: cache };
}

/**
 * The points that get a text label: by time, most first, at most `n`, skipping a point whose label box (at its
 * pixel position px/py, 9 px type, drawn to the right of the point) would overlap a label already placed.
 */
export function placeLabels<T extends { seconds: number }>(pts: T[], n: number, px: (d: T) => number, py: (d: T) => number, text: (d: T) => string): T[] {
  const boxes: { x0: number; x1: number; y0: number; y1: number }[] = [];
  const out: T[] = [];
  for (const d of [...pts].sort((a, b) => b.seconds - a.seconds)) {
    if (out.length >= n) break;
    const x0 = px(d) + 4, y0 = py(d) - 6, b = { x0, x1: x0 + 5.4 * text(d).length, y0, y1: y0 + 12 };
    if (boxes.some((o) => b.x0 < o.x1 && o.x0 < b.x1 && b.y0 < o.y1 && o.y0 < b.y1)) continue;
    boxes.push(b);
    out.push(d);
  }
  return out;
}

/**
 * Why a point sits above the DRAM roof: it moved more bytes/s than DRAM delivers, so its bytes came from a cache.
 * Returns the explanation (the smallest measured cache level its per-step bytes fit in), or null when below.
 */
export function aboveDramReason(pt: { bytesPerS: number; bytes: number }, c: Ceilings | null | undefined): string | null {
  const dram = dramBandwidth(c);
  if (!c || !dram || pt.bytesPerS <= dram) return null;
  const mb = (b: number) => `${(b / 1e6).toFixed(b < 1e7 ? 2 : 0)} MB`;
  for (const level of ["l2", "l3"] as const) {
    const size = c.cacheBytes[level];
    if (size && pt.bytes <= size) return `above the DRAM roof: ${mb(pt.bytes)} per step fits in ${level.toUpperCase()} (${mb(size)}), so it is served from cache`;
  }
  return "above the DRAM roof: served from cache (reused between steps)";
}

/** The panel note for runs whose points sit above their DRAM roof (e.g. a 10 MB model that lives in L3). */
export function cacheNote(p: Profile, pts: RooflinePoint[], c: Ceilings | null | undefined): string | null {
  const above = pts.filter((x) => aboveDramReason(x, c));
  if (!above.length) return null;
  const w = p.manifest.model.weight_bytes;
  const l3 = c?.cacheBytes.l3 ?? c?.cacheBytes.l2;
  const fits = w && l3 ? (w <= l3 ? ` Its weights (${(w / 1e6).toFixed(1)} MB) fit in the last-level cache (${(l3 / 1e6).toFixed(0)} MB).` : "") : "";
  const roofs = c?.memory.filter((m) => m.level !== "dram").length ? " Compare them with the cache roofs." : " No cache roofs measured for this device yet.";
  return `${p.manifest.label ?? p.id}: ${above.length} point(s) above the DRAM roof read from cache, not DRAM.${fits}${roofs}`;
}

// ------------------------------------------------------------------------------------------------ decode step
/**
 * The bandwidth roofline of a decode step: the least time the step can take is weight bytes (+ KV bytes)
 * over the bandwidth ceiling. Returns the achieved fraction in percent for a measured tok/s at batch b.
 */
export function decodeRooflinePct(weightBytes: number, tokPerS: number, batch: number, bandwidthBytesS: number, kvBytesPerStep = 0): number {
  const stepsPerS = tokPerS / batch;
  return (100 * stepsPerS * (weightBytes + kvBytesPerStep)) / bandwidthBytesS;
}
