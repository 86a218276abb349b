// GGUF v3 (and v2) reader and streaming writer. Spec: ggml docs/gguf.md; summary in
// shared/research/kernel-brief.md §2.1.
//
// The reader trusts nothing: every count, length and offset is checked against the bytes that are really
// there before it is used, so a truncated or mutated file fails with an Error that names the field and its
// byte offset, never with a RangeError, a hang or a huge allocation: every count and length is capped by the
// bytes left in the header budget (the smaller of the file and MAX_HEADER_BYTES) before anything is allocated.
// Tensor data from a file are checked copies (pread), never an mmap: a file truncated while it is read gives an
// Error, not SIGBUS (issue 8, D1). From an in-memory buffer they are views of it.
import * as fs from "node:fs";
import { CheckedFile } from "../io/fsafe.ts";

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

function bigToNum(x: bigint): number | bigint {
  return x <= BigInt(Number.MAX_SAFE_INTEGER) && x >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(x) : x;
}

// ------------------------------------------------------------------------------------------------------
// Reader
// ------------------------------------------------------------------------------------------------------

const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
export const GGUF_DEFAULT_ALIGNMENT = 32;
const MAX_NAME_BYTES = 64; // GGML_MAX_NAME
const MAX_DIMS = 4;
const MAX_ARRAY_DEPTH = 16;
const MAX_HEADER_BYTES = 256 << 20; // metadata + tensor infos (real files: ~10-30 MB, mostly the vocabulary)

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new Error("gguf.ts needs a little-endian host");

export interface GgufTensorInfo {
  name: string;
  type: number;
  ne: number[];
  /** Offset relative to the start of the data section, as stored. */
  offset: number;
  /** Absolute byte offset in the file. */
  fileOffset: number;
  nbytes: number;
  nelements: number;
  /** The tensor's bytes (a view, no copy). */
  readonly data: Uint8Array;
}

export interface GgufFile {
  version: number;
  alignment: number;
  metadata: Map<string, GgufKV>;
  tensors: GgufTensorInfo[];
  /** Absolute offset of the data section. */
  dataOffset: number;
  /** Total file size in bytes. */
  byteLength: number;
  /** Plain value of a metadata key (see ggufPlain), or undefined. */
  get(key: string): unknown;
  tensor(name: string): GgufTensorInfo | undefined;
}

class NeedMore extends Error {}

/** A field description for error messages, built only when an error is thrown. */
type What = string | (() => string);
const label = (w: What) => (typeof w === "string" ? w : w());

const utf8 = new TextDecoder("utf-8");

class Cursor {
  pos = 0;
  readonly dv: DataView;
  constructor(
    readonly b: Uint8Array,
    /** Size of the whole file; `b` may be only a prefix of it while the header is read progressively. */
    readonly fileSize: number,
  ) {
    this.dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  }
  /** Bytes left in the file after pos. */
  left(): number {
    return this.fileSize - this.pos;
  }
  /** Bytes the header may still take: what caps counts and lengths, checked before allocating (D4). */
  room(): number {
    return Math.min(this.fileSize, MAX_HEADER_BYTES) - this.pos;
  }
  need(n: number, what: What): void {
    if (n > this.b.length - this.pos) {
      if (this.b.length < this.fileSize && n <= this.fileSize - this.pos) throw new NeedMore();
      throw new Error(
        `GGUF: truncated file: ${label(what)} needs ${n} bytes at offset ${this.pos}, only ${Math.max(0, this.fileSize - this.pos)} left`,
      );
    }
  }
  u8(what: string): number { this.need(1, what); return this.b[this.pos++]; }
  u32(what: string): number { this.need(4, what); const v = this.dv.getUint32(this.pos, true); this.pos += 4; return v; }
  u64(what: string): bigint { this.need(8, what); const v = this.dv.getBigUint64(this.pos, true); this.pos += 8; return v; }
  /** A u64 that must fit a safe JS integer and be ≤ max. */
  count(what: What, max: number): number {
    const at = this.pos;
    this.need(8, what);
    const lo = this.dv.getUint32(at, true), hi = this.dv.getUint32(at + 4, true);
    this.pos += 8;
    const v = hi * 4294967296 + lo; // exact below 2^53; above, any value is far beyond max anyway
    if (v > max) {
      const exact = (BigInt(hi) << 32n) | BigInt(lo);
      throw new Error(`GGUF: ${label(what)} = ${exact} at offset ${at} is too large (at most ${Math.max(0, max)} fit in the rest of the ${this.fileSize <= MAX_HEADER_BYTES ? "file" : `${MAX_HEADER_BYTES}-byte header limit`})`);
    }
    return v;
  }
  str(what: What, maxBytes = Infinity): string {
    const at = this.pos;
    const n = this.count(() => `${label(what)} length`, this.room() - 8);
    if (n > maxBytes) throw new Error(`GGUF: ${label(what)} at offset ${at} is ${n} bytes long, at most ${maxBytes} allowed`);
    this.need(n, what);
    const s = utf8.decode(this.b.subarray(this.pos, this.pos + n));
    this.pos += n;
    return s;
  }
}

const SCALAR_SIZE: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
// Smallest encoding of one array element, to cap element counts by the bytes left.
const MIN_ELEM_SIZE: Record<number, number> = { ...SCALAR_SIZE, 8: 8, 9: 12 };

function readScalar(c: Cursor, t: number, what: string): number | bigint | boolean {
  const size = SCALAR_SIZE[t];
  c.need(size, what);
  const p = c.pos;
  const dv = c.dv;
  c.pos += size;
  switch (t) {
    case 0: return dv.getUint8(p);
    case 1: return dv.getInt8(p);
    case 2: return dv.getUint16(p, true);
    case 3: return dv.getInt16(p, true);
    case 4: return dv.getUint32(p, true);
    case 5: return dv.getInt32(p, true);
    case 6: return dv.getFloat32(p, true);
    case 7: {
      const v = dv.getUint8(p);
      if (v > 1) throw new Error(`GGUF: ${what}: invalid BOOL byte ${v} at offset ${p}`);
      return v === 1;
    }
    case 10: return bigToNum(dv.getBigUint64(p, true));
    case 11: return bigToNum(dv.getBigInt64(p, true));
    case 12: return dv.getFloat64(p, true);
  }
  throw new Error(`GGUF: internal: not a scalar type ${t}`);
}

function copyTyped<T extends GgufNumArray>(c: Cursor, Ctor: { new (n: number): T }, n: number, size: number, what: string): T {
  c.need(n * size, what);
  const out = new Ctor(n);
  new Uint8Array(out.buffer).set(c.b.subarray(c.pos, c.pos + n * size));
  c.pos += n * size;
  return out;
}

function readValue(c: Cursor, t: number, what: string, depth: number): GgufValue {
  if (t === GGUF_VALUE.STRING) return c.str(what);
  if (t === GGUF_VALUE.ARRAY) return readArray(c, what, depth);
  if (SCALAR_SIZE[t] === undefined) {
    throw new Error(`GGUF: ${what}: unknown value type ${t} at offset ${c.pos - 4}`);
  }
  return readScalar(c, t, what);
}

function readArray(c: Cursor, what: string, depth: number): GgufArray {
  if (depth >= MAX_ARRAY_DEPTH) throw new Error(`GGUF: ${what}: arrays nested deeper than ${MAX_ARRAY_DEPTH} at offset ${c.pos}`);
  const tAt = c.pos;
  const et = c.u32(`${what} array element type`);
  const minSize = MIN_ELEM_SIZE[et];
  if (minSize === undefined) throw new Error(`GGUF: ${what}: unknown array element type ${et} at offset ${tAt}`);
  const n = c.count(`${what} array length`, Math.floor(Math.max(0, c.room() - 8) / minSize));
  const elemType = et as GgufValueType;
  switch (et) {
    case 0: return { elemType, items: copyTyped(c, Uint8Array, n, 1, what) };
    case 1: return { elemType, items: copyTyped(c, Int8Array, n, 1, what) };
    case 2: return { elemType, items: copyTyped(c, Uint16Array, n, 2, what) };
    case 3: return { elemType, items: copyTyped(c, Int16Array, n, 2, what) };
    case 4: return { elemType, items: copyTyped(c, Uint32Array, n, 4, what) };
    case 5: return { elemType, items: copyTyped(c, Int32Array, n, 4, what) };
    case 6: return { elemType, items: copyTyped(c, Float32Array, n, 4, what) };
    case 10: return { elemType, items: copyTyped(c, BigUint64Array, n, 8, what) };
    case 11: return { elemType, items: copyTyped(c, BigInt64Array, n, 8, what) };
    case 12: return { elemType, items: copyTyped(c, Float64Array, n, 8, what) };
    case 7: {
      c.need(n, what);
      const items: boolean[] = new Array(n);
      for (let i = 0; i < n; i++) {
        const v = c.b[c.pos + i];
        if (v > 1) throw new Error(`GGUF: ${what}[${i}]: invalid BOOL byte ${v} at offset ${c.pos + i}`);
        items[i] = v === 1;
      }
      c.pos += n;
      return { elemType, items };
    }
    case 8: {
      const items: string[] = [];
      for (let i = 0; i < n; i++) items.push(c.str(() => `${what}[${i}]`));
      return { elemType, items };
    }
    case 9: {
      const items: GgufArray[] = [];
      for (let i = 0; i < n; i++) items.push(readArray(c, `${what}[${i}]`, depth + 1));
      return { elemType, items };
    }
  }
  throw new Error(`GGUF: internal: array type ${et}`);
}

interface RawTensor { name: string; type: number; ne: number[]; offset: number; nbytes: number; nelements: number }

interface Header {
  version: number;
  alignment: number;
  metadata: Map<string, GgufKV>;
  raw: RawTensor[];
  dataOffset: number;
}

function parseHeader(b: Uint8Array, fileSize: number): Header {
  const c = new Cursor(b, fileSize);
  if (fileSize < 4) throw new Error(`GGUF: file is ${fileSize} bytes, too short for the magic`);
  const magic = c.u32("magic");
  if (magic !== GGUF_MAGIC) {
    const bytes = [...b.subarray(0, 4)].map((x) => x.toString(16).padStart(2, "0")).join(" ");
    throw new Error(`GGUF: bad magic at offset 0: ${bytes} (expected 47 47 55 46 "GGUF")`);
  }
  const version = c.u32("version");
  if (version !== 2 && version !== 3) {
    const swapped = ((version & 0xff) << 24) >>> 0 | ((version >> 8) & 0xff) << 16 | ((version >> 16) & 0xff) << 8 | (version >>> 24);
    if (swapped === 2 || swapped === 3) throw new Error(`GGUF: big-endian files are not supported (version field at offset 4)`);
    throw new Error(`GGUF: unsupported version ${version} at offset 4 (this reader supports 2 and 3)`);
  }
  // Minimal encodings: a tensor info takes ≥ 8+1 (name) + 4 + 8 + 4 + 8 bytes; a KV ≥ 8+1 + 4 + 1.
  const nTensors = c.count("tensor_count", Math.floor(c.room() / 33));
  const nKV = c.count("metadata_kv_count", Math.floor(c.room() / 14));
  const metadata = new Map<string, GgufKV>();
  for (let i = 0; i < nKV; i++) {
    const at = c.pos;
    const key = c.str(`metadata key #${i}`);
    if (metadata.has(key)) throw new Error(`GGUF: duplicate metadata key '${key}' at offset ${at}`);
    const tAt = c.pos;
    const type = c.u32(`type of '${key}'`);
    if (MIN_ELEM_SIZE[type] === undefined) throw new Error(`GGUF: metadata '${key}': unknown value type ${type} at offset ${tAt}`);
    const value = readValue(c, type, `metadata '${key}'`, 0);
    metadata.set(key, { type: type as GgufValueType, value });
    if (c.pos > MAX_HEADER_BYTES) throw new Error(`GGUF: header larger than ${MAX_HEADER_BYTES} bytes`);
  }
  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const al = metadata.get("general.alignment");
  if (al) {
    if (al.type !== GGUF_VALUE.U32) throw new Error(`GGUF: general.alignment must be U32, found ${ggufValueTypeName(al.type)}`);
    const a = al.value as number;
    if (a === 0 || (a & (a - 1)) !== 0) throw new Error(`GGUF: general.alignment ${a} is not a power of two`);
    alignment = a;
  }
  const raw: RawTensor[] = [];
  const names = new Set<string>();
  for (let i = 0; i < nTensors; i++) {
    const at = c.pos;
    const name = c.str(`name of tensor #${i}`, MAX_NAME_BYTES);
    if (names.has(name)) throw new Error(`GGUF: duplicate tensor name '${name}' at offset ${at}`);
    names.add(name);
    const ndAt = c.pos;
    const nDims = c.u32(`n_dims of '${name}'`);
    if (nDims < 1 || nDims > MAX_DIMS) throw new Error(`GGUF: tensor '${name}': n_dims ${nDims} at offset ${ndAt} is not in 1..${MAX_DIMS}`);
    const ne: number[] = [];
    let nel = 1;
    for (let d = 0; d < nDims; d++) {
      const dAt = c.pos;
      const v = c.u64(`ne[${d}] of '${name}'`);
      if (v < 1n || v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`GGUF: tensor '${name}': ne[${d}] = ${v} at offset ${dAt} is invalid`);
      ne.push(Number(v));
      nel *= Number(v);
      if (!Number.isSafeInteger(nel) || nel > fileSize * 8) {
        throw new Error(`GGUF: tensor '${name}': element count too large for the file (ne up to dim ${d} at offset ${dAt})`);
      }
    }
    const tAt = c.pos;
    const type = c.u32(`type of '${name}'`);
    if (!isKnownGgmlType(type)) throw new Error(`GGUF: tensor '${name}': unknown ggml type ${type} at offset ${tAt}`);
    const { blockSize } = ggmlTypeSize(type);
    if (ne[0] % blockSize !== 0) {
      throw new Error(`GGUF: tensor '${name}': ne0 = ${ne[0]} is not a multiple of the ${ggmlTypeName(type)} block size ${blockSize}`);
    }
    const oAt = c.pos;
    const offset = c.count(`data offset of '${name}'`, Number.MAX_SAFE_INTEGER);
    if (offset % alignment !== 0) throw new Error(`GGUF: tensor '${name}': data offset ${offset} (at offset ${oAt}) is not a multiple of the alignment ${alignment}`);
    const nbytes = ggmlTensorBytes(type, ne, `GGUF: tensor '${name}'`);
    raw.push({ name, type, ne, offset, nbytes, nelements: nel });
    if (c.pos > MAX_HEADER_BYTES) throw new Error(`GGUF: header larger than ${MAX_HEADER_BYTES} bytes`);
  }
  const dataOffset = c.pos + ((alignment - (c.pos % alignment)) % alignment);
  const dataSize = fileSize - dataOffset;
  if (raw.length > 0 && dataSize < 0) throw new Error(`GGUF: truncated file: data section would start at ${dataOffset}, file has ${fileSize} bytes`);
  const sorted = [...raw].sort((a, b) => a.offset - b.offset);
  let end = 0;
  let prev = "";
  for (const t of sorted) {
    if (t.offset + t.nbytes > dataSize) {
      throw new Error(
        `GGUF: truncated file: tensor '${t.name}' (${ggmlTypeName(t.type)} [${t.ne.join(", ")}], ${t.nbytes} bytes) ends at ${dataOffset + t.offset + t.nbytes}, file has ${fileSize} bytes`,
      );
    }
    if (t.offset < end) throw new Error(`GGUF: tensor '${t.name}' (data offset ${t.offset}) overlaps tensor '${prev}' (ends at ${end})`);
    end = t.offset + t.nbytes;
    prev = t.name;
  }
  return { version, alignment, metadata, raw, dataOffset };
}

/** `cache`: keep each tensor's bytes once read (views of a buffer cost nothing; file copies are not kept, so a
 *  loader handing tensors over one at a time never holds the whole model). */
function makeFile(h: Header, fileSize: number, slice: (abs: number, n: number) => Uint8Array, cache = true): GgufFile {
  const tensors: GgufTensorInfo[] = h.raw.map((r) => {
    const fileOffset = h.dataOffset + r.offset;
    let cached: Uint8Array | undefined;
    return {
      name: r.name, type: r.type, ne: r.ne, offset: r.offset, fileOffset, nbytes: r.nbytes, nelements: r.nelements,
      get data() {
        if (!cache) return slice(fileOffset, r.nbytes);
        return (cached ??= slice(fileOffset, r.nbytes));
      },
    };
  });
  const byName = new Map(tensors.map((t) => [t.name, t]));
  return {
    version: h.version, alignment: h.alignment, metadata: h.metadata, tensors, dataOffset: h.dataOffset, byteLength: fileSize,
    get(key: string) {
      const kv = h.metadata.get(key);
      return kv === undefined ? undefined : ggufPlain(kv.value);
    },
    tensor: (name: string) => byName.get(name),
  };
}

/** Parses a whole GGUF file held in memory. Tensor `data` are views of `input`. */
export function parseGguf(input: Uint8Array | ArrayBuffer): GgufFile {
  const b = input instanceof Uint8Array ? input : new Uint8Array(input);
  const h = parseHeader(b, b.length);
  return makeFile(h, b.length, (abs, n) => b.subarray(abs, abs + n));
}

const PAGE = 65536;

/**
 * Opens a regular file for checked reads: `slice` copies bytes out with pread and throws when the file no
 * longer holds them (truncated under us), `head` reads a prefix. No mmap, so no SIGBUS.
 */
export function readableFile(path: string): { size: number; head(n: number): Uint8Array; slice(offset: number, n: number): Uint8Array } {
  const f = new CheckedFile(path);
  return { size: f.size, head: (n) => f.read(0, Math.min(n, f.size)), slice: (o, n) => f.read(o, n) };
}

/** Opens a GGUF file by path: the header is read progressively, tensor data are read when first asked for. */
export function openGguf(path: string): GgufFile {
  let file;
  try {
    file = readableFile(path);
  } catch (e) {
    throw new Error(`GGUF: cannot open ${path}: ${(e as Error).message}`);
  }
  try {
    for (let n = 16 << 20; ; n *= 2) {
      const len = Math.min(n, file.size, MAX_HEADER_BYTES + PAGE);
      try {
        return makeFile(parseHeader(file.head(len), file.size), file.size, file.slice, false);
      } catch (e) {
        if (!(e instanceof NeedMore)) throw e;
        if (len >= file.size || len > MAX_HEADER_BYTES) throw new Error(`GGUF: header larger than ${MAX_HEADER_BYTES} bytes`);
      }
    }
  } catch (e) {
    throw new Error(`${(e as Error).message} (${path})`);
  }
}

// ------------------------------------------------------------------------------------------------------
// Writer
// ------------------------------------------------------------------------------------------------------

export type TensorBytes = Uint8Array | (() => Uint8Array | Promise<Uint8Array>);

export interface GgufWriteTensor {
  name: string;
  type: number;
  ne: readonly number[];
  /** The bytes, or a producer called once when the writer reaches the tensor (streams big models). */
  data: TensorBytes;
}

export type GgufMetadataInput = Map<string, GgufKV> | Iterable<[string, GgufKV]> | Record<string, GgufKV | unknown>;

export interface GgufWriteInput {
  metadata: GgufMetadataInput;
  tensors: readonly GgufWriteTensor[];
  /** Data alignment; written as general.alignment when not 32. Default: metadata's or 32. */
  alignment?: number;
}

const utf8enc = new TextEncoder();

class ByteWriter {
  buf = new Uint8Array(1 << 16);
  dv = new DataView(this.buf.buffer);
  len = 0;
  ensure(n: number) {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const nb = new Uint8Array(cap);
    nb.set(this.buf.subarray(0, this.len));
    this.buf = nb;
    this.dv = new DataView(nb.buffer);
  }
  bytes(b: Uint8Array) { this.ensure(b.length); this.buf.set(b, this.len); this.len += b.length; }
  u8(v: number) { this.ensure(1); this.dv.setUint8(this.len, v); this.len += 1; }
  i8(v: number) { this.ensure(1); this.dv.setInt8(this.len, v); this.len += 1; }
  u16(v: number) { this.ensure(2); this.dv.setUint16(this.len, v, true); this.len += 2; }
  i16(v: number) { this.ensure(2); this.dv.setInt16(this.len, v, true); this.len += 2; }
  u32(v: number) { this.ensure(4); this.dv.setUint32(this.len, v, true); this.len += 4; }
  i32(v: number) { this.ensure(4); this.dv.setInt32(this.len, v, true); this.len += 4; }
  f32(v: number) { this.ensure(4); this.dv.setFloat32(this.len, v, true); this.len += 4; }
  f64(v: number) { this.ensure(8); this.dv.setFloat64(this.len, v, true); this.len += 8; }
  u64(v: bigint) { this.ensure(8); this.dv.setBigUint64(this.len, v, true); this.len += 8; }
  i64(v: bigint) { this.ensure(8); this.dv.setBigInt64(this.len, v, true); this.len += 8; }
  str(s: string) {
    this.ensure(8 + 3 * s.length);
    const { written } = utf8enc.encodeInto(s, this.buf.subarray(this.len + 8));
    this.dv.setBigUint64(this.len, BigInt(written), true);
    this.len += 8 + written;
  }
  pad(a: number) { const p = (a - (this.len % a)) % a; this.ensure(p); this.buf.fill(0, this.len, this.len + p); this.len += p; }
  result(): Uint8Array { return this.buf.subarray(0, this.len); }
}

const INT_RANGE: Record<number, [number, number]> = {
  0: [0, 0xff], 1: [-0x80, 0x7f], 2: [0, 0xffff], 3: [-0x8000, 0x7fff], 4: [0, 0xffffffff], 5: [-0x80000000, 0x7fffffff],
};

function toBig(v: unknown, signed: boolean, what: string): bigint {
  let b: bigint;
  if (typeof v === "bigint") b = v;
  else if (typeof v === "number" && Number.isSafeInteger(v)) b = BigInt(v);
  else throw new Error(`${what}: ${String(v)} is not an integer`);
  const ok = signed ? b >= -(1n << 63n) && b < 1n << 63n : b >= 0n && b < 1n << 64n;
  if (!ok) throw new Error(`${what}: ${b} out of range for ${signed ? "I64" : "U64"}`);
  return b;
}

function writeScalar(w: ByteWriter, t: number, v: unknown, what: string): void {
  if (t in INT_RANGE) {
    const [lo, hi] = INT_RANGE[t];
    if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi) {
      throw new Error(`${what}: ${String(v)} is not a valid ${ggufValueTypeName(t)}`);
    }
  }
  switch (t) {
    case 0: return w.u8(v as number);
    case 1: return w.i8(v as number);
    case 2: return w.u16(v as number);
    case 3: return w.i16(v as number);
    case 4: return w.u32(v as number);
    case 5: return w.i32(v as number);
    case 6: if (typeof v !== "number") throw new Error(`${what}: F32 needs a number`); return w.f32(v);
    case 12: if (typeof v !== "number") throw new Error(`${what}: F64 needs a number`); return w.f64(v);
    case 7: if (typeof v !== "boolean") throw new Error(`${what}: BOOL needs a boolean`); return w.u8(v ? 1 : 0);
    case 8: if (typeof v !== "string") throw new Error(`${what}: STRING needs a string`); return w.str(v);
    case 10: return w.u64(toBig(v, false, what));
    case 11: return w.i64(toBig(v, true, what));
  }
  throw new Error(`${what}: unknown value type ${t}`);
}

function writeValue(w: ByteWriter, t: number, v: GgufValue, what: string, depth: number): void {
  if (t !== GGUF_VALUE.ARRAY) return writeScalar(w, t, v, what);
  if (depth >= MAX_ARRAY_DEPTH) throw new Error(`${what}: arrays nested deeper than ${MAX_ARRAY_DEPTH}`);
  if (!v || typeof v !== "object" || !("items" in v)) throw new Error(`${what}: ARRAY needs {elemType, items}`);
  const { elemType, items } = v;
  if (MIN_ELEM_SIZE[elemType] === undefined) throw new Error(`${what}: unknown array element type ${elemType}`);
  w.u32(elemType);
  const arr = items as ArrayLike<unknown>;
  w.u64(BigInt(arr.length));
  for (let i = 0; i < arr.length; i++) {
    const x = arr[i];
    if (elemType === GGUF_VALUE.ARRAY) writeValue(w, GGUF_VALUE.ARRAY, x as GgufArray, `${what}[${i}]`, depth + 1);
    else writeScalar(w, elemType, x, `${what}[${i}]`);
  }
}

function normalizeMetadata(m: GgufMetadataInput): [string, GgufKV][] {
  let entries: [string, unknown][];
  if (m instanceof Map) entries = [...m.entries()];
  else if (Symbol.iterator in (m as object)) entries = [...(m as Iterable<[string, GgufKV]>)];
  else entries = Object.entries(m as Record<string, unknown>);
  return entries.map(([k, v]) => [k, inferKV(v, k)]);
}

export interface GgufLayout {
  header: Uint8Array;
  alignment: number;
  dataOffset: number;
  tensors: { name: string; offset: number; nbytes: number }[];
  totalBytes: number;
}

/** Encodes the header (metadata, tensor infos, padding) and computes where each tensor's data goes. */
export function layoutGguf(input: GgufWriteInput): GgufLayout {
  const meta = normalizeMetadata(input.metadata);
  const keys = new Set<string>();
  for (const [k] of meta) {
    if (keys.has(k)) throw new Error(`GGUF writer: duplicate metadata key '${k}'`);
    keys.add(k);
  }
  const metaAlign = meta.find(([k]) => k === "general.alignment")?.[1];
  let alignment = input.alignment ?? (metaAlign ? Number(metaAlign.value) : GGUF_DEFAULT_ALIGNMENT);
  if (!Number.isInteger(alignment) || alignment <= 0 || (alignment & (alignment - 1)) !== 0) {
    throw new Error(`GGUF writer: alignment ${alignment} is not a power of two`);
  }
  if (metaAlign) {
    if (metaAlign.type !== GGUF_VALUE.U32 || metaAlign.value !== alignment) {
      throw new Error(`GGUF writer: general.alignment (${String(metaAlign.value)}) disagrees with alignment ${alignment} or is not U32`);
    }
  } else if (alignment !== GGUF_DEFAULT_ALIGNMENT) {
    meta.push(["general.alignment", gv.u32(alignment)]);
  }
  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(3);
  w.u64(BigInt(input.tensors.length));
  w.u64(BigInt(meta.length));
  for (const [k, kv] of meta) {
    w.str(k);
    w.u32(kv.type);
    writeValue(w, kv.type, kv.value, `GGUF writer: metadata '${k}'`, 0);
  }
  const names = new Set<string>();
  const out: GgufLayout["tensors"] = [];
  let offset = 0;
  for (const t of input.tensors) {
    if (Buffer.byteLength(t.name) > MAX_NAME_BYTES || t.name.length === 0) throw new Error(`GGUF writer: tensor name '${t.name}' must be 1..${MAX_NAME_BYTES} bytes`);
    if (names.has(t.name)) throw new Error(`GGUF writer: duplicate tensor '${t.name}'`);
    names.add(t.name);
    if (t.ne.length < 1 || t.ne.length > MAX_DIMS) throw new Error(`GGUF writer: tensor '${t.name}' has ${t.ne.length} dims (1..4)`);
    if (!isKnownGgmlType(t.type)) throw new Error(`GGUF writer: tensor '${t.name}': unknown ggml type ${t.type}`);
    if (t.ne.some((d) => !Number.isSafeInteger(d) || d < 1)) throw new Error(`GGUF writer: tensor '${t.name}': bad shape [${t.ne.join(", ")}]`);
    const nbytes = ggmlTensorBytes(t.type, t.ne, `GGUF writer: tensor '${t.name}'`);
    if (t.data instanceof Uint8Array && t.data.length !== nbytes) {
      throw new Error(`GGUF writer: tensor '${t.name}' has ${t.data.length} bytes, ${ggmlTypeName(t.type)} [${t.ne.join(", ")}] needs ${nbytes}`);
    }
    w.str(t.name);
    w.u32(t.ne.length);
    for (const d of t.ne) w.u64(BigInt(d));
    w.u32(t.type);
    w.u64(BigInt(offset));
    out.push({ name: t.name, offset, nbytes });
    offset += nbytes;
    offset += (alignment - (offset % alignment)) % alignment;
  }
  w.pad(alignment);
  const header = w.result();
  const last = out[out.length - 1];
  const dataBytes = last ? last.offset + last.nbytes : 0;
  return { header, alignment, dataOffset: header.length, tensors: out, totalBytes: header.length + dataBytes };
}

function checkProduced(t: GgufWriteTensor, b: unknown, nbytes: number): Uint8Array {
  if (!(b instanceof Uint8Array)) throw new Error(`GGUF writer: producer of tensor '${t.name}' did not return a Uint8Array`);
  if (b.length !== nbytes) throw new Error(`GGUF writer: tensor '${t.name}' has ${b.length} bytes, ${ggmlTypeName(t.type)} [${t.ne.join(", ")}] needs ${nbytes}`);
  return b;
}

/** Encodes a whole GGUF file in memory (small models, tests). Producers must be synchronous. */
export function encodeGguf(input: GgufWriteInput): Uint8Array {
  const L = layoutGguf(input);
  const out = new Uint8Array(L.totalBytes);
  out.set(L.header, 0);
  input.tensors.forEach((t, i) => {
    const d = typeof t.data === "function" ? t.data() : t.data;
    if (d instanceof Promise) throw new Error(`GGUF writer: tensor '${t.name}': async producer in encodeGguf; use writeGguf`);
    out.set(checkProduced(t, d, L.tensors[i].nbytes), L.dataOffset + L.tensors[i].offset);
  });
  return out;
}

/**
 * Streams a GGUF file to `path`: header first, then each tensor's data (producers are called one at a time,
 * so a 15 GB model never sits in memory). Writes to a temp file and renames it into place when complete.
 */
export async function writeGguf(
  path: string,
  input: GgufWriteInput,
  opts: { onProgress?: (done: number, total: number, tensor: string) => void; signal?: AbortSignal } = {},
): Promise<{ bytes: number }> {
  const L = layoutGguf(input);
  await writeFileAtomic(path, async (fd) => {
    writeAll(fd, L.header, 0);
    let pos = L.header.length;
    for (let i = 0; i < input.tensors.length; i++) {
      const t = input.tensors[i];
      const at = L.dataOffset + L.tensors[i].offset;
      if (at > pos) { writeAll(fd, new Uint8Array(at - pos), pos); pos = at; }
      const d = checkProduced(t, typeof t.data === "function" ? await untilAborted(t.data(), opts.signal) : t.data, L.tensors[i].nbytes);
      writeAll(fd, d, pos);
      pos += d.length;
      opts.onProgress?.(i + 1, input.tensors.length, t.name);
    }
  });
  return { bytes: L.totalBytes };
}

/**
 * `p`, or a rejection "cancelled" as soon as `signal` aborts (the producer's work is abandoned: its owner
 * terminates it). Lets a cancel stop a long tensor synthesis without waiting for the tensor (D7).
 */
export function untilAborted<T>(p: T | Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return Promise.resolve(p);
  if (signal.aborted) return Promise.reject(new Error("cancelled"));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new Error("cancelled"));
    signal.addEventListener("abort", onAbort, { once: true });
    Promise.resolve(p).then(
      (v) => { signal.removeEventListener("abort", onAbort); resolve(v); },
      (e) => { signal.removeEventListener("abort", onAbort); reject(e); },
    );
  });
}

/**
 * Runs `body` on a fresh `<path>.tmp-<pid>-<time>` file and renames it to `path` when `body` completes; on any
 * error the temp file is removed (engine/cli.ts also removes this process's temp files on SIGINT/SIGTERM).
 */
export async function writeFileAtomic(path: string, body: (fd: number) => Promise<void>): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  const fd = fs.openSync(tmp, "w");
  let ok = false;
  try {
    await body(fd);
    ok = true;
  } finally {
    fs.closeSync(fd);
    if (!ok) fs.rmSync(tmp, { force: true });
  }
  fs.renameSync(tmp, path);
}

/** Writes all of `b` at file position `pos`, in chunks of at most 64 MiB. */
export function writeAll(fd: number, b: Uint8Array, pos: number): void {
  const CHUNK = 64 << 20;
  let off = 0;
  while (off < b.length) {
    const n = fs.writeSync(fd, b, off, Math.min(CHUNK, b.length - off), pos + off);
    if (n <= 0) throw new Error("write returned 0 bytes");
    off += n;
  }
}
