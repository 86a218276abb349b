// The runs sub-app (web/runs/routes.ts, task-routes.ts) over the fake engine: a run's events and profile, the
// warm-up, bad payloads and toggles, per-layer masks and captures, queueing, cancel, failures, SSE replay.
import { describe, expect, test } from "bun:test";
import { appsForFile, readSse, json, runToEnd, startRun, type Sse } from "../../test/web/helpers.ts";
import { catalog } from "../../engine/catalog.ts";
import { generousTimeout } from "../../test/setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const setup = appsForFile();

describe("runs", () => {
  test("a run streams tokens and per-layer steps, then saves a profile", async () => {
    const { app } = setup();
    const { events } = await runToEnd(app, { prompt: "hello there", maxTokens: 8, label: "first" });
    const kinds = new Set(events.map((e) => e.event));
    for (const k of ["status", "loading", "progress", "loaded", "start", "prefill", "token", "step", "prompt-done", "done"]) expect(kinds).toContain(k);
    expect(events.filter((e) => e.event === "token").length).toBe(8);
    const step = events.find((e) => e.event === "step")!.data;
    expect(step.layers.length).toBe(5); // 4 layers + head/tail
    const done = events.at(-1)!;
    expect(done.event).toBe("done");
    const key = done.data.profileKey;
    expect(key).toMatch(/^raw\/web\/first-/);
    const list: any = await (await app.request("/api/profiles")).json();
    expect(list.profiles.map((p: any) => p.key)).toContain(key);
    const p: any = await (await app.request(`/api/profiles/${encodeURIComponent(key)}`)).json();
    expect(p.schema).toBe("qwen-workbench/profile");
    // one unrecorded warm-up, then 3 measured repetitions (the default): token events and op records of each
    expect(p.summary.warmup).toBe(1);
    expect(p.summary.repeats).toBe(3);
    expect(p.summary.stats.decode_tok_s.samples.length).toBe(3);
    expect(p.summary.decode_tok_s).toBe(p.summary.stats.decode_tok_s.median);
    expect(p.tokens.length).toBe(3 * 8);
    expect(p.ops.step.length).toBeGreaterThan(0);
    const v: any = await (await app.request(`/api/profiles/${encodeURIComponent(key)}/views`)).json();
    expect(v.latency.decode.steps).toBe(3 * 7);
    expect(v.stats.ttft_ms.n).toBe(3);
    expect(v.roofline.op.length).toBeGreaterThan(3);
    expect(v.ceilings).toBeNull();
    const med: any = await (await app.request(`/api/profiles/${encodeURIComponent(key)}/views?stat=median`)).json();
    expect(med.latency.decode.stat).toBe("median");
    expect((await app.request(`/api/profiles/${encodeURIComponent(key)}/views?stat=max`)).status).toBe(400);
  });

  test("a web run warms up first: a cold first run never reaches the profile's numbers", async () => {
    // The fake engine reports 60 s more TTFT (synthetic, no sleep) on the first generate after a load (a cold start).
    const { app } = setup({ coldFirstRunMs: 60_000 });
    const warm = await runToEnd(app, { prompt: "cold start", maxTokens: 4 });
    const rep = warm.events.filter((e) => e.event === "repeat").map((e) => e.data);
    expect(rep[0]).toEqual({ type: "repeat", repeat: 0, repeats: 1, warmup: true });
    expect(rep.filter((r: any) => !r.warmup).map((r: any) => r.repeat)).toEqual([0, 1, 2]);
    expect(warm.events.findIndex((e) => e.event === "repeat")).toBeLessThan(warm.events.findIndex((e) => e.event === "start"));
    const p: any = await (await app.request(`/api/profiles/${encodeURIComponent(warm.events.at(-1)!.data.profileKey)}`)).json();
    expect(p.summary.warmup).toBe(1);
    expect(p.summary.stats.ttft_ms.samples.length).toBe(3);
    expect(Math.max(...p.summary.stats.ttft_ms.samples)).toBeLessThan(60_000);
    // without the warm-up the cold start is measured (and the median of 3 still resists it)
    const { app: cold } = setup({ coldFirstRunMs: 60_000 });
    const c = await runToEnd(cold, { prompt: "cold start", maxTokens: 4, warmup: 0 });
    const q: any = await (await cold.request(`/api/profiles/${encodeURIComponent(c.events.at(-1)!.data.profileKey)}`)).json();
    expect(q.summary.warmup).toBe(0);
    expect(q.summary.stats.ttft_ms.samples[0]).toBeGreaterThanOrEqual(60_000);
    expect(q.summary.ttft_ms).toBeLessThan(60_000);
  });

  test("bad run payloads are 4xx with a message", async () => {
    const { app } = setup();
    const cases: [unknown, RegExp][] = [
      [{}, /exactly one of/],
      [{ prompt: "a", tokens: [1] }, /exactly one of/],
      [{ prompt: "a", maxTokens: 0 }, /maxTokens/],
      [{ prompt: "a", maxTokens: 1e9 }, /maxTokens/],
      [{ prompt: "a", repeats: 0 }, /repeats/],
      [{ prompt: "a", warmup: 9 }, /warmup/],
      [{ prompt: "a", sampling: { temperature: -1 } }, /sampling.temperature/],
      [{ prompt: "a", capture: ["blocks.0.bogus"] }, /hook/],
      [{ prompt: "a", toggles: { gqa: 3 } }, /toggles/],
      [{ prompt: "a", model: "../x" }, /escapes/],
      [{ prompt: "a", whatever: true }, /run/],
      [{ promptSet: "../etc" }, /promptSet/],
    ];
    for (const [body, msg] of cases) {
      const r = await app.request("/api/runs", json(body));
      expect(r.status).toBeGreaterThanOrEqual(400);
      expect(r.status).toBeLessThan(500);
      expect(((await r.json()) as any).error).toMatch(msg);
    }
    // toggles against the registry once a model is loaded
    await runToEnd(app, { prompt: "x", maxTokens: 2 });
    const cases2: [Record<string, unknown>, RegExp][] = [
      [{ nope: "x" }, /unknown toggle/], [{ gqa: "sideways" }, /not one of/], [{ graphs: "on" }, /graphs \(CUDA graphs\) = on is not on the cpu backend \(the cuda backend has it/],
      [{ kvCache: ["bf16", "bf16", "bf16", "bf16"] }, /global/], [{ gqa: ["native"] }, /needs 4 values/],
    ];
    // a value the registry specifies and no backend implements yet, while there is one (the validator's own test,
    // test/engine/metrics.test.ts, covers the message whatever the registry holds)
    const unimpl = catalog().toggles.flatMap((d) => d.values.filter((v) => !d.backends.cpu.includes(v) && !d.backends.cuda.includes(v)).map((v) => [d.id, v] as const))[0];
    if (unimpl) cases2.push([{ [unimpl[0]]: unimpl[1] }, /is not implemented yet/]);
    for (const [toggles, msg] of cases2) {
      const r = await app.request("/api/runs", json({ prompt: "a", toggles }));
      expect(r.status).toBe(400);
      expect(((await r.json()) as any).error).toMatch(msg);
    }
  });

  test("per-layer mask, capture points, and greedy replays give identical tokens", async () => {
    const { app } = setup();
    const body = { prompt: "replay me", maxTokens: 6, toggles: { gqa: ["native", "broadcast", "native", "broadcast"] }, capture: ["blocks.*.hook_resid_post"] };
    const a = await runToEnd(app, body);
    const b = await runToEnd(app, body);
    const toks = (ev: Sse[]) => ev.filter((e) => e.event === "token").map((e) => e.data.token);
    expect(toks(a.events)).toEqual(toks(b.events));
    const key = a.events.at(-1)!.data.profileKey;
    const p: any = await (await app.request(`/api/profiles/${encodeURIComponent(key)}`)).json();
    expect(p.manifest.toggles.gqa).toEqual(["native", "broadcast", "native", "broadcast"]);
    expect(p.summary.captures[0].hooks.length).toBe(4);
  });

  test("chat messages go through the chat template; token ids work too", async () => {
    const { app } = setup();
    const a = await runToEnd(app, { messages: [{ role: "user", content: "hello" }], maxTokens: 3 });
    expect(a.events.at(-1)!.event).toBe("done");
    expect(a.events.find((e) => e.event === "prefill")!.data.promptTokens).toBe("user: hello".length);
    const b = await runToEnd(app, { tokens: [5, 6, 7], maxTokens: 2 });
    expect(b.events.find((e) => e.event === "prefill")!.data.promptTokens).toBe(3);
    const bad = await app.request("/api/runs", json({ messages: [{ role: "robot", content: "x" }] }));
    expect(bad.status).toBe(400);
  });

  test("concurrent runs are queued and all finish with their own profile", async () => {
    const { app } = setup({ stepDelayMs: 2 });
    const ids = await Promise.all(Array.from({ length: 6 }, (_, i) => startRun(app, { prompt: `p${i}`, maxTokens: 4, label: `c${i}` })));
    const all = await Promise.all(ids.map(async ({ id }) => readSse(await app.request(`/api/tasks/${id}/events`))));
    const keys = all.map((ev) => ev.at(-1)!.data.profileKey);
    expect(all.every((ev) => ev.at(-1)!.event === "done")).toBe(true);
    expect(new Set(keys).size).toBe(6);
    const list: any = await (await app.request("/api/profiles")).json();
    for (const k of keys) expect(list.profiles.map((p: any) => p.key)).toContain(k);
    const tasks: any = await (await app.request("/api/tasks")).json();
    expect(tasks.tasks.filter((t: any) => t.kind === "run" && t.status === "done").length).toBe(6);
  });

  test("a cancelled run stops early, is marked cancelled, and keeps its partial profile", async () => {
    const { app } = setup({ stepDelayMs: 20 });
    const { id } = await startRun(app, { prompt: "long", maxTokens: 500 });
    const res = await app.request(`/api/tasks/${id}/events`);
    const seen = readSse(res);
    await Bun.sleep(150);
    const c = await app.request(`/api/runs/${id}/cancel`, { method: "POST" });
    expect(c.status).toBe(200);
    const ev = await seen;
    expect(ev.at(-1)!.event).toBe("cancelled");
    expect(ev.filter((e) => e.event === "token").length).toBeLessThan(500);
    const t: any = await (await app.request(`/api/tasks/${id}`)).json();
    expect(t.status).toBe("cancelled");
    expect(t.result.profileKey).toBeTruthy();
    // a queued run can be cancelled too
    const { id: a } = await startRun(app, { prompt: "a", maxTokens: 50 });
    const { id: b } = await startRun(app, { prompt: "b", maxTokens: 50 });
    await app.request(`/api/tasks/${b}/cancel`, { method: "POST" });
    expect(((await (await app.request(`/api/tasks/${b}`)).json()) as any).status).toBe("cancelled");
    await app.request(`/api/tasks/${a}/cancel`, { method: "POST" });
    expect((await app.request(`/api/tasks/nope/cancel`, { method: "POST" })).status).toBe(404);
  });

  test("a run whose engine call fails is marked failed and the app keeps serving", async () => {
    const { app } = setup({ failDecodeAt: 2 });
    const { id, events } = await runToEnd(app, { prompt: "boom", maxTokens: 10 });
    expect(events.at(-1)!.event).toBe("error");
    expect(events.at(-1)!.data.message).toMatch(/illegal memory access/);
    const t: any = await (await app.request(`/api/tasks/${id}`)).json();
    expect(t.status).toBe("failed");
    expect((await app.request("/api/health")).status).toBe(200);
    const again = await runToEnd(app, { prompt: "boom", maxTokens: 2 });
    expect(again.events.at(-1)!.event).toBe("done");
  });

  test("a model that fails to open fails the run with the engine's message", async () => {
    const { app } = setup({ failOpen: true });
    const { events } = await runToEnd(app, { prompt: "x" });
    expect(events.at(-1)!.event).toBe("error");
    expect(events.at(-1)!.data.message).toMatch(/cannot open default/);
  });

  test("old finished tasks keep only their outcome (bounded memory), still replayable", async () => {
    const { app } = setup();
    const first = await runToEnd(app, { prompt: "first", maxTokens: 3 });
    for (let i = 0; i < 21; i++) await runToEnd(app, { prompt: `r${i}`, maxTokens: 2 });
    await startRun(app, { prompt: "trigger", maxTokens: 1 });
    const again = await readSse(await app.request(`/api/tasks/${first.id}/events`));
    expect(again.length).toBe(1);
    expect(again[0].event).toBe("done");
    expect(again[0].id).toBe(first.events.at(-1)!.id);
  });

  test("SSE replays from Last-Event-ID, and unknown tasks are 404", async () => {
    const { app } = setup();
    const { id, events } = await runToEnd(app, { prompt: "abc", maxTokens: 3 });
    const mid = events[Math.floor(events.length / 2)].id;
    const rest = await readSse(await app.request(`/api/runs/${id}/events`, { headers: { "Last-Event-ID": String(mid) } }));
    expect(rest[0].id).toBe(mid + 1);
    expect(rest.at(-1)!.event).toBe("done");
    expect((await app.request("/api/tasks/none/events")).status).toBe(404);
  });
});
