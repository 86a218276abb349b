// GGML tensor types (block sizes, names) and GGUF metadata values (types, the typed { type, value } form),
// shared by the GGUF reader (gguf.ts) and writer (gguf-write.ts). Spec: ggml docs/gguf.md.

// ------------------------------------------------------------------------------------------------------
// GGML tensor types
// ------------------------------------------------------------------------------------------------------

export const GGML_TYPE = {
  F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q5_0: 6, Q5_1: 7, Q8_0: 8, Q8_1: 9,
  Q2_K: 10, Q3_K: 11, Q4_K: 12, Q5_K: 13, Q6_K: 14, Q8_K: 15,
  IQ2_XXS: 16, IQ2_XS: 17, IQ3_XXS: 18, IQ1_S: 19, IQ4_NL: 20, IQ3_S: 21, IQ2_S: 22, IQ4_XS: 23,
  I8: 24, I16: 25, I32: 26, I64: 27, F64: 28, IQ1_M: 29, BF16: 30, TQ1_0: 34, TQ2_0: 35, MXFP4: 39, NVFP4: 40, Q1_0: 41,
} as const;
export type GgmlTypeName = keyof typeof GGML_TYPE;

/** Elements per block and bytes per block (ggml type_traits). */
const TYPE_SIZES: Record<number, readonly [blockSize: number, typeSize: number]> = {
  0: [1, 4], 1: [1, 2], 2: [32, 18], 3: [32, 20], 6: [32, 22], 7: [32, 24], 8: [32, 34], 9: [32, 36],
  10: [256, 84], 11: [256, 110], 12: [256, 144], 13: [256, 176], 14: [256, 210], 15: [256, 292],
  16: [256, 66], 17: [256, 74], 18: [256, 98], 19: [256, 50], 20: [32, 18], 21: [256, 110], 22: [256, 82],
  23: [256, 136], 24: [1, 1], 25: [1, 2], 26: [1, 4], 27: [1, 8], 28: [1, 8], 29: [256, 56], 30: [1, 2],
  34: [256, 54], 35: [256, 66], 39: [32, 17], 40: [64, 36], 41: [128, 18],
};
const TYPE_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(GGML_TYPE).map(([k, v]) => [v, k]),
);

/** The tensor types this project reads, writes, dequantizes and hands to the engine. */
export const SUPPORTED_GGML_TYPES: readonly number[] = [
  GGML_TYPE.F32, GGML_TYPE.F16, GGML_TYPE.BF16, GGML_TYPE.Q8_0, GGML_TYPE.Q4_0, GGML_TYPE.Q5_0,
  GGML_TYPE.Q4_K, GGML_TYPE.Q5_K, GGML_TYPE.Q6_K,
];

/** "Q4_K" for 12; "unknown(99)" for an id ggml does not define. */
export function ggmlTypeName(id: number): string {
  return TYPE_NAMES[id] ?? `unknown(${id})`;
}

export function ggmlTypeFromName(name: string): number {
  const id = (GGML_TYPE as Record<string, number>)[name.toUpperCase()];
  if (id === undefined) throw new Error(`unknown ggml type name '${name}'`);
  return id;
}

export function isKnownGgmlType(id: number): boolean {
  return TYPE_SIZES[id] !== undefined;
}

export function isSupportedGgmlType(id: number): boolean {
  return SUPPORTED_GGML_TYPES.includes(id);
}

/** Block geometry of a type: `blockSize` elements take `typeSize` bytes. Throws for an unknown id. */
export function ggmlTypeSize(id: number): { blockSize: number; typeSize: number } {
  const t = TYPE_SIZES[id];
  if (!t) throw new Error(`unknown ggml type ${id}`);
  return { blockSize: t[0], typeSize: t[1] };
}

/** Bytes of a tensor of type `type` and shape `ne` (ggml order). Throws a clear Error for a bad shape. */
export function ggmlTensorBytes(type: number, ne: readonly number[], what = "tensor"): number {
  const { blockSize, typeSize } = ggmlTypeSize(type);
  let n = 1;
  for (const d of ne) {
    if (!Number.isSafeInteger(d) || d < 0) throw new Error(`${what}: invalid dimension ${d}`);
    n *= d;
    if (!Number.isSafeInteger(n)) throw new Error(`${what}: element count overflows`);
  }
  if (ne.length > 0 && ne[0] % blockSize !== 0) {
    throw new Error(`${what}: ne0 = ${ne[0]} is not a multiple of the ${ggmlTypeName(type)} block size ${blockSize}`);
  }
  const bytes = (n / blockSize) * typeSize;
  if (!Number.isSafeInteger(bytes)) throw new Error(`${what}: byte size overflows`);
  return bytes;
}

// ------------------------------------------------------------------------------------------------------
// Metadata values
// ------------------------------------------------------------------------------------------------------

export const GGUF_VALUE = {
  U8: 0, I8: 1, U16: 2, I16: 3, U32: 4, I32: 5, F32: 6, BOOL: 7, STRING: 8, ARRAY: 9, U64: 10, I64: 11, F64: 12,
} as const;
export type GgufValueType = (typeof GGUF_VALUE)[keyof typeof GGUF_VALUE];
const VALUE_NAMES = Object.fromEntries(Object.entries(GGUF_VALUE).map(([k, v]) => [v, k])) as Record<number, string>;
export function ggufValueTypeName(t: number): string {
  return VALUE_NAMES[t] ?? `unknown(${t})`;
}

export type GgufNumArray =
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array
  | Float32Array | Float64Array | BigUint64Array | BigInt64Array;

/**
 * An ARRAY value. Numeric element types use typed arrays (U64/I64 use BigUint64Array/BigInt64Array),
 * BOOL uses boolean[], STRING string[], nested ARRAY GgufArray[].
 */
export interface GgufArray {
  elemType: GgufValueType;
  items: GgufNumArray | boolean[] | string[] | GgufArray[];
}

/** A scalar value: integers as number (U64/I64 as bigint only when outside the safe-integer range). */
export type GgufValue = number | bigint | boolean | string | GgufArray;

export interface GgufKV {
  type: GgufValueType;
  value: GgufValue;
}

/** Typed constructors for the writer: `gv.u32(5)`, `gv.f32(1e-6)`, `gv.array(GGUF_VALUE.STRING, tokens)`. */
export const gv = {
  u8: (v: number): GgufKV => ({ type: GGUF_VALUE.U8, value: v }),
  i8: (v: number): GgufKV => ({ type: GGUF_VALUE.I8, value: v }),
  u16: (v: number): GgufKV => ({ type: GGUF_VALUE.U16, value: v }),
  i16: (v: number): GgufKV => ({ type: GGUF_VALUE.I16, value: v }),
  u32: (v: number): GgufKV => ({ type: GGUF_VALUE.U32, value: v }),
  i32: (v: number): GgufKV => ({ type: GGUF_VALUE.I32, value: v }),
  f32: (v: number): GgufKV => ({ type: GGUF_VALUE.F32, value: v }),
  bool: (v: boolean): GgufKV => ({ type: GGUF_VALUE.BOOL, value: v }),
  str: (v: string): GgufKV => ({ type: GGUF_VALUE.STRING, value: v }),
  u64: (v: number | bigint): GgufKV => ({ type: GGUF_VALUE.U64, value: v }),
  i64: (v: number | bigint): GgufKV => ({ type: GGUF_VALUE.I64, value: v }),
  f64: (v: number): GgufKV => ({ type: GGUF_VALUE.F64, value: v }),
  array: (elemType: GgufValueType, items: GgufArray["items"] | number[]): GgufKV => ({
    type: GGUF_VALUE.ARRAY,
    value: { elemType, items: items as GgufArray["items"] },
  }),
};

/**
 * Infers a GGUF type for a plain JS value (writer convenience): string → STRING, boolean → BOOL,
 * integer number → U32 (0..2^32-1) / I32 (negative, fits) / I64, other number → F32, bigint → U64/I64,
 * arrays of strings → ARRAY STRING, of integers → ARRAY I32, of numbers → ARRAY F32. Prefer `gv.*`.
 */
export function inferKV(v: unknown, key = "value"): GgufKV {
  if (typeof v === "string") return gv.str(v);
  if (typeof v === "boolean") return gv.bool(v);
  if (typeof v === "bigint") return v >= 0n ? gv.u64(v) : gv.i64(v);
  if (typeof v === "number") {
    if (Number.isInteger(v)) {
      if (v >= 0 && v <= 0xffffffff) return gv.u32(v);
      if (v < 0 && v >= -0x80000000) return gv.i32(v);
      return gv.i64(v);
    }
    return gv.f32(v);
  }
  if (Array.isArray(v)) {
    if (v.every((x) => typeof x === "string")) return gv.array(GGUF_VALUE.STRING, v as string[]);
    if (v.every((x) => typeof x === "boolean")) return gv.array(GGUF_VALUE.BOOL, v as boolean[]);
    if (v.every((x) => typeof x === "number" && Number.isInteger(x) && x >= -0x80000000 && x <= 0x7fffffff)) {
      return gv.array(GGUF_VALUE.I32, Int32Array.from(v as number[]));
    }
    if (v.every((x) => typeof x === "number")) return gv.array(GGUF_VALUE.F32, Float32Array.from(v as number[]));
  }
  if (v && typeof v === "object" && "type" in v && "value" in v) return v as GgufKV;
  throw new Error(`GGUF metadata '${key}': cannot infer a GGUF type for ${typeof v}; use gv.*`);
}

/** The plain JS form of a value: scalars as is, arrays as JS arrays (numbers; bigint only for unsafe U64/I64). */
export function ggufPlain(v: GgufValue): unknown {
  if (typeof v !== "object") return v;
  const items = v.items as ArrayLike<unknown>;
  const out: unknown[] = new Array(items.length);
  for (let i = 0; i < items.length; i++) {
    const x = items[i];
    out[i] = typeof x === "bigint" ? bigToNum(x) : x && typeof x === "object" ? ggufPlain(x as GgufArray) : x;
  }
  return out;
}

export function bigToNum(x: bigint): number | bigint {
  return x <= BigInt(Number.MAX_SAFE_INTEGER) && x >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(x) : x;
}


// ------------------------------------------------------------------------------------------------------
// File-format limits the reader enforces and the writer respects
// ------------------------------------------------------------------------------------------------------

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
export const GGUF_DEFAULT_ALIGNMENT = 32;
export const MAX_NAME_BYTES = 64; // GGML_MAX_NAME
export const MAX_DIMS = 4;
export const MAX_ARRAY_DEPTH = 16;
/** Bytes of one scalar metadata value, by GGUF value type. */
export const SCALAR_SIZE: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
// Smallest encoding of one array element, to cap element counts by the bytes left.
export const MIN_ELEM_SIZE: Record<number, number> = { ...SCALAR_SIZE, 8: 8, 9: 12 };
