// The notebooks as a user starts them right after `npm install`: npm scripts exist, --help prints usage (not the
// source header), export --format svg-quant without quant data says so, calibrate --from-lab-log writes the L2 roof.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { loadCeilings } from "../../engine/measure/roofline.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const REPO = resolve(import.meta.dir, "../..");
const BUN = join(REPO, "node_modules/.bin/bun");
const tmp = mkdtempSync(join(tmpdir(), "qwb-nb-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function run(args: string[], env: Record<string, string> = {}) {
  const p = Bun.spawnSync([BUN, ...args], { cwd: REPO, stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

describe("notebooks", () => {
  // --backend / --threads: one parser for every notebook that opens a model (engine/notebook/args.ts); perplexity.ts
  // passed a bad --threads on as NaN before it
  for (const [nb, args, msg] of [
    ["perplexity", ["--backend", "gpu"], /--backend must be auto, cpu or cuda, got 'gpu'/],
    ["perplexity", ["--threads", "two"], /--threads expects an integer >= 0, got 'two'/],
    ["sparse-bench", ["--backend", "tpu"], /--backend must be auto, cpu or cuda, got 'tpu'/],
    ["fidelity", ["--threads=-1"], /--threads expects an integer >= 0, got '-1'/],
    // --weights / --arm-weights: the CLI's weights form, refused by flag and key before a model is opened
    ["perplexity", ["--weights", "q9", "--arm", "kvCache=f32"], /--weights q9: .*form: q4/],
    ["perplexity", ["--arm-weights", "q4,output=q9"], /--arm-weights q4,output=q9: output: /],
    ["ablate", ["--weights", "q4,q8"], /ablate: --weights q4,q8: two base formats/],
  ] as [string, string[], RegExp][]) {
    test(`${nb}.ts ${args.join(" ")} is refused with exit 2`, () => {
      const r = run([`notebooks/${nb}.ts`, ...args]);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(msg);
    }, 300_000);
  }

  // quant-error.nb.ts takes its choices from the environment: a bad one is refused by name before anything is measured
  for (const [env, msg] of [
    [{ QW_NB_WEIGHTS: "q5" }, /QW_NB_WEIGHTS: "q5" is not a weight format \(accepted: .*q4/],
    [{ QW_NB_TOGGLE: "actQuant" }, /QW_NB_TOGGLE must be id=value/],
    [{ QW_NB_TOGGLE: "nope=1" }, /QW_NB_TOGGLE: no toggle nope \(toggles: .*actQuant/],
    [{ QW_NB_TOGGLE: "actQuant=int9" }, /QW_NB_TOGGLE: actQuant=int9 is not implemented on (cpu|cuda) \(values: off, int8\)/],
    [{ QW_NB_TOGGLE: "actQuant=off" }, /is the reference \(the default\): nothing to compare/],
    [{ QW_NB_PHASE: "verify" }, /QW_NB_PHASE must be prefill or decode/],
  ] as [Record<string, string>, RegExp][]) {
    test(`quant-error.nb.ts refuses ${JSON.stringify(env)}`, () => {
      const r = run(["notebooks/quant-error.nb.ts"], { QW_NB_MODEL: "default", ...env });
      expect(r.code).not.toBe(0);
      expect(r.err + r.out).toMatch(msg);
    }, 300_000);
  }

  test("perplexity.ts --arm-weights: an arm on a copy of the model loaded with the weights option, a row in the table", () => {
    const dir = join(tmp, "ppl-arm-weights");
    const r = run(["notebooks/perplexity.ts", "--backend", "cpu", "--threads", "1", "--max-tokens", "80", "--ctx", "32",
      "--arm-weights", "q8", "--out", dir]);
    expect(r.code).toBe(0);
    const md = readFileSync(join(dir, "perplexity.md"), "utf8");
    const row = md.split("\n").find((l) => l.startsWith("| weights q8 |"));
    expect(row).toBeDefined();
    // q8 layers move the logits a little: a finite, small, non-zero KL against the as-loaded reference
    const kl = Number(row!.split("|")[4].trim().split(" ")[0]);
    expect(kl).toBeGreaterThan(0);
    expect(kl).toBeLessThan(0.05);
  }, 300_000);

  test("package.json has an npm script per notebook", () => {
    const scripts = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")).scripts;
    for (const n of ["ablate", "compare", "export", "calibrate", "bench", "perplexity", "passkey"]) expect(scripts[n]).toBe(`bun notebooks/${n}.ts`);
  });

  for (const n of ["ablate", "compare", "export", "calibrate", "bench", "perplexity", "passkey"]) {
    test(`${n} --help prints usage, not the source header`, () => {
      const r = run([`notebooks/${n}.ts`, "--help"]);
      expect(r.code).toBe(0);
      expect(r.out).toMatch(new RegExp(`^usage: (npm run ${n} -- |npx bun notebooks/${n}\\.ts )`)); // both work after npm install
      expect(r.out).not.toMatch(/^\/\//m);
    }, 300_000);
  }

  test("export --format svg-quant on a profile without quant data: a clear message and exit 1", () => {
    const r = run(["notebooks/export.ts", "profiles/cpu-run-tiny-brown-bf16.json", "--format", "svg-quant", "--out", tmp]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/no quantization-error data in .*cpu-run-tiny-brown-bf16\.json: svg-quant needs a profile of kind "quant-error"/);
    expect(existsSync(join(tmp, "cpu-run-tiny-brown-bf16.quant.svg"))).toBe(false);
  }, 300_000);

  test("calibrate --from-lab-log: the L2 roof of the CALIB line lands in the ceilings file, read back by the roofline", () => {
    const calib = { device: "Test GPU", sms: 132, cc: "9.0", clock_mhz: 1980, mem_clock_mhz: 3201, memory_bytes: 1.5e11, driver: 13000, runtime: 13000,
      copy_bw_bytes_per_s: { samples: [4.2e12, 4.3e12, 4.25e12], median: 4.25e12 },
      l2_bw_bytes_per_s: { samples: [1e13, 1.1e13, 1.05e13], median: 1.05e13, buffer_bytes: 26214400, l2_bytes: 52428800 },
      bf16_flops_per_s: { samples: [7.9e14, 8e14, 7.95e14], median: 7.95e14, kernel: "gemm_cublaslt", shape: "8192x8192x8192" }, gemm_library: "x" };
    writeFileSync(join(tmp, "lab.log"), `qwlab on Test GPU\nCALIB ${JSON.stringify(calib)}\n`);
    const r = run(["notebooks/calibrate.ts", "--from-lab-log", join(tmp, "lab.log"), "--out", join(tmp, "ceil")]);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    const c = loadCeilings(join(tmp, "ceil"));
    expect(c.map((x) => x.file)).toEqual(["test-gpu.json"]);
    expect(c[0].memory).toEqual([{ name: "copy bandwidth", value: 4.25e12, level: "dram" }, { name: "L2 read bandwidth", value: 1.05e13, level: "l2" }]);
    expect(c[0].cacheBytes.l2).toBe(52428800);
    // a malformed CALIB line is refused with the reason
    writeFileSync(join(tmp, "bad.log"), `CALIB {"device":"x"}\n`);
    const b = run(["notebooks/calibrate.ts", "--from-lab-log", join(tmp, "bad.log"), "--out", join(tmp, "ceil2")]);
    expect(b.code).toBe(1);
    expect(b.err).toMatch(/the CALIB line is not what cuda\/dev\/lab.cu prints/);
    expect(run(["notebooks/calibrate.ts", "--bogus"]).code).toBe(2);
  }, 300_000);

  test("dca-bench: dca off vs on on the passkey model, a row per length with both arms' spreads; a bad window is refused", () => {
    const out = join(tmp, "dca");
    const r = run(["notebooks/dca-bench.ts", "--lengths", "256,640", "--tg", "2", "--reps", "3", "--chunk", "256", "--local", "32", "--threads", "2", "--out", out]);
    expect(r.code).toBe(0);
    const j = JSON.parse(readFileSync(join(out, "dca-bench.json"), "utf8"));
    expect(j.dca).toEqual({ chunk: 256, local: 32, source: "option" });
    expect(j.rows.map((x: { length: number }) => x.length)).toEqual([256, 640]);
    for (const row of j.rows) {
      for (const k of ["prefillOff", "prefillOn", "decodeOff", "decodeOn"]) {
        expect(row[k].samples.length).toBe(3);
        expect(row[k].min).toBeGreaterThan(0);
      }
      expect(row.prefillTimeRatio).toBeCloseTo(row.prefillOff.median / row.prefillOn.median, 9);
    }
    expect(readFileSync(join(out, "dca-bench.md"), "utf8")).toContain("| 640 |");
    const bad = run(["notebooks/dca-bench.ts", "--chunk", "64", "--local", "64"]);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/local window must be an integer in \[0, chunk = 64\)/);
  }, 300_000);

  test("verify-cost: a row per tree size against the decode step, the per-op breakdown names the kernels that ran; a bad shape is refused", () => {
    const out = join(tmp, "vc");
    const r = run(["notebooks/verify-cost.ts", "--backend", "cpu", "--threads", "2", "--models", "tiny", "--context", "24",
      "--sizes", "1,4", "--reps", "3", "--warmup", "0", "--breakdown", "--out", out]);
    expect(r.code).toBe(0);
    const j = JSON.parse(readFileSync(join(out, "verify-cost.json"), "utf8"));
    const res = j.results[0].res;
    expect(res.rows.map((x: { n: number }) => x.n)).toEqual([1, 4]);
    for (const row of res.rows) expect(row.vsDecode).toBeCloseTo(row.ms.median / res.decode.median, 9);
    expect(res.breakdown.map((p: { label: string }) => p.label)).toEqual(["decode", "verify 1", "verify 4"]);
    const attn = res.breakdown[2].ops.find((o: { op: string }) => o.op === "attention");
    expect(attn.names.length).toBeGreaterThan(0); // the attention kernel of the verify pass, by name
    const md = readFileSync(join(out, "verify-cost.md"), "utf8");
    expect(md).toContain("| 4 |");
    expect(md).toMatch(/^- attention: \S/m);
    const bad = run(["notebooks/verify-cost.ts", "--models", "3b"]);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--models: unknown shape '3b'/);
  }, 300_000);

  test("batch-breakdown: per batch size the step's time and the kernel time per op (the sum adds up); bad batches and toggles are refused", () => {
    const out = join(tmp, "bb");
    const r = run(["notebooks/batch-breakdown.ts", "synthetic:tiny:f32", "--backend", "cpu", "--threads", "2", "--batches", "1,3",
      "--context", "8", "--steps", "2", "--reps", "3", "--out", out]);
    expect(r.code).toBe(0);
    const j = JSON.parse(readFileSync(join(out, "batch-breakdown.json"), "utf8"));
    expect(j.rows.map((x: { batch: number }) => x.batch)).toEqual([1, 3]);
    for (const row of j.rows) {
      expect(row.stepMs.samples.length).toBe(3);
      const sum = row.ops.reduce((a: number, x: { op: string; us: number }) => a + (x.op === "gap" ? 0 : x.us), 0);
      expect(row.kernelUs).toBeCloseTo(sum, 6);
      const qkv = row.ops.find((x: { op: string }) => x.op === "qkv");
      expect(qkv.kernels).toBe(j.layers); // one qkv record per layer per step
      expect(qkv.names.length).toBeGreaterThan(0);
    }
    expect(readFileSync(join(out, "batch-breakdown.md"), "utf8")).toMatch(/^\| qkv \| [0-9.]+ \| [0-9.]+ \|/m);
    const bad = run(["notebooks/batch-breakdown.ts", "synthetic:tiny:f32", "--batches", "1,0"]);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--batches expects an integer >= 1, got '0'/);
    const badT = run(["notebooks/batch-breakdown.ts", "synthetic:tiny:f32", "--backend", "cpu", "--batches", "1", "--toggle", "gemv=nope", "--out", join(tmp, "bb2")]);
    expect(badT.code).toBe(2);
    expect(badT.err).toMatch(/--toggle: .*gemv/);
  }, 300_000);
});
