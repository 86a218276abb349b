// The profiles sub-app (web/profiles/routes.ts) over the fake engine, on two runs that differ in one toggle:
// compare, ceilings (in the views and the roofline SVG), the per-device roofline, palette, keys, delete.
import { describe, expect, test } from "bun:test";
import { symlinkSync, writeFileSync, mkdirSync, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { appsForFile, runToEnd } from "../../test/web/helpers.ts";
import { generousTimeout } from "../../test/setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const setup = appsForFile();

describe("profiles, compare, exports", () => {
  const env = setup();
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
