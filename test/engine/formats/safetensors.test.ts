import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as nodePath from "node:path";
import {
  encodeSafetensors, openSafetensors, openSafetensorsDir, parseSafetensors, writeSafetensors, writeSafetensorsSharded,
  type SafetensorsWriteTensor,
} from "../../../engine/formats/safetensors.ts";
import { randomBytes, rng, tmpDir } from "./helpers.ts";
import { generousTimeout } from "../../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

function sample(seed: number): SafetensorsWriteTensor[] {
  const r = rng(seed);
  const mk = (name: string, dtype: string, shape: number[], es: number) => ({ name, dtype, shape, data: randomBytes(r, shape.reduce((a, b) => a * b, es)) });
  return [mk("a.weight", "BF16", [3, 5], 2), mk("b", "F32", [7], 4), mk("c", "F16", [2, 2, 2], 2), mk("scalar", "F32", [], 4), mk("empty", "F32", [0, 4], 4), mk("i8", "I8", [3], 1)];
}

function withHeader(json: unknown, data = new Uint8Array(0)): Uint8Array {
  const h = Buffer.from(JSON.stringify(json));
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

describe("safetensors round trip", () => {
  test("single file: dtypes, shapes, metadata, data views", async () => {
    const tensors = sample(1);
    const bytes = encodeSafetensors(tensors, { format: "pt" });
    expect((new DataView(bytes.buffer).getUint32(0, true) + 8) % 8).toBe(0);
    const f = parseSafetensors(bytes);
    expect(f.metadata).toEqual({ format: "pt" });
    expect(f.tensors.map((t) => t.name)).toEqual(tensors.map((t) => t.name));
    for (const t of tensors) {
      const g = f.tensor(t.name)!;
      expect(g.dtype).toBe(t.dtype);
      expect(g.shape).toEqual([...t.shape]);
      expect(Buffer.compare(g.data, t.data as Uint8Array)).toBe(0);
    }
    const dir = tmpDir();
    const p = nodePath.join(dir, "x.safetensors");
    await writeSafetensors(p, tensors.map((t) => ({ ...t, data: () => t.data as Uint8Array })), { format: "pt" });
    expect(Buffer.compare(fs.readFileSync(p), bytes)).toBe(0);
    const o = openSafetensors(p);
    expect(Buffer.compare(o.tensor("a.weight")!.data, tensors[0].data as Uint8Array)).toBe(0);
    fs.rmSync(dir, { recursive: true });
  });

  test("sharded: index + shards, opened as one model", async () => {
    const dir = tmpDir();
    const tensors = sample(2);
    const { shards, totalSize } = await writeSafetensorsSharded(dir, tensors, { maxShardBytes: 40 });
    expect(shards.length).toBeGreaterThan(1);
    expect(shards[0]).toBe(`model-00001-of-${String(shards.length).padStart(5, "0")}.safetensors`);
    const idx = JSON.parse(fs.readFileSync(nodePath.join(dir, "model.safetensors.index.json"), "utf8"));
    expect(idx.metadata.total_size).toBe(totalSize);
    const m = openSafetensorsDir(dir);
    expect(m.files.length).toBe(shards.length);
    expect(m.tensors.map((t) => t.name).sort()).toEqual(tensors.map((t) => t.name).sort());
    for (const t of tensors) expect(Buffer.compare(m.tensor(t.name)!.data, t.data as Uint8Array)).toBe(0);
    fs.rmSync(dir, { recursive: true });
  });

  test("the real fixture parses (tiny-qwen2-brown, bf16)", () => {
    const f = openSafetensors(nodePath.join(import.meta.dir, "../../../models/tiny-qwen2-brown/model.safetensors"));
    expect(f.tensors.length).toBe(50);
    expect(f.tensor("model.embed_tokens.weight")!.shape).toEqual([8256, 256]);
  });
});

describe("safetensors errors", () => {
  test("header bounds, JSON, schema", () => {
    expect(() => parseSafetensors(new Uint8Array(4))).toThrow(/too short for the header length/);
    const big = new Uint8Array(16);
    new DataView(big.buffer).setBigUint64(0, 2n ** 60n, true);
    expect(() => parseSafetensors(big)).toThrow(/header length 1152921504606846976 \(at offset 0\) exceeds the file \(16 bytes\)/);
    const bad = withHeader({});
    bad[8] = 0x5b; // "[}" → invalid JSON
    expect(() => parseSafetensors(bad)).toThrow(/not valid JSON/);
    expect(() => parseSafetensors(withHeader([1]))).toThrow(/not a JSON object/);
    expect(() => parseSafetensors(withHeader({ t: { dtype: "F32", shape: [2] } }))).toThrow(/tensor 't': data_offsets/);
    expect(() => parseSafetensors(withHeader({ t: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }))).toThrow(/tensor 't': shape/);
    expect(() => parseSafetensors(withHeader({ __metadata__: { a: 1 } }))).toThrow(/__metadata__ must map strings to strings/);
  });

  test("dtype, size, offsets, overlap", () => {
    expect(() => parseSafetensors(withHeader({ t: { dtype: "F17", shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)))).toThrow(/tensor 't': unknown dtype 'F17'/);
    expect(() => parseSafetensors(withHeader({ t: { dtype: "F32", shape: [2], data_offsets: [0, 4] } }, new Uint8Array(8)))).toThrow(/F32 \[2\] needs 8 bytes, data_offsets give 4/);
    expect(() => parseSafetensors(withHeader({ t: { dtype: "F32", shape: [2], data_offsets: [0, 8] } }, new Uint8Array(4)))).toThrow(/exceed the data buffer \(4 bytes; file truncated\?\)/);
    expect(() => parseSafetensors(withHeader({ t: { dtype: "F32", shape: [1], data_offsets: [4, 0] } }, new Uint8Array(8)))).toThrow(/reversed/);
    expect(() => parseSafetensors(withHeader({ a: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, b: { dtype: "F32", shape: [1], data_offsets: [4, 8] } }, new Uint8Array(8)))).toThrow(/'b' \[4, 8\) overlaps 'a' \[0, 8\)/);
  });

  test("sharded index problems are named", async () => {
    const dir = tmpDir();
    await writeSafetensorsSharded(dir, sample(3), { maxShardBytes: 40 });
    const ip = nodePath.join(dir, "model.safetensors.index.json");
    const idx = JSON.parse(fs.readFileSync(ip, "utf8"));
    const write = (o: unknown) => fs.writeFileSync(ip, JSON.stringify(o));
    write({ ...idx, weight_map: { ...idx.weight_map, b: "../etc/passwd" } });
    expect(() => openSafetensorsDir(dir)).toThrow(/weight_map\['b'\] = '..\/etc\/passwd' is not a plain file name/);
    write({ ...idx, weight_map: { ...idx.weight_map, b: "model-00009-of-00009.safetensors" } });
    expect(() => openSafetensorsDir(dir)).toThrow(/shard 'model-00009-of-00009.safetensors' \(for 'b'\) does not exist/);
    write({ ...idx, weight_map: { ...idx.weight_map, ghost: idx.weight_map.b } });
    expect(() => openSafetensorsDir(dir)).toThrow(/tensor 'ghost' is not in its shard/);
    const wm = { ...idx.weight_map };
    delete wm.c;
    write({ ...idx, weight_map: wm });
    expect(() => openSafetensorsDir(dir)).toThrow(/holds tensor 'c', which the weight_map puts in '\(none\)'/);
    write({ weight_map: [] });
    expect(() => openSafetensorsDir(dir)).toThrow(/weight_map/);
    fs.writeFileSync(ip, "{");
    expect(() => openSafetensorsDir(dir)).toThrow(/not valid JSON/);
    fs.rmSync(dir, { recursive: true });
    const empty = tmpDir();
    expect(() => openSafetensorsDir(empty)).toThrow(/no model.safetensors or model.safetensors.index.json/);
    fs.writeFileSync(nodePath.join(empty, "pytorch_model.bin"), "");
    expect(() => openSafetensorsDir(empty)).toThrow(/PyTorch .bin checkpoints are not supported/);
    fs.rmSync(empty, { recursive: true });
  });
});
