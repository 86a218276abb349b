// engine/catalog.ts — every name the native library defines (op names with their cost models, hook names,
// profiling modes, the toggle registry with what each optimization changes in those cost models), read once from qw_catalog_json and validated with zod. The one place the
// TypeScript side gets names from: the CLI, the notebooks, the measurement and export code, the web server (and
// through its API the page). No list of op, hook, profiling-mode or toggle names is written anywhere else in
// engine/ or notebooks/ (docs/ARCHITECTURE.md §Hooks, §How a toggle flows).
//
// The document is static and the same for both libraries, so the CPU library (always built by `npm install`)
// answers when no engine is loaded; an engine's own library answers through catalogOf(lib).
import { z } from "zod";
import { libraryAvailable, NativeLibrary, QW_ABI_VERSION, type BackendName } from "./ffi.ts";

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
  /** The ops whose analytic cost the values change, and how (OptDef::cost in the optimization's folder). */
  cost: z.array(z.object({ ops: z.array(z.string().min(1)).min(1), how: z.string().min(1) })).default([]),
}).refine((t) => t.values.includes(t.default), { message: "default is not one of values" })
  .refine((t) => [...t.backends.cpu, ...t.backends.cuda].every((v) => t.values.includes(v)), { message: "a backend lists a value not in values" });

export const ToggleRegistrySchema = z.array(ToggleDefSchema).refine((a) => new Set(a.map((t) => t.id)).size === a.length, { message: "duplicate toggle id" });

/** Entries numbered 0, 1, 2, … in order: op records and profiling modes carry these ids. */
const inIdOrder = <T extends { id: number }>(a: T[]) => a.every((x, i) => x.id === i);
const unique = (a: string[]) => new Set(a).size === a.length;
const Name = z.string().min(1);

export const CatalogSchema = z.object({
  abi: z.number().int(),
  ops: z.array(z.object({ id: z.number().int(), name: Name, cost: z.string() })).min(1)
    .refine(inIdOrder, { message: "op ids are not 0, 1, 2, … in order" })
    .refine((a) => unique(a.map((o) => o.name)), { message: "duplicate op name" }),
  hooks: z.object({
    perLayer: z.array(Name).min(1).refine(unique, { message: "duplicate hook name" }),
    global: z.array(Name).refine(unique, { message: "duplicate hook name" }),
  }),
  profilingModes: z.array(z.object({ id: z.number().int(), name: Name, description: z.string() })).min(1)
    .refine(inIdOrder, { message: "profiling mode ids are not 0, 1, 2, … in order" }),
  toggles: ToggleRegistrySchema,
}).refine((c) => c.toggles.every((t) => t.cost.every((n) => n.ops.every((op) => c.ops.some((o) => o.name === op)))),
  { message: "a toggle's cost names an op that is not in ops", path: ["toggles"] });
export type Catalog = z.infer<typeof CatalogSchema>;

/** Parses the library's catalog JSON; a malformed document is a library bug and the message says where. */
export function parseCatalog(json: string): Catalog {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (e) {
    throw new Error(`catalog: not JSON (${(e as Error).message})`);
  }
  const r = CatalogSchema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new Error(`catalog: invalid at ${i.path.join(".") || "<root>"}: ${i.message}`);
  }
  return r.data;
}

const byLibrary = new WeakMap<NativeLibrary, Catalog>();

/** The catalog of one loaded library (read once per library). */
export function catalogOf(lib: NativeLibrary): Catalog {
  let c = byLibrary.get(lib);
  if (!c) {
    c = parseCatalog(lib.catalogJson());
    if (c.abi !== QW_ABI_VERSION) throw new Error(`catalog: ${lib.path} says ABI ${c.abi}, engine/ffi.ts speaks ${QW_ABI_VERSION}: rebuild with \`npm run build\``);
    byLibrary.set(lib, c);
  }
  return c;
}

let current: Catalog | undefined;

/** The catalog: from the CPU library (or the CUDA one where only it is built), read on first use. */
export function catalog(): Catalog {
  if (current) return current;
  const backend: BackendName | undefined = (["cpu", "cuda"] as const).find((b) => libraryAvailable(b));
  if (!backend) throw new Error("the native library is not built, so op, hook and toggle names are unknown: run `npm run build` (make -C cuda cpu)");
  current = catalogOf(NativeLibrary.open(backend));
  return current;
}

/** Uses `c` instead of the library's catalog (tests of views that run without the library). */
export function setCatalog(c: Catalog | undefined): void {
  current = c;
}

// ------------------------------------------------------------------------------------------------ ops

/** Op names in qw_op order: a record's op id indexes this. */
export function opNames(): string[] {
  return catalog().ops.map((o) => o.name);
}

/** The name of an op id, or `op<id>` for an id this library does not define (a profile from another build). */
export function opName(id: number): string {
  return catalog().ops[id]?.name ?? `op${id}`;
}

/** The position of an op name in qw_op order (for sorting), or the number of ops when unknown (sorts last). */
export function opIndex(name: string): number {
  const i = catalog().ops.findIndex((o) => o.name === name);
  return i < 0 ? catalog().ops.length : i;
}

/** Ops whose records carry time but no model work (gaps, copies, the CPU pool wake-up): their cost model in the
 *  library is "none: …". The roofline leaves them out, the fidelity sum check counts them. */
export function nonModelOps(): ReadonlySet<string> {
  return new Set(catalog().ops.filter((o) => /^none\b/.test(o.cost)).map((o) => o.name));
}

/** The collectives of tensor parallelism (all_reduce, all_gather): their cost model in the library starts "tensor
 *  parallelism". Their time is the communication share of a step; their bytes cross the interconnect, not memory. */
export function collectiveOps(): ReadonlySet<string> {
  return new Set(catalog().ops.filter((o) => /^tensor parallelism\b/.test(o.cost)).map((o) => o.name));
}

// ------------------------------------------------------------------------------------------------ hooks

/** Hook names inside a block, in forward order, without the "blocks.{L}." prefix (e.g. "attn.hook_q"). */
export function perLayerHooks(): string[] {
  return [...catalog().hooks.perLayer];
}

/** Hook names outside the blocks (e.g. "hook_logits"). */
export function globalHooks(): string[] {
  return [...catalog().hooks.global];
}

/** Every capturable hook of a model with `nLayers` layers, in forward order: blocks.0.* … blocks.{n-1}.*, then the
 *  global ones. */
export function hookNames(nLayers: number): string[] {
  const per = perLayerHooks();
  return [...Array.from({ length: nLayers }, (_, l) => per.map((h) => `blocks.${l}.${h}`)).flat(), ...globalHooks()];
}

/** `blocks.{layer}.{hook}` for a per-layer hook, `hook` for a global one; throws for a name the library does not
 *  define (so a hook chosen in code is still checked against the one source). */
export function hookName(hook: string, layer?: number): string {
  if (catalog().hooks.global.includes(hook)) return hook;
  if (!catalog().hooks.perLayer.includes(hook)) throw new Error(`hook ${JSON.stringify(hook)} is not one of the library's hooks: ${[...perLayerHooks(), ...globalHooks()].join(", ")}`);
  if (layer === undefined) throw new Error(`hook ${hook} is per layer: give a layer`);
  return `blocks.${layer}.${hook}`;
}

/** Splits a full hook name into its layer (-1 for a global hook) and hook, or null when it names no hook of the
 *  library (with `nLayers`, a layer index out of range is no hook either). */
export function parseHookName(name: string, nLayers?: number): { layer: number; hook: string } | null {
  if (catalog().hooks.global.includes(name)) return { layer: -1, hook: name };
  const m = /^blocks\.(0|[1-9]\d{0,5})\.(.+)$/.exec(name);
  if (!m || !catalog().hooks.perLayer.includes(m[2])) return null;
  const layer = Number(m[1]);
  return nLayers !== undefined && layer >= nLayers ? null : { layer, hook: m[2] };
}

/** Whether `name` is a hook the library can capture (see parseHookName). */
export function isHookName(name: string, nLayers?: number): boolean {
  return parseHookName(name, nLayers) !== null;
}

/** Forward position of a hook name (blocks in layer order, the hooks of a block in forward order, global hooks
 *  last); after all of them (MAX_SAFE_INTEGER) for a name that is no hook. For "which hook first went non-finite". */
export function hookOrder(name: string): number {
  const h = parseHookName(name);
  if (!h) return Number.MAX_SAFE_INTEGER;
  const per = catalog().hooks.perLayer;
  return h.layer < 0 ? 1e9 + catalog().hooks.global.indexOf(h.hook) : h.layer * per.length + per.indexOf(h.hook);
}

// ------------------------------------------------------------------------------------------------ profiling modes, toggles

/** Profiling mode names in qw_profiling_mode order (e.g. off, events, kernels). */
export function profilingModeNames(): string[] {
  return catalog().profilingModes.map((m) => m.name);
}

/** The toggle registry (the same document as qw_toggle_registry_json). */
export function toggleRegistry(): Catalog["toggles"] {
  return catalog().toggles;
}
