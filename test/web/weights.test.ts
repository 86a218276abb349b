// The `weights` toggle in the workbench on the real CPU engine (embedded default model): a load-time option,
// so a run naming another value reloads the model with it (and the model view reports it); a quant-error
// measurement compares as-loaded against q4 on the same model file (the arm opens its own copy); bad values
// are refused with a 400 that names them. The output matrix (weightsLayers.output, no toggle) on an untied model:
// shown in the model view and the profile, kept across a reload for another `weights` value.
import { describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { appsForFile, cpuEngineApps, json, taskEvents as task } from "./helpers.ts";
import { EngineCore, LocalHost } from "../../web/core.ts";
import type { OpenModel } from "../../engine/api.ts";
import { tinyTestSpec } from "../reference/fixtures.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const REPO = resolve(import.meta.dir, "../..");
const have = existsSync(join(REPO, "cuda/build/libqwen_cpu.so"));
const setup = cpuEngineApps();

describe.skipIf(!have)("weights toggle on the CPU engine", () => {
  type App = Awaited<ReturnType<typeof setup>>;
  const model = async (app: App) => ((await (await app.request("/api/model")).json()) as { loaded: { weights: unknown } }).loaded;

  test("a run with weights = q8 reloads the model with it; a later run without weights keeps it; as-loaded goes back", async () => {
    const app = await setup();
    expect((await task(app, "/api/models/load", { source: "default", backend: "cpu" })).at(-1)!.event).toBe("done");
    expect((await model(app)).weights).toBe("as-loaded");
    const run = (toggles: Record<string, unknown>) => task(app, "/api/runs", { prompt: "The jury said", maxTokens: 4, repeats: 1, warmup: 0, toggles });
    let ev = await run({ weights: "q8" });
    expect(ev.at(-1)!.event).toBe("done");
    expect(ev.some((e) => e.event === "loaded" && e.data.weights === "q8")).toBe(true);
    expect((await model(app)).weights).toBe("q8");
    const key = ev.at(-1)!.data.profileKey as string;
    const prof = (await (await app.request(`/api/profiles/${encodeURIComponent(key)}`)).json()) as { manifest: { toggles: Record<string, unknown> } };
    expect(prof.manifest.toggles.weights).toBe("q8");
    ev = await run({});
    expect(ev.some((e) => e.event === "loaded")).toBe(false);
    expect((await model(app)).weights).toBe("q8");
    ev = await run({ weights: ["q4", "bf16", "q4", "q4"] });
    expect(ev.at(-1)!.event).toBe("done");
    expect((await model(app)).weights).toEqual(["q4", "bf16", "q4", "q4"]);
    ev = await run({ weights: "as-loaded" });
    expect((await model(app)).weights).toBe("as-loaded");
    for (const bad of [{ weights: "q5" }, { weights: ["q4", "q4"] }]) {
      const r = await app.request("/api/runs", json({ prompt: "x", toggles: bad }));
      expect(r.status).toBe(400);
      expect(((await r.json()) as { error: string }).error).toMatch(/weights/);
    }
  }, 300_000);

  test("quant error: as-loaded vs q4 on the same model file, per-layer SQNR next to each layer's time", async () => {
    const app = await setup();
    expect((await task(app, "/api/models/load", { source: "default", backend: "cpu" })).at(-1)!.event).toBe("done");
    const ev = await task(app, "/api/quant", {
      prompt: "The old man walked into the room", repeats: 1,
      reference: { label: "bf16", toggles: { weights: "as-loaded" } }, candidate: { label: "q4", toggles: { weights: "q4" } },
    });
    const end = ev.at(-1)!;
    expect(end.event).toBe("done");
    const q = end.data.quant_error[0];
    expect(q.layers.length).toBe(4);
    for (const l of q.layers) expect(l.sqnr_db).toBeGreaterThan(0);
    expect(q.layers.some((l: { sqnr_db: number }) => l.sqnr_db < 200)).toBe(true); // q4 did change the activations
    expect(q.logits.top1_agreement).toBeGreaterThan(0);
    expect(q.weights.map((w: { layer: number }) => w.layer)).toEqual([0, 1, 2, 3]);
    for (const w of q.weights) {
      expect([w.reference, w.candidate]).toEqual(["as-loaded", "q4"]);
      expect(w.sqnr_db).toBeGreaterThan(10); // 4-bit, group 128: ~20 dB on these weights
      expect(w.sqnr_db).toBeLessThan(40);
      expect(w.cosine).toBeGreaterThan(0.9);
    }
    expect((await model(app)).weights).toBe("as-loaded"); // the loaded model is untouched
  }, 300_000);
});

describe.skipIf(!have)("the output matrix (weightsLayers.output) in the workbench", () => {
  const make = appsForFile();
  // "synthetic:tiny" opens an untied tiny model here (the presets and the embedded model are tied, so they refuse it)
  const untiedApp = async () => {
    const { openModel, openSyntheticInMemory } = await import("../../engine/index.ts");
    const open: OpenModel = (src, opts = {}) => src === "synthetic:tiny"
      ? openSyntheticInMemory(tinyTestSpec({ tie_word_embeddings: false }), "f32", { ...opts, id: "synthetic:tiny:untied" })
      : openModel(src, opts);
    return make({}, {}, new LocalHost(new EngineCore(open))).app;
  };
  type App = Awaited<ReturnType<typeof untiedApp>>;
  const model = async (app: App) => ((await (await app.request("/api/model")).json()) as { loaded: { weights: unknown; weightsOutput?: string } }).loaded;

  test("loaded with output = q8: the model view and the profile say so; a weights reload keeps it", async () => {
    const app = await untiedApp();
    const load = await task(app, "/api/models/load", { source: "synthetic:tiny", backend: "cpu", weightsLayers: { output: "q8" } });
    expect(load.at(-1)!.event).toBe("done");
    expect(await model(app)).toMatchObject({ weights: "as-loaded", weightsOutput: "q8" });
    const run = (toggles: Record<string, unknown>) => task(app, "/api/runs", { prompt: "The jury said", maxTokens: 2, repeats: 1, warmup: 0, toggles });
    let ev = await run({ weights: "q4" });
    expect(ev.at(-1)!.event).toBe("done");
    expect(ev.some((e) => e.event === "loaded" && e.data.weights === "q4" && e.data.weightsOutput === "q8")).toBe(true);
    expect(await model(app)).toMatchObject({ weights: "q4", weightsOutput: "q8" });
    const key = ev.at(-1)!.data.profileKey as string;
    const prof = (await (await app.request(`/api/profiles/${encodeURIComponent(key)}`)).json()) as { manifest: { toggles: Record<string, unknown>; model: { weights_output?: string } } };
    expect(prof.manifest.toggles.weights).toBe("q4");
    expect(prof.manifest.model.weights_output).toBe("q8");
    ev = await run({ weights: "as-loaded" });
    expect(await model(app)).toMatchObject({ weights: "as-loaded", weightsOutput: "q8" });
    // a plain load (no option) goes back to the output as loaded
    expect((await task(app, "/api/models/load", { source: "synthetic:tiny", backend: "cpu" })).at(-1)!.event).toBe("done");
    expect((await model(app)).weightsOutput).toBeUndefined();
  }, 300_000);

  test("bad output values are refused with a 400; a tied model's load fails with the engine's reason", async () => {
    const app = await untiedApp();
    const r = await app.request("/api/models/load", json({ source: "synthetic:tiny", weightsLayers: { output: "q5" } }));
    expect(r.status).toBe(400);
    expect(((await r.json()) as { error: string }).error).toMatch(/"q5" is not a weight format/);
    const ev = await task(app, "/api/models/load", { source: "default", backend: "cpu", weightsLayers: { output: "q8" } });
    expect(ev.at(-1)!.event).toBe("error");
    expect(JSON.stringify(ev.at(-1)!.data)).toMatch(/ties its lm_head to the token embedding/);
  }, 300_000);
});
