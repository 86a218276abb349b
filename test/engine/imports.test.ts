// The shape of engine/ as a graph (docs/ARCHITECTURE.md §Layers): no import cycle among its modules (type-only
// imports count: a cycle of types is still two files that cannot be read one without the other), export/ holds
// views that never run the engine, engine/ffi.ts is the only importer of bun:ffi, and web/ and notebooks/ never
// import engine/ffi.ts (they talk to engine/).
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const REPO = resolve(import.meta.dir, "../..");

/** Every .ts file under dir (recursive), as absolute paths. */
function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return e.name === "node_modules" ? [] : tsFiles(p);
    return e.name.endsWith(".ts") ? [p] : [];
  });
}

/** The module specifiers a file imports: static imports, `export … from`, `import type`, and `import("…")`. */
export function importSpecifiers(source: string): string[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:"'`\\])\/\/.*$/gm, "$1");
  const out: string[] = [];
  const re = /(?:^|[;\s])(?:import|export)\s+(?:type\s+)?(?:[\w*{}\s,$]+?\s+from\s+)?["']([^"']+)["']|\bimport\s*\(\s*["']([^"']+)["']\s*\)/g;
  for (const m of code.matchAll(re)) out.push(m[1] ?? m[2]);
  return out;
}

/** file -> the engine files it imports (relative specifiers resolved). */
function graph(files: string[]): Map<string, string[]> {
  const g = new Map<string, string[]>();
  for (const f of files) {
    const deps = importSpecifiers(readFileSync(f, "utf8"))
      .filter((s) => s.startsWith("."))
      .map((s) => resolve(dirname(f), s));
    g.set(f, deps.filter((d) => g.has(d) || files.includes(d)));
  }
  return g;
}

/** Every cycle found by a depth-first search (each reported once, as the path that closes it). */
export function findCycles(g: Map<string, string[]>): string[][] {
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const cycles: string[][] = [];
  const visit = (n: string) => {
    state.set(n, "open");
    stack.push(n);
    for (const d of g.get(n) ?? []) {
      if (state.get(d) === "open") cycles.push([...stack.slice(stack.indexOf(d)), d]);
      else if (!state.has(d)) visit(d);
    }
    stack.pop();
    state.set(n, "done");
  };
  for (const n of g.keys()) if (!state.has(n)) visit(n);
  return cycles;
}

const rel = (p: string) => relative(REPO, p);

describe("engine/ import graph", () => {
  test("the import parser sees every form of import (so the checks below can fail)", () => {
    const src = [
      `import { a } from "./a.ts";`, `import type { B } from "../b.ts";`, `export { c } from "./c.ts";`,
      `export * from "./d.ts";`, `import "./e.ts";`, `const f = await import("./f.ts");`,
      `import {\n  g,\n  h,\n} from "./g.ts";`, `import * as ffi from "bun:ffi";`,
      `// import { no } from "./comment.ts";`, `/* import { no } from "./block.ts"; */`,
    ].join("\n");
    expect(importSpecifiers(src)).toEqual(["./a.ts", "../b.ts", "./c.ts", "./d.ts", "./e.ts", "./f.ts", "./g.ts", "bun:ffi"]);
    const g = new Map([["x", ["y"]], ["y", ["z"]], ["z", ["x"]], ["w", ["x"]]]);
    expect(findCycles(g)).toEqual([["x", "y", "z", "x"]]);
    expect(findCycles(new Map([["x", ["y"]], ["y", []]]))).toEqual([]);
  });

  test("no import cycle among engine/ modules", () => {
    const files = tsFiles(join(REPO, "engine"));
    expect(files.length).toBeGreaterThan(30);
    const cycles = findCycles(graph(files)).map((c) => c.map(rel).join(" -> "));
    expect(cycles).toEqual([]);
  });

  test("export/ holds views: nothing it imports, directly or not, runs the engine", () => {
    const g = graph(tsFiles(join(REPO, "engine")));
    const runners = ["index.ts", "session.ts", "measure/record.ts", "measure/passes.ts", "measure/sweep.ts", "measure/quant-error.ts",
      "measure/perplexity-run.ts", "measure/bench-core.ts", "measure/fidelity.ts", "synth/synthetic.ts"].map((f) => join(REPO, "engine", f));
    for (const r of runners) expect(g.has(r)).toBe(true);
    const reach = new Set<string>();
    const walk = (n: string) => { for (const d of g.get(n) ?? []) if (!reach.has(d)) { reach.add(d); walk(d); } };
    const views = [...g.keys()].filter((f) => rel(f).startsWith("engine/export/"));
    expect(views.length).toBeGreaterThan(3);
    views.forEach(walk);
    expect(runners.filter((r) => reach.has(r)).map(rel)).toEqual([]);
  });

  test("engine/ffi.ts is the only importer of bun:ffi; web/ and notebooks/ never import engine/ffi.ts", () => {
    const ffi = join(REPO, "engine/ffi.ts");
    const all = ["engine", "web", "notebooks", "scripts"].flatMap((d) => tsFiles(join(REPO, d)));
    const bunFfi = all.filter((f) => importSpecifiers(readFileSync(f, "utf8")).includes("bun:ffi")).map(rel);
    expect(bunFfi).toEqual(["engine/ffi.ts"]);
    const direct = all
      .filter((f) => /^(web|notebooks)\//.test(rel(f)))
      .filter((f) => importSpecifiers(readFileSync(f, "utf8")).some((s) => s.startsWith(".") && resolve(dirname(f), s) === ffi))
      .map(rel);
    expect(direct).toEqual([]);
  });
});
