// Speculative decoding study (issue 13): decode tok/s with speculation off and with a draft model at several k,
// on Brown validation prompts, greedy. Per arm: tok/s (median and min–max over >= 3 repetitions after a
// warm-up, all arms interleaved per repetition), and for the draft arms the mean accepted length per verify
// step (tokens per target pass = accepted + 1), acceptance per draft position, and draft vs verify time per step.
// Writes DIR/speculative.md and DIR/speculative.json (every sample and statistic).
//
//   npx bun notebooks/speculative.ts                                   # embedded target + draft, k 1,2,4,8
//   npx bun notebooks/speculative.ts --k 2,4 --prompts 16 --tokens 64 --reps 5 --backend cuda
import { parseArgs } from "node:util";
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { loadavg } from "node:os";
import { openModel, type Model } from "../engine/index.ts";
import { REPO_ROOT } from "../engine/constants.ts";
import { brownPromptSet, runSpecBench, type SpecArmResult } from "../engine/spec/bench.ts";
import { checkDraftCompatible } from "../engine/spec/compat.ts";
import { specHost } from "../engine/spec/draft.ts";

const USAGE = `usage: npx bun notebooks/speculative.ts [target] [options]
  target                     default | file.gguf | HF dir (default: the embedded model)
  --draft PATH               the draft model (default models/tiny-qwen2-brown-draft)
  --k N[,N...]               draft lengths (default 1,2,4,8)
  --prompts N                Brown validation prompts (default 8), --words N per prompt (default 24)
  --tokens N                 tokens generated per prompt (default 64)
  --reps N                   measured repetitions (default 3, >= 3), --warmup N (default 1)
  --backend auto|cpu|cuda --threads N
  --out DIR                  default profiles/raw/speculative/<stamp>`;

const { values: o, positionals } = parseArgs({
  args: Bun.argv.slice(2), allowPositionals: true, options: {
    draft: { type: "string" }, k: { type: "string" }, prompts: { type: "string" }, words: { type: "string" }, tokens: { type: "string" },
    reps: { type: "string" }, warmup: { type: "string" }, backend: { type: "string" }, threads: { type: "string" }, out: { type: "string" },
    help: { type: "boolean", short: "h" },
  },
});
if (o.help) { console.log(USAGE); process.exit(0); }
const die = (m: string): never => { console.error(`error: ${m}\n${USAGE}`); process.exit(2); };
const int = (v: string | undefined, name: string, dflt: number, min = 1) => {
  if (v === undefined) return dflt;
  const x = Number(v);
  if (!Number.isInteger(x) || x < min) die(`--${name} expects an integer >= ${min}, got '${v}'`);
  return x;
};
const ks = (o.k ?? "1,2,4,8").split(",").map((s) => int(s.trim(), "k", 1));
if (ks.some((k) => k > 64)) die("--k values must be <= 64");
const nPrompts = int(o.prompts, "prompts", 8), words = int(o.words, "words", 24), nGen = int(o.tokens, "tokens", 64);
const reps = int(o.reps, "reps", 3, 3), warmup = int(o.warmup, "warmup", 1, 0);
const backend = (o.backend ?? "auto") as "auto" | "cpu" | "cuda";
if (!["auto", "cpu", "cuda"].includes(backend)) die(`--backend must be auto, cpu or cuda`);
const threads = o.threads === undefined ? undefined : int(o.threads, "threads", 0, 0);
const draftPath = o.draft ?? join(REPO_ROOT, "models/tiny-qwen2-brown-draft");
const out = resolve(o.out ?? join("profiles/raw/speculative", new Date().toISOString().replace(/[-:]/g, "").slice(0, 15)));

const target = (await openModel(positionals[0] ?? "default", { backend, threads })) as Model;
const draft = (await openModel(draftPath, { backend: target.backend, threads })) as Model;
try {
  checkDraftCompatible(target, draft);
  const prompts = brownPromptSet(nPrompts, words);
  const maxContext = Math.max(...prompts.map((p) => target.tokenizer.encode(p).length)) + nGen + 8;
  const ts = target.newSession({ maxContext }), ds = draft.newSession({ maxContext });
  const load0 = loadavg()[0];
  const res = await runSpecBench(ts, ds, specHost(target), {
    prompts, nGen, ks, reps, warmup, draftLabel: draftPath, onProgress: (m) => console.error(`  ${m}`),
  });
  const load1 = loadavg()[0];
  ts.close(); ds.close();
  mkdirSync(out, { recursive: true });
  const f = (x: number, d = 1) => x.toFixed(d);
  const off = res.find((r) => r.k === 0)!;
  const row = (r: SpecArmResult) => {
    const s = r.spec;
    const pos = s ? s.conditional_acceptance_by_position.map((x) => f(100 * x, 0)).join(" / ") : "–";
    return `| ${r.arm} | ${f(r.tokS.median)} | ${f(r.tokS.min)}–${f(r.tokS.max)} | ${f(r.tokS.median / off.tokS.median, 2)}× | ` +
      `${s ? f(s.tokens_per_step, 2) : "1"} | ${s ? f(100 * s.acceptance_rate) : "–"} | ${pos} | ` +
      `${s ? `${f(s.draft_ms_per_step.median, 2)} / ${f(s.verify_ms_per_step.median, 2)}` : "–"} |`;
  };
  const md = [
    `# Speculative decoding: ${target.id} with draft ${draftPath}`,
    "",
    `Device: ${target.device.name} (${target.backend}${target.device.threads ? `, ${target.device.threads} threads` : ""}); ` +
      `${nPrompts} Brown validation prompts of ${words} words, ${nGen} tokens each, greedy; ${warmup} warm-up + ${reps} measured repetitions, ` +
      `arms interleaved per repetition; load average ${f(load0, 1)} → ${f(load1, 1)} (1 min).`,
    "",
    "| arm | tok/s (median) | min–max | vs off | tokens / verify step | acceptance % | acceptance by position % (given the earlier accepted) | draft / verify ms per step (median) |",
    "|---|---:|---:|---:|---:|---:|---|---:|",
    ...res.map(row),
    "",
    "tok/s = decode tokens (after the first) / decode time, all prompts of a repetition together. Tokens per verify step = accepted draft tokens + the target's own token.",
  ].join("\n");
  writeFileSync(join(out, "speculative.md"), md + "\n");
  writeFileSync(join(out, "speculative.json"), JSON.stringify({
    target: target.id, draft: draftPath, device: target.device, backend: target.backend, prompts, nGen, ks, reps, warmup,
    loadavg_1m: [load0, load1], command: `npx bun notebooks/speculative.ts ${Bun.argv.slice(2).join(" ")}`, results: res,
  }, null, 2) + "\n");
  console.log(md);
  console.error(`wrote ${join(out, "speculative.md")} and speculative.json`);
} finally {
  draft.close();
  target.close();
}
