// Verify cost (issue 13 item 4): a tree verify pass of 1, 4, 8, 16, 32 and 64 tokens against a single-token
// decode step, on random bf16 models of real shape (synthetic Qwen2.5 0.5B and 7B), at a fixed KV depth. The
// target on the H200: 16 tree tokens <= 1.25x a decode step on 7B. Per model: decode ms and verify ms per tree
// size (median and min–max over >= 3 repetitions after a warm-up, interleaved), and verify / decode. Writes
// DIR/verify-cost.md and DIR/verify-cost.json.
//
//   npx bun notebooks/verify-cost.ts --backend cpu --models 0.5b --reps 5
//   npx bun notebooks/verify-cost.ts --backend cuda --models 0.5b,7b --context 1024 --reps 10
//   npx bun notebooks/verify-cost.ts --backend cuda --hf-root .gpu/hf --models 7b   # random-init HF checkpoints
import { parseArgs } from "node:util";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { loadavg } from "node:os";
import { openModel, type Model } from "../engine/index.ts";
import { cliArgs } from "../engine/notebook/args.ts";
import { benchPrompt } from "../engine/measure/bench-core.ts";
import { measureVerifyCost, VERIFY_SIZES, type VerifyCostResult } from "../engine/spec/verify-cost.ts";

const USAGE = `usage: npx bun notebooks/verify-cost.ts [options]
  --models 0.5b,7b         synthetic Qwen2.5 shapes, bf16 (default 0.5b,7b)
  --hf-root DIR            open DIR/<model> (a random-init HF checkpoint) instead of synthetic:<model>:bf16
  --sizes 1,4,8,16,32,64   tree tokens per verify pass
  --context N              tokens in the KV cache before each pass (default 512)
  --breakdown              after the timed passes, one profiled pass each (profiling = kernels): time per op
  --reps N (>= 3, default 5) --warmup N (default 2)
  --backend auto|cpu|cuda --threads N
  --out DIR                default profiles/raw/verify-cost/<stamp>`;

const { values: o } = parseArgs({
  args: Bun.argv.slice(2), options: {
    models: { type: "string" }, "hf-root": { type: "string" }, sizes: { type: "string" }, context: { type: "string" },
    reps: { type: "string" }, warmup: { type: "string" }, backend: { type: "string" }, threads: { type: "string" },
    out: { type: "string" }, breakdown: { type: "boolean" }, help: { type: "boolean", short: "h" },
  },
});
if (o.help) { console.log(USAGE); process.exit(0); }
const { die, int, backendOpt, threadsOpt } = cliArgs(USAGE);
const models = (o.models ?? "0.5b,7b").split(",").map((s) => s.trim());
for (const m of models) if (!["tiny", "0.5b", "1.5b", "7b"].includes(m)) die(`--models: unknown shape '${m}' (tiny, 0.5b, 1.5b, 7b)`);
const sizes = o.sizes ? o.sizes.split(",").map((s) => int(s.trim(), "sizes", 1)) : [...VERIFY_SIZES];
if (sizes.some((n) => n > 256)) die("--sizes must be <= 256");
const context = int(o.context, "context", 512), reps = int(o.reps, "reps", 5, 3), warmup = int(o.warmup, "warmup", 2, 0);
const backend = backendOpt(o.backend);
const threads = threadsOpt(o.threads);
const out = resolve(o.out ?? join("profiles/raw/verify-cost", new Date().toISOString().replace(/[-:]/g, "").slice(0, 15)));

const results: { model: string; source: string; device: string; threads?: number; backend: string; load: [number, number]; res: VerifyCostResult }[] = [];
for (const m of models) {
  const hf = o["hf-root"] ? join(resolve(o["hf-root"]), m) : undefined;
  const source = hf && existsSync(join(hf, "config.json")) ? hf : `synthetic:${m}:bf16`;
  console.error(`opening ${source} (${backend}) ...`);
  const model = (await openModel(source, { backend, threads })) as Model;
  try {
    const maxN = Math.max(...sizes);
    const s = model.newSession({ maxContext: context + maxN + 8, maxPrefill: Math.max(maxN, Math.min(context, 512)) });
    const load0 = loadavg()[0];
    const res = measureVerifyCost(s, benchPrompt(context + maxN, model.config.vocab_size, 7), { context, sizes, reps, warmup, breakdown: !!o.breakdown, onProgress: (x) => console.error(`  ${m}: ${x}`) });
    s.close();
    results.push({ model: m, source, device: model.device.name, threads: model.device.threads, backend: model.backend, load: [load0, loadavg()[0]], res });
  } finally {
    model.close();
  }
}

const f = (x: number, d = 2) => x.toFixed(d);
/** Kernel µs per op (rows) for the decode step and each verify size (columns), one profiled pass each. */
function breakdownTable(res: VerifyCostResult): string[] {
  const b = res.breakdown;
  if (!b?.length) return [];
  const ops = [...new Set(b.flatMap((p) => p.ops.map((o) => o.op)))];
  const us = (p: (typeof b)[number], op: string) => p.ops.find((o) => o.op === op)?.us ?? 0;
  const total = (p: (typeof b)[number]) => p.ops.reduce((a, o) => a + o.us, 0);
  return [
    "Per op, kernel µs of one profiled pass (profiling = kernels; the wall row is the engine calls' time in that pass):",
    "",
    `| op | ${b.map((p) => p.label).join(" | ")} |`,
    `|---|${b.map(() => "---:").join("|")}|`,
    ...ops.map((op) => `| ${op} | ${b.map((p) => f(us(p, op), 1)).join(" | ")} |`),
    `| (sum of records) | ${b.map((p) => f(total(p), 1)).join(" | ")} |`,
    `| (wall) | ${b.map((p) => f(p.wallMs * 1e3, 1)).join(" | ")} |`,
    "",
    "Kernels per op (the variants that ran, all passes):",
    "",
    ...ops.map((op) => `- ${op}: ${[...new Set(b.flatMap((p) => p.ops.find((o) => o.op === op)?.names ?? []))].join(", ") || "-"}`),
    "",
  ];
}
const md = [
  `# Verify cost: a tree verify pass of n tokens vs one decode step`,
  "",
  `Context ${context} tokens in the KV cache; tree of fan-out 4 (EAGLE-2-like); verify = one qw_session_prefill_tree with every row's logits, decode = one qw_session_decode step (batch 1); ${warmup} warm-up + ${reps} measured repetitions, interleaved; median (min–max).`,
  "",
  ...results.flatMap((r) => [
    `## ${r.model} bf16 (${r.source}) on ${r.device} (${r.backend}${r.threads ? `, ${r.threads} threads` : ""}); load average ${f(r.load[0], 1)} → ${f(r.load[1], 1)}`,
    "",
    `decode step: ${f(r.res.decode.median)} ms (${f(r.res.decode.min)}–${f(r.res.decode.max)})`,
    "",
    "| tree tokens | verify ms (median) | min–max | × decode step |",
    "|---:|---:|---:|---:|",
    ...r.res.rows.map((x) => `| ${x.n} | ${f(x.ms.median)} | ${f(x.ms.min)}–${f(x.ms.max)} | ${f(x.vsDecode)}× |`),
    "",
    ...breakdownTable(r.res),
  ]),
].join("\n");
mkdirSync(out, { recursive: true });
writeFileSync(join(out, "verify-cost.md"), md + "\n");
writeFileSync(join(out, "verify-cost.json"), JSON.stringify({ command: `npx bun notebooks/verify-cost.ts ${Bun.argv.slice(2).join(" ")}`, context, sizes, reps, warmup, results }, null, 2) + "\n");
console.log(md);
console.error(`wrote ${join(out, "verify-cost.md")} and verify-cost.json`);
