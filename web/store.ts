// Files the workbench reads and writes: profiles (under the profiles root), prompt sets, and models under the
// model roots. Every user-supplied name goes through confine().
import { existsSync, mkdirSync, readdirSync, unlinkSync, writeFileSync, renameSync, lstatSync } from "node:fs";
import { join, relative, resolve, sep } from "node:path";
import { readProfile, writeProfile, type Profile } from "../engine/measure/profile.ts";
import { PromptSet } from "../engine/measure/record.ts";
import { summaryStats, SUMMARY_METRICS, type SummaryKey } from "../engine/measure/stats.ts";
import { confine } from "./paths.ts";
import { readJsonFile, realInside } from "../engine/io/fsafe.ts";
import { HttpError } from "./errors.ts";

export interface ProfileEntry {
  key: string; id: string; kind: string; label: string | null; date: string; model: string; device: string;
  backend: string; toggles: Record<string, unknown>; bytes: number;
  // medians over the measured repetitions, their min–max in `spread`, `repeats` = how many (engine/measure/stats.ts)
  ttft_ms: number | null; tpot_ms: number | null; decode_tok_s: number | null; prefill_tok_s: number | null;
  spread: Record<SummaryKey, [number, number] | null>; repeats: number;
  has_ops: boolean; has_quant: boolean;
}

const SKIP_DIRS = new Set(["ceilings", "prompt-sets", "node_modules", ".git"]);
const MAX_PROFILE_BYTES = 256 << 20;
const MAX_SET_BYTES = 16 << 20;

export class ProfileStore {
  private cache = new Map<string, { mtime: number; size: number; entry: ProfileEntry | null }>();
  readonly root: string;
  constructor(root: string, readonly saveSubdir = "raw/web") {
    this.root = resolve(root);
    mkdirSync(this.root, { recursive: true });
  }

  pathOf(key: string, mustExist = true): string {
    if (!/^[A-Za-z0-9._\/-]{1,300}$/.test(key)) throw new HttpError(400, `invalid profile key: ${JSON.stringify(key).slice(0, 80)}`);
    return confine(this.root, `${key}.json`, { mustExist });
  }

  list(): ProfileEntry[] {
    const out: ProfileEntry[] = [];
    const walk = (dir: string, depth: number) => {
      let names: string[];
      try { names = readdirSync(dir); } catch { return; }
      for (const n of names) {
        const p = join(dir, n);
        let st;
        try { st = lstatSync(p); } catch { continue; }
        if (st.isSymbolicLink()) continue; // never follow links out of the root while listing
        if (st.isDirectory()) { if (depth < 5 && !SKIP_DIRS.has(n) && !n.startsWith(".")) walk(p, depth + 1); continue; }
        if (!st.isFile() || !n.endsWith(".json") || st.size > MAX_PROFILE_BYTES) continue; // no FIFO or device (D2)
        const key = relative(this.root, p).slice(0, -5).split(sep).join("/");
        const c = this.cache.get(p);
        if (c && c.mtime === st.mtimeMs && c.size === st.size) { if (c.entry) out.push(c.entry); continue; }
        let entry: ProfileEntry | null = null;
        try { entry = this.entryOf(key, readProfile(p), st.size); } catch { entry = null; }
        this.cache.set(p, { mtime: st.mtimeMs, size: st.size, entry });
        if (entry) out.push(entry);
      }
    };
    walk(this.root, 0);
    return out.sort((a, b) => b.date.localeCompare(a.date));
  }

  private entryOf(key: string, p: Profile, bytes: number): ProfileEntry {
    const st = summaryStats(p);
    const med = (k: SummaryKey) => st[k]?.median ?? null;
    const spread = Object.fromEntries(SUMMARY_METRICS.map(({ key }) => [key, st[key] ? [st[key]!.min, st[key]!.max] : null])) as ProfileEntry["spread"];
    return {
      key, id: p.id, kind: p.kind, label: p.manifest.label ?? null, date: p.manifest.date, model: p.manifest.model.id,
      device: p.manifest.device.name, backend: p.manifest.device.backend, toggles: p.manifest.toggles, bytes,
      ttft_ms: med("ttft_ms"), tpot_ms: med("tpot_ms"), decode_tok_s: med("decode_tok_s"), prefill_tok_s: med("prefill_tok_s"),
      spread, repeats: Math.max(0, ...SUMMARY_METRICS.map(({ key }) => st[key]?.n ?? 0)), has_ops: !!p.ops?.step.length, has_quant: !!p.quant_error?.length,
    };
  }

  get(key: string): Profile {
    const path = this.pathOf(key);
    try { return readProfile(path); } catch (e) { throw new HttpError(422, (e as Error).message.replace(this.root + sep, "")); }
  }

  /** Saves a new profile under <root>/<saveSubdir>/<id>.json; returns its key. */
  save(p: Profile): string {
    const key = `${this.saveSubdir}/${p.id}`;
    writeProfile(this.pathOf(key, false), p);
    return key;
  }

  delete(key: string) {
    const path = this.pathOf(key);
    unlinkSync(path);
    this.cache.delete(path);
  }
}

export class PromptSetStore {
  readonly dir: string;
  constructor(dir: string) { this.dir = resolve(dir); }
  private pathOf(name: string, mustExist = true) {
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(name)) throw new HttpError(400, "prompt set name: 1–64 of A-Z a-z 0-9 . _ -");
    return confine(this.dir, `${name}.json`, { mustExist });
  }
  list(): { name: string; prompts: number; description?: string }[] {
    if (!existsSync(this.dir)) return [];
    const out = [];
    for (const n of readdirSync(this.dir).filter((x) => x.endsWith(".json")).sort()) {
      try {
        // regular files whose real path stays in the directory (D2, D3)
        const s = PromptSet.parse(readJsonFile(realInside(this.dir, join(this.dir, n)), MAX_SET_BYTES));
        out.push({ name: s.name, prompts: s.prompts.length, description: s.description });
      } catch { /* skip invalid */ }
    }
    return out;
  }
  get(name: string): PromptSet {
    const p = this.pathOf(name);
    let raw: unknown;
    try { raw = readJsonFile(p, MAX_SET_BYTES, `prompt set ${name}`); } catch (e) { throw new HttpError(422, (e as Error).message); }
    const r = PromptSet.safeParse(raw);
    if (!r.success) throw new HttpError(422, `prompt set ${name}: ${r.error.issues[0]?.message}`);
    return r.data;
  }
  save(s: PromptSet) {
    mkdirSync(this.dir, { recursive: true });
    const p = this.pathOf(s.name, false);
    const tmp = `${p}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(s, null, 2));
    renameSync(tmp, p);
  }
  delete(name: string) { unlinkSync(this.pathOf(name)); }
}

export interface ModelEntry { source: string; kind: "default" | "gguf" | "hf" | "synthetic"; name: string; root?: string; bytes?: number }

export const SYNTHETIC_PRESETS = ["tiny", "0.5b", "1.5b", "7b"];
export const SYNTHETIC_RE = /^synthetic:(tiny|0\.5b|1\.5b|7b)(:(q8_0|q4_k|f16|bf16))?$/;

/** The embedded default, GGUF files and HF directories under the model roots (depth ≤ 4), synthetic presets. */
export function listModels(roots: string[]): ModelEntry[] {
  const out: ModelEntry[] = [{ source: "default", kind: "default", name: "embedded default (tiny-qwen2-brown)" }];
  for (const r of roots) {
    const root = resolve(r);
    const walk = (dir: string, depth: number) => {
      let names: string[];
      try { names = readdirSync(dir); } catch { return; }
      if (names.includes("config.json") && names.some((n) => n.endsWith(".safetensors")) && dir !== root) {
        out.push({ source: dir, kind: "hf", name: relative(root, dir), root });
      }
      for (const n of names.sort()) {
        if (n.startsWith(".")) continue;
        const p = join(dir, n);
        let st;
        try { st = lstatSync(p); } catch { continue; }
        if (st.isSymbolicLink()) continue;
        if (st.isDirectory() && depth < 4) walk(p, depth + 1);
        else if (st.isFile() && n.endsWith(".gguf")) out.push({ source: p, kind: "gguf", name: relative(root, p), root, bytes: st.size });
      }
    };
    walk(root, 0);
  }
  for (const s of SYNTHETIC_PRESETS) for (const q of ["", ":q8_0", ":q4_k"]) {
    out.push({ source: `synthetic:${s}${q}`, kind: "synthetic", name: `synthetic ${s}${q ? ` (${q.slice(1)})` : ""}` });
  }
  return out;
}
