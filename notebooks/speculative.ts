// Speculative decoding study (issue 13): decode tok/s with speculation off, with a draft model at several k and
// (--eagle DIR) with an EAGLE head drafting EAGLE-2 trees, on Brown validation prompts, greedy. Per arm: tok/s (median and min–max over >= 3 repetitions after a
// warm-up, all arms interleaved per repetition), and for the draft arms the mean accepted length per verify
// step (tokens per target pass = accepted + 1), acceptance per draft position, and draft vs verify time per step;
// per speculative arm, where a step's time goes by phase (engine/spec/phases.ts: the head's catch-up, its tree
// levels, readbacks, the verify pass(es), compaction, the host's own work), with engine calls per step.
// Writes DIR/speculative.md and DIR/speculative.json (every sample and statistic; results[].spec.phases).
//
//   npx bun notebooks/speculative.ts                                   # embedded target + draft, k 1,2,4,8
//   npx bun notebooks/speculative.ts --k 2,4 --prompts 16 --tokens 64 --reps 5 --backend cuda
//   npx bun notebooks/speculative.ts --eagle models/tiny-qwen2-brown-eagle --tree-depth 5 --tree-topk 4 --tree-budget 16
import { parseArgs } from "node:util";
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { loadavg } from "node:os";
import { openModel, type Model } from "../engine/index.ts";
import { cliArgs } from "../engine/notebook/args.ts";
import { REPO_ROOT } from "../engine/constants.ts";
import { brownPromptSet, runSpecBench, speedupAtFullAcceptance, type SpecArmResult } from "../engine/spec/bench.ts";
import { checkDraftCompatible } from "../engine/spec/compat.ts";
import { specHost } from "../engine/spec/draft.ts";
import { openEagleHead } from "../engine/spec/eagle-head.ts";
import { checkTreeParams, DEFAULT_TREE } from "../engine/spec/eagle-tree.ts";

const USAGE = `usage: npx bun notebooks/speculative.ts [target] [options]
  target                     default | file.gguf | HF dir (default: the embedded model)
  --draft PATH               the draft model (default models/tiny-qwen2-brown-draft)
  --k N[,N...]               draft lengths (default 1,2,4,8)
  --verify M[,M...]          the draft arms' verify: chain (one decode step of k + 1 rows; the CUDA default) and / or
                             prefill (the CPU default); both: one arm per k and mode (default: the backend's)
  --eagle DIR                an EAGLE head (SafeAILab layout) for the target: adds the eagle arm (greedy)
  --tree-depth D --tree-topk K --tree-budget B   its EAGLE-2 tree (defaults 5, 4, 16)
  --prompts N                Brown validation prompts (default 8), --words N per prompt (default 24)
  --tokens N                 tokens generated per prompt (default 64)
  --reps N                   measured repetitions (default 3, >= 3), --warmup N (default 1)
  --backend auto|cpu|cuda --threads N
  --out DIR                  default profiles/raw/speculative/<stamp>`;

const { values: o, positionals } = parseArgs({
  args: Bun.argv.slice(2), allowPositionals: true, options: {
    draft: { type: "string" }, k: { type: "string" }, eagle: { type: "string" }, verify: { type: "string" },
    "tree-depth": { type: "string" }, "tree-topk": { type: "string" }, "tree-budget": { type: "string" }, prompts: { type: "string" }, words: { type: "string" }, tokens: { type: "string" },
    reps: { type: "string" }, warmup: { type: "string" }, backend: { type: "string" }, threads: { type: "string" }, out: { type: "string" },
    help: { type: "boolean", short: "h" },
  },
});
if (o.help) { console.log(USAGE); process.exit(0); }
const { die, int, backendOpt, threadsOpt } = cliArgs(USAGE);
const ks = (o.k ?? "1,2,4,8").split(",").map((s) => int(s.trim(), "k", 1));
if (ks.some((k) => k > 64)) die("--k values must be <= 64");
const verify = o.verify === undefined ? undefined : o.verify.split(",").map((s) => s.trim());
if (verify && (verify.length === 0 || verify.some((v) => v !== "chain" && v !== "prefill")))
  die(`--verify takes chain and / or prefill (comma-separated), got "${o.verify}"`);
const nPrompts = int(o.prompts, "prompts", 8), words = int(o.words, "words", 24), nGen = int(o.tokens, "tokens", 64);
const reps = int(o.reps, "reps", 3, 3), warmup = int(o.warmup, "warmup", 1, 0);
const backend = backendOpt(o.backend);
const threads = threadsOpt(o.threads);
const draftPath = o.draft ?? join(REPO_ROOT, "models/tiny-qwen2-brown-draft");
const tree = (() => {
  try {
    return checkTreeParams({ depth: int(o["tree-depth"], "tree-depth", DEFAULT_TREE.depth), topK: int(o["tree-topk"], "tree-topk", DEFAULT_TREE.topK), budget: int(o["tree-budget"], "tree-budget", DEFAULT_TREE.budget) });
  } catch (e) { return die((e as Error).message); }
})();
const out = resolve(o.out ?? join("profiles/raw/speculative", new Date().toISOString().replace(/[-:]/g, "").slice(0, 15)));

const target = (await openModel(positionals[0] ?? "default", { backend, threads })) as Model;
const draft = (await openModel(draftPath, { backend: target.backend, threads })) as Model;
const head = o.eagle ? await openEagleHead(o.eagle, target) : undefined;
try {
  checkDraftCompatible(target, draft);
  const prompts = brownPromptSet(nPrompts, words);
  const maxContext = Math.max(...prompts.map((p) => target.tokenizer.encode(p).length)) + nGen + 8;
  // max batch k + 1: the chain verify (one decode row per token of [tok, d1..dk]) needs that many rows
  const ts = target.newSession({ maxBatch: Math.min(16, Math.max(...ks) + 1), maxContext: maxContext + tree.budget }), ds = draft.newSession({ maxContext });
  const hs = head?.newSession({ maxContext: maxContext + tree.budget });
  const load0 = loadavg()[0];
  const res = await runSpecBench(ts, ds, specHost(target), {
    prompts, nGen, ks, reps, warmup, draftLabel: draftPath, onProgress: (m) => console.error(`  ${m}`),
    ...(verify ? { verify: verify as ("chain" | "prefill")[] } : {}),
    ...(hs && o.eagle ? { eagle: { head: hs, tree, label: o.eagle } } : {}),
  });
  const load1 = loadavg()[0];
  ts.close(); ds.close(); hs?.close();
  mkdirSync(out, { recursive: true });
  const f = (x: number, d = 1) => x.toFixed(d);
  const off = res.find((r) => r.k === 0)!;
  const row = (r: SpecArmResult) => {
    const s = r.spec;
    const pos = s ? s.conditional_acceptance_by_position.map((x) => f(100 * x, 0)).join(" / ") : "–";
    const full = speedupAtFullAcceptance(r, off);
    return `| ${r.arm} | ${f(r.tokS.median)} | ${f(r.tokS.min)}–${f(r.tokS.max)} | ${f(r.tokS.median / off.tokS.median, 2)}× | ` +
      `${full === null ? "–" : `${f(full, 2)}×`} | ` +
      `${s ? f(s.tokens_per_step, 2) : "1"} | ${s ? f(100 * s.acceptance_rate) : "–"} | ${pos} | ` +
      `${s ? `${f(s.draft_ms_per_step.median, 2)} / ${f(s.verify_ms_per_step.median, 2)}` : "–"} |`;
  };
  // where a step's time goes, per speculative arm (engine/spec/phases.ts)
  const breakdown = (r: SpecArmResult): string[] => {
    const ph = r.spec?.phases;
    if (!ph) return [];
    const lv = r.spec?.expand_ms_by_level;
    return [
      "", `### ${r.arm}: where a verify step's time goes`, "",
      "| phase | ms / step (median) | mean | min–max | engine calls / step | share of step time |", "|---|---:|---:|---:|---:|---:|",
      ...ph.map((p) => `| ${p.phase} | ${f(p.ms_per_step.median, 3)} | ${f(p.ms_per_step.mean, 3)} | ${f(p.ms_per_step.min, 3)}–${f(p.ms_per_step.max, 3)} | ${f(p.calls_per_step, 2)} | ${f(100 * p.share)} % |`),
      ...(lv?.length ? ["", `head_expand by tree level (level 2 first), ms median: ${lv.map((x) => f(x.median, 3)).join(" / ")}`] : []),
    ];
  };
  const md = [
    `# Speculative decoding: ${target.id} with draft ${draftPath}${o.eagle ? ` and EAGLE head ${o.eagle}` : ""}`,
    "",
    `Device: ${target.device.name} (${target.backend}${target.device.threads ? `, ${target.device.threads} threads` : ""}); ` +
      `${nPrompts} Brown validation prompts of ${words} words, ${nGen} tokens each, greedy; ${warmup} warm-up + ${reps} measured repetitions, ` +
      `arms interleaved per repetition; load average ${f(load0, 1)} → ${f(load1, 1)} (1 min).`,
    "",
    "| arm | tok/s (median) | min–max | vs off | vs off if all accepted | tokens / verify step | acceptance % | acceptance by position % (given the earlier accepted) | draft / verify ms per step (median) |",
    "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ...res.map(row),
    "",
    "tok/s = decode tokens (after the first) / decode time, all prompts of a repetition together. Tokens per verify step = accepted draft tokens + the target's own token.",
    "vs off if all accepted = vs off × (k + 1) / tokens per verify step (k = draft length, or tree depth for eagle): the same steps at the same cost with every draft token accepted. Below 1× no drafter can make the arm pay on this target and device: a step costs more than k + 1 plain decode steps.",
    ...(o.eagle ? ["Eagle: position i = tree depth i (share of steps whose accepted path reached that depth, given the one before); draft time includes the head's catch-up on the accepted tokens."] : []),
    "",
    "## Where the time of a verify step goes",
    "",
    "Each engine call of a step, wall-timed on the host under its phase (engine/spec/phases.ts); host = the rest of the step (tree building, acceptance, JS copies). " +
      "On CUDA a pass's device time shows in the call that waits for its results (the pass itself: its readout synchronizes).",
    ...res.flatMap(breakdown),
  ].join("\n");
  writeFileSync(join(out, "speculative.md"), md + "\n");
  writeFileSync(join(out, "speculative.json"), JSON.stringify({
    target: target.id, draft: draftPath, ...(o.eagle ? { eagle: o.eagle, tree } : {}), device: target.device, backend: target.backend, prompts, nGen, ks, reps, warmup,
    loadavg_1m: [load0, load1], command: `npx bun notebooks/speculative.ts ${Bun.argv.slice(2).join(" ")}`, results: res,
  }, null, 2) + "\n");
  console.log(md);
  console.error(`wrote ${join(out, "speculative.md")} and speculative.json`);
} finally {
  head?.close();
  draft.close();
  target.close();
}
