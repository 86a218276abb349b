// engine/toggles.ts — toggle settings that come from users (web forms, notebook sweeps, CLI flags) checked
// against the toggle registry (defined once in the native library, read through engine/catalog.ts): a zod schema
// built from the registry, and the one validator every entry point uses (toggleSettingsProblem).
import { z } from "zod";
import type { ToggleDef } from "./api.ts";
import { TOGGLE_ID_RE, ToggleValues } from "./measure/profile.ts";
import { ToggleRegistrySchema } from "./catalog.ts";

// The registry's schema is part of the catalog's (engine/catalog.ts: the one source of names); re-exported here.
export { ToggleDefSchema, ToggleRegistrySchema } from "./catalog.ts";

/** Parses the engine's registry JSON; a malformed registry is an engine bug and says where. */
export function parseRegistry(json: string): ToggleDef[] {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (e) {
    throw new Error(`toggle registry: not JSON (${(e as Error).message})`);
  }
  const r = ToggleRegistrySchema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new Error(`toggle registry: invalid at ${i.path.join(".") || "<root>"}: ${i.message}`);
  }
  return r.data as ToggleDef[];
}

/**
 * A zod schema for user toggle settings: `{ [id]: value | value[] (per layer, length nLayers) }`.
 * With `backend`, only values that backend implements are accepted. Unknown ids are rejected.
 */
export function toggleSettingsSchema(registry: ToggleDef[], opts: ToggleCheckOptions = {}) {
  const shape: Record<string, z.ZodTypeAny> = {};
  for (const t of registry) {
    const allowed = opts.backend ? t.backends[opts.backend] : t.values;
    const one = allowed.length ? z.enum(allowed as [string, ...string[]]) : z.never();
    let s: z.ZodTypeAny = one;
    if (t.perLayer) {
      const arr = opts.nLayers ? z.array(one).length(opts.nLayers) : z.array(one).min(1);
      s = z.union([one, arr]);
    }
    shape[t.id] = s.optional();
  }
  return z.object(shape).strict();
}

export type ToggleSettings = Record<string, string | string[]>;

/**
 * Why a value cannot be set on a backend, or null when it can: not a value of the toggle; "not implemented yet"
 * (specified, no backend implements it); or "not on this backend" (the other backend implements it).
 */
export function toggleValueProblem(def: ToggleDef, value: string, backend: "cpu" | "cuda"): string | null {
  const label = `toggle ${def.id} (${def.name})`;
  if (!def.values.includes(value)) return `${label}: "${value}" is not one of ${def.values.join(", ")}`;
  if (def.backends[backend].includes(value)) return null;
  const other = (["cpu", "cuda"] as const).filter((b) => b !== backend && def.backends[b].includes(value));
  return other.length
    ? `${label} = ${value} is not on the ${backend} backend (the ${other.join(", ")} backend has it; ${backend} has: ${def.backends[backend].join(", ") || "none"})`
    : `${label} = ${value} is not implemented yet (specified in ${def.spec}; no backend implements it)`;
}

export interface ToggleCheckOptions { backend?: "cpu" | "cuda"; nLayers?: number }

/**
 * The one toggle validator (CLI, notebooks, web): user settings against the registry the library exports.
 * The zod schema built from the registry decides; when it refuses, the message names the toggle, what was wrong
 * and what is allowed. Returns that message, or null when the settings are valid.
 */
export function toggleSettingsProblem(registry: ToggleDef[], settings: unknown, opts: ToggleCheckOptions = {}): string | null {
  // ToggleValues first: it refuses __proto__ (which z.object would drop silently) and control characters.
  const base = ToggleValues.safeParse(settings);
  if (!base.success) {
    const i = base.error.issues[0];
    return `toggle ${i.path.length ? JSON.stringify(String(i.path[0])) + " " : ""}refused: ${i.message}; known toggles: ${registry.map((t) => t.id).join(", ")}`;
  }
  const r = toggleSettingsSchema(registry, opts).safeParse(base.data);
  if (r.success) return null;
  for (const [id, v] of Object.entries(base.data)) {
    const why = entryProblem(registry, id, v, opts);
    if (why) return why;
  }
  const i = r.error.issues[0];
  return `toggles: ${i.message} at ${i.path.join(".") || "<root>"}`;
}

/** What is wrong with one setting (the explanation of a refusal by the zod schema), or null. */
function entryProblem(registry: ToggleDef[], id: string, v: string | string[], opts: ToggleCheckOptions): string | null {
  const def = registry.find((t) => t.id === id);
  if (!def) return `unknown toggle "${id}" (known toggles: ${registry.map((t) => t.id).join(", ")})`;
  if (Array.isArray(v)) {
    if (!def.perLayer) return `toggle "${id}" is global, not a per-layer mask`;
    if (opts.nLayers && v.length !== opts.nLayers) return `toggle "${id}": per-layer mask needs ${opts.nLayers} values, got ${v.length}`;
    if (!v.length) return `toggle "${id}": an empty per-layer mask`;
  }
  for (const x of Array.isArray(v) ? v : [v]) {
    if (!def.values.includes(x)) return `toggle ${def.id} (${def.name}): "${x}" is not one of ${def.values.join(", ")}`;
    const why = opts.backend ? toggleValueProblem(def, x, opts.backend) : null;
    if (why) return why;
  }
  return null;
}

/** toggleSettingsProblem that throws: an Error whose message names the toggle and the allowed values. */
export function validateToggleSettings(registry: ToggleDef[], settings: unknown, opts: ToggleCheckOptions = {}): ToggleSettings {
  const why = toggleSettingsProblem(registry, settings, opts);
  if (why) throw new Error(why);
  return settings as ToggleSettings;
}

/** toggleSettingsProblem with the arguments the web's routes have at hand (a loaded model's registry, layer count
 *  and backend). */
export function checkToggles(registry: ToggleDef[], toggles: ToggleValues, nLayers: number, backend: "cpu" | "cuda"): string | null {
  return toggleSettingsProblem(registry, toggles, { backend, nLayers });
}

/** Parses CLI-style "id=value,id2=value2" (a per-layer value as v0/v1/v2...). Ids are checked at once:
 *  `out["__proto__"] = v` would set the prototype and the toggle would vanish unchecked (D8). */
export function parseToggleArg(s: string): ToggleSettings {
  const out: ToggleSettings = {};
  for (const part of s.split(",").map((x) => x.trim()).filter(Boolean)) {
    const eq = part.indexOf("=");
    if (eq <= 0) throw new Error(`toggle "${part}": expected id=value`);
    const id = part.slice(0, eq), v = part.slice(eq + 1);
    if (!TOGGLE_ID_RE.test(id)) throw new Error(`toggle ${JSON.stringify(id)}: not a toggle id (a letter, then letters, digits, _ . -)`);
    out[id] = v.includes("/") ? v.split("/") : v;
  }
  return out;
}

/** Every (id, value) pair the backend implements, for sweeps. */
export function sweepValues(registry: ToggleDef[], backend: "cpu" | "cuda"): { id: string; value: string }[] {
  return registry.flatMap((t) => t.backends[backend].map((value) => ({ id: t.id, value })));
}
