// The web's view of the engine's catalog (engine/catalog.ts: every op, hook, profiling-mode and toggle name,
// from the native library): the document GET /api/catalog serves the page, and the capture-point (hook)
// checks of requests. No name is written here: hooks are checked against the catalog the engine host gives
// (docs/ARCHITECTURE.md §Layers: the native library owns the names; §Hooks).
import type { Catalog } from "../engine/catalog.ts";
import { WEIGHTS_TOGGLE } from "../engine/formats/requant.ts";
import { PARALLEL_TOGGLE } from "../engine/formats/parallel.ts";
import { effectiveDefault } from "../engine/measure/record.ts";
import { HttpError } from "./errors.ts";

/** What the page reads names and defaults from: the catalog, the hook patterns a request may give, each
 *  toggle's effective default per backend (its default, or the first value the backend implements), and the id of
 *  the load-time toggles (weights, parallel: model options, shown as the loaded model has them; another value reloads). */
export function catalogDoc(cat: Catalog) {
  const defaults = (b: "cpu" | "cuda") => Object.fromEntries(cat.toggles.map((d) => [d.id, effectiveDefault(d, b)]));
  return { ...cat, hookPatterns: hookPatterns(cat), defaults: { cpu: defaults("cpu"), cuda: defaults("cuda") }, weightsToggle: WEIGHTS_TOGGLE, parallelToggle: PARALLEL_TOGGLE };
}
export type CatalogDoc = ReturnType<typeof catalogDoc>;

/** Every hook of every layer (blocks.*.X) and the global ones, in forward order. */
export function hookPatterns(cat: Catalog): string[] {
  return [...cat.hooks.perLayer.map((h) => `blocks.*.${h}`), ...cat.hooks.global];
}

/** Every hook name of a model with `nLayers` layers, in forward order. */
export function hookNames(cat: Catalog, nLayers: number): string[] {
  return [...Array.from({ length: nLayers }, (_, l) => cat.hooks.perLayer.map((h) => `blocks.${l}.${h}`)).flat(), ...cat.hooks.global];
}

/** Why `name` is not a hook a request may name (blocks.<layer>.<hook>, blocks.*.<hook>, or a global hook), or null. */
export function hookProblem(cat: Catalog, name: string): string | null {
  if (cat.hooks.global.includes(name)) return null;
  const m = /^blocks\.(0|[1-9]\d{0,5}|\*)\.(.+)$/.exec(name);
  if (m && cat.hooks.perLayer.includes(m[2])) return null;
  return `unknown hook name ${JSON.stringify(name.slice(0, 120))}: blocks.<layer or *>.<one of ${cat.hooks.perLayer.join(", ")}>, or ${cat.hooks.global.join(", ")}`;
}

/** 400 naming the first hook of `hooks` that is none (what: the request field, e.g. "run: capture"). */
export function checkHooks(cat: Catalog, hooks: string[], what: string): void {
  for (const [i, h] of hooks.entries()) {
    const why = hookProblem(cat, h);
    if (why) throw new HttpError(400, `${what}.${i}: ${why}`);
  }
}

/** blocks.*.X → one name per layer; a layer past the model's last is an error; duplicates dropped. */
export function expandHooks(hooks: string[], nLayers: number): string[] {
  const out: string[] = [];
  for (const h of hooks) {
    if (h.startsWith("blocks.*.")) for (let l = 0; l < nLayers; l++) out.push(h.replace("*", String(l)));
    else {
      const m = /^blocks\.(\d+)\./.exec(h);
      if (m && Number(m[1]) >= nLayers) throw new Error(`hook ${h}: the model has ${nLayers} layers`);
      out.push(h);
    }
  }
  return [...new Set(out)];
}
