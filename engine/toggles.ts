// engine/toggles.ts — the toggle registry (defined once in the native engine, exported as JSON by
// qw_toggle_registry_json) validated with zod, and a zod schema built from it for toggle settings that come
// from users (web forms, notebook sweeps, CLI flags).
import { z } from "zod";
import type { ToggleDef } from "./api.ts";
import { TOGGLE_ID_RE, ToggleValues } from "./measure/profile.ts";

export const ToggleDefSchema = z.object({
  id: z.string().min(1),
  name: z.string().min(1),
  type: z.literal("enum"),
  values: z.array(z.string()).min(1),
  default: z.string(),
  perLayer: z.boolean(),
  needsReset: z.boolean(),
  backends: z.object({ cpu: z.array(z.string()), cuda: z.array(z.string()) }),
  spec: z.string(),
  description: z.string(),
}).refine((t) => t.values.includes(t.default), { message: "default is not one of values" })
  .refine((t) => [...t.backends.cpu, ...t.backends.cuda].every((v) => t.values.includes(v)), { message: "a backend lists a value not in values" });

export const ToggleRegistrySchema = z.array(ToggleDefSchema).refine((a) => new Set(a.map((t) => t.id)).size === a.length, { message: "duplicate toggle id" });

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
export function toggleSettingsSchema(registry: ToggleDef[], opts: { backend?: "cpu" | "cuda"; nLayers?: number } = {}) {
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

/** Validates user settings; throws an Error whose message names the toggle and the allowed values. */
export function validateToggleSettings(registry: ToggleDef[], settings: unknown, opts: { backend?: "cpu" | "cuda"; nLayers?: number } = {}): ToggleSettings {
  // ToggleValues first: it refuses __proto__ (which z.object would drop silently) and control characters.
  const base = ToggleValues.safeParse(settings);
  if (!base.success) {
    const i = base.error.issues[0];
    throw new Error(`toggle ${i.path.length ? JSON.stringify(String(i.path[0])) + " " : ""}refused: ${i.message}; known toggles: ${registry.map((t) => t.id).join(", ")}`);
  }
  const r = toggleSettingsSchema(registry, opts).safeParse(settings);
  if (!r.success) {
    const i = r.error.issues[0];
    const id = String(i.path[0] ?? "");
    const def = registry.find((t) => t.id === id);
    const given = def ? (settings as Record<string, unknown>)[id] : undefined;
    for (const v of Array.isArray(given) ? given : [given]) {
      const why = def && opts.backend && typeof v === "string" ? toggleValueProblem(def, v, opts.backend) : null;
      if (why) throw new Error(why);
    }
    const allowed = def ? (opts.backend ? def.backends[opts.backend] : def.values).join(", ") : registry.map((t) => t.id).join(", ");
    const what = def ? `toggle "${id}": ${i.message}; allowed${opts.backend ? ` on ${opts.backend}` : ""}: ${allowed}` : `${i.message}; known toggles: ${allowed}`;
    throw new Error(what);
  }
  return r.data as ToggleSettings;
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
