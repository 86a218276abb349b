// Seeded fuzzing of the readers: mutated and truncated GGUF and safetensors files must either parse or fail
// with a plain Error that has a message — never a TypeError/RangeError, a crash, a hang or a huge allocation.
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as nodePath from "node:path";
import { configFromGguf } from "../../../engine/formats/config.ts";
import { encodeGguf, GGML_TYPE, ggmlTensorBytes, GGUF_VALUE, gv, isSupportedGgmlType, openGguf, parseGguf, type GgufFile } from "../../../engine/formats/gguf.ts";
import { tensorTable, validateTensors } from "../../../engine/formats/modelfile.ts";
import { dequantize } from "../../../engine/formats/quant.ts";
import { encodeSafetensors, openSafetensors, parseSafetensors } from "../../../engine/formats/safetensors.ts";
import { randomBytes, rng, tinyConfig, tinyGguf, tmpDir } from "./helpers.ts";
import { generousTimeout } from "../../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const N_GGUF = 1500, N_ST = 1500, N_FILE = 60;

function baseGguf(): Uint8Array {
  const c = tinyConfig({ vocab_size: 40, num_hidden_layers: 1 });
  return tinyGguf(c, {
    type: GGML_TYPE.Q8_0,
    extraMeta: [
      ["x.nested", gv.array(GGUF_VALUE.ARRAY, [{ elemType: GGUF_VALUE.I32, items: new Int32Array([1, 2]) }, { elemType: GGUF_VALUE.STRING, items: ["a"] }])],
      ["x.bools", gv.array(GGUF_VALUE.BOOL, [true, false])],
      ["x.u64", gv.u64(2n ** 63n)],
      ["x.f64", gv.f64(0.25)],
    ],
  });
}
function baseQuantGguf(): Uint8Array {
  const r = rng(77);
  const ts = [GGML_TYPE.Q4_K, GGML_TYPE.Q5_K, GGML_TYPE.Q6_K, GGML_TYPE.Q4_0, GGML_TYPE.Q5_0, GGML_TYPE.F16, GGML_TYPE.BF16].map((type, i) => ({
    name: `t${i}`, type, ne: [256, 1], data: randomBytes(r, ggmlTensorBytes(type, [256, 1])),
  }));
  return encodeGguf({ metadata: [["general.architecture", gv.str("qwen2")]], tensors: ts, alignment: 64 });
}
function baseSafetensors(): Uint8Array {
  const r = rng(5);
  const t = (name: string, dtype: string, shape: number[], es: number) => ({ name, dtype, shape, data: randomBytes(r, shape.reduce((a, b) => a * b, es)) });
  return encodeSafetensors([t("model.embed_tokens.weight", "BF16", [8, 4], 2), t("b", "F32", [3], 4), t("c", "F16", [2, 2], 2), t("d", "I64", [2], 8)], { format: "pt" });
}

type Rand = () => number;
const int = (r: Rand, n: number) => Math.floor(r() * n);

/** One random mutation: flips, byte sets, u32/u64 field overwrites, truncation, insertion, deletion. */
function mutate(src: Uint8Array, r: Rand, hot: number): Uint8Array {
  const pos = () => (r() < 0.8 ? int(r, Math.max(1, hot)) : int(r, src.length));
  const kind = int(r, 7);
  let b = src.slice();
  switch (kind) {
    case 0: for (let k = 1 + int(r, 4); k > 0; k--) { const p = pos(); b[p] ^= 1 << int(r, 8); } break;
    case 1: for (let k = 1 + int(r, 3); k > 0; k--) b[pos()] = [0, 0xff, 0x7f, 0x80, 1][int(r, 5)]; break;
    case 2: { const p = Math.min(pos(), b.length - 8); if (p >= 0) new DataView(b.buffer).setBigUint64(p, [0n, 1n, 2n ** 32n, 2n ** 63n, 2n ** 64n - 1n, BigInt(int(r, 1 << 20))][int(r, 6)], true); break; }
    case 3: { const p = Math.min(pos(), b.length - 4); if (p >= 0) new DataView(b.buffer).setUint32(p, [0, 1, 9, 13, 30, 0xffffffff, int(r, 64)][int(r, 7)], true); break; }
    case 4: b = b.subarray(0, int(r, b.length)).slice(); break;
    case 5: { const p = pos(); const ins = randomBytes(r, 1 + int(r, 16)); const nb = new Uint8Array(b.length + ins.length); nb.set(b.subarray(0, p)); nb.set(ins, p); nb.set(b.subarray(p), p + ins.length); b = nb; break; }
    case 6: { const p = pos(); const n = 1 + int(r, 16); b = Uint8Array.from([...b.subarray(0, p), ...b.subarray(p + n)]); break; }
  }
  return b;
}

/** Structured mutation of a safetensors header (valid JSON, wrong content). */
function mutateStHeader(src: Uint8Array, r: Rand): Uint8Array {
  const n = Number(new DataView(src.buffer, src.byteOffset).getBigUint64(0, true));
  const h = JSON.parse(Buffer.from(src.subarray(8, 8 + n)).toString()) as Record<string, Record<string, unknown>>;
  const names = Object.keys(h).filter((k) => k !== "__metadata__");
  const t = h[names[int(r, names.length)]];
  const choices: (() => void)[] = [
    () => { (t.data_offsets as number[])[int(r, 2)] += int(r, 9) - 4; },
    () => { (t.data_offsets as number[])[int(r, 2)] = [1e300, -1, 2 ** 53, 0.5][int(r, 4)]; },
    () => { (t.shape as number[]).push(int(r, 3)); },
    () => { t.shape = [2 ** 40, 2 ** 40]; },
    () => { t.dtype = ["F64", "Q4", "", 7, "BF16"][int(r, 5)]; },
    () => { delete t[["dtype", "shape", "data_offsets"][int(r, 3)]]; },
    () => { t.extra = 1; },
    () => { h.__metadata__ = [{ a: 1 }, "x", { format: 3 }, null][int(r, 4)] as never; },
    () => { h[names[0]] = [] as never; },
    () => { t.data_offsets = h[names[(names.indexOf(names[0]) + 1) % names.length]].data_offsets; },
  ];
  choices[int(r, choices.length)]();
  const j = Buffer.from(JSON.stringify(h));
  const out = new Uint8Array(8 + j.length + (src.length - 8 - n));
  new DataView(out.buffer).setBigUint64(0, BigInt(j.length), true);
  out.set(j, 8);
  out.set(src.subarray(8 + n), 8 + j.length);
  return out;
}

interface Stats { parsed: number; rejected: number; maxMs: number; messages: Set<string> }
const newStats = (): Stats => ({ parsed: 0, rejected: 0, maxMs: 0, messages: new Set() });

function check(stats: Stats, label: string, fn: () => void): void {
  const t0 = performance.now();
  try {
    fn();
    stats.parsed++;
  } catch (e) {
    if (!(e instanceof Error) || e.constructor !== Error || !e.message) {
      throw new Error(`${label}: threw ${e instanceof Error ? `${e.constructor.name}: ${e.message}\n${e.stack}` : String(e)}`);
    }
    stats.rejected++;
    stats.messages.add(e.message.replace(/\d+/g, "N").slice(0, 60));
  }
  const ms = performance.now() - t0;
  stats.maxMs = Math.max(stats.maxMs, ms); // reported, not asserted: a loaded machine makes any bound flaky
}

/** What a loader does with a parsed GGUF: read every tensor, dequantize, derive and check the config. */
function exerciseGguf(g: GgufFile, asModel = true): void {
  for (const t of g.tensors) {
    const d = t.data;
    if (d.length !== t.nbytes) throw new Error("internal: data length mismatch");
    if (isSupportedGgmlType(t.type) && t.nbytes < 1 << 20) dequantize(t.type, d);
  }
  for (const k of g.metadata.keys()) g.get(k);
  if (!asModel) return;
  const { config } = configFromGguf(g);
  validateTensors(config, g.tensors.map((t) => ({ name: t.name, ggmlType: t.type, ne: t.ne })), "fuzz");
  tensorTable(config);
}

test(`fuzz: ${N_GGUF} mutated GGUF files parse or fail with an Error`, () => {
  const bases = [baseGguf(), baseQuantGguf()];
  const hot = bases.map((b) => parseGguf(b).dataOffset);
  exerciseGguf(parseGguf(bases[0]));
  exerciseGguf(parseGguf(bases[1]), false);
  const stats = newStats();
  const r = rng(1234);
  for (let i = 0; i < N_GGUF; i++) {
    const k = i % 2;
    const m = mutate(bases[k], r, hot[k]);
    check(stats, `gguf case ${i}`, () => exerciseGguf(parseGguf(m), k === 0));
  }
  if (process.env.FUZZ_VERBOSE) console.log([...stats.messages].join("\n"));
  console.log(`gguf fuzz: ${stats.parsed} parsed, ${stats.rejected} rejected, ${stats.messages.size} distinct messages, slowest ${stats.maxMs.toFixed(1)} ms`);
  expect(stats.parsed + stats.rejected).toBe(N_GGUF);
  expect(stats.rejected).toBeGreaterThan(N_GGUF / 4);
  expect(stats.messages.size).toBeGreaterThan(20);
});

test(`fuzz: ${N_ST} mutated safetensors files parse or fail with an Error`, () => {
  const base = baseSafetensors();
  const hot = 8 + Number(new DataView(base.buffer).getBigUint64(0, true));
  const stats = newStats();
  const r = rng(99);
  for (let i = 0; i < N_ST; i++) {
    const m = i % 3 === 0 ? mutateStHeader(base, r) : mutate(base, r, hot);
    check(stats, `safetensors case ${i}`, () => {
      const f = parseSafetensors(m);
      for (const t of f.tensors) if (t.data.length !== t.nbytes) throw new Error("internal: data length mismatch");
    });
  }
  console.log(`safetensors fuzz: ${stats.parsed} parsed, ${stats.rejected} rejected, ${stats.messages.size} distinct messages, slowest ${stats.maxMs.toFixed(1)} ms`);
  expect(stats.parsed + stats.rejected).toBe(N_ST);
  expect(stats.rejected).toBeGreaterThan(N_ST / 4);
});

test(`fuzz: ${N_FILE} mutated files through the mmap path`, () => {
  const dir = tmpDir();
  const r = rng(4321);
  const g = baseGguf(), s = baseSafetensors();
  const stats = newStats();
  for (let i = 0; i < N_FILE; i++) {
    const isG = i % 2 === 0;
    const m = mutate(isG ? g : s, r, isG ? 2000 : 300);
    const p = nodePath.join(dir, `case${i}.${isG ? "gguf" : "safetensors"}`);
    fs.writeFileSync(p, m);
    check(stats, `file case ${i}`, () => {
      if (isG) exerciseGguf(openGguf(p));
      else for (const t of openSafetensors(p).tensors) void t.data;
    });
  }
  fs.rmSync(dir, { recursive: true });
  expect(stats.parsed + stats.rejected).toBe(N_FILE);
});

test("fuzz: 1000 mutated config.json objects give a config or an Error", async () => {
  const { configFromHf } = await import("../../../engine/formats/config.ts");
  const base = await Bun.file(nodePath.join(import.meta.dir, "../../fixtures/tiny-qwen2-brown-config.json")).json() as Record<string, unknown>;
  const r = rng(555);
  const values: unknown[] = [0, -1, 1, 3, 2.5, 1e308, NaN, null, "", "qwen2", "llama", true, [], {}, [1, 2], { rope_theta: 5 }, 2 ** 53, 151936];
  const stats = newStats();
  for (let i = 0; i < 1000; i++) {
    const c: Record<string, unknown> = structuredClone(base);
    const keys = Object.keys(c);
    for (let k = 1 + int(r, 3); k > 0; k--) {
      const key = keys[int(r, keys.length)];
      if (r() < 0.2) delete c[key];
      else c[key] = values[int(r, values.length)];
    }
    check(stats, `config case ${i}`, () => { configFromHf(c); });
  }
  expect(stats.parsed + stats.rejected).toBe(1000);
  expect(stats.rejected).toBeGreaterThan(300);
});
