// The parallel synthetic writer (engine/synth/pool.ts + engine/synth/worker.ts): byte-identical files to the
// sequential in-process path, RNG jump-ahead equal to stepping, row chunks (odd lengths included) equal to the
// sequential stream, worker errors that reject (no hang, no file left), and a timing print.
import { test, expect, describe } from "bun:test";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  encodeTensor, encodeTensorRows, synthSpec, tensorChunks, tensorProducers, writeSyntheticGguf, writeSyntheticHf, Xoshiro128,
  type SynthTensor, type SynthType,
} from "../../engine/synth/synthetic.ts";
import { OrderedEncoder, SynthPool, synthWorkerCount, type ScheduledTensor } from "../../engine/synth/pool.ts";
import { GGML } from "../../engine/ffi.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const sha = (p: string) => createHash("sha256").update(readFileSync(p)).digest("hex");
const concat = (parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
};

describe("Xoshiro128.jump", () => {
  test("jump(k) lands where k draws land", () => {
    for (const k of [0, 1, 2, 31, 32, 33, 1000, 65537, 4194303]) {
      const a = new Xoshiro128(11, 12345), b = new Xoshiro128(11, 12345);
      for (let i = 0; i < k; i++) a.nextU32();
      b.jump(k);
      expect(b.state()).toEqual(a.state());
      expect(b.nextU32()).toBe(a.nextU32());
    }
    // composition: jump(x) then jump(y) = jump(x + y)
    const c = new Xoshiro128(1, 2).jump(123456789).jump(987654321), d = new Xoshiro128(1, 2).jump(1111111110);
    expect(c.state()).toEqual(d.state());
    expect(() => new Xoshiro128(1, 2).jump(-1)).toThrow(/non-negative/);
  });
});

describe("row chunks", () => {
  // ne0 = 3: 1398101 rows per chunk, an odd number of values per chunk (fillNormal draws one extra per chunk)
  const odd: SynthTensor = { name: "odd.weight", hfName: "odd", ne: [3, 3_000_001], kind: "weight", layer: 0 };
  const big: SynthTensor = { name: "big.weight", hfName: "big", ne: [256, 40_000], kind: "weight", layer: 0 };
  const spec = synthSpec("tiny", { seed: 9 });

  test("encodeTensorRows over tensorChunks = encodeTensor (odd chunk lengths, quantized types)", async () => {
    const oc = tensorChunks(odd);
    expect(oc.length).toBe(3);
    expect((oc[0].rows * 3) % 2).toBe(1);
    const seq = await encodeTensor(spec, odd, GGML.F32);
    // chunks out of order, each from a fresh jumped RNG
    const parts = oc.map((c, i) => ({ i, b: encodeTensorRows(spec, odd, GGML.F32, c.row0, c.rows) }));
    expect(Buffer.from(concat(parts.map((p) => p.b))).equals(Buffer.from(seq))).toBe(true);
    for (const ty of [GGML.Q8_0, GGML.Q4_K, GGML.Q6_K, GGML.BF16]) {
      const s = await encodeTensor(spec, big, ty);
      const p = concat(tensorChunks(big).reverse().map((c) => encodeTensorRows(spec, big, ty, c.row0, c.rows)).reverse());
      expect(Buffer.from(p).equals(Buffer.from(s))).toBe(true);
    }
    expect(() => encodeTensorRows(spec, big, GGML.Q8_0, 1, 10)).toThrow(/not one of its/);
  });

  test("tensorProducers with workers = sequential bytes", async () => {
    const items = [
      { t: big, ggmlType: GGML.Q8_0 }, { t: odd, ggmlType: GGML.F32 },
      { t: { ...big, name: "n.weight", ne: [256], kind: "norm" as const }, ggmlType: GGML.F32 }, { t: big, ggmlType: GGML.Q4_K },
    ];
    // a tiny in-flight bound: tensors then start one at a time
    const p = tensorProducers(spec, items, { workers: 2, maxInFlightBytes: 1 });
    try {
      for (let i = 0; i < items.length; i++) {
        const got = await p.data(i);
        const want = await encodeTensor(spec, items[i].t, items[i].ggmlType);
        expect(Buffer.from(got).equals(Buffer.from(want))).toBe(true);
      }
    } finally {
      p.close();
    }
  });
});

describe("parallel GGUF writer", () => {
  const dir = mkdtempSync(join(tmpdir(), "qw-synth-par-"));
  const tiny = synthSpec("tiny", { seed: 1 });
  // vocab 20000 x 256 > one 4M-value chunk: the embedding is cut into row chunks on different workers
  const chunked = synthSpec("custom", { seed: 2, config: { vocab_size: 20000 } });

  const cases: [string, ReturnType<typeof synthSpec>, SynthType][] = [
    ["tiny", tiny, "q8_0"], ["tiny", tiny, "q4_k_m"], ["tiny", tiny, "bf16"], ["chunked", chunked, "q8_0"], ["chunked", chunked, "q4_k_m"],
  ];
  for (const [label, spec, type] of cases) {
    test(`${label} ${type}: 3 workers = 1 worker, byte for byte (sha256)`, async () => {
      const a = join(dir, `${label}-${type}-w1.gguf`), b = join(dir, `${label}-${type}-w3.gguf`);
      const t0 = performance.now();
      await writeSyntheticGguf(spec, type, a, { workers: 1 });
      const t1 = performance.now();
      const progress: number[] = [];
      await writeSyntheticGguf(spec, type, b, { workers: 3, onProgress: (p) => progress.push(p.done) });
      const t2 = performance.now();
      expect(sha(b)).toBe(sha(a));
      expect(progress[progress.length - 1]).toBe(progress.length - 1); // 0, 1, ..., n: every tensor reported
      console.log(`synth ${label} ${type}: 1 worker ${(t1 - t0).toFixed(0)} ms, 3 workers ${(t2 - t1).toFixed(0)} ms (incl. worker start)`);
    });
  }

  test("HF writer with workers = sequential", async () => {
    const a = join(dir, "hf1"), b = join(dir, "hf2");
    await writeSyntheticHf(chunked, "bf16", a, { workers: 1 });
    await writeSyntheticHf(chunked, "bf16", b, { workers: 2 });
    expect(sha(join(b, "model.safetensors"))).toBe(sha(join(a, "model.safetensors")));
  });

  test("a worker error rejects with a clear Error (no hang: the test timeout catches one) and leaves no file", async () => {
    const bad = { ...chunked, std: NaN }; // quantize refuses non-finite values inside the worker
    const path = join(dir, "bad.gguf");
    await expect(writeSyntheticGguf(bad, "q8_0", path, { workers: 2 })).rejects.toThrow(/synthetic worker failed on token_embd\.weight.*not finite/);
    expect(existsSync(path)).toBe(false);
    expect(readdirSync(dir).filter((f) => f.startsWith("bad.gguf"))).toEqual([]);
  });

  test("pool: a throwing job rejects, later jobs reject too, close() is idempotent", async () => {
    const pool = new SynthPool(2);
    try {
      const t: SynthTensor = { name: "x.weight", hfName: "x", ne: [256, 40_000], kind: "weight", layer: 0 };
      await expect(pool.run({ spec: tiny, t, ggmlType: GGML.Q8_0, row0: 3, rows: 5 })).rejects.toThrow(/x\.weight rows 3\.\.8.*not one of its/);
      await expect(pool.run({ spec: tiny, t, ggmlType: GGML.Q8_0, row0: 0, rows: 16384 })).rejects.toThrow();
    } finally {
      pool.close();
      pool.close();
    }
  });

  test("a failure in a later tensor rejects the writer's current wait (no hang)", async () => {
    const big: SynthTensor = { name: "big.weight", hfName: "big", ne: [256, 40_000], kind: "weight", layer: 0 };
    const small: SynthTensor = { name: "small.weight", hfName: "small", ne: [256, 64], kind: "weight", layer: 0 };
    const bad = { ...tiny, std: NaN };
    const rowBytes = (256 / 32) * 34;
    const tensors: ScheduledTensor[] = [
      { nbytes: 40_000 * rowBytes, jobs: tensorChunks(big).map(({ row0, rows }) => ({ job: { spec: tiny, t: big, ggmlType: GGML.Q8_0, row0, rows }, offset: row0 * rowBytes, nbytes: rows * rowBytes })) },
      { nbytes: 64 * rowBytes, jobs: [{ job: { spec: bad, t: small, ggmlType: GGML.Q8_0, row0: 0, rows: 64 }, offset: 0, nbytes: 64 * rowBytes }] },
      { nbytes: 40_000 * rowBytes, jobs: tensorChunks(big).map(({ row0, rows }) => ({ job: { spec: tiny, t: big, ggmlType: GGML.Q8_0, row0, rows }, offset: row0 * rowBytes, nbytes: rows * rowBytes })) },
    ];
    const enc = new OrderedEncoder(new SynthPool(2), tensors);
    try {
      const consume = async () => { for (let i = 0; i < tensors.length; i++) await enc.get(i); };
      await expect(consume()).rejects.toThrow(/small\.weight.*not finite/);
      await expect(enc.get(2)).rejects.toThrow(/small\.weight/);
    } finally {
      enc.close();
    }
  });

  test("worker count from QW_SYNTH_WORKERS", () => {
    expect(synthWorkerCount({ QW_SYNTH_WORKERS: "1" })).toBe(1);
    expect(synthWorkerCount({ QW_SYNTH_WORKERS: "7" })).toBe(7);
    expect(() => synthWorkerCount({ QW_SYNTH_WORKERS: "0" })).toThrow(/positive integer/);
    const d = synthWorkerCount({});
    expect(d).toBeGreaterThanOrEqual(1);
    expect(d).toBeLessThanOrEqual(12);
  });

  test("cleanup", () => rmSync(dir, { recursive: true, force: true }));
});
