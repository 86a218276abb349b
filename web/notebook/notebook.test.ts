// The notebook API over the real notebook workers (Bun Workers) and the fake engine's task queue: cells share
// state, outputs and errors come back over SSE with line numbers, runaway cells are killed without harming the
// server or other notebooks, limits hold, runs queue behind other tasks, and execution can be switched off.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { fakeApp, json, readSse, type Sse } from "../../test/web/helpers.ts";
import { spawnServer } from "../../test/web/browser.ts";
import { generousTimeout } from "../../test/setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const REPO = resolve(import.meta.dir, "../..");
const DISPLAY = join(import.meta.dir, "../../engine/notebook/display.ts");
const made: { app: ReturnType<typeof fakeApp>["app"]; cleanup: () => void }[] = [];
function nbApp(limits: Record<string, number> = {}, exec = true) {
  const { app, dirs } = fakeApp({}, {});
  const dir = join(dirs.base, "notebooks");
  mkdirSync(dir, { recursive: true });
  const a = fakeApp({}, { notebooks: { dir, exec, limits, execNote: "exec off in this test" } });
  dirs.cleanup();
  made.push({ app: a.app, cleanup: a.dirs.cleanup });
  return { app: a.app, dir };
}
afterAll(() => { for (const m of made) { m.app.notebooks.closeAll(); m.cleanup(); } });

async function create(app: ReturnType<typeof nbApp>["app"], name: string, sources: string[]) {
  const r = await app.request("/api/notebooks", json({ name, cells: sources.map((source) => ({ type: "code", source })) }));
  expect(r.status).toBe(201);
}

async function run(app: ReturnType<typeof nbApp>["app"], name: string, sources: string[], onEvent?: (e: Sse) => void): Promise<Sse[]> {
  const r = await app.request(`/api/notebooks/${name}/run`, json({ cells: sources.map((source, i) => ({ key: `k${i}`, source })) }));
  expect(r.status).toBe(202);
  const { events } = (await r.json()) as { events: string };
  return readSse(await app.request(events), (e) => { onEvent?.(e); return ["done", "error", "cancelled"].includes(e.event); }, 120_000);
}
const outputsOf = (evs: Sse[], key: string) => evs.filter((e) => e.event === "output" && e.data.cell === key).map((e) => e.data.output);
const doneOf = (evs: Sse[], key: string) => evs.find((e) => e.event === "cell-done" && e.data.cell === key)?.data;

describe("notebook API", () => {
  test("cells share state, top-level await works, outputs and the last value come back", async () => {
    const { app } = nbApp();
    await create(app, "a", ["x"]);
    const evs = await run(app, "a", [
      `import { table, progress } from "${DISPLAY}";\nconst xs: number[] = [3, 1, 2];\nlet total = 0;\nfunction add(n: number) { return n + 1; }`,
      "await Bun.sleep(10);\nfor (const v of xs) total += add(v);\nconsole.log('total', total);\nprogress('loop', 3, 3);\ntable(xs.map((v) => ({ v, sq: v * v })));\ntotal * 2",
    ]);
    expect(doneOf(evs, "k0")).toMatchObject({ ok: true });
    expect(doneOf(evs, "k1")).toMatchObject({ ok: true });
    const outs = outputsOf(evs, "k1");
    expect(outs).toContainEqual({ type: "text", stream: "stdout", text: "total 9\n" });
    expect(outs).toContainEqual({ type: "progress", key: "loop", label: "loop", done: 3, total: 3 });
    expect(outs).toContainEqual({ type: "table", rows: [{ v: 3, sq: 9 }, { v: 1, sq: 1 }, { v: 2, sq: 4 }] });
    expect(outs).toContainEqual({ type: "text", text: "18\n" });
    expect(evs.at(-1)!.event).toBe("done");
    // a later run (new task) still sees the variables
    const again = await run(app, "a", ["total + xs.length"]);
    expect(outputsOf(again, "k0")).toContainEqual({ type: "text", text: "12\n" });
  }, 300_000);

  test("plot() renders Observable Plot SVG; a stray exception in a timer does not end the worker", async () => {
    const { app } = nbApp();
    await create(app, "p", ["x"]);
    const evs = await run(app, "p", [
      `import { plot, Plot } from "${DISPLAY}";\nconst keep = 1;`,
      "setTimeout(() => { throw new Error('stray'); }, 0);\nawait Bun.sleep(100);\nplot({ marks: [Plot.barY([{ x: 'a', y: 1 }], { x: 'x', y: 'y' })] });\nkeep + 1",
    ]);
    const outs = outputsOf(evs, "k1");
    expect(outs.find((o) => o.type === "svg")?.svg).toStartWith("<svg");
    expect(outs).toContainEqual({ type: "text", text: "2\n" });
    expect(evs.filter((e) => e.event === "output" && e.data.output.stream === "stderr").map((e) => e.data.output.text).join("")).toContain("stray");
    const doc = await (await app.request("/api/notebooks/p")).json();
    expect(doc.kernel).toMatchObject({ state: "idle", lastExit: null });
  }, 300_000);

  test("an error reports the cell's line number and stops the run", async () => {
    const { app } = nbApp();
    await create(app, "e", ["x"]);
    const evs = await run(app, "e", ["const a = 1;\n\nconst b = a + 1;\nthrow new Error(`bad ${b}`);", "console.log('never')"]);
    const d = doneOf(evs, "k0");
    expect(d.ok).toBe(false);
    expect(d.error).toMatchObject({ name: "Error", message: "bad 2", line: 4 });
    expect(doneOf(evs, "k1")).toBeUndefined();
    expect(evs.at(-1)!.data).toMatchObject({ ok: false, failed: "k0" });
    const syn = await run(app, "e", ["const ok = 1;\nconst x = (;"]);
    expect(doneOf(syn, "k0").error).toMatchObject({ line: 2 });
  }, 300_000);

  test("a runaway cell is killed on interrupt; the server and other notebooks keep working", async () => {
    const { app } = nbApp({ graceMs: 500 });
    await create(app, "loop", ["x"]);
    await create(app, "other", ["x"]);
    await run(app, "loop", ["globalThis.before = 41"]);
    const r = await app.request("/api/notebooks/loop/run", json({ cells: [{ key: "inf", source: "let i = 0;\nwhile (true) { i++; }" }] }));
    const { events } = (await r.json()) as { events: string };
    const stream = readSse(await app.request(events), undefined, 60_000);
    for (let i = 0; i < 1200 && (await (await app.request("/api/notebooks/loop")).json()).kernel.state !== "busy"; i++) await Bun.sleep(50); // up to 60 s: a loaded machine starts workers slowly
    expect((await app.request("/api/health")).status).toBe(200); // the server answers while the loop spins
    const ir = await app.request("/api/notebooks/loop/interrupt", { method: "POST" });
    expect((await ir.json()).interrupted).toBe(true);
    const evs = await stream;
    const d = doneOf(evs, "inf");
    expect(d.ok).toBe(false);
    expect(d.killed).toContain("did not stop");
    expect(evs.at(-1)!.event).toBe("cancelled");
    // the other notebook runs; the killed one starts a fresh worker (its variables are gone)
    expect(outputsOf(await run(app, "other", ["6 * 7"]), "k0")).toContainEqual({ type: "text", text: "42\n" });
    const fresh = await run(app, "loop", ["typeof before"]);
    expect(outputsOf(fresh, "k0")).toContainEqual({ type: "text", text: "undefined\n" });
  }, 300_000);

  test("a loop that calls progress() stops cooperatively and keeps its variables", async () => {
    const { app } = nbApp({ graceMs: 20_000 });
    await create(app, "coop", ["x"]);
    await run(app, "coop", [`import { progress } from "${DISPLAY}";\nconst kept = "still here";`]);
    const r = await app.request("/api/notebooks/coop/run", json({ cells: [{ key: "p", source: "for (let i = 0; ; i++) { progress('spin', i, 1e12); }" }] }));
    const started = (await r.json()) as { events: string; id: string };
    const stream = readSse(await app.request(started.events), undefined, 60_000);
    for (let i = 0; i < 1200 && (await (await app.request("/api/notebooks/coop")).json()).kernel.state !== "busy"; i++) await Bun.sleep(50); // up to 60 s: a loaded machine starts workers slowly
    await Bun.sleep(200);
    // the generic task cancel reaches the cell too (the page's Interrupt button uses /api/notebooks/:name/interrupt)
    expect((await app.request(`/api/tasks/${started.id}/cancel`, { method: "POST" })).status).toBe(200);
    const d = doneOf(await stream, "p");
    expect(d.error.name).toBe("Interrupted");
    expect(d.killed).toBeNull();
    expect(outputsOf(await run(app, "coop", ["kept"]), "k0")).toContainEqual({ type: "text", text: "still here\n" });
  }, 300_000);

  test("time and memory limits terminate the cell's worker", async () => {
    const t = nbApp({ cellTimeoutMs: 1500 }).app;
    await create(t, "slow", ["x"]);
    const slow = await run(t, "slow", ["await new Promise(() => {});"]);
    expect(doneOf(slow, "k0").killed).toContain("time limit");
    const { app } = nbApp({ memoryMb: 64 });
    await create(app, "lim", ["x"]);
    const big = await run(app, "lim", ["const keep: Float64Array[] = [];\nfor (;;) { keep.push(new Float64Array(4 << 20).fill(1)); await Bun.sleep(5); }"]);
    expect(doneOf(big, "k0").killed).toContain("memory limit");
    expect(outputsOf(await run(app, "lim", ["1 + 1"]), "k0")).toContainEqual({ type: "text", text: "2\n" });
  }, 300_000);

  test("a run waits behind the server's running task, and the stream says so", async () => {
    const { app } = nbApp();
    await create(app, "q", ["x"]);
    let release!: () => void;
    const blocker = app.tasks.submit("run", "blocker", () => new Promise<void>((r) => { release = r; }));
    await Bun.sleep(20);
    const seen: Sse[] = [];
    const p = run(app, "q", ["'ran'"], (e) => { seen.push(e); if (e.event === "status" && e.data.status === "queued") setTimeout(() => release(), 100); });
    const evs = await p;
    expect(evs[0]).toMatchObject({ event: "status", data: { status: "queued", position: 1 } });
    expect(blocker.status).toBe("done");
    expect(outputsOf(evs, "k0")).toContainEqual({ type: "text", text: "ran\n" });
  }, 300_000);

  test("save writes the .nb.ts and its outputs; reading matches outputs to cells by source", async () => {
    const { app, dir } = nbApp();
    await create(app, "s", ["x"]);
    const cells = [{ type: "markdown", source: "# T\n\ntext" }, { type: "code", source: "1 + 1" }, { type: "code", source: "2 + 2", title: "second" }];
    const r = await app.request("/api/notebooks/s", { ...json({ cells, outputs: [null, { outputs: [{ type: "text", text: "2\n" }], ok: true, ms: 3 }, null] }), method: "PUT" });
    expect(r.status).toBe(200);
    expect(readFileSync(join(dir, "s.nb.ts"), "utf8")).toBe("// %% [markdown]\n// # T\n//\n// text\n\n// %%\n1 + 1\n\n// %% second\n2 + 2\n");
    expect(existsSync(join(dir, "s.outputs.json"))).toBe(true);
    const doc = await (await app.request("/api/notebooks/s")).json();
    expect(doc.outputs[1]).toMatchObject({ outputs: [{ type: "text", text: "2\n" }], ok: true });
    expect(doc.outputs[2]).toBeNull();
    const ipynb = await (await app.request("/api/notebooks/s/ipynb")).json();
    expect(ipynb.cells.length).toBe(3);
    const imp = await app.request("/api/notebooks/import?name=s2", json(ipynb));
    expect(imp.status).toBe(201);
    expect(readFileSync(join(dir, "s2.nb.ts"), "utf8")).toBe(readFileSync(join(dir, "s.nb.ts"), "utf8"));
    expect((await app.request("/api/notebooks/import?name=s3", json({ cells: "no" }))).status).toBe(400);
    expect((await app.request("/api/notebooks/..%2Fx")).status).toBe(400);
    expect((await app.request("/api/notebooks/missing")).status).toBe(404);
  }, 300_000);

  test("with execution off, notebooks are read-only", async () => {
    const { app } = nbApp({}, false);
    const r = await app.request("/api/notebooks", json({ name: "n" }));
    expect(r.status).toBe(403);
    expect((await r.json()).error).toContain("exec off in this test");
    expect((await app.request("/api/notebooks/n/run", json({ cells: [{ key: "a", source: "1" }] }))).status).toBe(403);
    expect((await (await app.request("/api/notebooks")).json()).exec).toBe(false);
  });

  test("the server allows execution on loopback only, unless --allow-exec (with a warning)", async () => {
    const serve = async (args: string[]) => {
      const { proc: p, base } = await spawnServer(["--engine", join(REPO, "test/web/fake-engine.ts"), ...args]);
      try {
        const list = (await (await fetch(`${base}/api/notebooks`)).json()) as { exec: boolean; execNote: string | null };
        const run = await fetch(`${base}/api/notebooks/ablation/run`, json({ cells: [{ key: "a", source: "1" }] }));
        p.kill();
        return { list, runStatus: run.status, stderr: await new Response(p.stderr).text() };
      } finally {
        p.kill();
        await p.exited;
      }
    };
    const open = await serve(["--host", "0.0.0.0"]);
    expect(open.list.exec).toBe(false);
    expect(open.list.execNote).toContain("--allow-exec");
    expect(open.runStatus).toBe(403);
    expect(open.stderr).toContain("notebooks are read-only");
    const allowed = await serve(["--host", "0.0.0.0", "--allow-exec", "--notebooks", join(REPO, "test/fixtures")]);
    expect(allowed.list.exec).toBe(true);
    expect(allowed.stderr).toContain("warning: --allow-exec: anyone who can reach this port can run arbitrary code");
    expect(allowed.runStatus).toBe(404); // allowed, but that folder has no notebook named ablation
  }, 300_000);
});

describe.skipIf(!existsSync(join(REPO, "cuda/build/libqwen_cpu.so")))("shipped notebooks in a notebook worker (embedded model)", () => {
  // Read-only use of the repository's notebooks/ folder: cells run, nothing is saved.
  for (const f of readdirSync(join(REPO, "notebooks")).filter((x) => x.endsWith(".nb.ts")).sort()) {
    test(f, async () => {
      const a = fakeApp({}, { notebooks: { dir: join(REPO, "notebooks"), exec: true } });
      made.push({ app: a.app, cleanup: a.dirs.cleanup });
      const name = f.replace(/\.nb\.ts$/, "");
      const doc = await (await a.app.request(`/api/notebooks/${name}`)).json();
      const code = (doc.cells as { type: string; source: string }[]).filter((c) => c.type === "code").map((c) => c.source);
      const evs = await run(a.app, name, code);
      const done = evs.filter((e) => e.event === "cell-done");
      expect(done.map((e) => e.data.error?.message ?? null)).toEqual(code.map(() => null));
      const kinds = new Set(evs.filter((e) => e.event === "output").map((e) => e.data.output.type));
      expect(kinds.has("table")).toBe(true);
      expect(kinds.has("svg")).toBe(true);
      expect(kinds.has("plotly")).toBe(true);
    }, 300_000);
  }
});
