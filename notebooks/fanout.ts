// SSE fan-out cost (issue 8, D5): does watching a run change what it measures? Starts the real server on
// loopback, then runs the same generation with 0 and with N followers attached (interleaved A B A B …, after
// one warm-up run), and reports per arm the recorded decode tok/s (median, min–max) and the latency of
// /api/health polled back to back during the runs (p50 / p99 / max over all samples), and the CPU time the
// server's main thread (HTTP + SSE; the engine runs in a worker thread) spent per run, from /proc: on a busy
// shared machine the first two are mostly noise, the third is what fan-out itself costs the server.
//
//   bun notebooks/fanout.ts                          # default model on the CPU, 100 followers, 5 reps per arm
//   bun notebooks/fanout.ts --followers 100 --reps 5 --max-tokens 128 --model default --backend cpu
//   bun notebooks/fanout.ts --engine test/web/fake-engine.ts   # the server alone (fake engine)
//   bun notebooks/fanout.ts --threads 1                          # engine on 1 thread: a core left for server + followers
//   bun notebooks/fanout.ts --server ../other-checkout          # that checkout's server, this checkout's engine
import { parseArgs } from "node:util";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { startServer, REAL_ENGINE } from "../test/web/server-proc.ts";

// (the first two figures move with whatever else runs: on a 2-core machine the followers' own process, here
// measured as "client CPU", competes with the engine's threads; the server's share is the main-thread column)
const { values: a } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    followers: { type: "string", default: "100" },
    reps: { type: "string", default: "5" },
    "max-tokens": { type: "string", default: "128" },
    model: { type: "string", default: "default" },
    backend: { type: "string", default: "cpu" },
    threads: { type: "string" }, // engine threads (e.g. 1 on a 2-core machine: a core left for server + followers)
    engine: { type: "string", default: REAL_ENGINE },
    server: { type: "string" },   // another checkout whose web/server.ts to run (before/after comparisons)
    follow: { type: "string" }, // internal: be the followers' process (N streams of this events URL)
    help: { type: "boolean", short: "h" },
  },
});
if (a.follow) {
  // The followers' process, started once: for each events URL on stdin it attaches N streams and reads them to
  // the end, so that reading never delays the health poller's clock and no process starts during a run.
  const n = Number(a.followers);
  for await (const line of console) {
    if (!line.trim()) continue;
    void Promise.all(Array.from({ length: n }, () => fetch(line.trim()).then((r) => r.text()))).then(() => console.log("done"));
  }
  process.exit(0);
}
const N = Number(a.followers), REPS = Number(a.reps), MAXT = Number(a["max-tokens"]);
const tmp = mkdtempSync(join(tmpdir(), "qwb-fanout-"));
const s = await startServer(["--profiles", join(tmp, "profiles"), "--engine", resolve(a.engine!), "--backend", a.backend!], {}, a.server ? resolve(a.server) : undefined);
const post = (path: string, body: unknown) => fetch(`${s.base}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

async function waitDone(id: string): Promise<any> {
  for (;;) {
    const t: any = await (await fetch(`${s.base}/api/tasks/${id}`)).json();
    if (["done", "failed", "cancelled"].includes(t.status)) return t;
    await Bun.sleep(20);
  }
}

/** CPU ms (user + system) of the server's main thread so far (Linux /proc; clock ticks of 10 ms). */
function mainThreadCpuMs(pid = s.proc.pid, task = pid): number {
  const f = readFileSync(`/proc/${pid}/task/${task}/stat`, "utf8");
  const fields = f.slice(f.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10; // utime, stime (fields 14, 15 of stat(5))
}

const followerProc = Bun.spawn([process.execPath, import.meta.path, "--follow", "1", "--followers", String(Number(a.followers))], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
const followerLines = (async function* () {
  const r = (followerProc.stdout as ReadableStream<Uint8Array>).getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await r.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n")) >= 0) { yield buf.slice(0, i); buf = buf.slice(i + 1); }
  }
})();

/**
 * One measured run with `followers` SSE clients attached before it starts: a gate run holds the queue until
 * the server reports all followers attached (GET /api/tasks/:id → followers), then is cancelled. /api/health is
 * polled back to back during the measured run.
 */
/** CPU ms of the whole followers' process (all its threads). */
function followerCpuMs(): number {
  const f = readFileSync(`/proc/${followerProc.pid}/stat`, "utf8");
  const fields = f.slice(f.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

async function once(followers: number): Promise<{ decode: number; health: number[]; cpuMs: number; clientMs: number }> {
  const gate: any = await (await post("/api/runs", { model: a.model, prompt: "gate", maxTokens: 4000, profiling: false, label: "fanout-gate" })).json();
  const r: any = await (await post("/api/runs", { model: a.model, prompt: "The old man walked down to the river and", maxTokens: MAXT, label: `fanout-${followers}` })).json();
  if (followers) {
    followerProc.stdin.write(`${s.base}/api/tasks/${r.id}/events\n`);
    followerProc.stdin.flush();
    for (let i = 0; ; i++) {
      const v = (await (await fetch(`${s.base}/api/tasks/${r.id}`)).json()) as { followers?: number };
      if (v.followers === undefined ? i >= 100 : v.followers >= followers) break; // a server without the count: 2 s
      await Bun.sleep(20);
    }
  }
  const cpu0 = mainThreadCpuMs(), client0 = followerCpuMs();
  await fetch(`${s.base}/api/tasks/${gate.id}/cancel`, { method: "POST" });
  const health: number[] = [];
  let finished = false;
  const poll = (async () => {
    while (!finished) {
      const t0 = performance.now();
      await (await fetch(`${s.base}/api/health`)).json();
      health.push(performance.now() - t0);
    }
  })();
  const t = await waitDone(r.id);
  finished = true;
  await poll;
  const cpuMs = mainThreadCpuMs() - cpu0, clientMs = followerCpuMs() - client0;
  if (followers) await followerLines.next(); // its streams ended
  if (t.status !== "done") throw new Error(`run ${r.id}: ${t.status} ${t.error ?? ""}`);
  return { decode: t.result.summary.decode_tok_s, health, cpuMs, clientMs };
}

const q = (xs: number[], p: number) => { const s = [...xs].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p * (s.length - 1)))]; };
const med = (xs: number[]) => q(xs, 0.5);
try {
  if (a.threads !== undefined) {
    const l: any = await (await post("/api/models/load", { source: a.model, backend: a.backend, threads: Number(a.threads) })).json();
    const t = await waitDone(l.id);
    if (t.status !== "done") throw new Error(`fanout: loading ${a.model} with ${a.threads} threads: ${t.error ?? t.status}`);
  }
  await once(0); // warm-up: loads the model and touches every code path once
  const arms: Record<string, { decode: number[]; health: number[]; cpu: number[]; client: number[] }> = {
    "0": { decode: [], health: [], cpu: [], client: [] }, [N]: { decode: [], health: [], cpu: [], client: [] },
  };
  for (let i = 0; i < REPS; i++) {
    for (const f of [0, N]) {
      const r = await once(f);
      arms[f].decode.push(r.decode);
      arms[f].health.push(...r.health);
      arms[f].cpu.push(r.cpuMs);
      arms[f].client.push(r.clientMs);
      process.stderr.write(`rep ${i + 1}/${REPS}, ${f} followers: decode ${r.decode.toFixed(1)} tok/s, health p99 ${q(r.health, 0.99).toFixed(1)} ms, server main thread ${r.cpuMs} ms CPU, followers' process ${r.clientMs} ms CPU\n`);
    }
  }
  const base = med(arms["0"].decode);
  console.log(`\nSSE fan-out, ${a.model} on ${a.backend}, ${MAXT} tokens, ${REPS} reps per arm after 1 warm-up (interleaved)\n`);
  console.log("| followers | decode tok/s median (min–max) | vs 0 | /api/health p50 / p99 / max ms (samples) | server main-thread CPU ms per run, median (min–max) | followers' process CPU ms per run |");
  console.log("|---|---|---|---|---|---|");
  for (const [f, v] of Object.entries(arms)) {
    const d = med(v.decode);
    console.log(`| ${f} | ${d.toFixed(1)} (${Math.min(...v.decode).toFixed(1)}–${Math.max(...v.decode).toFixed(1)}) | ${(((d / base) - 1) * 100).toFixed(1)} % | ${q(v.health, 0.5).toFixed(1)} / ${q(v.health, 0.99).toFixed(1)} / ${Math.max(...v.health).toFixed(1)} (${v.health.length}) | ${med(v.cpu)} (${Math.min(...v.cpu)}–${Math.max(...v.cpu)}) | ${med(v.client)} (${Math.min(...v.client)}–${Math.max(...v.client)}) |`);
  }
} finally {
  followerProc.kill();
  s.stop();
  rmSync(tmp, { recursive: true, force: true });
}
