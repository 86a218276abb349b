// GGUF v3 (and v2) reader (the type tables are in gguf-types.ts, the streaming writer in gguf-write.ts; this
// module re-exports both). Spec: ggml docs/gguf.md; summary in
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
import { bigToNum, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, MIN_ELEM_SIZE, SCALAR_SIZE, GGUF_VALUE, GgufArray, GgufKV, GgufNumArray, GgufValue, GgufValueType, MAX_ARRAY_DEPTH, MAX_DIMS, MAX_NAME_BYTES, ggmlTensorBytes, ggmlTypeName, ggmlTypeSize, ggufPlain, ggufValueTypeName, isKnownGgmlType } from "./gguf-types.ts";

// The type tables and the writer live beside this file; importers keep using gguf.ts for all three.
export * from "./gguf-types.ts";
export * from "./gguf-write.ts";

// ------------------------------------------------------------------------------------------------------
// Reader
// ------------------------------------------------------------------------------------------------------

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
