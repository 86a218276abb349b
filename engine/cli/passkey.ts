// engine/cli/passkey.ts — `npm run cli -- passkey`: passkey retrieval accuracy by length × needle depth
// (engine/measure/passkey.ts does the work), with Dual Chunk Attention on or off.
import { writeFileSync } from "node:fs";
import { basename, resolve } from "node:path";
import { parseArgs } from "node:util";
import type { BackendChoice } from "../api.ts";
import { openModel } from "../index.ts";
import { SPARSE_FLAGS_HELP, SPARSE_FLAG_SPECS, sparseFromFlags } from "../sparse.ts";
import { FillerStream, PASSKEY_MODEL_DIR, passkeyPromptSet, passkeyTable, passkeyTitle, runPasskey } from "../measure/passkey.ts";

export const PASSKEY_HELP = `  passkey [model]                passkey retrieval accuracy by length x needle depth (heat map table)
                                  (model default: models/tiny-qwen2-passkey, trained at 512 tokens)
      --lengths N[,N...]          prompt lengths in tokens (default 256,512,1024)
      --trials N                  trials per length (default 10)
      --seed S                    prompt seed (default 0)
      --buckets N                 needle-depth buckets (default 5)
      --dca on|off                Dual Chunk Attention (default off)
      --dca-chunk N --dca-local N DCA chunk size and local window (default: the model config's
                                  dual_chunk_attention_config, else chunk = trained length, local = chunk / 8)
${SPARSE_FLAGS_HELP.trimEnd()}
      --backend --threads         as for generate;  --json FILE  write every number and trial as JSON
      --prompt-set FILE           only write the prompts as a prompt set (JSON) for the web Run page's replay
                                  (upload it there, or put it in profiles/prompt-sets/); nothing is run
`;

class PasskeyUsage extends Error {}
const fail = (m: string): never => { throw new PasskeyUsage(m); };

function int(v: unknown, name: string, min: number): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (typeof v !== "string" || v.trim() === "" || !Number.isInteger(x) || x < min) fail(`passkey: --${name} expects an integer >= ${min}, got '${String(v)}'`);
  return x;
}

export async function cmdPasskey(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s), log: (s: string) => void = (s) => process.stderr.write(s)): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv, allowPositionals: true, strict: true, options: {
        model: { type: "string" }, lengths: { type: "string" }, trials: { type: "string" }, seed: { type: "string" },
        buckets: { type: "string" }, dca: { type: "string" }, "dca-chunk": { type: "string" }, "dca-local": { type: "string" },
        backend: { type: "string" }, threads: { type: "string" }, json: { type: "string" }, "prompt-set": { type: "string" },
        ...SPARSE_FLAG_SPECS,
      },
    });
  } catch (e) {
    fail(`passkey: ${(e as Error).message.replace(/\. To specify a positional.*$/s, "")} (see \`npm run cli -- help\`)`);
  }
  const o = parsed!.values;
  if (parsed!.positionals.length > 1) fail(`passkey: one model at most, got ${parsed!.positionals.join(" ")}`);
  const source = (o.model as string | undefined) ?? parsed!.positionals[0] ?? PASSKEY_MODEL_DIR;
  const lengths = ((o.lengths as string | undefined) ?? "256,512,1024").split(",").map((s) => int(s.trim(), "lengths", 16)!);
  const trials = int(o.trials, "trials", 1) ?? 10;
  const seed = int(o.seed, "seed", 0) ?? 0;
  const buckets = int(o.buckets, "buckets", 1) ?? 5;
  if (buckets > 20) fail("passkey: --buckets must be <= 20");
  const dca = (o.dca as string | undefined) ?? "off";
  if (dca !== "on" && dca !== "off") fail(`passkey: --dca must be on or off, got '${dca}'`);
  const chunk = int(o["dca-chunk"], "dca-chunk", 2), local = int(o["dca-local"], "dca-local", 0);
  const sparse = sparseFromFlags(o, (m) => fail(`passkey: ${m}`));
  const threads = int(o.threads, "threads", 0);
  const backend = ((o.backend as string | undefined) ?? "auto") as BackendChoice;
  if (!["auto", "cpu", "cuda"].includes(backend)) fail(`passkey: --backend must be auto, cpu or cuda, got '${backend}'`);
  const m = await openModel(source, { backend, threads });
  try {
    if (o["prompt-set"]) {
      const file = resolve(o["prompt-set"] as string);
      const tok = m.tokenizer;
      const name = basename(file).replace(/\.json$/, "").replace(/[^A-Za-z0-9._-]/g, "-").slice(0, 64) || "passkey";
      writeFileSync(file, JSON.stringify(passkeyPromptSet(tok, new FillerStream(tok), name, lengths, trials, seed)) + "\n");
      log(`prompt set: ${file} (${lengths.length * trials} prompts)\n`);
      return;
    }
    log(`${m.id}: ${m.backend} (${m.device.name})\n`);
    const r = await runPasskey(m, {
      lengths, trials, seed, buckets, dca: dca === "on",
      dcaOptions: chunk !== undefined || local !== undefined ? { chunk, local } : undefined,
      ...(sparse.mode !== "off" ? { sparse: sparse.mode } : {}), sparseOptions: sparse.options,
      onTrial: (t, done, total) => { if (done === total || t.trial === trials - 1) log(`  length ${t.length}: ${done}/${total} trials done\n`); },
    });
    for (const w of r.warnings) log(`warning: ${w}\n`);
    out(`${passkeyTitle(r)}\n\n${passkeyTable(r)}\n`);
    if (o.json) {
      writeFileSync(resolve(o.json as string), JSON.stringify(r, null, 2) + "\n");
      log(`json: ${resolve(o.json as string)}\n`);
    }
  } finally {
    m.close();
  }
}
