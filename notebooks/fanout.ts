// SSE fan-out cost (issue 8, D5): does watching a run change what it measures? Starts the real server on
// loopback, then runs the same generation with 0 and with N followers attached (interleaved A B A B …, after
// one warm-up run), and reports per arm the recorded decode tok/s (median, min–max) and the latency of
// /api/health polled back to back during the runs (p50 / p99 / max over all samples).
//
//   bun notebooks/fanout.ts                          # default model on the CPU, 100 followers, 5 reps per arm
//   bun notebooks/fanout.ts --followers 100 --reps 5 --max-tokens 128 --model default --backend cpu
//   bun notebooks/fanout.ts --engine test/web/fake-engine.ts   # the server alone (fake engine)
//   bun notebooks/fanout.ts --server ../other-checkout          # that checkout's server, this checkout's engine
import { parseArgs } from "node:util";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { startServer, REAL_ENGINE } from "../test/web/server-proc.ts";

const { values: a } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    followers: { type: "string", default: "100" },
    reps: { type: "string", default: "5" },
    "max-tokens": { type: "string", default: "128" },
    model: { type: "string", default: "default" },
    backend: { type: "string", default: "cpu" },
    engine: { type: "string", default: REAL_ENGINE },
    server: { type: "string" },   // another checkout whose web/server.ts to run (before/after comparisons)
    follow: { type: "string" }, // internal: be the followers' process (N streams of this events URL)
    help: { type: "boolean", short: "h" },
  },
});
if (a.follow) {
  // The followers live in their own process, so that reading N streams never delays the health poller's clock.
  await Promise.all(Array.from({ length: Number(a.followers) }, () => fetch(a.follow!).then((r) => r.text())));
  process.exit(0);
}
if (a.help) {
  console.log("usage: bun notebooks/fanout.ts [--followers 100] [--reps 5] [--max-tokens 128] [--model default] [--backend cpu] [--engine MODULE]");
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

/** One run with `followers` SSE clients reading it to the end; /api/health polled back to back meanwhile. */
async function once(followers: number): Promise<{ decode: number; health: number[] }> {
  const r: any = await (await post("/api/runs", { model: a.model, prompt: "The old man walked down to the river and", maxTokens: MAXT, label: `fanout-${followers}` })).json();
  const streams = followers
    ? [Bun.spawn([process.execPath, import.meta.path, "--follow", `${s.base}/api/tasks/${r.id}/events`, "--followers", String(followers)], { stdout: "inherit", stderr: "inherit" }).exited]
    : [];
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
  await Promise.all([poll, ...streams]);
  if (t.status !== "done") throw new Error(`run ${r.id}: ${t.status} ${t.error ?? ""}`);
  return { decode: t.result.summary.decode_tok_s, health };
}

const q = (xs: number[], p: number) => { const s = [...xs].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p * (s.length - 1)))]; };
const med = (xs: number[]) => q(xs, 0.5);
try {
  await once(0); // warm-up: loads the model and touches every code path once
  const arms: Record<string, { decode: number[]; health: number[] }> = { "0": { decode: [], health: [] }, [N]: { decode: [], health: [] } };
  for (let i = 0; i < REPS; i++) {
    for (const f of [0, N]) {
      const r = await once(f);
      arms[f].decode.push(r.decode);
      arms[f].health.push(...r.health);
      process.stderr.write(`rep ${i + 1}/${REPS}, ${f} followers: decode ${r.decode.toFixed(1)} tok/s, health p99 ${q(r.health, 0.99).toFixed(1)} ms\n`);
    }
  }
  const base = med(arms["0"].decode);
  console.log(`\nSSE fan-out, ${a.model} on ${a.backend}, ${MAXT} tokens, ${REPS} reps per arm after 1 warm-up (interleaved)\n`);
  console.log("| followers | decode tok/s median (min–max) | vs 0 | /api/health p50 / p99 / max ms (samples) |");
  console.log("|---|---|---|---|");
  for (const [f, v] of Object.entries(arms)) {
    const d = med(v.decode);
    console.log(`| ${f} | ${d.toFixed(1)} (${Math.min(...v.decode).toFixed(1)}–${Math.max(...v.decode).toFixed(1)}) | ${(((d / base) - 1) * 100).toFixed(1)} % | ${q(v.health, 0.5).toFixed(1)} / ${q(v.health, 0.99).toFixed(1)} / ${Math.max(...v.health).toFixed(1)} (${v.health.length}) |`);
  }
} finally {
  s.stop();
  rmSync(tmp, { recursive: true, force: true });
}
