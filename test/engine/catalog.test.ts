// engine/catalog.ts: the one TypeScript door to the names the native library defines (qw_catalog_json). The
// document matches the library's older single-name calls, is validated (a broken one is refused with a place),
// and no list of op, hook, profiling-mode or toggle names is written by hand anywhere else in engine/ or notebooks/.
import { afterEach, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import {
  catalog, catalogOf, globalHooks, hookName, hookNames, hookOrder, isHookName, nonModelOps, opIndex, opName, opNames,
  parseCatalog, parseHookName, perLayerHooks, profilingModeNames, setCatalog, toggleRegistry, type Catalog,
} from "../../engine/catalog.ts";
import { NativeLibrary } from "../../engine/ffi.ts";
import { parseRegistry } from "../../engine/toggles.ts";
import { opColor, paletteDoc, PALETTE } from "../../engine/export/palette.ts";
import { ProfilingMode } from "../../engine/measure/profile.ts";

const REPO = resolve(import.meta.dir, "../..");

/** A small catalog of the documented shape (qwen.h qw_catalog_json), for the checks that must not depend on the
 *  library's current lists. */
const FIXTURE: Catalog = {
  abi: 3,
  ops: [{ id: 0, name: "embed", cost: "gather" }, { id: 1, name: "mix", cost: "matmul" }, { id: 2, name: "gap", cost: "none: idle" }],
  hooks: { perLayer: ["hook_in", "hook_out"], global: ["hook_logits"] },
  profilingModes: [{ id: 0, name: "off", description: "no records" }, { id: 1, name: "fine", description: "every op" }],
  toggles: [{
    id: "mix", name: "Mixer", type: "enum", values: ["a", "b"], default: "a", perLayer: true, needsReset: false,
    backends: { cpu: ["a", "b"], cuda: ["a"] }, spec: "baseline", description: "d", cost: [{ ops: ["mix"], how: "b: half the bytes" }],
  }],
};

afterEach(() => setCatalog(undefined));

describe("the library's catalog", () => {
  test("matches qw_op_name, qw_profiling_mode_name and qw_toggle_registry_json", () => {
    const lib = NativeLibrary.open("cpu");
    const c = catalogOf(lib);
    expect(c.ops.length).toBeGreaterThan(5);
    c.ops.forEach((o, i) => expect(lib.opName(i)).toBe(o.name));
    expect(profilingModeNames()).toEqual(lib.profilingModes());
    expect(toggleRegistry()).toEqual(parseRegistry(lib.toggleRegistryJson()));
    expect(catalog()).toBe(c); // one read per library
    // ops without model work are the ones whose cost model is "none" (gaps, copies, the pool wake-up)
    expect([...nonModelOps()].sort()).toEqual(c.ops.filter((o) => o.cost.startsWith("none")).map((o) => o.name).sort());
    expect(nonModelOps().has("gap")).toBe(true);
    expect(nonModelOps().has("qkv")).toBe(false);
    expect(perLayerHooks().length).toBeGreaterThan(3);
    expect(globalHooks()).toContain("hook_logits");
  });

  test("each profiling mode says what it records; optimizations that change an op's cost say which and how", () => {
    const c = catalog();
    for (const m of c.profilingModes) expect(m.description.length).toBeGreaterThan(10);
    const opsOf = (id: string) => c.toggles.find((t) => t.id === id)!.cost.flatMap((n) => n.ops);
    expect(opsOf("kvCache")).toEqual(["attention"]);
    expect(opsOf("attention")).toEqual(["attention"]);
    expect(opsOf("weights")).toEqual(["qkv", "o_proj", "gate_up", "down"]);
    expect(opsOf("actQuant")).toEqual(["qkv", "o_proj", "gate_up", "down", "lm_head"]); // lm_head: the last layer's arm
    // actQuant = int8 runs on both backends (CUDA: the decode GEMVs of W4 / W8 weights, opt/act_quant/gemv_i8.cu)
    const aq = c.toggles.find((t) => t.id === "actQuant")!;
    expect(aq.backends).toEqual({ cpu: ["off", "int8"], cuda: ["off", "int8"] });
    expect(aq.description).toContain("On CUDA: the decode GEMVs");
    expect(c.toggles.find((t) => t.id === "kvCache")!.cost[0].how).toContain("q8 34/32"); // records: test/engine/kvcache.test.ts
    // engine/session.ts names the one-kernel decode arm (profiling true picks events there): the registry has it
    expect(c.toggles.find((t) => t.id === "decode")?.values).toContain("persistent");
    expect(profilingModeNames()).toContain("events");
  });

  test("the profile schema takes profiling modes from it", () => {
    for (const m of profilingModeNames()) expect(ProfilingMode.parse(m)).toBe(m);
    const r = ProfilingMode.safeParse("sometimes");
    expect(r.success).toBe(false);
    expect(r.error!.issues[0].message).toContain(`is not one of ${profilingModeNames().join(", ")}`);
  });
});

describe("parseCatalog", () => {
  const bad = (patch: (c: Record<string, unknown>) => void) => {
    const c = structuredClone(FIXTURE) as unknown as Record<string, unknown>;
    patch(c);
    return () => parseCatalog(JSON.stringify(c));
  };
  test("accepts the documented shape, refuses broken documents with the place", () => {
    expect(parseCatalog(JSON.stringify(FIXTURE))).toEqual(FIXTURE);
    expect(() => parseCatalog("{")).toThrow(/catalog: not JSON/);
    expect(bad((c) => { (c.ops as { id: number }[])[1].id = 5; })).toThrow(/catalog: invalid at ops: op ids are not 0, 1, 2/);
    expect(bad((c) => { (c.ops as { name: string }[])[1].name = "embed"; })).toThrow(/duplicate op name/);
    expect(bad((c) => { (c.hooks as { perLayer: string[] }).perLayer = ["hook_in", "hook_in"]; })).toThrow(/invalid at hooks.perLayer: duplicate hook name/);
    expect(bad((c) => { (c.profilingModes as { id: number }[])[0].id = 1; })).toThrow(/profiling mode ids/);
    expect(bad((c) => { (c.toggles as { default: string }[])[0].default = "z"; })).toThrow(/invalid at toggles.0: default is not one of values/);
    expect(bad((c) => { delete c.hooks; })).toThrow(/invalid at hooks/);
    expect(bad((c) => { (c.toggles as { cost: unknown }[])[0].cost = [{ ops: ["nope"], how: "x" }]; }))
      .toThrow(/invalid at toggles: a toggle's cost names an op that is not in ops/);
  });
});

describe("names from a catalog (fixture)", () => {
  test("ops: names by id, order, unknown ids from another build", () => {
    setCatalog(FIXTURE);
    expect(opNames()).toEqual(["embed", "mix", "gap"]);
    expect(opName(1)).toBe("mix");
    expect(opName(7)).toBe("op7");
    expect(opIndex("gap")).toBe(2);
    expect(opIndex("nope")).toBe(3);
    expect([...nonModelOps()]).toEqual(["gap"]);
  });

  test("hooks: expanded names, matching, order, checked names", () => {
    setCatalog(FIXTURE);
    expect(hookNames(2)).toEqual(["blocks.0.hook_in", "blocks.0.hook_out", "blocks.1.hook_in", "blocks.1.hook_out", "hook_logits"]);
    expect(parseHookName("blocks.1.hook_out", 2)).toEqual({ layer: 1, hook: "hook_out" });
    expect(parseHookName("hook_logits")).toEqual({ layer: -1, hook: "hook_logits" });
    for (const no of ["blocks.2.hook_in", "blocks.01.hook_in", "blocks.0.hook_logits", "blocks.0.nope", "hook_in", "", "blocks.-1.hook_in"]) {
      expect(isHookName(no, 2)).toBe(false);
    }
    expect(isHookName("blocks.7.hook_in")).toBe(true);
    const shuffled = ["hook_logits", "blocks.1.hook_in", "blocks.0.hook_out", "nope", "blocks.0.hook_in"];
    expect(shuffled.sort((a, b) => hookOrder(a) - hookOrder(b))).toEqual(["blocks.0.hook_in", "blocks.0.hook_out", "blocks.1.hook_in", "hook_logits", "nope"]);
    expect(hookName("hook_out", 3)).toBe("blocks.3.hook_out");
    expect(hookName("hook_logits")).toBe("hook_logits");
    expect(() => hookName("hook_resid_post", 0)).toThrow(/not one of the library's hooks: hook_in, hook_out, hook_logits/);
    expect(() => hookName("hook_in")).toThrow(/per layer/);
  });

  test("the palette colours the catalog's ops", () => {
    setCatalog(FIXTURE);
    expect(paletteDoc().ops).toEqual(["embed", "mix", "gap"]);
    expect(opColor("mix")).toBe(PALETTE[1]);
    expect(opColor("nope")).toBe("#7f7f7f");
  });
});

/** Every .ts file under dir (recursive); with js, .js files too. */
function tsFiles(dir: string, js = false): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name), js) : e.name.endsWith(".ts") || (js && e.name.endsWith(".js")) ? [join(dir, e.name)] : []);
}

test("no hand-written list of names in engine/, notebooks/, web/ (server and page) or the web tests' fake engine: no array literal holds 3 or more catalog names", () => {
  const c = catalog();
  const names = new Set([
    ...c.ops.map((o) => o.name), ...c.hooks.perLayer, ...c.hooks.global, ...c.profilingModes.map((m) => m.name), ...c.toggles.map((t) => t.id),
    ...c.toggles.flatMap((t) => t.values.filter((v) => !["on", "off", "auto"].includes(v))),
  ]);
  // the detector itself: a list like the one this test exists to catch is found
  const arrays = (src: string) => [...src.replace(/\/\/.*$/gm, "").matchAll(/\[([^\[\]]*)\]/g)].map((m) => [...m[1].matchAll(/["'`]([^"'`]+)["'`]/g)].map((x) => x[1]));
  const offending = (src: string) => arrays(src).filter((a) => a.filter((s) => names.has(s)).length >= 3);
  expect(offending(`const HOOK_ORDER = ["hook_resid_pre", "attn.hook_q", "attn.hook_k"];`)).toHaveLength(1);
  expect(offending(`const modes = ["kernels", "events"];`)).toHaveLength(0);
  const found = [...["engine", "notebooks", "web"].flatMap((d) => tsFiles(join(REPO, d), true)), join(REPO, "test/web/fake-engine.ts")]
    .filter((f) => !f.endsWith("engine/catalog.ts") && !f.endsWith(".test.ts"))
    .flatMap((f) => offending(readFileSync(f, "utf8")).map((a) => `${relative(REPO, f)}: [${a.join(", ")}]`));
  expect(found).toEqual([]);
});
