// safetensors reader and writer, including sharded checkpoints (model.safetensors.index.json).
// Format: u64 N (little-endian) · N bytes of JSON header · byte buffer. The header maps each tensor name to
// {dtype, shape, data_offsets: [begin, end]} (relative to the byte buffer) plus an optional "__metadata__"
// string map. Everything is validated before use (header bounds, zod schema, dtype, shape × dtype = bytes,
// offsets inside the buffer and non-overlapping); errors name the file, the tensor and what is wrong.
import * as fs from "node:fs";
import * as nodePath from "node:path";
import { z } from "zod";
import { readableFile, writeAll, writeFileAtomic, type TensorBytes } from "./gguf.ts";
import { readJsonFile, realInside } from "../io/fsafe.ts";

export const SAFETENSORS_DTYPE_SIZE: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E4M3: 1, F8_E5M2: 1, F8_E8M0: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2, I32: 4, U32: 4, F32: 4, I64: 8, U64: 8, F64: 8,
};
/** dtypes this project loads (ggml types F32, F16, BF16). */
export const SUPPORTED_SAFETENSORS_DTYPES = ["F32", "F16", "BF16"] as const;
export type SafetensorsDtype = (typeof SUPPORTED_SAFETENSORS_DTYPES)[number];

const MAX_HEADER = 100_000_000; // the reference implementation's limit

const TensorEntry = z.object({
  dtype: z.string(),
  shape: z.array(z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER)),
  data_offsets: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
}).strict();
const MetadataEntry = z.record(z.string(), z.string());

export interface SafetensorsTensor {
  name: string;
  dtype: string;
  /** PyTorch order (row-major, last dimension contiguous). */
  shape: number[];
  /** Absolute offset of the data in the file. */
  fileOffset: number;
  nbytes: number;
  readonly data: Uint8Array;
}

export interface SafetensorsFile {
  path?: string;
  metadata: Record<string, string>;
  tensors: SafetensorsTensor[];
  tensor(name: string): SafetensorsTensor | undefined;
  byteLength: number;
}

function zodMessage(e: z.ZodError): string {
  return e.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
}

function parseHeaderJson(hb: Uint8Array, what: string): Record<string, unknown> {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(hb);
  } catch {
    throw new Error(`${what}: header is not valid UTF-8`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error(`${what}: header is not valid JSON`); // the parser's message would quote the file
  }
  if (!json || typeof json !== "object" || Array.isArray(json)) throw new Error(`${what}: header is not a JSON object`);
  return json as Record<string, unknown>;
}

function parseLayout(b: Uint8Array, size: number, what: string) {
  if (size < 8) throw new Error(`${what}: file is ${size} bytes, too short for the header length`);
  const n = new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(size - 8)) throw new Error(`${what}: header length ${n} (at offset 0) exceeds the file (${size} bytes)`);
  if (n > BigInt(MAX_HEADER)) throw new Error(`${what}: header length ${n} exceeds the ${MAX_HEADER}-byte limit`);
  const hlen = Number(n);
  if (hlen < 2) throw new Error(`${what}: header length ${hlen} is too small`);
  const header = parseHeaderJson(b.subarray(8, 8 + hlen), what);
  const base = 8 + hlen;
  const bufSize = size - base;
  let metadata: Record<string, string> = {};
  const entries: { name: string; dtype: string; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, v] of Object.entries(header)) {
    if (name === "__metadata__") {
      const m = MetadataEntry.safeParse(v);
      if (!m.success) throw new Error(`${what}: __metadata__ must map strings to strings (${zodMessage(m.error)})`);
      metadata = m.data;
      continue;
    }
    const r = TensorEntry.safeParse(v);
    if (!r.success) throw new Error(`${what}: tensor '${name}': ${zodMessage(r.error)}`);
    const { dtype, shape, data_offsets: [begin, end] } = r.data;
    const es = SAFETENSORS_DTYPE_SIZE[dtype];
    if (es === undefined) throw new Error(`${what}: tensor '${name}': unknown dtype '${dtype}'`);
    let nel = 1;
    for (const d of shape) {
      nel *= d;
      if (!Number.isSafeInteger(nel * es)) throw new Error(`${what}: tensor '${name}': shape [${shape.join(", ")}] is too large`);
    }
    if (begin > end) throw new Error(`${what}: tensor '${name}': data_offsets [${begin}, ${end}] are reversed`);
    if (end > bufSize) {
      throw new Error(`${what}: tensor '${name}': data_offsets [${begin}, ${end}] exceed the data buffer (${bufSize} bytes; file truncated?)`);
    }
    if (end - begin !== nel * es) {
      throw new Error(`${what}: tensor '${name}': ${dtype} [${shape.join(", ")}] needs ${nel * es} bytes, data_offsets give ${end - begin}`);
    }
    entries.push({ name, dtype, shape, begin, end });
  }
  const sorted = entries.filter((e) => e.end > e.begin).sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].begin < sorted[i - 1].end) {
      throw new Error(`${what}: tensor '${sorted[i].name}' [${sorted[i].begin}, ${sorted[i].end}) overlaps '${sorted[i - 1].name}' [${sorted[i - 1].begin}, ${sorted[i - 1].end})`);
    }
  }
  return { metadata, entries, base };
}

/** `cache`: keep tensor bytes once read (free for views of a buffer; file copies are not kept). */
function makeFile(
  b: { slice(o: number, n: number): Uint8Array },
  head: Uint8Array,
  size: number,
  what: string,
  path?: string,
  cache = true,
): SafetensorsFile {
  const { metadata, entries, base } = parseLayout(head, size, what);
  const tensors: SafetensorsTensor[] = entries.map((e) => {
    let cached: Uint8Array | undefined;
    const fileOffset = base + e.begin;
    const nbytes = e.end - e.begin;
    return {
      name: e.name, dtype: e.dtype, shape: e.shape, fileOffset, nbytes,
      get data() { return cache ? (cached ??= b.slice(fileOffset, nbytes)) : b.slice(fileOffset, nbytes); },
    };
  });
  const byName = new Map(tensors.map((t) => [t.name, t]));
  return { path, metadata, tensors, tensor: (n) => byName.get(n), byteLength: size };
}

/** Parses a whole safetensors file held in memory; tensor data are views of `input`. */
export function parseSafetensors(input: Uint8Array | ArrayBuffer, what = "safetensors"): SafetensorsFile {
  const b = input instanceof Uint8Array ? input : new Uint8Array(input);
  return makeFile({ slice: (o, n) => b.subarray(o, o + n) }, b, b.length, what);
}

/** Opens a safetensors file by path: the header is read now, tensor data (checked pread copies) when asked for. */
export function openSafetensors(path: string): SafetensorsFile {
  const what = `safetensors ${path}`;
  let file;
  try {
    file = readableFile(path);
  } catch (e) {
    throw new Error(`${what}: cannot open: ${(e as Error).message}`);
  }
  // Only the header window: the 8-byte length, then that many bytes (parseLayout checks it against the file).
  let hlen = 0;
  if (file.size >= 8) {
    const n = new DataView(file.head(8).buffer).getBigUint64(0, true);
    hlen = n <= BigInt(Math.min(MAX_HEADER, file.size - 8)) ? Number(n) : 0;
  }
  return makeFile(file, file.head(8 + hlen), file.size, what, path, false);
}

// ------------------------------------------------------------------------------------------------------
// Sharded checkpoints
// ------------------------------------------------------------------------------------------------------

const IndexSchema = z.object({
  metadata: z.record(z.string(), z.unknown()).optional(),
  weight_map: z.record(z.string(), z.string().min(1)),
});

export interface SafetensorsModel {
  /** The files, in the order first referenced. */
  files: SafetensorsFile[];
  tensors: SafetensorsTensor[];
  tensor(name: string): SafetensorsTensor | undefined;
  metadata: Record<string, string>;
}

/**
 * Opens the safetensors weights of an HF directory: `model.safetensors`, or `model.safetensors.index.json`
 * with its shards. Shard names must be plain file names inside the directory; every tensor named in the
 * weight_map must be in its shard, and no tensor may appear twice.
 */
export function openSafetensorsDir(dir: string, root?: string): SafetensorsModel {
  const single = nodePath.join(dir, "model.safetensors");
  const indexPath = nodePath.join(dir, "model.safetensors.index.json");
  if (fs.existsSync(indexPath)) return openSharded(indexPath, root);
  if (fs.existsSync(single)) {
    const f = openSafetensors(member(single, root));
    return { files: [f], tensors: f.tensors, tensor: f.tensor, metadata: f.metadata };
  }
  const bin = fs.existsSync(nodePath.join(dir, "pytorch_model.bin")) ? " (PyTorch .bin checkpoints are not supported: convert them to safetensors)" : "";
  throw new Error(`${dir}: no model.safetensors or model.safetensors.index.json${bin}`);
}

/** With a root: the member's real path, which must stay inside the root (symlinks resolved; D3). */
function member(p: string, root?: string): string {
  return root === undefined ? p : realInside(root, p, p);
}

export function openSharded(indexPath: string, root?: string): SafetensorsModel {
  const dir = nodePath.dirname(indexPath);
  const json = readJsonFile(member(indexPath, root), 64 << 20, indexPath);
  const r = IndexSchema.safeParse(json);
  if (!r.success) throw new Error(`${indexPath}: ${zodMessage(r.error)}`);
  const files = new Map<string, SafetensorsFile>();
  const tensors: SafetensorsTensor[] = [];
  const byName = new Map<string, SafetensorsTensor>();
  for (const [name, shard] of Object.entries(r.data.weight_map)) {
    if (shard !== nodePath.basename(shard) || shard === "." || shard === "..") {
      throw new Error(`${indexPath}: weight_map['${name}'] = '${shard}' is not a plain file name`);
    }
    let f = files.get(shard);
    if (!f) {
      const p = nodePath.join(dir, shard);
      if (!fs.existsSync(p)) throw new Error(`${indexPath}: shard '${shard}' (for '${name}') does not exist`);
      f = openSafetensors(member(p, root));
      files.set(shard, f);
    }
    const t = f.tensor(name);
    if (!t) throw new Error(`${indexPath}: tensor '${name}' is not in its shard '${shard}'`);
    tensors.push(t);
    byName.set(name, t);
  }
  for (const [shard, f] of files) {
    for (const t of f.tensors) {
      if (r.data.weight_map[t.name] !== shard) {
        throw new Error(`${indexPath}: shard '${shard}' holds tensor '${t.name}', which the weight_map puts in '${r.data.weight_map[t.name] ?? "(none)"}'`);
      }
    }
  }
  const metadata: Record<string, string> = {};
  for (const f of files.values()) Object.assign(metadata, f.metadata);
  return { files: [...files.values()], tensors, tensor: (n) => byName.get(n), metadata };
}

// ------------------------------------------------------------------------------------------------------
// Writer
// ------------------------------------------------------------------------------------------------------

export interface SafetensorsWriteTensor {
  name: string;
  dtype: string;
  shape: readonly number[];
  data: TensorBytes;
}

function tensorBytes(t: SafetensorsWriteTensor): number {
  const es = SAFETENSORS_DTYPE_SIZE[t.dtype];
  if (es === undefined) throw new Error(`safetensors writer: tensor '${t.name}': unknown dtype '${t.dtype}'`);
  let n = es;
  for (const d of t.shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new Error(`safetensors writer: tensor '${t.name}': bad shape [${t.shape.join(", ")}]`);
    n *= d;
  }
  return n;
}

/** Builds the header (length prefix + JSON padded with spaces to a multiple of 8) and the data offsets. */
export function layoutSafetensors(tensors: readonly SafetensorsWriteTensor[], metadata?: Record<string, string>) {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let off = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    if (t.name === "__metadata__" || t.name in header) throw new Error(`safetensors writer: duplicate or reserved tensor name '${t.name}'`);
    const n = tensorBytes(t);
    if (t.data instanceof Uint8Array && t.data.length !== n) {
      throw new Error(`safetensors writer: tensor '${t.name}' has ${t.data.length} bytes, ${t.dtype} [${t.shape.join(", ")}] needs ${n}`);
    }
    header[t.name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [off, off + n] };
    offsets.push(off);
    off += n;
  }
  let json = Buffer.from(JSON.stringify(header), "utf8");
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const head = new Uint8Array(8 + json.length);
  new DataView(head.buffer).setBigUint64(0, BigInt(json.length), true);
  head.set(json, 8);
  return { head, offsets, dataBytes: off, totalBytes: head.length + off };
}

async function produce(t: SafetensorsWriteTensor, n: number): Promise<Uint8Array> {
  const d = typeof t.data === "function" ? await t.data() : t.data;
  if (!(d instanceof Uint8Array) || d.length !== n) {
    throw new Error(`safetensors writer: tensor '${t.name}' produced ${d instanceof Uint8Array ? d.length : "no"} bytes, needs ${n}`);
  }
  return d;
}

/** Encodes a safetensors file in memory (producers must be synchronous). */
export function encodeSafetensors(tensors: readonly SafetensorsWriteTensor[], metadata?: Record<string, string>): Uint8Array {
  const L = layoutSafetensors(tensors, metadata);
  const out = new Uint8Array(L.totalBytes);
  out.set(L.head, 0);
  tensors.forEach((t, i) => {
    const d = typeof t.data === "function" ? t.data() : t.data;
    const n = tensorBytes(t);
    if (!(d instanceof Uint8Array) || d.length !== n) throw new Error(`safetensors writer: tensor '${t.name}' produced a wrong size (needs ${n} bytes)`);
    out.set(d, L.head.length + L.offsets[i]);
  });
  return out;
}

/** Streams a safetensors file to `path` (temp file + rename). */
export async function writeSafetensors(
  path: string,
  tensors: readonly SafetensorsWriteTensor[],
  metadata?: Record<string, string>,
): Promise<{ bytes: number }> {
  const L = layoutSafetensors(tensors, metadata);
  await writeFileAtomic(path, async (fd) => {
    writeAll(fd, L.head, 0);
    for (let i = 0; i < tensors.length; i++) {
      const d = await produce(tensors[i], tensorBytes(tensors[i]));
      writeAll(fd, d, L.head.length + L.offsets[i]);
    }
  });
  return { bytes: L.totalBytes };
}

/**
 * Writes a sharded checkpoint into `dir`: model-0000i-of-0000n.safetensors (each at most `maxShardBytes` of
 * tensor data, a tensor never split) plus model.safetensors.index.json with the weight_map.
 */
export async function writeSafetensorsSharded(
  dir: string,
  tensors: readonly SafetensorsWriteTensor[],
  opts: { maxShardBytes: number; metadata?: Record<string, string> },
): Promise<{ shards: string[]; totalSize: number }> {
  const groups: SafetensorsWriteTensor[][] = [];
  let cur: SafetensorsWriteTensor[] = [];
  let curBytes = 0;
  let total = 0;
  for (const t of tensors) {
    const n = tensorBytes(t);
    if (cur.length > 0 && curBytes + n > opts.maxShardBytes) { groups.push(cur); cur = []; curBytes = 0; }
    cur.push(t);
    curBytes += n;
    total += n;
  }
  if (cur.length > 0 || groups.length === 0) groups.push(cur);
  fs.mkdirSync(dir, { recursive: true });
  const pad = (k: number) => String(k).padStart(5, "0");
  const shards: string[] = [];
  const weightMap: Record<string, string> = {};
  for (let i = 0; i < groups.length; i++) {
    const name = `model-${pad(i + 1)}-of-${pad(groups.length)}.safetensors`;
    await writeSafetensors(nodePath.join(dir, name), groups[i], opts.metadata);
    for (const t of groups[i]) weightMap[t.name] = name;
    shards.push(name);
  }
  const index = { metadata: { total_size: total }, weight_map: weightMap };
  fs.writeFileSync(nodePath.join(dir, "model.safetensors.index.json"), JSON.stringify(index, null, 2) + "\n");
  return { shards, totalSize: total };
}
