// Passkey study (issue 14): retrieval accuracy by prompt length × needle depth, with Dual Chunk Attention off and
// on, on the embedded passkey model (trained at 512 tokens) or any other. Prompts as the fixture README says
// (engine/measure/passkey.ts). Writes DIR/passkey.md (one heat-map table per arm, and a length × arm summary) and
// DIR/passkey.json (every trial).
//
//   npx bun notebooks/passkey.ts                                          # 256..4096, 10 trials, dca off and on
//   npx bun notebooks/passkey.ts --lengths 1024,2048,4096 --trials 50 --arms on --out profiles/passkey/run1
//   npx bun notebooks/passkey.ts --dca-chunk 512 --dca-local 32 --arms on --backend cuda
//   npx bun notebooks/passkey.ts --arms on,on+sparse --sparse-vertical 64 --sparse-slash 64 --sparse-stats
//   npx bun notebooks/passkey.ts --arms on,on+block --sparse-blocks 4 --sparse-local 64 --sparse-sink 64
import { parseArgs } from "node:util";
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { openModel } from "../engine/index.ts";
import { SPARSE_FLAG_SPECS, sparseFromFlags } from "../engine/sparse.ts";
import { PASSKEY_MODEL_DIR, passkeyTable, passkeyTitle, runPasskey, type PasskeyResult } from "../engine/measure/passkey.ts";
import { sparseBudgetText } from "../engine/measure/passkey-schema.ts";
import { cliArgs } from "../engine/notebook/args.ts";

const USAGE = `usage: npx bun notebooks/passkey.ts [model] [options]
  model                      HF dir / GGUF (default: models/tiny-qwen2-passkey)
  --lengths N,N,...          prompt lengths (default 256,512,1024,2048,4096)
  --trials N                 trials per length (default 10);  --seed S (default 0);  --buckets N (default 5)
  --arms off,on              arms to run (default off,on): dca off / on, "+sparse" adds vertical-slash sparse
                             prefill, "+block" block-sparse, with the budgets below (e.g. --arms on,on+sparse,on+block)
  --sparse-vertical N --sparse-slash N --sparse-blocks N --sparse-local N --sparse-sink N --sparse-stats
                             sparse budgets (engine/sparse.ts)
  --dca-chunk N --dca-local N   DCA parameters (default: the model config's, see engine/measure/passkey.ts dcaParams)
  --backend auto|cpu|cuda --threads N
  --out DIR                  default profiles/raw/passkey/<stamp>`;

const { values: o, positionals } = parseArgs({
  args: Bun.argv.slice(2), allowPositionals: true, options: {
    lengths: { type: "string" }, trials: { type: "string" }, seed: { type: "string" }, buckets: { type: "string" }, arms: { type: "string" },
    "dca-chunk": { type: "string" }, "dca-local": { type: "string" }, backend: { type: "string" }, threads: { type: "string" },
    out: { type: "string" }, help: { type: "boolean", short: "h" }, ...SPARSE_FLAG_SPECS,
  },
});
if (o.help) { console.log(USAGE); process.exit(0); }
const { die, backendOpt } = cliArgs(USAGE);
const int = (v: string | undefined, name: string, min: number, dflt?: number): number | undefined => {
  if (v === undefined) return dflt;
  const x = Number(v);
  if (v.trim() === "" || !Number.isInteger(x) || x < min) die(`--${name} expects an integer >= ${min}, got '${v}'`);
  return x;
};
const lengths = (o.lengths ?? "256,512,1024,2048,4096").split(",").map((s) => int(s, "lengths", 16)!);
const trials = int(o.trials, "trials", 1, 10)!;
const seed = int(o.seed, "seed", 0, 0)!;
const buckets = int(o.buckets, "buckets", 1, 5)!;
const arms = (o.arms ?? "off,on").split(",");
for (const a of arms) if (!/^(on|off)(\+sparse|\+block)?$/.test(a)) die(`--arms: '${a}' is not on or off, optionally with +sparse or +block`);
const sparse = sparseFromFlags({ ...o, sparse: "vertical-slash" }, die);
const chunk = int(o["dca-chunk"], "dca-chunk", 2), local = int(o["dca-local"], "dca-local", 0);
const backend = backendOpt(o.backend);
const threads = int(o.threads, "threads", 0);
const out = resolve(o.out ?? join("profiles/raw/passkey", new Date().toISOString().replace(/[-:]/g, "").slice(0, 15)));

mkdirSync(out, { recursive: true });
const model = await openModel(positionals[0] ?? PASSKEY_MODEL_DIR, { backend, threads });
const results: PasskeyResult[] = [];
try {
  for (const arm of arms) {
    console.log(`arm dca ${arm}: ${lengths.length} lengths × ${trials} trials`);
    const r = await runPasskey(model, {
      lengths, trials, seed, buckets, dca: arm.startsWith("on"),
      ...(arm.includes("+") ? { sparse: arm.endsWith("+block") ? "block-sparse" as const : "vertical-slash" as const } : {}),
      sparseOptions: sparse.options,
      dcaOptions: chunk !== undefined || local !== undefined ? { chunk, local } : undefined,
      onTrial: (t, done, total) => { if (t.trial === trials - 1) console.log(`  length ${t.length} done (${done}/${total})`); },
    });
    for (const w of r.warnings) console.log(`  warning: ${w}`);
    results.push(r);
  }
} finally {
  model.close();
}
const pct = (x: number) => `${(100 * x).toFixed(0)} %`;
const md = [
  `# Passkey retrieval — ${results[0]?.model ?? ""}`, "",
  `Command: \`npx bun notebooks/passkey.ts ${Bun.argv.slice(2).join(" ")}\`. Greedy, ${7} tokens, scored on the first 5 digits.`, "",
  `| length | ${results.map((r) => `dca ${r.dca.on ? `on (${r.dca.chunk}/${r.dca.local})` : "off"}${r.sparse ? ` + ${sparseBudgetText(r.sparse)}` : ""}`).join(" | ")} |`,
  `|---:|${results.map(() => "---:").join("|")}|`,
  ...lengths.map((L) => `| ${L} | ${results.map((r) => { const b = r.byLength.find((x) => x.length === L)!; return `${pct(b.accuracy)} (${b.correct}/${b.n})`; }).join(" | ")} |`),
  "", ...results.flatMap((r) => [`## ${passkeyTitle(r)}`, "", passkeyTable(r), ""]),
].join("\n");
writeFileSync(join(out, "passkey.md"), md + "\n");
writeFileSync(join(out, "passkey.json"), JSON.stringify(results, null, 2) + "\n");
console.log(md);
console.log(`\nwritten: ${join(out, "passkey.md")}, ${join(out, "passkey.json")}`);
