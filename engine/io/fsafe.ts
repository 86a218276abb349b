// Reading files that someone else may change, replace or plant while we read them (server faults D1–D3):
// - only regular files are read: a FIFO or device opens non-blocking and is refused after fstat, never read;
// - reads are checked copies (pread), never an mmap, so a file truncated under us gives an Error, not SIGBUS;
// - a path can be required to stay inside a root after realpath (symlinks resolved);
// - no error message ever carries the file's content (JSON parse errors name the file, not the bytes).
import * as fs from "node:fs";
import { resolve, sep } from "node:path";

/** True when `p` is `root` or below it (both already absolute and resolved). */
export function isInside(root: string, p: string): boolean {
  return p === root || p.startsWith(root.endsWith(sep) ? root : root + sep);
}

/**
 * The real path of `p` (symlinks resolved), which must lie inside the real path of `root`; otherwise an
 * Error that names `what` (never the link target, which may be private).
 */
export function realInside(root: string, p: string, what = p): string {
  let realRoot: string, real: string;
  try { realRoot = fs.realpathSync(resolve(root)); } catch { realRoot = resolve(root); }
  try { real = fs.realpathSync(resolve(p)); } catch { throw new Error(`${what}: does not exist`); }
  if (!isInside(realRoot, real)) throw new Error(`${what}: leaves its directory through a symlink`);
  return real;
}

/** Opens `path` read-only without blocking and checks that it is a regular file. Returns fd and size. */
export function openRegular(path: string, what = path): { fd: number; size: number } {
  let fd: number;
  try {
    fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(`${what}: cannot open (${code ?? "error"})`);
  }
  const st = fs.fstatSync(fd);
  if (!st.isFile()) {
    fs.closeSync(fd);
    throw new Error(`${what}: not a regular file`);
  }
  return { fd, size: st.size };
}

/** Reads exactly `n` bytes at `offset` from fd into a new buffer, or throws (file shorter than expected). */
export function preadExact(fd: number, offset: number, n: number, what: string): Uint8Array {
  const out = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const chunk = Math.min(n - got, 1 << 30);
    const k = fs.readSync(fd, out, got, chunk, offset + got);
    if (k <= 0) {
      throw new Error(`${what}: the file changed while it was read: ${n} bytes at offset ${offset} wanted, only ${got} there (truncated?)`);
    }
    got += k;
  }
  return out;
}

/** A whole regular file (≤ maxBytes) as bytes; FIFOs, devices, directories and oversized files are refused. */
export function readRegularFile(path: string, maxBytes: number, what = path): Uint8Array {
  const { fd, size } = openRegular(path, what);
  try {
    if (size > maxBytes) throw new Error(`${what}: ${size} bytes, more than the ${maxBytes}-byte limit`);
    return preadExact(fd, 0, size, what);
  } finally {
    fs.closeSync(fd);
  }
}

/** A regular file's JSON; a parse failure names the file but never quotes its content. */
export function readJsonFile(path: string, maxBytes: number, what = path): unknown {
  const b = readRegularFile(path, maxBytes, what);
  let text: string;
  try { text = new TextDecoder("utf-8", { fatal: true }).decode(b); } catch { throw new Error(`${what}: not valid UTF-8`); }
  try { return JSON.parse(text); } catch { throw new Error(`${what}: not valid JSON`); }
}

/**
 * A file opened for checked positional reads (model weights): every read is a pread into a fresh buffer and
 * must return all its bytes; the size seen at open time is re-checked so a file that shrank says so.
 */
export class CheckedFile {
  readonly size: number;
  constructor(readonly path: string, private readonly what = path) {
    const { fd, size } = openRegular(path, what);
    fs.closeSync(fd);
    this.size = size;
  }
  read(offset: number, n: number): Uint8Array {
    if (n === 0) return new Uint8Array(0);
    const { fd, size } = openRegular(this.path, this.what);
    try {
      if (size < offset + n) {
        throw new Error(`${this.what}: the file changed while it was read: it is now ${size} bytes (was ${this.size}), bytes ${offset}..${offset + n} are gone`);
      }
      return preadExact(fd, offset, n, this.what);
    } finally {
      fs.closeSync(fd);
    }
  }
}
