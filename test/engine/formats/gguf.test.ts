import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as nodePath from "node:path";
import {
  encodeGguf, GGML_TYPE, ggmlTensorBytes, ggmlTypeName, ggmlTypeSize, GGUF_VALUE, gv, inferKV, layoutGguf, openGguf,
  parseGguf, SUPPORTED_GGML_TYPES, writeGguf, type GgufKV,
} from "../../../engine/formats/gguf.ts";
import { randomBytes, rng, tmpDir } from "./helpers.ts";
import { generousTimeout } from "../../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const allMeta: [string, GgufKV][] = [
  ["general.architecture", gv.str("qwen2")],
  ["t.u8", gv.u8(255)],
  ["t.i8", gv.i8(-128)],
  ["t.u16", gv.u16(65535)],
  ["t.i16", gv.i16(-32768)],
  ["t.u32", gv.u32(0xffffffff)],
  ["t.i32", gv.i32(-0x80000000)],
  ["t.f32", gv.f32(Math.fround(1e-6))],
  ["t.bool", gv.bool(true)],
  ["t.bool0", gv.bool(false)],
  ["t.str", gv.str("héllo ✓ 漢字")],
  ["t.str.empty", gv.str("")],
  ["t.u64.safe", gv.u64(2 ** 40 + 3)],
  ["t.u64.big", gv.u64(2n ** 64n - 1n)],
  ["t.i64.neg", gv.i64(-5)],
  ["t.i64.big", gv.i64(-(2n ** 63n))],
  ["t.f64", gv.f64(Math.PI)],
  ["t.arr.u8", gv.array(GGUF_VALUE.U8, new Uint8Array([1, 2, 255]))],
  ["t.arr.i8", gv.array(GGUF_VALUE.I8, new Int8Array([-1, 2]))],
  ["t.arr.u16", gv.array(GGUF_VALUE.U16, new Uint16Array([65535, 0]))],
  ["t.arr.i16", gv.array(GGUF_VALUE.I16, new Int16Array([-2, 7]))],
  ["t.arr.u32", gv.array(GGUF_VALUE.U32, new Uint32Array([4e9]))],
  ["t.arr.i32", gv.array(GGUF_VALUE.I32, new Int32Array([-7, 1, 2, 3]))],
  ["t.arr.f32", gv.array(GGUF_VALUE.F32, new Float32Array([0.5, -1.25, NaN, Infinity]))],
  ["t.arr.f64", gv.array(GGUF_VALUE.F64, new Float64Array([1e300, -0]))],
  ["t.arr.u64", gv.array(GGUF_VALUE.U64, new BigUint64Array([0n, 2n ** 64n - 1n]))],
  ["t.arr.i64", gv.array(GGUF_VALUE.I64, new BigInt64Array([-(2n ** 63n), 5n]))],
  ["t.arr.bool", gv.array(GGUF_VALUE.BOOL, [true, false, true])],
  ["t.arr.str", gv.array(GGUF_VALUE.STRING, ["a", "", "Ġthe", "<|im_end|>"])],
  ["t.arr.empty", gv.array(GGUF_VALUE.I32, new Int32Array(0))],
  ["t.arr.nested", gv.array(GGUF_VALUE.ARRAY, [
    { elemType: GGUF_VALUE.STRING, items: ["x", "y"] },
    { elemType: GGUF_VALUE.ARRAY, items: [{ elemType: GGUF_VALUE.U8, items: new Uint8Array([9]) }] },
  ])],
];

function tensorsOfEveryType(seed: number) {
  const r = rng(seed);
  const types = [...SUPPORTED_GGML_TYPES, GGML_TYPE.Q4_1, GGML_TYPE.Q5_1, GGML_TYPE.Q2_K, GGML_TYPE.Q3_K, GGML_TYPE.Q8_K];
  return types.map((type, i) => {
    const { blockSize } = ggmlTypeSize(type);
    const ne = i % 2 ? [blockSize * 2, 3] : [blockSize * 3, 2, 1];
    return { name: `t${i}.${ggmlTypeName(type)}`, type, ne, data: randomBytes(r, ggmlTensorBytes(type, ne)) };
  });
}

describe("gguf types", () => {
  test("type table", () => {
    expect(ggmlTypeName(12)).toBe("Q4_K");
    expect(ggmlTypeName(99)).toBe("unknown(99)");
    expect(ggmlTypeSize(GGML_TYPE.Q6_K)).toEqual({ blockSize: 256, typeSize: 210 });
    expect(ggmlTypeSize(GGML_TYPE.Q5_0)).toEqual({ blockSize: 32, typeSize: 22 });
    expect(ggmlTypeSize(GGML_TYPE.BF16)).toEqual({ blockSize: 1, typeSize: 2 });
    expect(ggmlTensorBytes(GGML_TYPE.Q4_K, [512, 3])).toBe(2 * 3 * 144);
    expect(() => ggmlTensorBytes(GGML_TYPE.Q4_K, [896, 2])).toThrow(/896 is not a multiple of the Q4_K block size 256/);
    expect(() => ggmlTypeSize(77)).toThrow(/unknown ggml type 77/);
  });
});

describe("gguf round trip", () => {
  test("every metadata type and every tensor type, default alignment", () => {
    const tensors = tensorsOfEveryType(1);
    const bytes = encodeGguf({ metadata: allMeta, tensors });
    const g = parseGguf(bytes);
    expect(g.version).toBe(3);
    expect(g.alignment).toBe(32);
    expect(g.dataOffset % 32).toBe(0);
    expect([...g.metadata.keys()]).toEqual(allMeta.map(([k]) => k));
    for (const [k, kv] of allMeta) {
      const got = g.metadata.get(k)!;
      expect(got.type).toBe(kv.type);
      if (k === "t.arr.f32") {
        const items = (got.value as { items: Float32Array }).items;
        expect([...new Uint32Array(items.buffer)]).toEqual([...new Uint32Array((kv.value as { items: Float32Array }).items.buffer)]);
      } else expect(got.value).toEqual(kv.value);
    }
    expect(g.get("t.u64.safe")).toBe(2 ** 40 + 3);
    expect(g.get("t.u64.big")).toBe(2n ** 64n - 1n);
    expect(g.get("t.i64.neg")).toBe(-5);
    expect(g.get("t.arr.u64")).toEqual([0, 2n ** 64n - 1n]);
    expect(g.get("t.arr.nested")).toEqual([["x", "y"], [[9]]]);
    expect(g.get("missing")).toBeUndefined();
    expect(g.tensors.length).toBe(tensors.length);
    tensors.forEach((t, i) => {
      const got = g.tensors[i];
      expect(got.name).toBe(t.name);
      expect(got.type).toBe(t.type);
      expect(got.ne).toEqual(t.ne);
      expect(got.offset % 32).toBe(0);
      expect(Buffer.compare(got.data, t.data)).toBe(0);
      expect(g.tensor(t.name)).toBe(got);
    });
    // re-encoding what was read gives the same bytes
    const again = encodeGguf({ metadata: g.metadata, tensors: g.tensors.map((t) => ({ name: t.name, type: t.type, ne: t.ne, data: t.data })) });
    expect(Buffer.compare(again, bytes)).toBe(0);
  });

  test("custom alignment is written as general.alignment and honoured", () => {
    const tensors = tensorsOfEveryType(2);
    const bytes = encodeGguf({ metadata: [["a", gv.u32(1)]], tensors, alignment: 256 });
    const g = parseGguf(bytes);
    expect(g.alignment).toBe(256);
    expect(g.get("general.alignment")).toBe(256);
    expect(g.dataOffset % 256).toBe(0);
    for (const t of g.tensors) expect(t.offset % 256).toBe(0);
    expect(() => encodeGguf({ metadata: [["general.alignment", gv.u32(64)]], tensors, alignment: 128 })).toThrow(/disagrees/);
    expect(() => encodeGguf({ metadata: [], tensors, alignment: 48 })).toThrow(/power of two/);
  });

  test("streaming writer equals the in-memory encoder; producers are called lazily", async () => {
    const dir = tmpDir();
    const tensors = tensorsOfEveryType(3);
    const calls: string[] = [];
    const path = nodePath.join(dir, "m.gguf");
    const { bytes } = await writeGguf(path, {
      metadata: allMeta,
      tensors: tensors.map((t) => ({ ...t, data: async () => { calls.push(t.name); return t.data; } })),
    });
    expect(calls).toEqual(tensors.map((t) => t.name));
    const file = fs.readFileSync(path);
    expect(file.length).toBe(bytes);
    expect(Buffer.compare(file, encodeGguf({ metadata: allMeta, tensors }))).toBe(0);
    const g = openGguf(path);
    expect(g.tensors.map((t) => Buffer.compare(t.data, tensors[g.tensors.indexOf(t)].data))).toEqual(tensors.map(() => 0));
    expect(fs.readdirSync(dir)).toEqual(["m.gguf"]); // no temp file left
    fs.rmSync(dir, { recursive: true });
  });

  test("writer validates sizes, names and values", async () => {
    const t = { name: "x", type: GGML_TYPE.F32, ne: [4], data: new Uint8Array(16) };
    expect(() => encodeGguf({ metadata: [], tensors: [{ ...t, data: new Uint8Array(15) }] })).toThrow(/'x' has 15 bytes, F32 \[4\] needs 16/);
    expect(() => encodeGguf({ metadata: [], tensors: [t, t] })).toThrow(/duplicate tensor 'x'/);
    expect(() => encodeGguf({ metadata: [], tensors: [{ ...t, name: "n".repeat(65) }] })).toThrow(/1\.\.64 bytes/);
    expect(() => encodeGguf({ metadata: [["k", gv.u8(256)]], tensors: [] })).toThrow(/'k': 256 is not a valid U8/);
    expect(() => encodeGguf({ metadata: [["k", gv.u64(-1)]], tensors: [] })).toThrow(/out of range for U64/);
    expect(() => encodeGguf({ metadata: [], tensors: [{ ...t, type: GGML_TYPE.Q8_0, ne: [30] }] })).toThrow(/not a multiple/);
    const dir = tmpDir();
    const path = nodePath.join(dir, "bad.gguf");
    await expect(writeGguf(path, { metadata: [], tensors: [{ ...t, data: () => new Uint8Array(3) }] })).rejects.toThrow(/'x' has 3 bytes/);
    expect(fs.readdirSync(dir)).toEqual([]); // temp file removed, nothing at path
    fs.rmSync(dir, { recursive: true });
  });

  test("plain metadata values are inferred", () => {
    expect(inferKV("s").type).toBe(GGUF_VALUE.STRING);
    expect(inferKV(3).type).toBe(GGUF_VALUE.U32);
    expect(inferKV(-3).type).toBe(GGUF_VALUE.I32);
    expect(inferKV(0.5).type).toBe(GGUF_VALUE.F32);
    expect(inferKV(2 ** 40).type).toBe(GGUF_VALUE.I64);
    expect(inferKV(5n).type).toBe(GGUF_VALUE.U64);
    expect(inferKV(["a", "b"])).toEqual(gv.array(GGUF_VALUE.STRING, ["a", "b"]));
    const g = parseGguf(encodeGguf({ metadata: { "a.b": "x", n: 7, f: 0.5, ok: true }, tensors: [] }));
    expect(g.get("a.b")).toBe("x");
    expect(g.get("n")).toBe(7);
    expect(g.get("ok")).toBe(true);
    expect(layoutGguf({ metadata: {}, tensors: [] }).totalBytes % 32).toBe(0);
  });
});

describe("gguf reader errors", () => {
  const good = encodeGguf({ metadata: allMeta, tensors: tensorsOfEveryType(4) });

  test("bad magic, version, empty file", () => {
    const b = good.slice();
    b[0] = 0x48;
    expect(() => parseGguf(b)).toThrow(/bad magic at offset 0: 48 47 55 46/);
    const v = good.slice();
    new DataView(v.buffer).setUint32(4, 1, true);
    expect(() => parseGguf(v)).toThrow(/unsupported version 1 at offset 4/);
    new DataView(v.buffer).setUint32(4, 3 << 24, true);
    expect(() => parseGguf(v)).toThrow(/big-endian/);
    expect(() => parseGguf(new Uint8Array(0))).toThrow(/too short for the magic/);
  });

  test("truncation names the field and offset", () => {
    expect(() => parseGguf(good.subarray(0, 20))).toThrow(/tensor_count = \d+ at offset 8 is too large \(at most 0 fit in the rest of the file\)/);
    expect(() => parseGguf(good.subarray(0, 6))).toThrow(/truncated file: version needs 4 bytes at offset 4, only 2 left/);
    expect(() => parseGguf(good.subarray(0, 700))).toThrow(/metadata key #23 length = 9 at offset 687 is too large/);
    expect(() => parseGguf(good.subarray(0, good.length - 1))).toThrow(/truncated file: tensor '.*' .* ends at \d+, file has \d+ bytes/);
  });

  test("huge counts are rejected without allocating", () => {
    const b = good.slice();
    new DataView(b.buffer).setBigUint64(8, 2n ** 62n, true);
    expect(() => parseGguf(b)).toThrow(/tensor_count = 4611686018427387904 at offset 8 is too large/);
    const c = good.slice();
    new DataView(c.buffer).setBigUint64(16, 2n ** 40n, true);
    expect(() => parseGguf(c)).toThrow(/metadata_kv_count .* is too large/);
    // first key length
    const d = good.slice();
    new DataView(d.buffer).setBigUint64(24, 2n ** 50n, true);
    expect(() => parseGguf(d)).toThrow(/metadata key #0 length = \d+ at offset 24 is too large/);
  });

  test("bad tensor info fields", () => {
    const mk = (over: Partial<{ ne: number[]; type: number }>) =>
      encodeGguf({ metadata: [], tensors: [{ name: "w", type: over.type ?? GGML_TYPE.F32, ne: over.ne ?? [8, 2], data: new Uint8Array(ggmlTensorBytes(over.type ?? GGML_TYPE.F32, over.ne ?? [8, 2])) }] });
    const base = mk({});
    // layout: 24 header + name (8+1) + n_dims 4 + ne 8*2 + type 4 + offset 8
    const typeAt = 24 + 9 + 4 + 16;
    const b = base.slice();
    new DataView(b.buffer).setUint32(typeAt, 99, true);
    expect(() => parseGguf(b)).toThrow(`tensor 'w': unknown ggml type 99 at offset ${typeAt}`);
    const nd = base.slice();
    new DataView(nd.buffer).setUint32(33, 7, true);
    expect(() => parseGguf(nd)).toThrow(/n_dims 7 at offset 33 is not in 1\.\.4/);
    const off = base.slice();
    new DataView(off.buffer).setBigUint64(typeAt + 4, 3n, true);
    expect(() => parseGguf(off)).toThrow(/data offset 3 .* not a multiple of the alignment 32/);
    const zero = base.slice();
    new DataView(zero.buffer).setBigUint64(37, 0n, true);
    expect(() => parseGguf(zero)).toThrow(/ne\[0\] = 0 at offset 37 is invalid/);
    const q = base.slice();
    new DataView(q.buffer).setUint32(typeAt, GGML_TYPE.Q8_0, true);
    expect(() => parseGguf(q)).toThrow(/ne0 = 8 is not a multiple of the Q8_0 block size 32/);
  });

  test("tensor names longer than 64 bytes", () => {
    const b = encodeGguf({ metadata: [], tensors: [{ name: "n".repeat(64), type: GGML_TYPE.F32, ne: [1], data: new Uint8Array(4) }] });
    new DataView(b.buffer).setBigUint64(24, 65n, true);
    expect(() => parseGguf(b)).toThrow("GGUF: name of tensor #0 at offset 24 is 65 bytes long, at most 64 allowed");
  });

  test("overlapping tensors and duplicate names", () => {
    const t = (name: string) => ({ name, type: GGML_TYPE.F32, ne: [8], data: new Uint8Array(32) });
    const b = encodeGguf({ metadata: [], tensors: [t("a"), t("b")] });
    // second tensor's offset field: header 24 + (8+1+4+8+4+8) for a, then b's name..type
    const bOff = 24 + 33 + 8 + 1 + 4 + 8 + 4;
    new DataView(b.buffer).setBigUint64(bOff, 0n, true);
    expect(() => parseGguf(b)).toThrow(/overlaps tensor/);
    const d = encodeGguf({ metadata: [], tensors: [t("a"), t("b")] });
    d[24 + 8] = "b".charCodeAt(0);
    expect(() => parseGguf(d)).toThrow(/duplicate tensor name 'b'/);
    const k = encodeGguf({ metadata: [["aa", gv.u8(1)], ["ab", gv.u8(2)]], tensors: [] });
    k[24 + 8 + 1] = "b".charCodeAt(0);
    expect(() => parseGguf(k)).toThrow(/duplicate metadata key 'ab'/);
  });

  test("bad values: bool byte, unknown value type, alignment type", () => {
    const b = encodeGguf({ metadata: [["x", gv.bool(true)]], tensors: [] });
    b[24 + 9 + 4] = 2;
    expect(() => parseGguf(b)).toThrow(/invalid BOOL byte 2 at offset 37/);
    const u = encodeGguf({ metadata: [["x", gv.u8(1)]], tensors: [] });
    new DataView(u.buffer).setUint32(24 + 9, 13, true);
    expect(() => parseGguf(u)).toThrow(/'x': unknown value type 13 at offset 33/);
    expect(() => parseGguf(encodeGguf({ metadata: [["general.alignment", gv.u64(64)]], tensors: [] }))).toThrow();
  });

  test("deeply nested arrays are capped", () => {
    let v: GgufKV = gv.array(GGUF_VALUE.U8, new Uint8Array(0));
    for (let i = 0; i < 15; i++) v = gv.array(GGUF_VALUE.ARRAY, [v.value as never]);
    expect(parseGguf(encodeGguf({ metadata: [["deep", v]], tensors: [] })).metadata.get("deep")).toBeDefined();
    expect(() => encodeGguf({ metadata: [["deep", gv.array(GGUF_VALUE.ARRAY, [v.value as never])]], tensors: [] })).toThrow(/nested deeper/);
  });
});
