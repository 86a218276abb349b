// The passkey sub-app (web/passkey/routes.ts) over the fake engine: a run streams per-trial progress and saves its
// result under raw/passkey/; the list shows it (and results written by the CLI / notebook, arrays included); the
// heat map exports as SVG / CSV / markdown / JSON; bad requests are 400s naming the field. The passkey harness and
// sparse prefill themselves are tested on the real model in test/engine/passkey.test.ts and test/engine/sparse.test.ts.
import { describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { appsForFile, readSse, json, type Sse } from "../../test/web/helpers.ts";
import { generousTimeout } from "../../test/setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const setup = appsForFile();

async function passkeyTask(app: ReturnType<typeof setup>["app"], body: unknown): Promise<Sse[]> {
  const r = await app.request("/api/passkey", json(body));
  expect(r.status).toBe(202);
  const j = (await r.json()) as { id: string };
  return readSse(await app.request(`/api/tasks/${j.id}/events`));
}

describe("/api/passkey", () => {
  test("a run: progress per trial, saved result, listed, exported as SVG / CSV / md / JSON", async () => {
    const { app, dirs } = setup();
    const ev = await passkeyTask(app, { model: "default", lengths: [160, 200], trials: 2, buckets: 2, label: "fake run" });
    expect(ev.at(-1)!.event === "done" ? "done" : JSON.stringify(ev.at(-1)!.data)).toBe("done");
    const trials = ev.filter((e) => e.event === "passkey");
    expect(trials.map((e) => e.data.done)).toEqual([1, 2, 3, 4]);
    const done = ev.at(-1)!.data;
    expect(done.key).toMatch(/^raw\/passkey\//);
    expect(done.byLength.map((b: { length: number; n: number }) => [b.length, b.n])).toEqual([[160, 2], [200, 2]]);
    // a CLI result and a notebook array in the committed folder are listed too
    mkdirSync(join(dirs.profiles, "passkey"), { recursive: true });
    const saved = await (await app.request(`/api/passkey/result?key=${encodeURIComponent(done.key)}&format=json`)).json();
    writeFileSync(join(dirs.profiles, "passkey", "cli.json"), JSON.stringify(saved));
    writeFileSync(join(dirs.profiles, "passkey", "nb.json"), JSON.stringify([saved, { ...saved, dca: { ...saved.dca, on: true } }]));
    writeFileSync(join(dirs.profiles, "passkey", "other.json"), JSON.stringify({ not: "a passkey result" }));
    const list = (await (await app.request("/api/passkey")).json()) as { results: { key: string; index: number; dca: boolean; label: string | null }[] };
    expect(list.results.map((r) => `${r.key}#${r.index}`).sort()).toEqual([`${done.key}#0`, "passkey/cli#0", "passkey/nb#0", "passkey/nb#1"].sort());
    expect(list.results.find((r) => r.key === done.key)!.label).toBe("fake run");
    const q = `key=${encodeURIComponent(done.key)}&index=0`;
    const svg = await app.request(`/api/passkey/result?${q}&format=svg&download=1`);
    expect(svg.headers.get("content-type")).toContain("image/svg+xml");
    expect(svg.headers.get("content-disposition")).toContain(".svg");
    const text = await svg.text();
    expect(text.startsWith("<svg")).toBe(true);
    expect(text).toContain("needle depth");
    expect((text.match(/<rect [^>]*><title>length/g) ?? []).length).toBe(4);  // 2 lengths × 2 buckets
    const csv = await (await app.request(`/api/passkey/result?${q}&format=csv`)).text();
    expect(csv.split("\n")[0]).toBe("length,depth_lo_pct,depth_hi_pct,n,correct,accuracy,dca,sparse,keys_visited,recall");
    expect(csv.trim().split("\n").length).toBe(1 + 4 + 2);
    expect(await (await app.request(`/api/passkey/result?${q}&format=md`)).text()).toContain("| 200 |");
    const second = (await (await app.request("/api/passkey/result?key=passkey/nb&index=1&format=json")).json()) as { dca: { on: boolean } };
    expect(second.dca.on).toBe(true);
  });

  test("bad requests: 400 naming the field; unknown results 404; keys outside the passkey folders refused", async () => {
    const { app } = setup();
    const bad = async (body: unknown, re: RegExp) => {
      const r = await app.request("/api/passkey", json(body));
      expect(r.status).toBe(400);
      expect(((await r.json()) as { error: string }).error).toMatch(re);
    };
    await bad({ lengths: [8] }, /lengths.0: a passkey prompt needs >= 16 tokens/);
    await bad({ dca: "maybe" }, /dca: Invalid (enum value|option)/);
    await bad({ sparse: "dense" }, /passkey: sparse must be off, vertical-slash, block-sparse, got 'dense'/);  // the engine's registry lists them
    await bad({ sparseLocal: 0 }, /sparseLocal must be >= 1/);
    await bad({ trials: 0 }, /trials/);
    await bad({ dcaChunk: 64, dcaLocal: 64 }, /dcaLocal \(64\) must be smaller than dcaChunk \(64\)/);
    await bad({ bogus: 1 }, /bogus|Unrecognized/);
    expect((await app.request("/api/passkey/result?key=raw/passkey/none")).status).toBe(404);
    expect((await app.request("/api/passkey/result?key=raw/web/x")).status).toBe(400);
    expect((await app.request("/api/passkey/result?key=passkey/../../etc/passwd")).status).toBe(403);
  });
});
