// Files past 4 GiB cannot be mapped as one typed array in Bun/JSC; the readers then map a window per tensor.
// Sparse files keep this test fast and small on disk.
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as nodePath from "node:path";
import { encodeGguf, GGML_TYPE, openGguf, parseGguf } from "../../../engine/formats/gguf.ts";
import { openSafetensors } from "../../../engine/formats/safetensors.ts";
import { tmpDir } from "./helpers.ts";
import { generousTimeout } from "../../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const FAR = 2 ** 32 + 4096; // past the single-mapping limit

function sparse(path: string, head: Uint8Array, tailAt: number, tail: Uint8Array): boolean {
  const fd = fs.openSync(path, "w");
  try {
    fs.writeSync(fd, head, 0, head.length, 0);
    fs.writeSync(fd, tail, 0, tail.length, tailAt);
  } finally {
    fs.closeSync(fd);
  }
  return fs.statSync(path).blocks * 512 < 1 << 24; // really sparse?
}

test("GGUF over 4 GiB: header read progressively, tensors mapped per tensor", () => {
  const dir = tmpDir();
  const small = Uint8Array.from({ length: 32 }, (_, i) => i + 1);
  const head = encodeGguf({ metadata: [["general.architecture", { type: 8, value: "qwen2" }]], tensors: [
    { name: "near", type: GGML_TYPE.F32, ne: [8], data: small },
    { name: "far", type: GGML_TYPE.F32, ne: [8], data: small },
  ] });
  const g0 = parseGguf(head);
  // move "far" to just past 4 GiB: patch its offset field (the last u64 of the tensor infos)
  const dv = new DataView(head.buffer);
  const offField = infoEnd(head) - 8;
  const farOffset = FAR - g0.dataOffset;
  dv.setBigUint64(offField, BigInt(farOffset), true);
  const p = nodePath.join(dir, "big.gguf");
  const tail = Uint8Array.from({ length: 32 }, (_, i) => 100 + i);
  if (!sparse(p, head.subarray(0, g0.dataOffset + 32), g0.dataOffset + farOffset, tail)) {
    console.log("bigfile: filesystem does not keep sparse files; skipped");
    fs.rmSync(dir, { recursive: true });
    return;
  }
  const f = openGguf(p);
  expect(f.byteLength).toBe(g0.dataOffset + farOffset + 32);
  expect([...f.tensor("near")!.data]).toEqual([...small]);
  expect([...f.tensor("far")!.data]).toEqual([...tail]);
  expect(f.get("general.architecture")).toBe("qwen2");
  fs.rmSync(dir, { recursive: true });
});

test("safetensors over 4 GiB", () => {
  const dir = tmpDir();
  const hdr = Buffer.from(JSON.stringify({ a: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, b: { dtype: "F32", shape: [2], data_offsets: [FAR, FAR + 8] } }).padEnd(128, " "));
  const head = new Uint8Array(8 + hdr.length + 8);
  new DataView(head.buffer).setBigUint64(0, BigInt(hdr.length), true);
  head.set(hdr, 8);
  head.set([1, 2, 3, 4, 5, 6, 7, 8], 8 + hdr.length);
  const p = nodePath.join(dir, "big.safetensors");
  if (!sparse(p, head, 8 + hdr.length + FAR, Uint8Array.from([9, 9, 9, 9, 8, 8, 8, 8]))) {
    fs.rmSync(dir, { recursive: true });
    return;
  }
  const f = openSafetensors(p);
  expect([...f.tensor("a")!.data]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  expect([...f.tensor("b")!.data]).toEqual([9, 9, 9, 9, 8, 8, 8, 8]);
  fs.rmSync(dir, { recursive: true });
});

/** Byte offset just after the last tensor info (where the alignment padding starts). */
function infoEnd(b: Uint8Array): number {
  const g = parseGguf(b);
  const last = g.tensors[g.tensors.length - 1];
  const dv = new DataView(b.buffer, b.byteOffset);
  for (let p = g.dataOffset - 8; p > 0; p--) {
    if (dv.getBigUint64(p, true) === BigInt(last.offset) && dv.getUint32(p - 4, true) === last.type) return p + 8;
  }
  throw new Error("not found");
}

test("mapped files are private: writing into a tensor view never reaches the file", () => {
  const dir = tmpDir();
  const g = nodePath.join(dir, "m.gguf");
  const bytes = encodeGguf({ metadata: [], tensors: [{ name: "w", type: GGML_TYPE.F32, ne: [8], data: new Uint8Array(32).fill(7) }] });
  fs.writeFileSync(g, bytes);
  const f = openGguf(g);
  f.tensor("w")!.data.fill(0xee);
  expect(Buffer.compare(fs.readFileSync(g), bytes)).toBe(0);
  const s = nodePath.join(dir, "m.safetensors");
  const hdr = Buffer.from(JSON.stringify({ a: { dtype: "F32", shape: [2], data_offsets: [0, 8] } }).padEnd(64, " "));
  const st = Buffer.concat([Buffer.from(new BigUint64Array([BigInt(hdr.length)]).buffer), hdr, Buffer.alloc(8, 3)]);
  fs.writeFileSync(s, st);
  const o = openSafetensors(s);
  o.tensor("a")!.data.fill(0xee);
  expect(Buffer.compare(fs.readFileSync(s), st)).toBe(0);
  fs.rmSync(dir, { recursive: true });
});
