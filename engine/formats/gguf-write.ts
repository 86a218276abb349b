// The streaming GGUF writer: metadata and tensor infos laid out as the reader expects them, tensor bytes
// produced one at a time (so a multi-GB model is never held in memory) and written to a temp file renamed on
// success. Spec: ggml docs/gguf.md; the reader is gguf.ts.
import * as fs from "node:fs";
import { GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VALUE, GgufArray, GgufKV, GgufValue, MAX_ARRAY_DEPTH, MAX_DIMS, MAX_NAME_BYTES, ggmlTensorBytes, ggmlTypeName, ggufValueTypeName, gv, inferKV, isKnownGgmlType, MIN_ELEM_SIZE } from "./gguf-types.ts";

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
 * error the temp file is removed (engine/cli/main.ts also removes this process's temp files on SIGINT/SIGTERM).
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
