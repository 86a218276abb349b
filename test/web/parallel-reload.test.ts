// The `parallel` toggle in the workbench on the real CPU engine (synthetic:tiny, whose heads split two ways): a
// load-time option like `weights`, so a run naming another value reloads the model with it (the CPU backend then
// emulates the ranks), the model view and the catalog say so, a later run without it keeps it, and a reload for
// `weights` keeps the loaded `parallel`. A value the registry lacks is refused with a 400 naming it.
import { describe, expect, test } from "bun:test";
import { cpuEngineApps, json, taskEvents as task } from "./helpers.ts";
import { cpuLibraryBuilt } from "../reference/fixtures.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const setup = cpuEngineApps();

describe.skipIf(!cpuLibraryBuilt())("parallel toggle on the CPU engine", () => {
  type App = Awaited<ReturnType<typeof setup>>;
  const model = async (app: App) => ((await (await app.request("/api/model")).json()) as { loaded: { parallel?: string; weights: unknown } }).loaded;
  // profiling off: the CPU emulation's ranks keep no op records yet (README, "Tensor parallelism")
  const run = (app: App, toggles: Record<string, unknown>) =>
    task(app, "/api/runs", { prompt: "The jury said", maxTokens: 4, repeats: 1, warmup: 0, profiling: false, toggles });

  test("a run with parallel = tp2 reloads the model at tp2; later runs keep it; weights reloads keep it; tp1 goes back", async () => {
    const app = await setup();
    const cat = (await (await app.request("/api/catalog")).json()) as { parallelToggle: string };
    expect(cat.parallelToggle).toBe("parallel");
    expect((await task(app, "/api/models/load", { source: "synthetic:tiny", backend: "cpu" })).at(-1)!.event).toBe("done");
    expect((await model(app)).parallel).toBe("tp1");
    let ev = await run(app, {});
    expect(ev.at(-1)!.event).toBe("done");
    const tp1Text = ev.at(-1)!.data.text as string;
    ev = await run(app, { parallel: "tp2" });
    expect(ev.at(-1)!.event).toBe("done");
    expect(ev.some((e) => e.event === "loading" && e.data.parallel === "tp2")).toBe(true);
    expect(ev.some((e) => e.event === "loaded" && e.data.parallel === "tp2")).toBe(true);
    expect((await model(app)).parallel).toBe("tp2");
    expect(ev.at(-1)!.data.text).toBe(tp1Text); // the emulation's greedy tokens are tp1's (test/engine/parallel.test.ts)
    const key = ev.at(-1)!.data.profileKey as string;
    const prof = (await (await app.request(`/api/profiles/${encodeURIComponent(key)}`)).json()) as { manifest: { toggles: Record<string, unknown> } };
    expect(prof.manifest.toggles.parallel).toBe("tp2");
    ev = await run(app, {});
    expect(ev.some((e) => e.event === "loaded")).toBe(false);
    expect((await model(app)).parallel).toBe("tp2");
    ev = await run(app, { weights: "bf16" });
    expect(ev.at(-1)!.event).toBe("done");
    expect(ev.some((e) => e.event === "loaded")).toBe(true);
    expect(await model(app)).toMatchObject({ parallel: "tp2", weights: "bf16" });
    ev = await run(app, { parallel: "tp1" });
    expect(ev.at(-1)!.event).toBe("done");
    expect(await model(app)).toMatchObject({ parallel: "tp1", weights: "bf16" });
    const r = await app.request("/api/runs", json({ prompt: "x", toggles: { parallel: "tp3" } }));
    expect(r.status).toBe(400);
    expect(((await r.json()) as { error: string }).error).toMatch(/parallel/);
  }, 300_000);

  test("the load route takes parallel; a split the model cannot take fails the load saying why", async () => {
    const app = await setup();
    const ok = await task(app, "/api/models/load", { source: "synthetic:tiny", backend: "cpu", parallel: "tp2" });
    expect(ok.at(-1)!.event).toBe("done");
    expect((await model(app)).parallel).toBe("tp2");
    const bad = await task(app, "/api/models/load", { source: "synthetic:tiny", backend: "cpu", parallel: "tp8" });
    expect(bad.at(-1)!.event).toBe("error");
    expect(JSON.stringify(bad.at(-1)!.data)).toMatch(/parallel = tp8: the model has 2 KV heads.*splits as tp1, tp2/);
    expect((await model(app)).parallel).toBe("tp2"); // a failed load keeps the model that was loaded
  }, 300_000);
});
