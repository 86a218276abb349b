// Where synthetic models are cached, and the sweep of this process's half-written files. Writers stream into
// `<name>.tmp-<pid>-<time>` (gguf.ts writeFileAtomic) and rename when complete; a process stopped by a signal
// removes its own leftovers with removeOwnTempFiles (the CLI's synth command, the server's shutdown).
// No bun:ffi here: the server's main thread imports this without loading the engine.
import { readdirSync, rmSync } from "node:fs";
import { REPO_ROOT } from "../constants.ts";
import { join, resolve } from "node:path";

/** models/synthetic of this checkout, or QW_SYNTHETIC_DIR (tests, read-only checkouts). */
export function syntheticDir(): string {
  return process.env.QW_SYNTHETIC_DIR ? resolve(process.env.QW_SYNTHETIC_DIR) : join(REPO_ROOT, "models", "synthetic");
}

/** Removes `*.tmp-<pid>-*` files of this process in `dirs` (missing dirs are skipped); returns what it removed. */
export function removeOwnTempFiles(dirs: string[], pid = process.pid): string[] {
  const removed: string[] = [];
  for (const d of dirs) {
    let names: string[];
    try { names = readdirSync(d); } catch { continue; }
    for (const f of names) if (f.includes(`.tmp-${pid}-`)) { rmSync(join(d, f), { force: true }); removed.push(join(d, f)); }
  }
  return removed;
}
