// Server faults D2 and D6 (issue 8) against the real server process: a FIFO named *.json in a root must not
// hang it, and SIGTERM must save the in-flight run as a partial profile, end every follower's stream with a
// terminal event, and leave no temp file of a synthesis behind.
import { describe, expect, test, afterAll } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { json, readSse, type Sse } from "./helpers.ts";
import { FAKE_ENGINE, REAL_ENGINE, REPO, startServer, type ServerProc } from "./server-proc.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const nativeBuilt = existsSync(join(REPO, "cuda/build/libqwen_cpu.so"));
const servers: ServerProc[] = [];
const dirs: string[] = [];
afterAll(() => { servers.forEach((s) => s.stop()); dirs.forEach((d) => rmSync(d, { recursive: true, force: true })); });
function tmp() { const d = mkdtempSync(join(tmpdir(), "qwb-srv-")); dirs.push(d); return d; }
async function start(args: string[], env: Record<string, string> = {}) { const s = await startServer(args, env); servers.push(s); return s; }
const within = (ms: number) => AbortSignal.timeout(ms); // a liveness bound (a hung server never answers), not a speed claim

async function exited(s: ServerProc, ms: number): Promise<number | null> {
  await Promise.race([s.proc.exited, Bun.sleep(ms)]);
  return s.proc.exitCode;
}

describe("D2: a FIFO named *.json in a root", () => {
  test("does not hang /api/profiles, /api/prompt-sets, /api/ceilings or /api/health", async () => {
    const root = tmp();
    const profiles = join(root, "profiles");
    for (const d of ["", "raw", "prompt-sets", "ceilings"]) mkdirSync(join(profiles, d), { recursive: true });
    for (const f of ["evil.json", "raw/evil.json", "prompt-sets/evil.json", "ceilings/evil.json"]) {
      expect(Bun.spawnSync(["mkfifo", join(profiles, f)]).exitCode).toBe(0);
    }
    const s = await start(["--profiles", profiles, "--engine", FAKE_ENGINE]);
    for (const path of ["/api/profiles", "/api/prompt-sets", "/api/ceilings", "/api/health", "/api/prompt-sets/evil", "/api/profiles/evil"]) {
      const r = await fetch(`${s.base}${path}`, { signal: within(20_000) });
      expect(r.status).toBeLessThan(500);
      const body = await r.text();
      if (path.endsWith("/evil")) expect(body).toMatch(/not a regular file/);
    }
  }, 300_000);
});

describe("D6: graceful shutdown on SIGTERM", () => {
  test("the in-flight run is saved as a partial profile, followers and queued tasks get a terminal event", async () => {
    const profiles = join(tmp(), "profiles");
    const s = await start(["--profiles", profiles, "--engine", FAKE_ENGINE], { QW_FAKE_OPTIONS: JSON.stringify({ stepDelayMs: 50 }) });
    // warmup 0: a warm-up pass streams no tokens, and this one would last 2000 × 50 ms before the first token
    const run = (await (await fetch(`${s.base}/api/runs`, json({ prompt: "long run", maxTokens: 2000, label: "inflight", warmup: 0 }))).json()) as { id: string };
    const queued = (await (await fetch(`${s.base}/api/runs`, json({ prompt: "never starts", maxTokens: 5 }))).json()) as { id: string };
    let tokens = 0;
    let signalled = false;
    const follow = (id: string) => fetch(`${s.base}/api/tasks/${id}/events`).then((r) => readSse(r, (e: Sse) => {
      if (e.event === "token" && ++tokens >= 10 && !signalled) { signalled = true; s.proc.kill("SIGTERM"); }
      return ["done", "error", "cancelled"].includes(e.event);
    }, 60_000));
    const [a, b, q] = await Promise.all([follow(run.id), follow(run.id), follow(queued.id)]);
    expect(signalled).toBe(true);
    for (const ev of [a, b]) {
      const last = ev.at(-1)!;
      expect(last.event).toBe("cancelled");
      expect(last.data.shutdown).toBe(true);
      expect(last.data.partial).toMatch(/SIGTERM/);
      expect(last.data.profileKey).toMatch(/^raw\/web\/inflight-/);
    }
    expect(q.at(-1)!.event).toBe("cancelled");
    expect(q.at(-1)!.data.shutdown).toBe(true);
    expect(await exited(s, 30_000)).toBe(0);
    const key = a.at(-1)!.data.profileKey as string;
    const p = JSON.parse(readFileSync(join(profiles, `${key}.json`), "utf8"));
    expect(p.partial).toMatch(/SIGTERM/);
    expect(p.notes.join(" ")).toMatch(/partial/);
    expect(p.tokens.length).toBeGreaterThanOrEqual(5); // 10 token events over two followers
    expect(p.tokens.length).toBeLessThan(2000);
  }, 300_000);

  test.skipIf(!nativeBuilt)("a synthesis being built: cancel stops it and removes the temp file; SIGTERM does too", async () => {
    const synth = tmp();
    const profiles = join(tmp(), "profiles");
    const env = { QW_SYNTHETIC_DIR: synth, QW_SYNTH_WORKERS: "1" };
    const s = await start(["--profiles", profiles, "--engine", REAL_ENGINE, "--backend", "cpu"], env);
    const tmpFiles = () => readdirSync(synth).filter((f) => f.includes(".tmp-"));
    // 1) cancel while synthesizing
    const load = async (after: (id: string) => void) => {
      const { task } = (await (await fetch(`${s.base}/api/models/load`, json({ source: "synthetic:0.5b:q8_0" }))).json()) as { task: { id: string } };
      let fired = false;
      return readSse(await fetch(`${s.base}/api/tasks/${task.id}/events`), (e) => {
        if (e.event === "progress" && e.data.stage === "synthesize" && e.data.done >= 1 && !fired) { fired = true; after(task.id); }
        return ["done", "error", "cancelled"].includes(e.event);
      }, 300_000);
    };
    let t0 = 0;
    const ev = await load((id) => { expect(tmpFiles().length).toBe(1); t0 = performance.now(); void fetch(`${s.base}/api/tasks/${id}/cancel`, { method: "POST" }); });
    const cancelMs = performance.now() - t0;
    expect(ev.at(-1)!.event).toBe("cancelled");
    console.log(`[D7] synthesis of synthetic:0.5b:q8_0 cancelled; the terminal event came ${cancelMs.toFixed(0)} ms after the cancel request`);
    expect(tmpFiles()).toEqual([]);
    expect(((await (await fetch(`${s.base}/api/model`)).json()) as any).loaded).toBeNull();
    // 2) SIGTERM while synthesizing
    let t1 = 0;
    const ev2 = await load(() => { expect(tmpFiles().length).toBe(1); t1 = performance.now(); s.proc.kill("SIGTERM"); });
    expect(ev2.at(-1)!.event).toBe("cancelled");
    expect(await exited(s, 60_000)).toBe(0);
    console.log(`[D6] SIGTERM during a synthesis: the server exited ${(performance.now() - t1).toFixed(0)} ms later`);
    expect(tmpFiles()).toEqual([]);
    expect(readdirSync(synth).filter((f) => f.endsWith(".gguf"))).toEqual([]);
  }, 600_000);
});
