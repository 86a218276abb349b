// Profiling fidelity (issue 16): what each profiling mode costs against profiling off on batch-1 decode, and whether
// its records add up to the wall time, at one or more decode steps per engine call (qw_session_decode_steps: on CUDA
// the queued steps hide the host's launch work, which under CUPTI is most of what kernels mode costs a small model).
// Per steps-per-sync value: interleaved rounds of off and each mode (engine/measure/fidelity.ts, the block the bench
// notebook runs), the overhead per mode (median and min–max over rounds) and the sum check. Writes DIR/fidelity.md
// and DIR/fidelity.json.
//
//   bun notebooks/fidelity.ts --model models/tiny-qwen2-brown --backend cuda --steps-per-sync 1,8
//   bun notebooks/fidelity.ts --model /tmp/qw-ref/0.5b --backend cuda --modes kernels,events --rounds 5
import { parseArgs } from "node:util";
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { openModel, type Model } from "../engine/index.ts";
import { cliArgs } from "../engine/notebook/args.ts";
import { benchPrompt } from "../engine/measure/bench-core.ts";
import { fidelityLines, measureFidelity } from "../engine/measure/fidelity.ts";
import { ProfilingMode, type Fidelity } from "../engine/measure/profile.ts";

const USAGE = `usage: bun notebooks/fidelity.ts [options]
  --model SRC              a model (default: the embedded one)
  --backend auto|cpu|cuda  (default auto)   --threads N
  --modes M[,M...]         profiling modes against off (default kernels, and events on CUDA)
  --steps-per-sync N[,N]   decode steps per engine call, one measurement each (default 1)
  --rounds N               interleaved rounds, >= 3 (default 5)
  --steps N                timed decode steps per arm and round (default 32)
  --out DIR                default profiles/raw/fidelity/<stamp>`;

const { values: o } = parseArgs({
  args: Bun.argv.slice(2), options: {
    model: { type: "string" }, backend: { type: "string" }, threads: { type: "string" }, modes: { type: "string" },
    "steps-per-sync": { type: "string" }, rounds: { type: "string" }, steps: { type: "string" }, out: { type: "string" },
    help: { type: "boolean", short: "h" },
  },
});
if (o.help) { console.log(USAGE); process.exit(0); }
const { die, int, backendOpt, threadsOpt } = cliArgs(USAGE);
const backend = backendOpt(o.backend);
const threads = threadsOpt(o.threads);
const syncs = (o["steps-per-sync"] ?? "1").split(",").map((x) => int(x.trim(), "steps-per-sync", 1, 1));
const rounds = int(o.rounds, "rounds", 5, 3), steps = int(o.steps, "steps", 32, 1);
const out = resolve(o.out ?? join("profiles/raw/fidelity", new Date().toISOString().replace(/[-:]/g, "").slice(0, 15)));

const model = (await openModel(o.model ?? "default", { backend, threads })) as Model;
const modes = (o.modes ?? (model.backend === "cuda" ? "kernels,events" : "kernels")).split(",").map((m) => {
  const r = ProfilingMode.safeParse(m.trim());
  if (!r.success || r.data === "off") die(`--modes: '${m}' is not a profiling mode to compare with off (kernels, events, counters)`);
  return r.data!;
});
const results: { stepsPerSync: number; fidelity: Fidelity; stepMs: Record<string, number[]> }[] = [];
try {
  const s = model.newSession({ maxBatch: 1, maxContext: 8 + 3 + steps + 8 });
  const prompt = benchPrompt(8, model.config.vocab_size, 7);
  for (const sync of syncs) {
    console.error(`steps per sync ${sync}: ${rounds} rounds of off / ${modes.join(" / ")} ...`);
    const fr = measureFidelity(s, { modes, rounds, steps, stepsPerSync: sync, prime: () => { s.reset(); return s.prefill(0, prompt); } });
    results.push({ stepsPerSync: sync, fidelity: fr.fidelity, stepMs: fr.stepMs });
  }
  s.close();
} finally {
  model.close();
}

const md = [
  `# Profiling fidelity: ${model.id} on ${model.device.name} (${model.backend})`,
  "",
  `Batch-1 decode, ${steps} timed steps per arm after 3 untimed ones, ${rounds} rounds with the arms interleaved and rotated; overhead per round = (median step of the mode − median step of off) / median step of off; with N steps per call each step is the call's wall / N.`,
  "",
  ...results.flatMap((r) => [`## ${r.stepsPerSync} step${r.stepsPerSync > 1 ? "s" : ""} per engine call`, "", fidelityLines(r.fidelity, r.stepMs), ""]),
].join("\n");
mkdirSync(out, { recursive: true });
writeFileSync(join(out, "fidelity.md"), md);
writeFileSync(join(out, "fidelity.json"), JSON.stringify({ model: model.id, device: model.device.name, backend: model.backend, rounds, steps, results }, null, 1));
console.log(md);
console.error(`wrote ${join(out, "fidelity.md")} and fidelity.json`);
