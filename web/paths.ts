// Path confinement: a user-supplied path must stay inside a configured root — no "..", no absolute escape,
// no NUL, and no symlink whose target leaves the root.
import { existsSync, realpathSync } from "node:fs";
import { isAbsolute, resolve, sep, relative } from "node:path";
import { HttpError } from "./errors.ts";

function inside(root: string, p: string): boolean {
  return p === root || p.startsWith(root.endsWith(sep) ? root : root + sep);
}

/** Resolves `rel` (relative to root, or absolute but inside root) to a real path inside `root`. */
export function confine(root: string, rel: string, opts: { mustExist?: boolean; allowAbsolute?: boolean } = {}): string {
  if (rel.includes("\0")) throw new HttpError(400, "path contains a NUL byte");
  if (!rel.length) throw new HttpError(400, "empty path");
  if (isAbsolute(rel) && !opts.allowAbsolute) throw new HttpError(400, `absolute paths are not accepted here: ${rel}`);
  if (rel.split(/[\\/]/).includes("..")) throw new HttpError(403, `path escapes its root: ${rel}`);
  const absRoot = resolve(root);
  const target = resolve(absRoot, rel);
  if (!inside(absRoot, target)) throw new HttpError(403, `path escapes its root: ${rel}`);
  if (existsSync(target)) {
    const realRoot = existsSync(absRoot) ? realpathSync(absRoot) : absRoot;
    const real = realpathSync(target);
    if (!inside(realRoot, real)) throw new HttpError(403, `path leaves its root through a symlink: ${rel}`);
    return real;
  }
  if (opts.mustExist) throw new HttpError(404, `not found: ${rel}`);
  return target;
}

/** Finds the root among `roots` that contains `p` (absolute or relative to a root), or throws 403. */
export function confineAny(roots: string[], p: string): string {
  return confineAnyRoot(roots, p).path;
}

/** confineAny, also returning the real path of the root that holds it (the engine confines the source's files to it). */
export function confineAnyRoot(roots: string[], p: string): { path: string; root: string } {
  let lastErr: unknown;
  for (const r of roots) {
    try {
      const rr = resolve(r);
      const rel = isAbsolute(p) ? relative(rr, resolve(p)) : p;
      if (isAbsolute(p) && (rel.startsWith("..") || isAbsolute(rel))) continue;
      const path = confine(rr, rel || ".", { mustExist: true });
      return { path, root: existsSync(rr) ? realpathSync(rr) : rr };
    } catch (e) { lastErr = e; }
  }
  if (lastErr instanceof HttpError && lastErr.status !== 404) throw lastErr;
  if (lastErr instanceof HttpError) throw lastErr;
  throw new HttpError(403, `model path is outside the configured model roots: ${p}`);
}
