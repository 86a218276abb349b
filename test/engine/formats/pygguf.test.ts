// Cross-check against llama.cpp's own Python package (gguf-py 0.19): files it wrote parse here with the same
// values, and our dequantization equals gguf.quants.dequantize bit for bit. Fixtures: fixtures/make_pygguf.py.
import { expect, test } from "bun:test";
import * as nodePath from "node:path";
import { GGML_TYPE, GGUF_VALUE, openGguf } from "../../../engine/formats/gguf.ts";
import { dequantize } from "../../../engine/formats/quant.ts";
import { generousTimeout } from "../../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const dir = nodePath.join(import.meta.dir, "fixtures");

test("a GGUF written by gguf-py: metadata of every type", () => {
  const g = openGguf(nodePath.join(dir, "pygguf.gguf"));
  expect(g.version).toBe(3);
  const want: [string, number, unknown][] = [
    ["general.architecture", GGUF_VALUE.STRING, "qwen2"],
    ["t.u8", GGUF_VALUE.U8, 200], ["t.i8", GGUF_VALUE.I8, -100], ["t.u16", GGUF_VALUE.U16, 60000],
    ["t.i16", GGUF_VALUE.I16, -30000], ["t.u32", GGUF_VALUE.U32, 4000000000], ["t.i32", GGUF_VALUE.I32, -2000000000],
    ["t.f32", GGUF_VALUE.F32, Math.fround(0.1)], ["t.u64", GGUF_VALUE.U64, 2n ** 64n - 2n], ["t.i64", GGUF_VALUE.I64, -(2n ** 62n)],
    ["t.f64", GGUF_VALUE.F64, 1e-300], ["t.bool", GGUF_VALUE.BOOL, true], ["t.str", GGUF_VALUE.STRING, "Ġhello ✓"],
    ["t.arr.str", GGUF_VALUE.ARRAY, ["a", "bb", "<|im_end|>"]], ["t.arr.int", GGUF_VALUE.ARRAY, [1, -2, 3]],
    ["t.arr.float", GGUF_VALUE.ARRAY, [0.5, 1.5]], ["t.arr.nested", GGUF_VALUE.ARRAY, [[1, 2], [3]]],
  ];
  for (const [k, type, v] of want) {
    expect(g.metadata.get(k)?.type).toBe(type as never);
    expect(g.get(k)).toEqual(v);
  }
  expect(typeof g.get("t.i64")).toBe("bigint"); // outside the safe-integer range → bigint; inside → number
  expect(typeof g.get("t.u32")).toBe("number");
});

test("a GGUF written by gguf-py: our dequantization equals gguf.quants.dequantize bit for bit", () => {
  const g = openGguf(nodePath.join(dir, "pygguf.gguf"));
  const ref = openGguf(nodePath.join(dir, "pygguf-dequant.gguf"));
  const names = g.tensors.map((t) => t.name);
  expect(names.length).toBe(10);
  let checked = 0;
  for (const t of g.tensors) {
    const r = ref.tensor(t.name)!;
    expect(r.type).toBe(GGML_TYPE.F32);
    expect(t.ne).toEqual(r.ne);
    if (t.type === GGML_TYPE.Q4_1) {
      expect(() => dequantize(t.type, t.data)).toThrow(/unsupported type Q4_1/);
      continue;
    }
    const y = dequantize(t.type, t.data);
    const want = dequantize(GGML_TYPE.F32, r.data);
    const a = new Uint32Array(y.buffer), b = new Uint32Array(want.buffer);
    for (let i = 0; i < a.length; i++) {
      if (a[i] !== b[i]) throw new Error(`${t.name}[${i}]: ours ${y[i]}, gguf-py ${want[i]}`);
    }
    checked++;
  }
  expect(checked).toBe(9);
});
