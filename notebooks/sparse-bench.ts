// Sparse prefill speed study (issue 14, MInference): prefill tok/s with sparsePrefill off vs vertical-slash and / or
// block-sparse at several prompt lengths, one warm-up pass per (arm, length), then --reps measured passes
// interleaved across the arms (round r runs every arm once, so drift of a shared machine hits both alike); median
// and min–max per cell, the density of the sparse arm (keys visited / dense keys, from the session). Prompts are
// passkey prompts (Brown text, engine/measure/passkey.ts) so that the attention patterns are those of real text.
//
//   npx bun notebooks/sparse-bench.ts                                   # the passkey model, 1024,2048,4096
//   npx bun notebooks/sparse-bench.ts synthetic:0.5b:bf16 --lengths 1024,2048 --vertical 64 --slash 64
//   npx bun notebooks/sparse-bench.ts --dca on --lengths 2048,4096       # both arms with DCA on
//   npx bun notebooks/sparse-bench.ts --arms off,vertical-slash,block-sparse --blocks 8
import { parseArgs } from "node:util";
import { mkdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join, resolve } from "node:path";
import { openModel } from "../engine/index.ts";
import { buildPasskeyPrompt, FillerStream, PASSKEY_MODEL_DIR, rngFor } from "../engine/measure/passkey.ts";
import { statOf } from "../engine/measure/profile.ts";
import { cliArgs } from "../engine/notebook/args.ts";

const USAGE = `usage: npx bun notebooks/sparse-bench.ts [model] [options]
  model                   HF dir / GGUF / synthetic:<preset>[:type] (default: models/tiny-qwen2-passkey)
  --lengths N,N,...       prompt lengths (default 1024,2048,4096)
  --reps N                measured passes per (arm, length), after one warm-up (default 3, >= 3)
  --arms off,A,...        sparsePrefill values to run, off first (default off,vertical-slash; also block-sparse)
  --vertical N --slash N --blocks N --local N --sink N   sparse budgets (default 64, 64, 8, 64, 4)
  --dca on|off            Dual Chunk Attention in both arms (default off)
  --chunk N               prefill in pieces of at most N tokens (the session's maxPrefill; default: the whole prompt)
  --backend auto|cpu|cuda --threads N
  --out DIR               default profiles/raw/sparse-bench/<stamp>`;

const { values: o, positionals } = parseArgs({
  args: Bun.argv.slice(2), allowPositionals: true, options: {
    lengths: { type: "string" }, reps: { type: "string" }, vertical: { type: "string" }, slash: { type: "string" },
    blocks: { type: "string" }, arms: { type: "string" },
    local: { type: "string" }, sink: { type: "string" }, dca: { type: "string" }, backend: { type: "string" }, chunk: { type: "string" },
    threads: { type: "string" }, out: { type: "string" }, help: { type: "boolean", short: "h" },
  },
});
if (o.help) { console.log(USAGE); process.exit(0); }
const { die, backendOpt, threadsOpt } = cliArgs(USAGE);
const int = (v: string | undefined, name: string, min: number, dflt: number): number => {
  if (v === undefined) return dflt;
  const x = Number(v);
  if (v.trim() === "" || !Number.isInteger(x) || x < min) die(`--${name} expects an integer >= ${min}, got '${v}'`);
  return x;
};
const lengths = (o.lengths ?? "1024,2048,4096").split(",").map((s) => int(s, "lengths", 64, 0));
const reps = int(o.reps, "reps", 3, 3);
const budgets = {
  vertical: int(o.vertical, "vertical", 0, 64), slash: int(o.slash, "slash", 0, 64), blocks: int(o.blocks, "blocks", 0, 8),
  local: int(o.local, "local", 1, 64), sink: int(o.sink, "sink", 0, 4),
};
const arms = (o.arms ?? "off,vertical-slash").split(",");
if (arms[0] !== "off" || arms.length < 2 || arms.slice(1).some((a) => a !== "vertical-slash" && a !== "block-sparse"))
  die(`--arms: off first, then vertical-slash and / or block-sparse, got '${o.arms}'`);
const dca = o.dca ?? "off";
if (dca !== "on" && dca !== "off") die(`--dca must be on or off`);
const backend = backendOpt(o.backend);
const threads = threadsOpt(o.threads);
const out = resolve(o.out ?? join("profiles/raw/sparse-bench", new Date().toISOString().replace(/[-:]/g, "").slice(0, 15)));

const model = await openModel(positionals[0] ?? PASSKEY_MODEL_DIR, { backend, threads });
const maxLen = Math.max(...lengths);
const chunk = o.chunk !== undefined ? int(o.chunk, "chunk", 64, 0) : undefined;
// Device memory (CUDA, device-wide, cudaMemGetInfo): after the load, after each session's creation (its KV cache and
// its buffers for maxPrefill rows) and after its arm's first pass (scratch grown on first use): an arm's activation
// memory is its session's growth less its KV cache.
const memUsed = () => model.deviceMemoryUsed?.();
const mem0 = memUsed();
const memSession: (number | undefined)[] = [];
const memGrowth = new Map<string, number>();  // `${arm}@${L}` → bytes the warm-up pass added
const sessions = arms.map((a) => {
  const before = memUsed();
  const s = model.newSession({ maxContext: maxLen + 8, ...(chunk ? { maxPrefill: chunk } : {}), ...(a !== "off" ? { sparse: budgets } : {}) });
  const after = memUsed();
  memSession.push(before !== undefined && after !== undefined ? after - before : undefined);
  if (dca === "on") s.setToggle("dca", "on");
  s.setToggle("sparsePrefill", a);
  s.setSampling(0, { temperature: 0 });
  return s;
});
const kvBytes = sessions.map((s) => s.kvInfo?.().kvBytes ?? NaN);
const tok = model.tokenizer;
// The held-out Brown text (every 20th document) is ~64k tokens: longer prompts take the training documents after it
// (a speed study; the passkey harness itself keeps to the held-out text)
const { filler, trainDocuments } = FillerStream.atLeast(tok, maxLen + 64);
const load0 = loadavg()[0];
const samples = new Map<string, number[]>();  // `${arm}@${L}` → tok/s
const density = new Map<string, number>();  // `${arm}@${L}` → keys visited / dense
try {
  for (const L of lengths) {
    const tokens = buildPasskeyPrompt(tok, filler, L, rngFor(0, L, 0)).tokens;
    const pass = (i: number) => {
      const s = sessions[i];
      s.reset(0);
      const t0 = performance.now();
      s.prefill(0, tokens);
      return L / ((performance.now() - t0) / 1000);
    };
    for (let i = 0; i < arms.length; i++) {  // warm-up
      const before = memUsed();
      pass(i);
      const after = memUsed();
      if (before !== undefined && after !== undefined) memGrowth.set(`${arms[i]}@${L}`, after - before);
    }
    for (let r = 0; r < reps; r++) {
      for (let i = 0; i < arms.length; i++) {
        const k = `${arms[i]}@${L}`;
        samples.set(k, [...(samples.get(k) ?? []), pass(i)]);
      }
      console.log(`length ${L}: round ${r + 1}/${reps}: ${arms.map((a) => `${a} ${samples.get(`${a}@${L}`)!.at(-1)!.toFixed(0)} tok/s`).join(", ")}`);
    }
    for (let i = 1; i < arms.length; i++) {
      // heads with rows (none: NaN, "not measured")
      const heads = sessions[i].sparseInfo!().layers.flatMap((l) => l.heads).filter((h) => h.rows > 0);
      density.set(`${arms[i]}@${L}`, heads.length ? heads.reduce((a, h) => a + h.density, 0) / heads.length : NaN);
    }
  }
} finally {
  for (const s of sessions) s.close();
}
const gib = (b: number) => (Number.isFinite(b) ? (b / 2 ** 30).toFixed(2) : "n/a");
const fmt = (xs: number[]) => { const st = statOf(xs, "tok/s"); return `${st.median.toFixed(0)} (${st.min.toFixed(0)}–${st.max.toFixed(0)})`; };
const rows = lengths.flatMap((L) => arms.slice(1).map((arm) => {
  const d = samples.get(`off@${L}`)!, s = samples.get(`${arm}@${L}`)!;
  return { length: L, arm, dense: statOf(d, "tok/s"), sparse: statOf(s, "tok/s"), speedup: statOf(s, "").median / statOf(d, "").median, density: density.get(`${arm}@${L}`)! };
}));
const md = [
  `# Sparse prefill speed — ${model.id} (${model.backend}, ${model.device.name})`, "",
  `Command: \`npx bun notebooks/sparse-bench.ts ${Bun.argv.slice(2).join(" ")}\`. Budgets: vertical ${budgets.vertical}, slash ${budgets.slash}, blocks ${budgets.blocks}, local ${budgets.local}, sink ${budgets.sink}; dca ${dca}. ` +
  `${reps} measured passes per cell after one warm-up, interleaved across arms; median (min–max).${trainDocuments > 0 ? ` Filler: the held-out Brown documents, then the first ${trainDocuments} training ones (the prompts are longer than the held-out text).` : ""} Load average ${load0.toFixed(2)} at the start, ${loadavg()[0].toFixed(2)} at the end.`, "",
  "| length | arm | dense prefill tok/s | sparse prefill tok/s | speedup (medians) | keys visited |", "|---:|---|---:|---:|---:|---:|",
  ...rows.map((r) => `| ${r.length} | ${r.arm} | ${fmt(r.dense.samples)} | ${fmt(r.sparse.samples)} | ${r.speedup.toFixed(2)}× | ${Number.isNaN(r.density) ? "not measured" : `${(100 * r.density).toFixed(1)} %`} |`),
  ...(mem0 === undefined ? [] : ["", `Device memory (device-wide, cudaMemGetInfo), maxPrefill ${chunk ?? "whole prompt"}: ${gib(mem0)} GiB in use after the load.`, "",
    "| arm | session at creation GiB | of it KV cache GiB | activations + scratch GiB | growth on the first pass at each length GiB |", "|---|---:|---:|---:|---|",
    ...arms.map((a, i) => {
      const kv = kvBytes[i], sess = memSession[i] ?? NaN;
      return `| ${a} | ${gib(sess)} | ${gib(kv)} | ${gib(sess - kv)} | ${lengths.map((L) => `${L}: ${gib(memGrowth.get(`${a}@${L}`) ?? NaN)}`).join(", ")} |`;
    })]),
].join("\n");
mkdirSync(out, { recursive: true });
writeFileSync(join(out, "sparse-bench.md"), md + "\n");
writeFileSync(join(out, "sparse-bench.json"), JSON.stringify({ model: model.id, backend: model.backend, device: model.device.name, budgets, arms, dca, reps, chunk: chunk ?? null, rows,
  memory: mem0 === undefined ? null : { afterLoad: mem0, sessions: arms.map((a, i) => ({ arm: a, atCreation: memSession[i] ?? null, kvBytes: kvBytes[i], firstPass: Object.fromEntries(lengths.map((L) => [L, memGrowth.get(`${a}@${L}`) ?? null])) })) } }, null, 2) + "\n");
model.close();
console.log(md);
console.log(`\nwritten: ${join(out, "sparse-bench.md")}`);
