// The models sub-app (web/models/routes.ts) over the fake engine: the model list, loading with progress,
// confinement of sources, the loaded model's toggles and hooks.
import { describe, expect, test } from "bun:test";
import { symlinkSync } from "node:fs";
import { join } from "node:path";
import { appsForFile, readSse, json } from "../../test/web/helpers.ts";
import { catalog } from "../../engine/catalog.ts";
import { generousTimeout } from "../../test/setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const setup = appsForFile();

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
    expect(t.registry).toEqual(catalog().toggles); // the fake engine's toggles are the library's
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

  test("GET /api/catalog: the library's op, hook and profiling-mode names, the engine's toggles and their defaults", async () => {
    const { app } = setup();
    const r = await app.request("/api/catalog");
    expect(r.status).toBe(200);
    const c: any = await r.json();
    const lib = catalog(); // the native library's qw_catalog_json, read by the engine
    expect(c.ops.map((o: any) => o.name)).toEqual(lib.ops.map((o) => o.name));
    expect(c.ops.every((o: any) => typeof o.cost === "string")).toBe(true);
    expect(c.hooks).toEqual(lib.hooks);
    expect(c.profilingModes).toEqual(lib.profilingModes);
    expect(c.hookPatterns).toEqual([...lib.hooks.perLayer.map((h) => `blocks.*.${h}`), ...lib.hooks.global]);
    // the toggles of the engine it talks to (the fake's are the library's), with each backend's starting value:
    // the default where the backend implements it, else its first value (graphs: on for cuda, off on the cpu)
    expect(c.toggles).toEqual(lib.toggles);
    expect(c.defaults.cpu.gqa).toBe("native");
    expect(c.defaults.cpu.graphs).toBe("off");
    expect(c.defaults.cuda.graphs).toBe("on");
    expect(c.toggles.some((t: any) => t.id === c.weightsToggle && t.perLayer)).toBe(true); // the load-time toggle is one of them
  });

  test("hooks come from the catalog: every hook of every layer, and unknown ones are refused with the list", async () => {
    const { app } = setup();
    const before: any = await (await app.request("/api/hooks")).json();
    expect(before.layers).toBe(0);
    expect(before.hooks).toEqual(catalog().hooks.global);
    const ev = await readSse(await app.request(`/api/tasks/${((await (await app.request("/api/models/load", json({ source: "default" }))).json()) as any).task.id}/events`));
    expect(ev.at(-1)!.event).toBe("done");
    const h: any = await (await app.request("/api/hooks")).json();
    const { perLayer, global } = catalog().hooks;
    expect(h.hooks.length).toBe(4 * perLayer.length + global.length);
    expect(h.hooks[0]).toBe(`blocks.0.${perLayer[0]}`);
    expect(h.patterns).toContain(`blocks.*.${perLayer.at(-1)}`);
    const bad = await app.request("/api/runs", json({ prompt: "a", capture: [`blocks.*.${perLayer[0]}`, "blocks.1.hook_nowhere"] }));
    expect(bad.status).toBe(400);
    const msg = ((await bad.json()) as any).error as string;
    expect(msg).toMatch(/^run: capture\.1: unknown hook name "blocks\.1\.hook_nowhere"/);
    for (const name of [...perLayer, ...global]) expect(msg).toContain(name);
    const qbad = await app.request("/api/quant", json({ prompt: "a", reference: {}, candidate: { toggles: { gqa: "broadcast" } }, hooks: ["nope"] }));
    expect(qbad.status).toBe(400);
    expect(((await qbad.json()) as any).error).toMatch(/^quant: hooks\.0: unknown hook name "nope"/);
  });
});
