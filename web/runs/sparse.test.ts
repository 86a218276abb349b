// POST /api/runs with sparse prefill budgets (field `sparse`, toggle sparsePrefill): bad budgets are 400s naming the
// field; good ones reach the run (its own session with them; the fake engine ignores them, the real one is tested in
// test/engine/sparse.test.ts and the page in test/web/e2e.test.ts).
import { describe, expect, test } from "bun:test";
import { appsForFile, json, runToEnd } from "../../test/web/helpers.ts";
import { generousTimeout } from "../../test/setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const setup = appsForFile();

describe("/api/runs sparse budgets", () => {
  test("bad budgets: 400 naming the field", async () => {
    const { app } = setup();
    for (const [sparse, re] of [
      [{ local: 0 }, /sparse.local: sparse.local must be >= 1/],
      [{ vertical: -1 }, /sparse.vertical/],
      [{ slash: 1.5 }, /sparse.slash/],
      [{ budget: 3 }, /budget|Unrecognized/],
    ] as const) {
      const r = await app.request("/api/runs", json({ prompt: "x", maxTokens: 2, repeats: 1, sparse }));
      expect(r.status).toBe(400);
      expect(((await r.json()) as { error: string }).error).toMatch(re);
    }
  });

  test("good budgets: the run completes in its own session and the command records them", async () => {
    const { app } = setup();
    const { events } = await runToEnd(app, { prompt: "the jury", maxTokens: 3, repeats: 1, warmup: 0, sparse: { vertical: 8, slash: 8, stats: true } });
    expect(events.at(-1)!.event).toBe("done");
    const key = events.at(-1)!.data.profileKey as string;
    const p = (await (await app.request(`/api/profiles/${encodeURIComponent(key)}`)).json()) as { manifest: { command?: string } };
    expect(p.manifest.command).toContain('"sparse":{"vertical":8,"slash":8,"stats":true}');
  });
});
