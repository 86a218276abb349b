// engine/roofline.ts — per-op achieved bandwidth and compute from op records (analytic FLOPs and bytes, measured
// time), arithmetic intensity, and the position against the device ceilings of profiles/ceilings/<device>.json.
import { existsSync } from "node:fs";
import { readJsonFile } from "./fsafe.ts";
import { join, resolve } from "node:path";
import { OP_NAMES, type OpColumns } from "./profile.ts";

/** Device ceilings (what notebooks/calibrate.ts measures). Numbers in bytes/s and FLOP/s. */
export interface Ceilings {
  device?: string;
  bandwidth_bytes_s?: number;       // achievable DRAM (HBM) bandwidth
  l2_bandwidth_bytes_s?: number;
  flops?: Record<string, number>;   // e.g. { bf16: 9.9e14, int8: ..., fp8: ..., fp32: ... }
  [k: string]: unknown;
}

export interface RooflinePoint {
  key: string;         // "<layer>:<op>" or "<op>" when aggregated over layers
  op: string;
  layer: number;
  phase: number;       // 0 prefill, 1 decode
  kernel: string;
  calls: number;
  time_ns: number;     // total
  flops: number;       // total
  bytes: number;       // total
  ai: number;          // arithmetic intensity, FLOP/byte
  gbs: number;         // achieved GB/s (1e9 bytes/s)
  gflops: number;      // achieved GFLOP/s
  pct_bandwidth?: number; // achieved bytes/s as % of the bandwidth ceiling
  pct_compute?: number;   // achieved FLOP/s as % of the compute ceiling used
  bound?: "memory" | "compute"; // which roof is lower at this AI (needs both ceilings)
  pct_roof?: number;      // % of min(bandwidth·AI, peak)
}

/** Turns a device name into the ceilings file stem: lower case, non-alphanumerics to '-'. */
export function deviceSlug(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
}

/** Loads profiles/ceilings/<slug>.json if it exists (returns undefined otherwise). */
export function loadCeilings(deviceName: string, root = resolve(import.meta.dir, "..")): Ceilings | undefined {
  const p = join(root, "profiles", "ceilings", `${deviceSlug(deviceName)}.json`);
  if (!existsSync(p)) return undefined;
  try {
    const raw = readJsonFile(p, 8 << 20) as Record<string, unknown>; // a regular file only (never a FIFO)
    return normalizeCeilings(raw);
  } catch {
    return undefined;
  }
}

/** Accepts a few plausible spellings of the ceiling fields (GB/s or bytes/s, TFLOP/s or FLOP/s). */
export function normalizeCeilings(raw: Record<string, unknown>): Ceilings {
  const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : undefined);
  const c: Ceilings = { ...raw };
  const src = (raw.ceilings && typeof raw.ceilings === "object" ? raw.ceilings : raw) as Record<string, unknown>;
  c.bandwidth_bytes_s = num(src.bandwidth_bytes_s) ?? (num(src.dram_gbs) ?? num(src.copy_gbs) ?? num(src.bandwidth_gbs) ?? NaN) * 1e9;
  if (!Number.isFinite(c.bandwidth_bytes_s!)) delete c.bandwidth_bytes_s;
  const fl: Record<string, number> = {};
  const f = src.flops;
  if (f && typeof f === "object") for (const [k, v] of Object.entries(f)) if (num(v)) fl[k] = v as number;
  for (const [k, v] of Object.entries(src)) {
    const m = /^(bf16|fp16|int8|fp8|fp32|f32)_tflops$/.exec(k);
    if (m && num(v)) fl[m[1]] = (v as number) * 1e12;
  }
  if (Object.keys(fl).length) c.flops = fl;
  return c;
}

/**
 * Aggregates op records into roofline points. `byLayer` keeps one point per (layer, op, phase); otherwise
 * layers are summed per (op, phase). `computeKey` picks the compute ceiling (default: "bf16" on CUDA,
 * "fp32" else, whichever exists).
 */
export function rooflinePoints(ops: OpColumns, kernels: string[], opts: { byLayer?: boolean; ceilings?: Ceilings; computeKey?: string; phase?: number } = {}): RooflinePoint[] {
  const m = new Map<string, RooflinePoint>();
  for (let i = 0; i < ops.op.length; i++) {
    if (opts.phase !== undefined && ops.phase[i] !== opts.phase) continue;
    const op = OP_NAMES[ops.op[i]] ?? `op${ops.op[i]}`;
    const layer = opts.byLayer ? ops.layer[i] : -1;
    const key = `${ops.phase[i]}:${opts.byLayer ? layer + ":" : ""}${op}`;
    let p = m.get(key);
    if (!p) {
      p = { key, op, layer, phase: ops.phase[i], kernel: kernels[ops.kernel[i]] ?? "", calls: 0, time_ns: 0, flops: 0, bytes: 0, ai: 0, gbs: 0, gflops: 0 };
      m.set(key, p);
    }
    p.calls++;
    p.time_ns += Math.max(0, ops.t_end_ns[i] - ops.t_start_ns[i]);
    p.flops += ops.flops[i];
    p.bytes += ops.bytes[i];
  }
  const c = opts.ceilings;
  const bw = c?.bandwidth_bytes_s;
  const peak = c?.flops ? (c.flops[opts.computeKey ?? ""] ?? c.flops.bf16 ?? c.flops.fp32 ?? c.flops.f32 ?? Object.values(c.flops)[0]) : undefined;
  for (const p of m.values()) {
    const s = p.time_ns / 1e9;
    p.ai = p.bytes > 0 ? p.flops / p.bytes : 0;
    p.gbs = s > 0 ? p.bytes / s / 1e9 : 0;
    p.gflops = s > 0 ? p.flops / s / 1e9 : 0;
    if (bw) p.pct_bandwidth = (100 * p.gbs * 1e9) / bw;
    if (peak) p.pct_compute = (100 * p.gflops * 1e9) / peak;
    if (bw && peak) {
      const roof = Math.min(bw * p.ai, peak);
      p.bound = bw * p.ai < peak ? "memory" : "compute";
      p.pct_roof = roof > 0 ? (100 * p.gflops * 1e9) / roof : undefined;
    }
  }
  return [...m.values()].sort((a, b) => b.time_ns - a.time_ns);
}

/** Time per (layer, op) summed over steps, for stacked-bar latency views. */
export function timeByLayerOp(ops: OpColumns, phase?: number): Map<number, Map<string, number>> {
  const out = new Map<number, Map<string, number>>();
  for (let i = 0; i < ops.op.length; i++) {
    if (phase !== undefined && ops.phase[i] !== phase) continue;
    const L = ops.layer[i];
    let row = out.get(L);
    if (!row) out.set(L, (row = new Map()));
    const op = OP_NAMES[ops.op[i]] ?? `op${ops.op[i]}`;
    row.set(op, (row.get(op) ?? 0) + Math.max(0, ops.t_end_ns[i] - ops.t_start_ns[i]));
  }
  return out;
}

/**
 * The bandwidth roofline of a decode step: the least time the step can take is weight bytes (+ KV bytes)
 * over the bandwidth ceiling. Returns the achieved fraction in percent for a measured tok/s at batch b.
 */
export function decodeRooflinePct(weightBytes: number, tokPerS: number, batch: number, bandwidthBytesS: number, kvBytesPerStep = 0): number {
  const stepsPerS = tokPerS / batch;
  return (100 * stepsPerS * (weightBytes + kvBytesPerStep)) / bandwidthBytesS;
}
