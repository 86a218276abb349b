// Prompt sets (web/runs/prompt-sets.ts): save JSON and JSONL sets, list, replay them deterministically, delete.
import { describe, expect, test } from "bun:test";
import { appsForFile, json, runToEnd, type Sse } from "../../test/web/helpers.ts";
import { generousTimeout } from "../../test/setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const setup = appsForFile();

describe("prompt sets and replay", () => {
  test("save JSON and JSONL sets, list, replay deterministically, delete", async () => {
    const { app } = setup();
    const set = { name: "smoke", prompts: [{ prompt: "one", seed: 1 }, { prompt: "two", seed: 2, maxTokens: 3 }], maxTokens: 4 };
    expect((await app.request("/api/prompt-sets", json(set))).status).toBe(201);
    const jl = await app.request("/api/prompt-sets?name=lines", {
      method: "POST", headers: { "content-type": "application/x-ndjson" },
      body: '{"prompt":"a","seed":3}\n{"prompt":"b","sampling":{"temperature":0.8}}\n',
    });
    expect(jl.status).toBe(201);
    const bad = await app.request("/api/prompt-sets?name=bad", { method: "POST", headers: { "content-type": "application/x-ndjson" }, body: "not json\n" });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as any).error).toMatch(/line 1/);
    const badName = await app.request("/api/prompt-sets", json({ name: "../x", prompts: [{ prompt: "a" }] }));
    expect(badName.status).toBe(400);
    const l: any = await (await app.request("/api/prompt-sets")).json();
    expect(l.promptSets.map((s: any) => s.name)).toEqual(["lines", "smoke"]);
    const r1 = await runToEnd(app, { promptSet: "smoke", toggles: { gqa: "native" } });
    const r2 = await runToEnd(app, { promptSet: "smoke", toggles: { gqa: "broadcast" } });
    const toks = (ev: Sse[]) => ev.filter((e) => e.event === "token").map((e) => `${e.data.prompt}:${e.data.token}`);
    expect(toks(r1.events)).toEqual(toks(r2.events));
    expect(r1.events.filter((e) => e.event === "prompt-done").map((e) => e.data.tokens)).toEqual([4, 3]);
    const p: any = await (await app.request(`/api/profiles/${encodeURIComponent(r1.events.at(-1)!.data.profileKey)}`)).json();
    expect(p.manifest.prompts.map((x: any) => x.seed)).toEqual([1, 2]);
    expect((await app.request("/api/prompt-sets/smoke", { method: "DELETE" })).status).toBe(200);
    expect((await app.request("/api/runs", json({ promptSet: "smoke" }))).status).toBe(404);
  });
});
