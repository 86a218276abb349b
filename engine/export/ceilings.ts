// Device ceilings for the roofline, read from profiles/ceilings/*.json (written by notebooks/calibrate.ts).
// The calibration file is read leniently: it may be a Profile (kind "calibration", numbers in `ceilings`) or a
// plain object. Keys that look like bandwidths (…bw…, …bandwidth…, …bytes_per_s…, …gb_s…) become memory roofs,
// keys that look like compute peaks (…flop…, …tflops…, …tops…, …peak…) become compute roofs. Units are taken
// from the key suffix (gb_s / tb_s / tflops / gflops / tops) and default to bytes/s and FLOP/s.
import { readdirSync } from "node:fs";
import { readJsonFile, realInside } from "../fsafe.ts";
import { join } from "node:path";

export interface Roof { name: string; value: number }     // bytes/s for memory, FLOP/s for compute
export interface Ceilings { device: string; file: string; memory: Roof[]; compute: Roof[] }

function scaleFor(key: string): number {
  const k = key.toLowerCase();
  if (/tb_?s|tbps|tb\/s/.test(k)) return 1e12;
  if (/gb_?s|gbps|gb\/s/.test(k)) return 1e9;
  if (/tflop|tops/.test(k)) return 1e12;
  if (/gflop|gops/.test(k)) return 1e9;
  return 1;
}

function walk(obj: unknown, prefix: string, out: { memory: Roof[]; compute: Roof[] }, depth = 0) {
  if (depth > 4 || obj === null || typeof obj !== "object") return;
  for (const [k, v] of Object.entries(obj as Record<string, unknown>)) {
    const name = prefix ? `${prefix}.${k}` : k;
    let value: number | undefined;
    if (typeof v === "number") value = v;
    else if (v && typeof v === "object" && typeof (v as { median?: unknown }).median === "number") {
      value = (v as { median: number }).median; // a Stat
      const unit = String((v as { unit?: unknown }).unit ?? "");
      if (unit) { const s = scaleFor(unit.replace("/", "_")); if (value && s !== 1) value *= s; }
      if (value) classify(name, value, out, unit ? 1 : scaleFor(name));
      continue;
    }
    if (value === undefined) { walk(v, name, out, depth + 1); continue; }
    classify(name, value, out, scaleFor(name));
  }
}

function classify(name: string, value: number, out: { memory: Roof[]; compute: Roof[] }, scale: number) {
  const k = name.toLowerCase();
  if (!(value > 0) || !Number.isFinite(value)) return;
  if (/(bw|bandwidth|bytes_per_s|gb_?s|tb_?s|copy)/.test(k)) out.memory.push({ name, value: value * scale });
  else if (/(flop|tops|peak|gemm|mma)/.test(k)) out.compute.push({ name, value: value * scale });
}

export function parseCeilings(raw: unknown, file: string): Ceilings | null {
  if (!raw || typeof raw !== "object") return null;
  const r = raw as Record<string, unknown>;
  // The format notebooks/calibrate.ts writes: {schema: "qwen-workbench/ceilings", device, bandwidth_bytes_s, flops: {bf16: …}}
  // and, optionally, roof_names: {bandwidth: "read bandwidth", fp32: "fp32 FMA (AVX2)"} (the CPU file; the CUDA
  // file has none: its roofs are the device-to-device copy and the tensor cores).
  if (r.schema === "qwen-workbench/ceilings" && typeof r.device === "string") {
    const names = (r.roof_names && typeof r.roof_names === "object" ? r.roof_names : {}) as Record<string, unknown>;
    const nameOf = (k: string, dflt: string) => (typeof names[k] === "string" ? names[k] as string : dflt);
    const memory = typeof r.bandwidth_bytes_s === "number" && r.bandwidth_bytes_s > 0 ? [{ name: nameOf("bandwidth", "copy bandwidth"), value: r.bandwidth_bytes_s }] : [];
    const compute = Object.entries((r.flops ?? {}) as Record<string, unknown>)
      .filter((e): e is [string, number] => typeof e[1] === "number" && e[1] > 0)
      .map(([k, v]) => ({ name: nameOf(k, `${k} tensor core`), value: v }));
    return memory.length || compute.length ? { device: r.device, file, memory, compute } : null;
  }
  const out = { memory: [] as Roof[], compute: [] as Roof[] };
  const body = (r.ceilings && typeof r.ceilings === "object") ? r.ceilings : r;
  walk(body, "", out);
  if (!out.memory.length && !out.compute.length) return null;
  const manifest = r.manifest as { device?: { name?: string } } | undefined;
  const device = String(manifest?.device?.name ?? r.device_name ?? (typeof r.device === "string" ? r.device : "")
    ?? file) || file.replace(/\.json$/, "");
  return { device, file, memory: out.memory, compute: out.compute };
}

/** All ceilings files in `dir` (missing dir → []). Unreadable files are skipped, not fatal. */
export function loadCeilings(dir: string): Ceilings[] {
  let names: string[];
  try { names = readdirSync(dir).filter((n) => n.endsWith(".json")); } catch { return []; }
  const out: Ceilings[] = [];
  for (const n of names.sort()) {
    try {
      // Only regular files whose real path stays in `dir` (no FIFO that blocks, no symlink out: D2, D3).
      const p = realInside(dir, join(dir, n));
      const c = parseCeilings(readJsonFile(p, 8 << 20), n);
      if (c) out.push(c);
    } catch { /* skip */ }
  }
  return out;
}

/** Picks the ceilings matching a device name (exact, then substring), or null. */
export function ceilingsFor(all: Ceilings[], deviceName: string): Ceilings | null {
  const d = deviceName.toLowerCase();
  return all.find((c) => c.device.toLowerCase() === d)
    ?? all.find((c) => d.includes(c.device.toLowerCase()) || c.device.toLowerCase().includes(d) && d.length > 2)
    ?? null;
}
