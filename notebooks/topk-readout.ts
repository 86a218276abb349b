// What an EAGLE step pays per logits row to read its proposals (issue 13): the engine's top-k with log-probabilities
// (the head's rows) and the greedy argmax (the verify's rows; engines without EngineSession.argmax read topK(1)),
// over `rows` rows of the embedded target's logits after one prefill. Warm-up + reps repetitions of `reads` reads
// each; prints the median (min–max) µs per row. Compare libraries by running it from each tree (its engine loads
// that tree's library; it imports only what trees since ABI 6 have, so it can be copied into an older one).
//
//   npx bun notebooks/topk-readout.ts [--rows 17 --reps 5 --reads 100 --backend cpu|cuda --threads N]
import { parseArgs } from "node:util";
import { openModel, type Model } from "../engine/index.ts";
import { cliArgs } from "../engine/notebook/args.ts";
import { statOf } from "../engine/measure/profile.ts";

const USAGE = "usage: npx bun notebooks/topk-readout.ts [--rows N (1..32, default 17)] [--reps N (>= 3, default 5)] [--reads N (default 100)] [--backend auto|cpu|cuda] [--threads N]";
const { values: o } = parseArgs({
  args: Bun.argv.slice(2), options: {
    rows: { type: "string" }, reps: { type: "string" }, reads: { type: "string" }, backend: { type: "string" }, threads: { type: "string" },
    help: { type: "boolean", short: "h" },
  },
});
if (o.help) { console.log(USAGE); process.exit(0); }
const { die, int, backendOpt, threadsOpt } = cliArgs(USAGE);
const rows = int(o.rows, "rows", 17), reps = int(o.reps, "reps", 5, 3), reads = int(o.reads, "reads", 100);
if (rows > 32) die("--rows must be <= 32");
const backend = backendOpt(o.backend, "cpu");
const threads = threadsOpt(o.threads);

const target = (await openModel("default", { backend, threads })) as Model;
const s = target.newSession({ maxContext: 64 });
try {
  const ids = target.tokenizer.encode("The jury said it did not find any evidence that the city had been run badly, and it praised the officials for the way they handled the election.").slice(0, rows);
  if (ids.length < rows) die(`the prompt has only ${ids.length} tokens`);
  s.setLogitsMode(2);
  s.prefill(0, ids);
  const arms: [string, () => unknown][] = [["top-4 with log-probabilities", () => s.topK(4)]];
  arms.push(s.argmax ? ["argmax (no softmax pass)", () => s.argmax()] : ["argmax as topK(1) (this library has no argmax)", () => s.topK(1)]);
  const us: number[][] = arms.map(() => []);
  for (let r = 0; r <= reps; r++) {
    arms.forEach(([, f], a) => {
      const t0 = performance.now();
      for (let i = 0; i < reads; i++) f();
      if (r > 0) us[a].push(((performance.now() - t0) * 1000) / (reads * rows));  // repetition 0: warm-up
    });
  }
  console.log(`${target.device.name} (${target.backend}), ${rows} rows × ${target.config.vocab_size} logits, ${reps} repetitions of ${reads} reads after a warm-up`);
  arms.forEach(([name], a) => {
    const st = statOf(us[a], "µs");
    console.log(`  ${name}: ${st.median.toFixed(2)} µs per row (${st.min.toFixed(2)}–${st.max.toFixed(2)})`);
  });
} finally {
  s.setLogitsMode(0);
  s.close();
  target.close();
}
