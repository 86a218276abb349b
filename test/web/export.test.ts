// Note: `await expect(p).rejects` hung under bun 1.4.5 for promises rejected from a Worker's message handler;
// errOf() turns a rejection into its message instead.
// Exporters, aggregation, sweep arms, ceilings, the worker protocol, and the notebooks (smoke, real engine).
import { describe, expect, test, afterAll } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { EngineCore } from "../../web/core.ts";
import { WorkerHost } from "../../web/worker-host.ts";
import { effectiveDefault, recordRun } from "../../engine/measure/record.ts";
import { chromeTrace } from "../../engine/export/trace.ts";
import { renderTable, tableRows } from "../../engine/export/table.ts";
import { latencyMatrix, compareProfiles, spreadOf } from "../../engine/measure/aggregate.ts";
import { ceilingsFor, ceilingsForDevice, dramBandwidth, loadCeilings as loadCeilingsDir, parseCeilings, rooflinePoints } from "../../engine/measure/roofline.ts";
import { buildArms } from "../../engine/measure/sweep.ts";
import { tensorError, logitsError } from "../../engine/measure/quant-error.ts";
import { htmlReport } from "../../engine/export/report.ts";
import { Profile, readProfile } from "../../engine/measure/profile.ts";
import { fakeRegistry, makeFakeOpenModel } from "./fake-engine.ts";
import { catalog } from "../../engine/catalog.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const REPO = resolve(import.meta.dir, "../..");
const errOf = (p: Promise<unknown>) => p.then(() => "resolved", (e) => (e instanceof Error ? e.message : String(e)));
const tmp = mkdtempSync(join(tmpdir(), "qwb-exp-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function fakeProfile(toggles = {}, maxTokens = 6) {
  const m = await makeFakeOpenModel()("default");
  const s = m.newSession();
  const r = await recordRun(m, s, { id: "p", prompts: [{ prompt: "abc" }], maxTokens, sampling: { temperature: 0, topK: 0, topP: 1, seed: 0 }, toggles, profiling: true, capture: [] });
  return r.profile;
}

describe("aggregation and exporters", () => {
  test("latency matrix, roofline points, spreads", async () => {
    const p = await fakeProfile();
    const d = latencyMatrix(p, "decode");
    expect(d.steps).toBe(5);
    expect(d.layerLabels.at(-1)).toBe("head/tail");
    expect(d.ops).toContain("attention");
    expect(d.totalMs).toBeGreaterThan(0);
    const pts = rooflinePoints(p, "layer-op");
    expect(pts.every((x) => x.intensity > 0 && x.flopPerS > 0)).toBe(true);
    expect(spreadOf([1, 2, 3, 4, 100]).median).toBe(3);
  });

  test("chrome trace: metadata, one track per layer, X events with flops and bytes, µs timestamps from 0", async () => {
    const p = await fakeProfile();
    const t = chromeTrace(p);
    const x = t.traceEvents.filter((e) => e.ph === "X" && e.tid !== 0 && e.pid <= 2); // the per-phase processes
    expect(x.length).toBe(p.ops!.step.length);
    // the device time line: every record once more, in one process, with its step as correlation id
    const dev = t.traceEvents.filter((e) => e.ph === "X" && e.pid === 3);
    expect(dev.length).toBe(p.ops!.step.length);
    expect(dev.every((e) => typeof e.args?.correlation === "number")).toBe(true);
    expect(Math.min(...x.map((e) => e.ts!))).toBe(0);
    expect(new Set(x.map((e) => e.tid)).size).toBe(5);
    expect(t.traceEvents.filter((e) => e.ph === "M" && e.name === "thread_name").map((e) => e.args!.name)).toContain("layer 3");
    expect(x[0].args).toHaveProperty("flops");
    expect(x[0].args).toHaveProperty("bytes");
    JSON.parse(JSON.stringify(t));
  });

  test("tables share one schema across md/csv/json/jsonl", async () => {
    const rows = tableRows([await fakeProfile(), await fakeProfile({ gqa: "broadcast" })]);
    expect(rows.map((r) => r.test)).toEqual(["pp3", "tg5", "pp3", "tg5"]);
    const csv = renderTable(rows, "csv").trim().split("\n");
    expect(csv.length).toBe(5);
    const json = JSON.parse(renderTable(rows, "json"));
    const jsonl = renderTable(rows, "jsonl").trim().split("\n").map((l) => JSON.parse(l));
    expect(Object.keys(json[0])).toEqual(Object.keys(jsonl[0]));
    expect(csv[0].split(",")).toEqual(expect.arrayContaining(Object.keys(json[0])));
    expect(renderTable(rows, "md").split("\n")[1]).toMatch(/^\| ---/);
  });

  test("compare: toggle diff and statuses", async () => {
    const c = compareProfiles(await fakeProfile(), await fakeProfile({ gqa: "broadcast" }));
    expect(c.toggleDiff).toEqual([{ id: "gqa", a: "native", b: "broadcast" }]);
    expect(c.rows.filter((r) => r.op === "attention" && r.phase === "decode").every((r) => r.status === "slower")).toBe(true);
    expect(c.rows.filter((r) => r.op === "qkv" && r.phase === "decode").every((r) => r.status === "within noise")).toBe(true);
    // one prefill step per run: no spread, so no verdict
    expect(c.rows.filter((r) => r.op === "qkv" && r.phase === "prefill").every((r) => r.status === "too few samples")).toBe(true);
  });

  test("HTML report is self-contained and carries the data", async () => {
    const p = await fakeProfile();
    const h = htmlReport(p);
    expect(h).not.toMatch(/<(script|link)[^>]+(src|href)=/);
    const json = /<script type="application\/json" id="profile-data">([\s\S]*?)<\/script>/.exec(h)![1];
    expect(Profile.parse(JSON.parse(json)).id).toBe(p.id);
  });

  test("quant metrics", () => {
    const a = new Float32Array([1, 2, 3, 4]);
    expect(tensorError(a, a)).toMatchObject({ cosine: 1, rel_l1: 0, sqnr_db: 300, max_abs: 0 });
    const e = tensorError(a, new Float32Array([1, 2, 3, 4.1]));
    expect(e.max_abs).toBeCloseTo(0.1, 5);
    expect(e.sqnr_db).toBeGreaterThan(30);
    const l = logitsError(new Float32Array([0, 5, 0, 5, 0, 0]), new Float32Array([0, 5, 0, 0, 5, 0]), 3);
    expect(l.top1_agreement).toBe(0.5);
    expect(l.kl).toBeGreaterThan(0);
  });

  test("ceilings: one schema (the one notebooks/calibrate.ts writes); anything else is refused with the reason", () => {
    expect(() => parseCeilings({ device: "H200", copy_bw_gb_s: 4160, bf16_tflops: 700 }, "h200.json")).toThrow(/ceilings h200.json: invalid at schema/);
    expect(() => parseCeilings({ schema: "qwen-workbench/ceilings", version: 1, device: "x" }, "y.json")).toThrow(/no roof/);
    expect(() => parseCeilings({ schema: "qwen-workbench/ceilings", version: 1, device: "x", bandwidth_bytes_s: -1 }, "z.json")).toThrow(/bandwidth_bytes_s/);
    const cal = parseCeilings({ schema: "qwen-workbench/ceilings", version: 1, device: "NVIDIA H200", bandwidth_bytes_s: 4.16e12, flops: { bf16: 7.2e14 },
      device_info: { sms: 132, clock_mhz: 1980, memory_bytes: 1.5e11 }, measurements: { copy_bandwidth: { unit: "bytes/s", median: 4.16e12, samples: [] } } }, "nvidia-h200.json");
    expect(cal).toEqual({ device: "NVIDIA H200", file: "nvidia-h200.json", memory: [{ name: "DRAM bandwidth", value: 4.16e12, level: "dram" }],
      compute: [{ name: "bf16 tensor core", value: 7.2e14 }], cacheBytes: {} });
    // cache roofs (calibrate.ts: L2 on the GPU, L2/L3 on the CPU)
    const cpu = parseCeilings({ schema: "qwen-workbench/ceilings", version: 1, device: "cpu x", backend: "cpu", bandwidth_bytes_s: 2e10,
      cache_bandwidth_bytes_s: { l2: 2e11, l3: 1e11 }, cache_bytes: { l2: 1 << 20, l3: 32 << 20 }, flops: { fp32: 1e11 }, roof_names: { bandwidth: "read bandwidth" } }, "c.json");
    expect(cpu.memory.map((m) => [m.level, m.name])).toEqual([["dram", "read bandwidth"], ["l3", "L3 bandwidth"], ["l2", "L2 bandwidth"]]);
    expect(cpu.cacheBytes.l3).toBe(32 << 20);
  });

  test("ceilings: the CPU file of calibrate.ts --backend cpu is found for the CPU's device name by both readers", () => {
    const dev = "Intel(R) Xeon(R) Processor"; // the name the CPU backend reports on the dev machine (/proc/cpuinfo)
    const c = ceilingsFor(loadCeilingsDir(join(REPO, "profiles/ceilings")), dev);
    expect(c).not.toBeNull();
    expect(c!.file).toBe("intel-r-xeon-r-processor.json");
    expect(c!.memory).toEqual([{ name: "read bandwidth", value: expect.any(Number), level: "dram" }]);
    expect(c!.compute).toEqual([{ name: "fp32 FMA (AVX2)", value: expect.any(Number) }]);
    const raw = JSON.parse(readFileSync(join(REPO, "profiles/ceilings", c!.file), "utf8"));
    expect(raw).toMatchObject({ schema: "qwen-workbench/ceilings", backend: "cpu", device: dev });
    expect(raw.measurements.read_bandwidth.samples.length).toBeGreaterThanOrEqual(3);
    expect(raw.measurements.fp32_fma.samples.length).toBeGreaterThanOrEqual(3);
    const r = ceilingsForDevice(dev, join(REPO, "profiles/ceilings"), "cpu"); // the CLI and bench.ts
    expect(dramBandwidth(r)).toBe(raw.bandwidth_bytes_s);
    expect(r!.compute[0].value).toBe(raw.flops.fp32);
    // the CUDA file keeps its default roof names
    expect(ceilingsFor(loadCeilingsDir(join(REPO, "profiles/ceilings")), "NVIDIA H200")!.compute[0].name).toBe("bf16 tensor core");
  });
});

describe("sweep arms from the registry", () => {
  test("one factor at a time over implemented values", () => {
    const reg = fakeRegistry(); // the library's registry
    const labels = buildArms(reg, "cpu").map((a) => a.label);
    expect(labels[0]).toBe("baseline");
    expect(labels).toContain("gqa=broadcast");
    // one toggle per arm, each a value the cpu implements other than where a cpu session starts
    for (const l of labels.slice(1)) {
      const [id, v] = l.split("=");
      const d = reg.find((t) => t.id === id)!;
      expect(d.backends.cpu).toContain(v);
      expect(v).not.toBe(effectiveDefault(d, "cpu"));
    }
    // weights (a load-time option: an arm needs its own model copy) is swept only when named; a value that needs
    // more than itself (speculative = draft: a draft model) never is
    expect(labels.some((l) => l.startsWith("weights="))).toBe(false);
    expect(labels).not.toContain("speculative=draft");
    expect(buildArms(reg, "cpu", { weights: ["*"] }).map((a) => a.label)).toContain("weights=q8");
    // graphs: the CPU has no CUDA graphs, so only the cuda sweep has an arm for it
    expect(labels.some((l) => l.startsWith("graphs="))).toBe(false);
    expect(buildArms(reg, "cuda").map((a) => a.label)).toContain("graphs=off");
  });
  test("cartesian, profiling axis, and errors", () => {
    const reg = fakeRegistry();
    const arms = buildArms(reg, "cpu", { gqa: ["*"], weights: ["bf16", "q8"] }, { cartesian: true, profiling: [true, false] });
    expect(arms.length).toBe(8);
    expect(arms.map((a) => a.label)).toContain("gqa=broadcast,weights=q8,profiling=off");
    expect(() => buildArms(reg, "cpu", { nope: ["x"] })).toThrow(/unknown toggle/);
    expect(() => buildArms(reg, "cpu", { graphs: ["on"] })).toThrow(/on is not on the cpu backend/);
  });
});

describe("engine worker protocol", () => {
  test("load, run, failing run, cancel, bad engine module — the host survives all", async () => {
    const fake = join(REPO, "test/web/fake-engine.ts");
    const host = new WorkerHost(fake, { QW_FAKE_OPTIONS: JSON.stringify({ failDecodeAt: 3 }) });
    const progress: unknown[] = [];
    const info = await host.load("l1", "default", { backend: "cpu" }, (e) => progress.push(e));
    expect(info.registry).toEqual(catalog().toggles); // the fake's toggles are the library's
    expect(progress.length).toBe(4);
    const spec = { id: "r1", prompts: [{ prompt: "hi" }], maxTokens: 3, sampling: { temperature: 0, topK: 0, topP: 1, seed: 0 }, toggles: {}, profiling: true, capture: [] };
    const events: string[] = [];
    const r = await host.run("r1", spec, (e) => events.push(e.type));
    expect(r.profile.tokens!.length).toBe(3);
    expect(events).toContain("step");
    expect(await errOf(host.run("r2", { ...spec, id: "r2", maxTokens: 20 }, () => {}))).toMatch(/illegal memory access/);
    const again = await host.run("r3", { ...spec, id: "r3" }, () => {});
    expect(again.cancelled).toBe(false);
    expect(await errOf(host.run("r4", { ...spec, id: "r4", toggles: { gqa: "sideways" } }, () => {}))).toMatch(/not one of/);
    await host.close();

    const slow = new WorkerHost(fake, { QW_FAKE_OPTIONS: JSON.stringify({ stepDelayMs: 10 }) });
    await slow.load("l", "default", { backend: "cpu" }, () => {});
    const p = slow.run("c1", { ...spec, id: "c1", maxTokens: 1000 }, () => {});
    setTimeout(() => slow.cancel("c1"), 100);
    const res = await p;
    expect(res.cancelled).toBe(true);
    expect(res.profile.tokens!.length).toBeLessThan(1000);
    await slow.close();

    const broken = new WorkerHost(join(tmp, "missing-engine.ts"));
    expect(await errOf(broken.load("x", "default", { backend: "cpu" }, () => {}))).toMatch(/cannot load the engine/);
    await broken.close();
  }, 180_000);

  test("the catalog crosses the worker checked", async () => {
    const lib = catalog();
    const fake = new WorkerHost(join(REPO, "test/web/fake-engine.ts"));
    const c = await fake.catalog();
    expect(c.ops).toEqual(lib.ops);
    expect(c.hooks).toEqual(lib.hooks);
    expect(c.toggles).toEqual(lib.toggles);
    expect(await fake.catalog()).toBe(c); // asked once
    await fake.close();
    const real = new WorkerHost(join(REPO, "engine/index.ts"));
    expect(await real.catalog()).toEqual(lib);
    await real.close();
  }, 120_000);

  test("a worker that dies mid-run fails that run; the app reloads the model in a fresh worker", async () => {
    const { fakeApp, readSse, json } = await import("./helpers.ts");
    const host = new WorkerHost(join(REPO, "test/web/fake-engine.ts"), { QW_FAKE_OPTIONS: JSON.stringify({ crashWorker: true }) });
    const { app, dirs } = fakeApp({}, {}, host);
    const r1: any = await (await app.request("/api/runs", json({ prompt: "x", maxTokens: 3 }))).json();
    const ev = await readSse(await app.request(`/api/tasks/${r1.id}/events`));
    expect(ev.at(-1)!.event).toBe("error");
    expect(ev.at(-1)!.data.message).toBe("engine worker crashed: fake engine: uncaught failure on the engine thread");
    expect(host.loaded()).toBeNull();
    expect((await app.request("/api/health")).status).toBe(200);
    const r2: any = await (await app.request("/api/models/load", json({ source: "default" }))).json();
    const ev2 = await readSse(await app.request(`/api/tasks/${r2.id ?? r2.task.id}/events`));
    expect(ev2.at(-1)!.event).toBe("done");
    await host.close();
    dirs.cleanup();
  }, 180_000);

  test("in-process core: run before load fails clearly", async () => {
    const core = new EngineCore(makeFakeOpenModel());
    expect(await errOf(core.run("x", { id: "x", prompts: [{ prompt: "a" }], maxTokens: 1, sampling: { temperature: 0, topK: 0, topP: 1, seed: 0 }, toggles: {}, profiling: false, capture: [] }, () => {}))).toMatch(/no model loaded/);
  });
});

const haveNative = existsSync(join(REPO, "cuda/build/libqwen_cpu.so"));
if (!haveNative) console.warn("[notebooks] skipped: cuda/build/libqwen_cpu.so is not built (npm install)");
describe.skipIf(!haveNative)("notebooks (CPU engine, embedded default model)", () => {
  test("ablate → compare → export", async () => {
    const out = join(tmp, "ablate");
    const run = (args: string[]) => Bun.spawnSync([process.execPath, ...args], { cwd: REPO, stdout: "pipe", stderr: "pipe" });
    const few = run(["notebooks/ablate.ts", "--repeats", "2", "--out", out]);
    expect(few.exitCode).toBe(2);
    expect(few.stderr.toString()).toMatch(/--repeats must be an integer >= 3/);
    const a = run(["notebooks/ablate.ts", "--toggle", "gqa=native,broadcast", "--repeats", "3", "--max-tokens", "4", "--out", out]);
    expect(a.exitCode, a.stderr.toString()).toBe(0);
    for (const f of ["baseline.json", "gqa-broadcast.json", "comparison.md", "roofline.svg", "decode.svg", "table.csv"]) expect(existsSync(join(out, f))).toBe(true);
    const md = readFileSync(join(out, "comparison.md"), "utf8");
    expect(md).toContain("| gqa=broadcast |");
    expect(md).toMatch(/\| gqa=broadcast \|.*\| yes \|/); // broadcast computes the same function: same greedy tokens
    const c = run(["notebooks/compare.ts", join(out, "baseline.json"), join(out, "gqa-broadcast.json"), "--out", join(tmp, "cmp")]);
    expect(c.exitCode, c.stderr.toString()).toBe(0);
    expect(c.stdout.toString()).toContain('gqa "native" → "broadcast"');
    // ablate's table and compare.ts agree in sign, size and verdict on the same pair of profiles (one rule)
    const base = readProfile(join(out, "baseline.json")), arm = readProfile(join(out, "gqa-broadcast.json"));
    expect(arm.summary.repeats).toBe(3);
    expect(arm.summary.warmup).toBe(1);
    const ablRow = md.split("\n").findLast((l) => l.startsWith("| gqa=broadcast | "))!.split("|").map((x) => x.trim());
    const cmpOut = c.stdout.toString().split("\n");
    for (const [metric, col] of [["decode (tok/s)", 3], ["prefill (tok/s)", 5], ["TTFT (ms)", 7]] as const) {
      const cmpRow = cmpOut.find((l) => l.startsWith(`| ${metric} |`))!.split("|").map((x) => x.trim());
      const [pct, status] = [cmpRow[5], cmpRow[6]];
      expect(ablRow[col]).toBe(`${pct} ${status === "faster" || status === "slower" ? `**${status}**` : `(${status})`}`);
    }
    const d = compareProfiles(base, arm).summary.find((x) => x.key === "decode_tok_s")!;
    expect(d.b).toBe(arm.bench!.find((b) => b.test.startsWith("tg"))!.tokens_per_s.median);
    const e = run(["notebooks/export.ts", join(out, "baseline.json"), "--out", join(tmp, "exp")]);
    expect(e.exitCode, e.stderr.toString()).toBe(0);
    for (const f of ["baseline.trace.json", "baseline.report.html", "baseline.bench.md", "baseline.roofline.svg"]) expect(existsSync(join(tmp, "exp", f))).toBe(true);
  }, 300_000);
});
