// The fake engine of the web tests stays the real engine's double where names are concerned: its catalog, its
// toggle registry, its profiling modes and the values its sessions start with are the native library's, and every
// op it records is one of the library's ops. A change of the registry (a new toggle, a value, a backend list)
// therefore reaches the web tests, instead of being hidden behind an out-of-date copy.
import { describe, expect, test } from "bun:test";
import { catalog as libraryCatalog } from "../../engine/catalog.ts";
import { effectiveDefault } from "../../engine/measure/record.ts";
import { cpuLibraryBuilt } from "../reference/fixtures.ts";
import { catalog as fakeCatalog, fakeRegistry, makeFakeOpenModel } from "./fake-engine.ts";

describe.skipIf(!cpuLibraryBuilt())("the fake engine against the library's catalog", () => {
  test("catalog, registry and profiling modes are the library's", async () => {
    const lib = libraryCatalog();
    expect(fakeCatalog()).toEqual(lib);
    expect(fakeRegistry()).toEqual(lib.toggles);
    const m = await makeFakeOpenModel()("default");
    expect(m.toggleRegistry()).toEqual(lib.toggles);
    expect(m.profilingModes()).toEqual(lib.profilingModes.map((p) => p.name));
    fakeRegistry()[0].values.push("changed"); // callers get copies: a test cannot edit the fake's registry
    expect(fakeRegistry()).toEqual(lib.toggles);
  });

  test("a session starts where a cpu session of the engine starts, and refuses what the cpu backend lacks", async () => {
    const lib = libraryCatalog();
    const s = (await makeFakeOpenModel()("default")).newSession();
    const t = s.toggles();
    for (const d of lib.toggles) expect(t[d.id]).toBe(effectiveDefault(d, "cpu") ?? d.default);
    const cudaOnly = lib.toggles.flatMap((d) => d.backends.cuda.filter((v) => !d.backends.cpu.includes(v)).map((v) => [d.id, v] as const));
    expect(cudaOnly.length).toBeGreaterThan(0); // graphs = on at least: the CPU has no CUDA graphs
    for (const [id, v] of cudaOnly) expect(() => s.setToggle(id, v)).toThrow(/not implemented by the cpu backend/);
  });

  test("its op records name library ops only", async () => {
    const lib = libraryCatalog();
    const s = (await makeFakeOpenModel()("default")).newSession();
    s.setProfiling(true);
    s.prefill(0, [1, 2, 3]);
    s.decode([0], [4]);
    const { ops } = s.takeRecords();
    expect(ops.op.length).toBeGreaterThan(10);
    for (const id of ops.op) expect(lib.ops[id]).toBeDefined();
  });
});
