// app.request() tests for every route of web/app.ts, over the fake engine (test/web/fake-engine.ts).
import { describe, expect, test, afterAll } from "bun:test";
import { symlinkSync, writeFileSync, mkdirSync, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fakeApp, readSse, json, type Sse } from "./helpers.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const envs: { cleanup: () => void }[] = [];
afterAll(() => envs.forEach((e) => e.cleanup()));

function setup(...a: Parameters<typeof fakeApp>) {
  const r = fakeApp(...a);
  envs.push(r.dirs);
  return r;
}

async function startRun(app: ReturnType<typeof fakeApp>["app"], body: unknown) {
  const res = await app.request("/api/runs", json(body));
  expect(res.status).toBe(202);
  return (await res.json()) as { id: string };
}

async function runToEnd(app: ReturnType<typeof fakeApp>["app"], body: unknown): Promise<{ id: string; events: Sse[] }> {
  const { id } = await startRun(app, body);
  const events = await readSse(await app.request(`/api/tasks/${id}/events`));
  return { id, events };
}

describe("models and toggles", () => {
  test("GET /api/models lists default, files under roots, synthetic presets", async () => {
    const { app } = setup();
    const r = await app.request("/api/models");
    expect(r.status).toBe(200);
    const j: any = await r.json();
    const kinds = j.models.map((m: any) => m.kind);
    expect(kinds).toContain("default");
    expect(kinds).toContain("gguf");
    expect(kinds).toContain("hf");
    expect(j.models.some((m: any) => m.source === "synthetic:tiny")).toBe(true);
    expect(j.loaded).toBeNull();
  });

  test("toggles before any load → 409 with a message", async () => {
    const { app } = setup();
    const r = await app.request("/api/toggles");
    expect(r.status).toBe(409);
    expect(((await r.json()) as any).error).toMatch(/no model loaded/);
  });

  test("load with progress, then toggles and hooks", async () => {
    const { app } = setup();
    const r = await app.request("/api/models/load", json({ source: "default", backend: "cpu" }));
    expect(r.status).toBe(202);
    const { task } = (await r.json()) as any;
    const ev = await readSse(await app.request(`/api/tasks/${task.id}/events`));
    expect(ev.filter((e) => e.event === "progress").length).toBe(4);
    expect(ev.at(-1)!.event).toBe("done");
    const t: any = await (await app.request("/api/toggles")).json();
    expect(t.registry.map((d: any) => d.id)).toEqual(["attention", "gqa", "weights"]);
    expect(t.layers).toBe(4);
    const h: any = await (await app.request("/api/hooks")).json();
    expect(h.hooks).toContain("blocks.3.hook_resid_post");
    const m: any = await (await app.request("/api/model")).json();
    expect(m.loaded.source).toBe("default");
  });

  test("load rejects traversal, symlinks out of root, unknown presets and bad bodies", async () => {
    const { app, dirs } = setup();
    symlinkSync("/etc", join(dirs.models, "escape"));
    const cases: [unknown, number, RegExp][] = [
      [{ source: "../../etc/passwd" }, 403, /escapes its root/],
      [{ source: "/etc/passwd" }, 403, /outside|escapes/],
      [{ source: "escape/passwd" }, 403, /symlink/],
      [{ source: "synthetic:99b" }, 400, /unknown synthetic preset/],
      [{ source: "nope.gguf" }, 404, /not found/],
      [{ source: "" }, 400, /load: source/],
      [{ source: "default", backend: "tpu" }, 400, /backend/],
      [{ source: "default", extra: 1 }, 400, /load/],
    ];
    for (const [body, status, msg] of cases) {
      const r = await app.request("/api/models/load", json(body));
      expect(r.status).toBe(status);
      expect(((await r.json()) as any).error).toMatch(msg);
    }
    const ok = await app.request("/api/models/load", json({ source: join(dirs.models, "small.gguf") }));
    expect(ok.status).toBe(202);
    const nonJson = await app.request("/api/models/load", { method: "POST", body: "source=default" });
    expect(nonJson.status).toBe(415);
    const broken = await app.request("/api/models/load", { method: "POST", headers: { "content-type": "application/json" }, body: "{nope" });
    expect(broken.status).toBe(400);
    expect(((await broken.json()) as any).error).toMatch(/not valid JSON/);
  });
});

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
    for (const [toggles, msg] of [
      [{ nope: "x" }, /unknown toggle/], [{ gqa: "sideways" }, /not one of/], [{ attention: "sage-int8" }, /not on the cpu backend \(the cuda backend has it/], [{ attention: "sage-fp8" }, /sage-fp8 is not implemented yet/],
      [{ attention: ["flash-bf16", "flash-bf16", "flash-bf16", "flash-bf16"] }, /global/], [{ gqa: ["native"] }, /needs 4 values/],
    ] as const) {
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

describe("profiles, compare, exports", () => {
  const env = (() => { const r = fakeApp(); envs.push(r.dirs); return r; })();
  let A = "", B = "";
  test("two runs with different toggles", async () => {
    A = (await runToEnd(env.app, { prompt: "compare", maxTokens: 6, label: "native" })).events.at(-1)!.data.profileKey;
    B = (await runToEnd(env.app, { prompt: "compare", maxTokens: 6, label: "broadcast", toggles: { gqa: "broadcast" } })).events.at(-1)!.data.profileKey;
    expect(A && B).toBeTruthy();
  });

  test("compare: deltas per layer and op, toggle diff, same tokens", async () => {
    const r = await env.app.request(`/api/compare?a=${encodeURIComponent(A)}&b=${encodeURIComponent(B)}`);
    expect(r.status).toBe(200);
    const c: any = await r.json();
    expect(c.toggleDiff).toEqual([{ id: "gqa", a: "native", b: "broadcast" }]);
    expect(c.sameTokens).toBe(true);
    const att = c.rows.find((x: any) => x.phase === "decode" && x.layer === 0 && x.op === "attention");
    expect(att.status).toBe("slower");
    expect(att.a.n).toBe(3 * 5); // per-step samples of all 3 repetitions
    // headline metrics: medians over the 3 repetitions with their spreads and a verdict of the one rule
    const dec = c.summary.find((x: any) => x.key === "decode_tok_s");
    expect(dec.aSpread.n).toBe(3);
    expect(["faster", "slower", "within noise"]).toContain(dec.status);
    const svg = await env.app.request(`/api/compare?a=${encodeURIComponent(A)}&b=${encodeURIComponent(B)}&format=svg`);
    expect(svg.headers.get("content-type")).toContain("svg");
    expect((await env.app.request(`/api/compare?a=${encodeURIComponent(A)}`)).status).toBe(400);
  });

  test("every export format", async () => {
    const k = encodeURIComponent(A);
    const tr: any = await (await env.app.request(`/api/profiles/${k}/export/trace`)).json();
    expect(tr.traceEvents.some((e: any) => e.ph === "X" && e.args?.flops > 0)).toBe(true);
    expect(tr.traceEvents.some((e: any) => e.ph === "M" && e.args?.name === "layer 0")).toBe(true);
    const md = await (await env.app.request(`/api/profiles/${k}/export/md`)).text();
    expect(md).toMatch(/\| label \| model/);
    expect(md).toMatch(/tg5/);
    const csv = await (await env.app.request(`/api/profiles/${k}/export/csv`)).text();
    expect(csv.split("\n")[0]).toMatch(/^label,model/);
    const js: any = await (await env.app.request(`/api/profiles/${k}/export/json`)).json();
    expect(js[0].test).toMatch(/^pp/);
    const jl = await (await env.app.request(`/api/profiles/${k}/export/jsonl`)).text();
    expect(jl.trim().split("\n").length).toBe(2);
    const html = await env.app.request(`/api/profiles/${k}/export/html`);
    const h = await html.text();
    expect(html.headers.get("content-disposition")).toContain("attachment");
    expect(h).toContain("<svg");
    expect(h).toContain('id="profile-data"');
    expect(h).not.toMatch(/<script[^>]+src=/);
    for (const f of ["svg-latency", "svg-timeline", "svg-roofline", "svg-quant"]) {
      const r = await env.app.request(`/api/profiles/${k}/export/${f}`);
      expect(r.status).toBe(200);
      expect(await r.text()).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    }
    expect((await env.app.request(`/api/profiles/${k}/export/pdf`)).status).toBe(400);
    const t = await env.app.request(`/api/export/table?format=csv&keys=${k},${encodeURIComponent(B)}`);
    expect((await t.text()).trim().split("\n").length).toBe(5);
    const rf = await env.app.request(`/api/export/roofline.svg?keys=${k},${encodeURIComponent(B)}&group=layer`);
    expect(await rf.text()).toContain("no measured ceilings");
  });

  test("ceilings from profiles/ceilings/*.json are used when present", async () => {
    mkdirSync(join(env.dirs.profiles, "ceilings"), { recursive: true });
    writeFileSync(join(env.dirs.profiles, "ceilings", "fake-cpu.json"), JSON.stringify({ schema: "qwen-workbench/ceilings", version: 1, device: "fake-cpu",
      backend: "cpu", bandwidth_bytes_s: 20e9, cache_bandwidth_bytes_s: { l2: 150e9 }, flops: { fp32: 0.5e12 } }));
    writeFileSync(join(env.dirs.profiles, "ceilings", "old-style.json"), JSON.stringify({ device: "fake-gpu", copy_bw_gb_s: 20 }));
    const c: any = await (await env.app.request("/api/ceilings")).json();
    expect(c.ceilings.map((x: any) => x.file)).toEqual(["fake-cpu.json"]);
    expect(c.ceilings[0].memory.map((m: any) => m.value)).toEqual([20e9, 150e9]);
    expect(c.skipped[0]).toMatchObject({ file: "old-style.json", error: expect.stringMatching(/invalid at schema/) });
    const v: any = await (await env.app.request(`/api/profiles/${encodeURIComponent(A)}/views`)).json();
    expect(v.ceilings.device).toBe("fake-cpu");
    const svg = await (await env.app.request(`/api/profiles/${encodeURIComponent(A)}/export/svg-roofline`)).text();
    expect(svg).toContain("ceilings fake-cpu.json");
    expect(svg).toContain("L2 bandwidth 150 GB/s");
    expect(svg).not.toContain("devices");
  });

  test("roofline of runs from two devices: one panel per device with its own roofs, and a warning", async () => {
    // a copy of run B as if measured on another device (no ceilings known for it)
    const b = JSON.parse(readFileSync(join(env.dirs.profiles, `${B}.json`), "utf8"));
    b.id = "other-device"; b.manifest.device = { backend: "cuda", name: "Fake GPU 9000" }; b.manifest.label = "on the gpu";
    writeFileSync(join(env.dirs.profiles, "other-device.json"), JSON.stringify(b));
    const keys = `${encodeURIComponent(A)},other-device`;
    const d: any = await (await env.app.request(`/api/roofline/devices?keys=${keys}`)).json();
    expect(d.devices.map((x: any) => x.key)).toEqual(["fake-cpu (cpu)", "Fake GPU 9000 (cuda)"]);
    expect(d.devices[0].ceilings?.file).toBe("fake-cpu.json");
    expect(d.devices[1].ceilings).toBeNull();
    expect(d.warning).toMatch(/Runs from 2 devices .*own device's roofs/);
    const svg = await (await env.app.request(`/api/export/roofline.svg?keys=${keys}&group=layer-op`)).text();
    expect(svg).toContain("Runs from 2 devices");
    expect(svg).toContain("Fake GPU 9000 (cuda) · no measured ceilings for this device");
    expect(svg).toContain("fake-cpu (cpu) · ceilings fake-cpu.json");
    // one device: no warning
    const one: any = await (await env.app.request(`/api/roofline/devices?keys=${encodeURIComponent(A)},${encodeURIComponent(B)}`)).json();
    expect(one.warning).toBeNull();
  });

  test("GET /api/palette: the engine's palette and op colours", async () => {
    const p: any = await (await env.app.request("/api/palette")).json();
    expect(p.palette.length).toBeGreaterThanOrEqual(12);
    expect(p.ops).toContain("down");
    expect(p.opColors.embed).not.toBe(p.opColors.down);
    expect(new Set(Object.values(p.opColors)).size).toBe(p.ops.length);
  });

  test("profile keys: traversal, bad keys and symlinks are refused", async () => {
    const outside = join(env.dirs.base, "secret.json");
    writeFileSync(outside, "{}");
    symlinkSync(outside, join(env.dirs.profiles, "link.json"));
    const bad: [string, number][] = [
      [encodeURIComponent("../secret"), 403], [encodeURIComponent("raw/../../secret"), 403], ["link", 403],
      [encodeURIComponent("a b"), 400], ["missing", 404], [encodeURIComponent("..%2Fsecret"), 400],
    ];
    for (const [k, status] of bad) {
      const r = await env.app.request(`/api/profiles/${k}`);
      expect(r.status).toBe(status);
      expect(((await r.json()) as any).error).toBeTruthy();
    }
    expect((await env.app.request(`/api/profiles/${encodeURIComponent("../secret")}`, { method: "DELETE" })).status).toBe(403);
    expect(existsSync(outside)).toBe(true);
    writeFileSync(join(env.dirs.profiles, "broken.json"), "{\"schema\": 1}");
    const br = await env.app.request("/api/profiles/broken");
    expect(br.status).toBe(422);
    expect(((await br.json()) as any).error).toMatch(/invalid at/);
  });

  test("delete a profile", async () => {
    const r = await env.app.request(`/api/profiles/${encodeURIComponent(B)}`, { method: "DELETE" });
    expect(r.status).toBe(200);
    expect((await env.app.request(`/api/profiles/${encodeURIComponent(B)}`)).status).toBe(404);
  });
});

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

describe("quantization error", () => {
  test("reference vs candidate: per-layer metrics, logits KL, time per layer", async () => {
    const { app } = setup();
    const r = await app.request("/api/quant", json({ prompt: "the quick brown fox", reference: { label: "bf16" }, candidate: { label: "q8", toggles: { weights: "q8" } }, repeats: 2 }));
    expect(r.status).toBe(202);
    const { id } = (await r.json()) as any;
    const ev = await readSse(await app.request(`/api/tasks/${id}/events`));
    expect(ev.at(-1)!.event).toBe("done");
    const p: any = await (await app.request(`/api/profiles/${encodeURIComponent(ev.at(-1)!.data.profileKey)}`)).json();
    const q = p.quant_error[0];
    expect(q.layers.length).toBe(4);
    expect(q.layers[0].sqnr_db).toBeGreaterThan(10);
    expect(q.layers[3].sqnr_db).toBeLessThan(q.layers[0].sqnr_db);
    expect(q.logits.top1_agreement).toBeGreaterThan(0.5);
    expect(p.summary.layer_ms.reference.length).toBe(4);
    expect(p.summary.layer_ms.candidate[0]).toBeLessThan(p.summary.layer_ms.reference[0]);
    const bad = await app.request("/api/quant", json({ prompt: "x", reference: {}, candidate: { toggles: { weights: "q3" } } }));
    expect(bad.status).toBe(202); // validated against the registry when it runs (model not loaded yet here? it is) …
    const ev2 = await readSse(await app.request(`/api/tasks/${((await bad.json()) as any).id}/events`));
    expect(ev2.at(-1)!.data.message).toMatch(/not one of/);
    expect((await app.request("/api/quant", json({ prompt: "x" }))).status).toBe(400);
  });
});

describe("limits and static", () => {
  test("body size limit → 413 JSON", async () => {
    const { app } = setup({}, { maxBodyBytes: 1000 });
    const r = await app.request("/api/runs", json({ prompt: "x".repeat(5000) }));
    expect(r.status).toBe(413);
    expect(((await r.json()) as any).error).toMatch(/too large/);
  });

  test("queue limit → 503", async () => {
    const { app } = setup({ stepDelayMs: 50 }, { maxQueue: 2 });
    await startRun(app, { prompt: "a", maxTokens: 3 });
    await startRun(app, { prompt: "b", maxTokens: 3 });
    const r = await app.request("/api/runs", json({ prompt: "c" }));
    expect(r.status).toBe(503);
  });

  test("pages, vendored plotly, static confinement, unknown routes", async () => {
    const { app } = setup();
    const idx = await app.request("/");
    expect(idx.status).toBe(200);
    expect(await idx.text()).toContain("/vendor/plotly.min.js");
    const pl = await app.request("/vendor/plotly.min.js");
    expect(pl.status).toBe(200);
    expect(pl.headers.get("content-type")).toContain("javascript");
    expect((await app.request("/static/app.js")).status).toBe(200);
    expect([403, 404]).toContain((await app.request("/static/%2e%2e/app.ts")).status);
    expect((await app.request("/static/..%2Fapp.ts")).status).toBe(403);
    const nf = await app.request("/api/nothing");
    expect(nf.status).toBe(404);
    expect(((await nf.json()) as any).error).toMatch(/no route/);
  });
});
