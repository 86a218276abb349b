// Spawns the real server (web/server.ts) on a free port for tests that need a process: signals, FIFOs that
// would block a thread, shutdown. Returns the base URL once /api/health answers.
import { join, resolve } from "node:path";

export const REPO = resolve(import.meta.dir, "../..");
export const FAKE_ENGINE = join(REPO, "test/web/fake-engine.ts");
export const REAL_ENGINE = join(REPO, "engine/index.ts");

export interface ServerProc { base: string; proc: ReturnType<typeof Bun.spawn>; output: () => string; stop: () => void }

/** `repo`: the checkout whose web/server.ts runs (a before/after comparison can start another one). */
export async function startServer(args: string[], env: Record<string, string> = {}, repo = REPO): Promise<ServerProc> {
  const proc = Bun.spawn([process.execPath, join(repo, "web/server.ts"), "--port", "0", ...args], {
    cwd: repo, stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env },
  });
  let out = "";
  const pump = async (s: ReadableStream<Uint8Array>) => {
    const r = s.getReader();
    const dec = new TextDecoder();
    for (;;) { const { value, done } = await r.read(); if (done) return; out += dec.decode(value, { stream: true }); }
  };
  void pump(proc.stdout as ReadableStream<Uint8Array>);
  void pump(proc.stderr as ReadableStream<Uint8Array>);
  const stop = () => { try { proc.kill("SIGKILL"); } catch { /* gone */ } };
  for (let i = 0; i < 600; i++) {
    const m = /qwen-workbench on (http:\/\/[^\s]+)/.exec(out);
    if (m) {
      const base = m[1].replace("0.0.0.0", "127.0.0.1");
      try { if ((await fetch(`${base}/api/health`)).ok) return { base, proc, output: () => out, stop }; } catch { /* starting */ }
    }
    if (proc.exitCode !== null) break;
    await Bun.sleep(100);
  }
  stop();
  throw new Error(`server did not start:\n${out}`);
}
