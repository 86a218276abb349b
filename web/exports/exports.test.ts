// The exports sub-app (web/exports/routes.ts) over the fake engine: every format of one run, and the table and
// roofline SVG of two.
import { beforeAll, describe, expect, test } from "bun:test";
import { appsForFile, runToEnd } from "../../test/web/helpers.ts";
import { generousTimeout } from "../../test/setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const setup = appsForFile();

describe("exports", () => {
  const env = setup();
  let A = "", B = "";
  beforeAll(async () => {
    A = (await runToEnd(env.app, { prompt: "compare", maxTokens: 6, label: "native" })).events.at(-1)!.data.profileKey;
    B = (await runToEnd(env.app, { prompt: "compare", maxTokens: 6, label: "broadcast", toggles: { gqa: "broadcast" } })).events.at(-1)!.data.profileKey;
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
});
