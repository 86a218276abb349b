// Server faults D1, D3, D4, D7, D8 at the engine level (issue 8): a file truncated under a load, symlinked HF
// members, GGUF metadata sizes, cancelling a load, and toggle ids at the TS API, the FFI and the native library.
import { describe, expect, test, afterAll } from "bun:test";
import * as fs from "node:fs";
import { join, resolve } from "node:path";
import { openModelSource } from "../../../engine/formats/modelfile.ts";
import { openGguf } from "../../../engine/formats/gguf.ts";
import { tinyConfig, tinyGguf, tinyHfDir, tmpDir } from "../formats/helpers.ts";
import { generousTimeout } from "../../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const REPO = resolve(import.meta.dir, "../../..");
const DEFAULT_MODEL = join(REPO, "models/tiny-qwen2-brown");
const nativeBuilt = fs.existsSync(join(REPO, "cuda/build/libqwen_cpu.so"));
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
const tmp = () => { const d = tmpDir("qw-faults-"); dirs.push(d); return d; };

async function child(...args: string[]): Promise<{ code: number | null; signal: string | null; out: any }> {
  const p = Bun.spawn([process.execPath, join(import.meta.dir, "truncate-child.ts"), ...args], { cwd: REPO, stdout: "pipe", stderr: "pipe" });
  const [stdout] = await Promise.all([new Response(p.stdout).text(), p.exited]);
  const line = stdout.trim().split("\n").at(-1) ?? "";
  let out: any = null;
  try { out = JSON.parse(line); } catch { /* killed before reporting */ }
  return { code: p.exitCode, signal: p.signalCode === null ? null : String(p.signalCode), out };
}

function copyDir(from: string, to: string) {
  fs.mkdirSync(to, { recursive: true });
  for (const n of fs.readdirSync(from)) fs.copyFileSync(join(from, n), join(to, n));
}

describe("D1: a weights file truncated while it is read", () => {
  test("GGUF: a clear error, no signal", async () => {
    const d = tmp();
    const p = join(d, "m.gguf");
    fs.writeFileSync(p, tinyGguf(tinyConfig({ hidden_size: 256, intermediate_size: 512, head_dim: 64 })));
    const r = await child("source", p, p);
    expect(r.signal).toBeNull();
    expect(r.out?.ok).toBe(false);
    expect(r.out?.error).toMatch(/changed while it was read/);
  }, 300_000);

  test("safetensors: a clear error, no signal", async () => {
    const d = await tinyHfDir(tinyConfig({ hidden_size: 256, intermediate_size: 512, head_dim: 64 }), { dir: tmp() });
    const r = await child("source", d, join(d, "model.safetensors"));
    expect(r.signal).toBeNull();
    expect(r.out?.ok).toBe(false);
    expect(r.out?.error).toMatch(/changed while it was read/);
  }, 300_000);

  test.skipIf(!nativeBuilt)("openModel (CPU engine): truncated during the load → the load fails, the process lives", async () => {
    const d = join(tmp(), "m");
    copyDir(DEFAULT_MODEL, d);
    const r = await child("load", d, join(d, "model.safetensors"));
    expect(r.signal).toBeNull();
    expect(r.out?.ok).toBe(false);
    expect(r.out?.error).toMatch(/changed while it was read/);
  }, 300_000);
});

describe("D3: HF directory members must stay inside the root", () => {
  async function hfWithLink(member: string) {
    const root = tmp();
    const outside = tmp();
    const d = await tinyHfDir(tinyConfig(), { dir: join(root, "x") === root ? root : (fs.mkdirSync(join(root, "x")), join(root, "x")) });
    if (member === "config.json") fs.writeFileSync(join(outside, "secret"), "TOPSECRET-do-not-print { not json");
    else fs.copyFileSync(join(d, member), join(outside, "secret"));
    fs.rmSync(join(d, member));
    fs.symlinkSync(join(outside, "secret"), join(d, member));
    return { root, d };
  }

  test("config.json → outside: refused, and its content never appears in the error", async () => {
    const { root, d } = await hfWithLink("config.json");
    let msg = "";
    try { openModelSource(d, { root }); } catch (e) { msg = (e as Error).message; }
    expect(msg).toMatch(/config\.json.*(leaves|outside)/);
    expect(msg).not.toContain("TOPSECRET");
    // Without a root (CLI: the user's own paths) the file is read, but a parse error still quotes nothing.
    let msg2 = "";
    try { openModelSource(d); } catch (e) { msg2 = (e as Error).message; }
    expect(msg2).toMatch(/not valid JSON/);
    expect(msg2).not.toContain("TOPSECRET");
  });

  test("model.safetensors → outside: refused", async () => {
    const { root, d } = await hfWithLink("model.safetensors");
    expect(() => openModelSource(d, { root })).toThrow(/model\.safetensors.*leaves/);
  });

  test("a link that stays inside the root is fine (HF hub cache layout)", async () => {
    const root = tmp();
    fs.mkdirSync(join(root, "blobs"));
    const d = await tinyHfDir(tinyConfig(), { dir: (fs.mkdirSync(join(root, "snap")), join(root, "snap")) });
    fs.renameSync(join(d, "model.safetensors"), join(root, "blobs", "abc"));
    fs.symlinkSync("../blobs/abc", join(d, "model.safetensors"));
    expect(openModelSource(d, { root }).tensors.length).toBeGreaterThan(0);
  });
});

describe("D4: GGUF metadata sizes are checked before anything is allocated", () => {
  test("a sparse file declaring a 2^26-element string array is refused at the count", () => {
    const d = tmp();
    const p = join(d, "sparse.gguf");
    const h = new Uint8Array(64);
    const dv = new DataView(h.buffer);
    let o = 0;
    dv.setUint32(o, 0x46554747, true); o += 4;         // magic
    dv.setUint32(o, 3, true); o += 4;                  // version
    dv.setBigUint64(o, 0n, true); o += 8;              // tensors
    dv.setBigUint64(o, 1n, true); o += 8;              // kvs
    dv.setBigUint64(o, 1n, true); o += 8; h[o++] = 0x78; // key "x"
    dv.setUint32(o, 9, true); o += 4;                  // ARRAY
    dv.setUint32(o, 8, true); o += 4;                  // of STRING
    dv.setBigUint64(o, 1n << 26n, true); o += 8;       // 2^26 strings (each ≥ 8 bytes: 512 MiB > the header cap)
    fs.writeFileSync(p, h.subarray(0, o));
    fs.truncateSync(p, 1 << 30);                       // sparse: 1 GiB of zeros (zero-length strings) that take no disk
    let msg = "";
    try { openGguf(p); } catch (e) { msg = (e as Error).message; }
    expect(msg).toMatch(/metadata 'x' array length = 67108864 at offset 41 is too large/);
  }, 300_000);
});

describe.skipIf(!nativeBuilt)("D8: toggle ids at the engine API, the FFI and the native library", () => {
  test("__proto__, NUL and control characters are refused at each boundary", async () => {
    const { openModel } = await import("../../../engine/index.ts");
    const m = await openModel("default", { backend: "cpu", threads: 1 });
    const s = m.newSession({ maxContext: 64 });
    try {
      // engine/ TS API, before any FFI call
      expect(() => s.setToggle("__proto__", "native")).toThrow(/not a toggle id/);
      expect(() => s.setToggle("gqa\0junk", "native")).toThrow(/not a toggle id/);
      expect(() => s.setToggle("gqa", "native\u0001")).toThrow(/control character/);
      const native = (s as unknown as { native: { setToggle(id: string, v: string, l: number): void } }).native;
      // the FFI boundary: C would see "gqa" and set it
      expect(() => native.setToggle("gqa\0junk", "broadcast", -1)).toThrow(/NUL/);
      expect(s.toggles().gqa).toBe("native");
      // the native library itself
      expect(() => native.setToggle("g\u0001qa", "native", -1)).toThrow(/toggle id contains a control character \(byte 1 at position 1\)/);
      expect(() => native.setToggle("gqa", "nat\u001bive", -1)).toThrow(/toggle value contains a control character/);
      s.setToggle("gqa", "broadcast");
      expect(s.toggles().gqa).toBe("broadcast");
    } finally {
      s.close();
      m.close();
    }
  }, 300_000);
});
