// The Run API with speculative decoding (issue 13) on the real CPU engine: the toggle speculative = draft needs a
// draft model under the model roots; a run with one records the acceptance statistics in the profile and, greedy,
// gives the same text as the run without it; the same for speculative = eagle with an EAGLE head.
import { afterAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { createApp } from "../../web/app.ts";
import { EngineCore, LocalHost } from "../../web/core.ts";
import { openModel } from "../../engine/index.ts";
import { cpuLibraryBuilt, ROOT } from "../reference/fixtures.ts";
import { json, readSse } from "./helpers.ts";
import { eagleConfigFor, writeEagleHead } from "../../engine/spec/eagle-head.ts";
import { randomHead } from "../engine/spec-helpers.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout();

describe.skipIf(!cpuLibraryBuilt())("POST /api/runs with speculative = draft (CPU engine)", () => {
  const profiles = mkdtempSync(join(tmpdir(), "qwb-spec-"));
  const heads = mkdtempSync(join(tmpdir(), "qwb-heads-"));
  afterAll(() => { rmSync(profiles, { recursive: true, force: true }); rmSync(heads, { recursive: true, force: true }); });
  const app = createApp({ host: new LocalHost(new EngineCore(openModel)), profilesRoot: profiles, modelRoots: [join(ROOT, "models"), heads], heartbeatMs: 200 });
  const run = async (body: Record<string, unknown>) => {
    const r = await app.request("/api/runs", json({ prompt: "The jury said", maxTokens: 24, repeats: 1, warmup: 0, profiling: false, backend: "cpu", ...body }));
    return r;
  };
  const finish = async (r: Response) => {
    expect(r.status).toBe(202);
    const j = (await r.json()) as { id?: string; task: { id: string } };
    const ev = await readSse(await app.request(`/api/tasks/${j.id ?? j.task.id}/events`));
    const end = ev.at(-1)!;
    expect(end.event).toBe("done");
    return (await (await app.request(`/api/profiles/${encodeURIComponent(end.data.profileKey)}`)).json()) as any;
  };

  test("the toggle without a draft model, and a draft outside the roots, are refused", async () => {
    const r = await run({ toggles: { speculative: "draft" } });
    expect(r.status).toBe(400);
    expect(((await r.json()) as any).error).toMatch(/speculative = draft needs a draft model/);
    const o = await run({ draft: { model: "/etc", k: 2 } });
    expect([403, 404]).toContain(o.status);
  });

  test("a draft run records acceptance and gives the greedy text of the plain run", async () => {
    const plain = await finish(await run({}));
    const spec = await finish(await run({ draft: { model: "tiny-qwen2-brown-draft", k: 3 } }));
    expect(spec.manifest.toggles.speculative).toBe("draft");
    expect(spec.output_text).toBe(plain.output_text);
    const s = spec.summary.speculative;
    expect(s.k).toBe(3);
    expect(s.acceptance_by_position).toHaveLength(3);
    expect(s.steps).toBeGreaterThan(0);
    expect(s.accepted_per_step).toHaveLength(s.steps);
    expect(s.draft_ms.length).toBe(s.steps);
    // the Run page plots these (web/public/app.js drawSpec): every draft phase, each with a median
    expect(s.phases.map((p: { phase: string }) => p.phase)).toEqual(expect.arrayContaining(["draft_decode", "verify"]));
    for (const p of s.phases) expect(p.ms_per_step.median).toBeGreaterThanOrEqual(0);
  });

  test("speculative = eagle: refused without a head; with a (random, SafeAILab-layout) head the greedy text of the plain run", async () => {
    const r = await run({ toggles: { speculative: "eagle" } });
    expect(r.status).toBe(400);
    expect(((await r.json()) as any).error).toMatch(/speculative = eagle needs an EAGLE head/);
    const target = await openModel("default", { backend: "cpu", threads: 1 });
    await writeEagleHead(join(heads, "head"), eagleConfigFor(target.config), randomHead(target.config, 5));
    target.close();
    const plain = await finish(await run({}));
    const spec = await finish(await run({ eagle: { head: join(heads, "head"), depth: 3, topK: 2, budget: 6 } }));
    expect(spec.manifest.toggles.speculative).toBe("eagle");
    expect(spec.output_text).toBe(plain.output_text);
    const s = spec.summary.speculative;
    expect(s.method).toBe("eagle");
    expect(s.tree).toEqual({ depth: 3, top_k: 2, budget: 6 });
    expect(s.accepted_per_step).toHaveLength(s.steps);
  });
});
