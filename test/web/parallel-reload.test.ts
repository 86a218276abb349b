// The `parallel` toggle in the workbench on the real CPU engine (synthetic:tiny, whose heads split two ways): a
// load-time option like `weights`, so a run naming another value reloads the model with it (the CPU backend then
// emulates the ranks), the model view and the catalog say so, a later run without it keeps it, and a reload for
// `weights` keeps the loaded `parallel`. A value the registry lacks is refused with a 400 naming it. Quant-error and
// perplexity arms naming another value open their own copy of the model with it, as they do for `weights`.
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

  test("quant error and perplexity arms with another parallel than the loaded model open their own copy", async () => {
    const app = await setup();
    expect((await task(app, "/api/models/load", { source: "synthetic:tiny", backend: "cpu" })).at(-1)!.event).toBe("done");
    // unnamed, a load option stays as loaded: tp1 against the loaded tp1 model compares nothing
    const same = await app.request("/api/quant", json({ prompt: "x", reference: {}, candidate: { toggles: { parallel: "tp1" } } }));
    expect(same.status).toBe(400);
    expect(((await same.json()) as { error: string }).error).toMatch(/nothing to compare/);
    const ev = await task(app, "/api/quant", {
      prompt: "The old man walked into the room", repeats: 1,
      reference: { label: "tp1" }, candidate: { label: "tp2", toggles: { parallel: "tp2" } },
    });
    const end = ev.at(-1)!;
    expect(end.event).toBe("done");
    const q = end.data.quant_error[0];
    expect(q.layers.length).toBeGreaterThan(0);
    // the ranks' fp32 sums in rank order: reduction-order noise only (the emulation's logits are within 5e-6 of tp1)
    for (const l of q.layers) expect(l.sqnr_db).toBeGreaterThan(60);
    expect(q.logits.top1_agreement).toBe(1);
    const prof = (await (await app.request(`/api/profiles/${encodeURIComponent(end.data.profileKey as string)}`)).json()) as {
      summary: { candidate_toggles: Record<string, unknown> }; ops: { rank?: number[] };
    };
    expect(prof.summary.candidate_toggles.parallel).toBe("tp2");
    expect(new Set(prof.ops.rank)).toEqual(new Set([0, 1])); // the candidate's records: two ranks ran it
    expect((await model(app)).parallel).toBe("tp1"); // the loaded model is untouched
    // perplexity: the measured arm reloads at tp2 (a load option), the reference arm opens a tp1 copy
    const pe = await task(app, "/api/perplexity", {
      text: { text: "The jury said it did not find any evidence that the election was held in a wrong way." },
      ctx: 8, toggles: { parallel: "tp2" }, reference: { toggles: { parallel: "tp1" } },
    });
    expect(pe.at(-1)!.event).toBe("done");
    const pr = pe.at(-1)!.data.perplexity as { candidate: { ppl: number }; reference: { ppl: number } };
    expect(Math.abs(pr.candidate.ppl - pr.reference.ppl) / pr.reference.ppl).toBeLessThan(1e-4);
    expect((await model(app)).parallel).toBe("tp2");
    // loaded at tp2, an arm naming tp1 differs from the other arm's unnamed (loaded) tp2: compared, not refused
    const back = await app.request("/api/quant", json({ prompt: "x", repeats: 1, reference: {}, candidate: { toggles: { parallel: "tp1" } } }));
    expect(back.status).toBe(202);
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
