// The composed app (web/app.ts) over the fake engine: the API body limit, the queue limit, the pages and
// static files (web/pages/routes.ts) and the JSON 404 of unknown routes.
import { describe, expect, test } from "bun:test";
import { appsForFile, json, startRun } from "../test/web/helpers.ts";
import { generousTimeout } from "../test/setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const setup = appsForFile();

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
