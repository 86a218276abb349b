// Server faults D3, D5, D7, D8 of issue 8 through app.request() over the fake engine: files symlinked out of
// the roots, SSE fan-out (one serialization per event, a follower cap, health while 100 follow), cancelling a
// load and keeping the previous model, one-line JSONL prompt sets, and toggle ids that must never pass.
import { describe, expect, test, afterAll } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fakeApp, readSse, json } from "./helpers.ts";
import { EngineCore, LocalHost, type LoadOptions } from "../../web/core.ts";
import { makeFakeOpenModel } from "./fake-engine.ts";
import { parsePromptSet } from "../../engine/measure/record.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const cleanups: (() => void)[] = [];
afterAll(() => cleanups.forEach((c) => c()));
function setup(...a: Parameters<typeof fakeApp>) {
  const r = fakeApp(...a);
  cleanups.push(r.dirs.cleanup);
  return r;
}
function outsideDir() {
  const d = mkdtempSync(join(tmpdir(), "qwb-outside-"));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}
const errorOf = async (r: Response) => ((await r.json()) as { error: string }).error;
const raw = (body: string) => ({ method: "POST", headers: { "content-type": "application/json" }, body });

describe("D3: files symlinked out of the roots are neither listed nor served", () => {
  test("prompt sets and ceilings", async () => {
    const { app, dirs } = setup();
    const out = outsideDir();
    writeFileSync(join(out, "set.json"), JSON.stringify({ name: "evil", prompts: [{ prompt: "SECRET-PROMPT" }] }));
    writeFileSync(join(out, "ceil.json"), JSON.stringify({ schema: "qwen-workbench/ceilings", version: 1, device: "SECRET-DEVICE", bandwidth_bytes_s: 1e12 }));
    mkdirSync(join(dirs.profiles, "prompt-sets"), { recursive: true });
    mkdirSync(join(dirs.profiles, "ceilings"), { recursive: true });
    symlinkSync(join(out, "set.json"), join(dirs.profiles, "prompt-sets", "evil.json"));
    symlinkSync(join(out, "ceil.json"), join(dirs.profiles, "ceilings", "evil.json"));
    const sets = await (await app.request("/api/prompt-sets")).text();
    expect(sets).not.toContain("evil");
    const one = await app.request("/api/prompt-sets/evil");
    expect(one.status).toBe(403);
    expect(await errorOf(one)).not.toContain("SECRET");
    const run = await app.request("/api/runs", json({ promptSet: "evil" }));
    expect(run.status).toBe(403);
    const ceil = await (await app.request("/api/ceilings")).text();
    expect(ceil).not.toContain("SECRET-DEVICE");
  });

  test("profiles: a profile symlinked out of the root is neither listed nor served", async () => {
    const { app, dirs } = setup();
    const out = outsideDir();
    const { events } = await (async () => {
      const { id } = (await (await app.request("/api/runs", json({ prompt: "p", maxTokens: 2 }))).json()) as { id: string };
      return { events: await readSse(await app.request(`/api/tasks/${id}/events`)) };
    })();
    const key = events.at(-1)!.data.profileKey as string;
    require("node:fs").renameSync(join(dirs.profiles, `${key}.json`), join(out, "p.json"));
    symlinkSync(join(out, "p.json"), join(dirs.profiles, `${key}.json`));
    const list: any = await (await app.request("/api/profiles")).json();
    expect(list.profiles.map((p: any) => p.key)).not.toContain(key);
    expect((await app.request(`/api/profiles/${encodeURIComponent(key)}`)).status).toBe(403);
  });

  test("a model load gets the model root it was confined to (the engine then confines HF members to it)", async () => {
    const seen: LoadOptions[] = [];
    const inner = new LocalHost(new EngineCore(makeFakeOpenModel()));
    const spy = Object.assign(Object.create(inner), { load: (id: string, s: string, o: LoadOptions, e: any) => { seen.push(o); return inner.load(id, s, o, e); } });
    const { app, dirs } = setup({}, {}, spy);
    const r = await app.request("/api/models/load", json({ source: "hf-model" }));
    expect(r.status).toBe(202);
    await readSse(await app.request(`/api/tasks/${((await r.json()) as any).task.id}/events`));
    expect(seen.at(-1)?.root).toBe(require("node:fs").realpathSync(dirs.models));
  });
});

describe("D5: SSE fan-out", () => {
  test("each event is serialized once, however many follow it", async () => {
    const { app } = setup({ stepDelayMs: 30 });
    const { id } = (await (await app.request("/api/runs", json({ prompt: "fan out", maxTokens: 40 }))).json()) as { id: string };
    const streams = await Promise.all(Array.from({ length: 10 }, () => app.request(`/api/tasks/${id}/events`)));
    const reading = streams.map((s) => readSse(s, (e) => ["done", "error", "cancelled"].includes(e.event), 60_000));
    let calls = 0;
    await Bun.sleep(50);
    app.tasks.get(id)!.emit("probe", { toJSON() { calls++; return { probe: true }; } });
    const all = await Promise.all(reading);
    for (const ev of all) {
      expect(ev.some((e) => e.event === "probe" && e.data.probe === true)).toBe(true);
      expect(ev.at(-1)!.event).toBe("done");
    }
    expect(calls).toBe(1);
  }, 300_000);

  test("a follower's events go out in batches (one write per flush interval), not one write per event", async () => {
    const { app } = setup({ stepDelayMs: 2 }, { sseFlushMs: 300 });
    const { id } = (await (await app.request("/api/runs", json({ prompt: "batch", maxTokens: 60 }))).json()) as { id: string };
    const reader = (await app.request(`/api/tasks/${id}/events`)).body!.getReader();
    let chunks = 0, text = "";
    for (;;) { const { value, done } = await reader.read(); if (done) break; chunks++; text += new TextDecoder().decode(value); }
    const events = (text.match(/^event: /gm) ?? []).length;
    expect(text).toContain("event: done");
    expect(events).toBeGreaterThan(100); // tokens + steps
    expect(chunks).toBeLessThan(events / 4);
  }, 300_000);

  test("followers per task are capped: 429 beyond the cap, admitted again when one leaves", async () => {
    const { app } = setup({ stepDelayMs: 50 }, { maxFollowers: 3 });
    const { id } = (await (await app.request("/api/runs", json({ prompt: "cap", maxTokens: 200 }))).json()) as { id: string };
    const first = await app.request(`/api/tasks/${id}/events`);
    const others = await Promise.all([1, 2].map(() => app.request(`/api/tasks/${id}/events`)));
    expect([first, ...others].map((r) => r.status)).toEqual([200, 200, 200]);
    const over = await app.request(`/api/tasks/${id}/events`);
    expect(over.status).toBe(429);
    expect(await errorOf(over)).toMatch(/followers.*cap 3/);
    const reader = first.body!.getReader();
    await reader.read();
    await reader.cancel(); // the client goes away
    let again = 429;
    for (let i = 0; i < 100 && again === 429; i++) { await Bun.sleep(20); const r = await app.request(`/api/tasks/${id}/events`); again = r.status; if (r.status === 200) await r.body?.cancel(); }
    expect(again).toBe(200);
    await app.request(`/api/tasks/${id}/cancel`, { method: "POST" });
    for (const o of others) await o.body?.cancel().catch(() => {});
  }, 300_000);

  test("/api/health answers while 100 clients follow a run", async () => {
    const { app } = setup({ stepDelayMs: 10 });
    const { id } = (await (await app.request("/api/runs", json({ prompt: "many", maxTokens: 120 }))).json()) as { id: string };
    const followers = await Promise.all(Array.from({ length: 100 }, () => app.request(`/api/tasks/${id}/events`)));
    expect(followers.every((r) => r.status === 200)).toBe(true);
    const reading = followers.map((f) => readSse(f, undefined, 60_000));
    const h: any = await (await app.request("/api/health")).json();
    expect(h.ok).toBe(true);
    expect(h.running).toBe(id);
    const ends = await Promise.all(reading);
    expect(ends.every((ev) => ev.at(-1)?.event === "done")).toBe(true);
  }, 300_000);
});

describe("D7: cancelling a load; a failed load keeps the model", () => {
  async function loadAndWait(app: ReturnType<typeof fakeApp>["app"], source: string, onProgress?: (id: string) => Promise<void>) {
    const r = await app.request("/api/models/load", json({ source }));
    expect(r.status).toBe(202);
    const id = ((await r.json()) as any).task.id as string;
    let fired = false;
    return readSse(await app.request(`/api/tasks/${id}/events`), (e) => {
      if (e.event === "progress" && onProgress && !fired) { fired = true; void onProgress(id); }
      return ["done", "error", "cancelled"].includes(e.event);
    }, 300_000);
  }

  test("a 60-s load is cancelled while it loads; the previous model stays loaded", async () => {
    const { app, dirs } = setup({ loadDelayMs: 60_000, delayFor: "slow", failOpenFor: "broken" });
    expect((await loadAndWait(app, "default")).at(-1)!.event).toBe("done");
    writeFileSync(join(dirs.models, "slow.gguf"), "GGUF");
    const t0 = performance.now();
    const ev = await loadAndWait(app, "slow.gguf", async (id) => { await app.request(`/api/tasks/${id}/cancel`, { method: "POST" }); });
    const ms = performance.now() - t0;
    expect(ev.at(-1)!.event).toBe("cancelled");
    console.log(`[D7] fake 60-s load cancelled after ${ms.toFixed(0)} ms (load + cancel round trip)`);
    const m: any = await (await app.request("/api/model")).json();
    expect(m.loaded.source).toBe("default");
  }, 300_000);

  test("a load that fails keeps the previous model", async () => {
    const { app, dirs } = setup({ failOpenFor: "broken" });
    expect((await loadAndWait(app, "default")).at(-1)!.event).toBe("done");
    writeFileSync(join(dirs.models, "broken.gguf"), "GGUF");
    const ev = await loadAndWait(app, "broken.gguf");
    expect(ev.at(-1)!.event).toBe("error");
    const m: any = await (await app.request("/api/model")).json();
    expect(m.loaded.source).toBe("default");
    const run = await app.request("/api/runs", json({ prompt: "still here", maxTokens: 2 }));
    const done = await readSse(await app.request(`/api/tasks/${((await run.json()) as any).id}/events`));
    expect(done.at(-1)!.event).toBe("done");
  }, 300_000);
});

describe("D8: one-line JSONL, and toggle ids that must never pass", () => {
  test("a one-line JSONL prompt set is one prompt", async () => {
    expect(parsePromptSet('{"prompt":"only one"}', "one").prompts).toEqual([{ prompt: "only one" }]);
    expect(parsePromptSet('{"prompt":"only one"}\n', "one").prompts.length).toBe(1);
    expect(parsePromptSet('{"name":"s","prompts":[{"prompt":"a"},{"prompt":"b"}]}', "x").prompts.length).toBe(2);
    expect(parsePromptSet('{\n  "name": "s",\n  "prompts": [{"prompt": "a"}]\n}', "x").name).toBe("s");
    const { app } = setup();
    const r = await app.request("/api/prompt-sets?name=one", { method: "POST", headers: { "content-type": "application/x-ndjson" }, body: '{"prompt":"just this"}' });
    expect(r.status).toBe(201);
    expect(((await r.json()) as any).prompts).toBe(1);
  });

  test("__proto__, NUL and control characters in toggle ids or values are 400 at HTTP, loaded model or not", async () => {
    const { app } = setup();
    const bodies = [
      '{"prompt":"a","toggles":{"__proto__":"native"}}',
      '{"prompt":"a","toggles":{"constructor":"native"}}',
      '{"prompt":"a","toggles":{"gqa\\u0000":"native"}}',
      '{"prompt":"a","toggles":{"g\\u0001qa":"native"}}',
      '{"prompt":"a","toggles":{"gqa":"native\\u0000broadcast"}}',
    ];
    for (const loaded of [false, true]) {
      for (const b of bodies) {
        const r = await app.request("/api/runs", raw(b));
        expect(r.status).toBe(400);
        expect(await errorOf(r)).toMatch(/toggle/);
      }
      const q = await app.request("/api/quant", raw('{"prompt":"a","reference":{"toggles":{"__proto__":"x"}},"candidate":{}}'));
      expect(q.status).toBe(400);
      if (!loaded) await readSse(await app.request(`/api/tasks/${((await (await app.request("/api/models/load", json({ source: "default" }))).json()) as any).task.id}/events`));
    }
  });

  test("CLI boundary: --toggle __proto__=… and control characters are refused", async () => {
    const { parseToggleArg, validateToggleSettings } = await import("../../engine/toggles.ts");
    const { fakeRegistry } = await import("./fake-engine.ts");
    const reg = fakeRegistry();
    for (const arg of ["__proto__=native", "constructor=native", "gqa\u0001=native", "gqa=nat\u0000ive"]) {
      expect(() => validateToggleSettings(reg, parseToggleArg(arg))).toThrow(/toggle/);
    }
    expect(validateToggleSettings(reg, parseToggleArg("gqa=broadcast"))).toEqual({ gqa: "broadcast" });
  });
});
