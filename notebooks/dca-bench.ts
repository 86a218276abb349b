// Dual Chunk Attention cost study (issue 14: "prefill and decode tok/s with dca on vs off at 32k on random 7B
// shapes", goal <= 1.3x the dense time). Per prompt length: one prefill of the prompt, then --tg decode steps after
// it, in a session with dca off and one with dca on (chunk / local as given, else the model config's), one warm-up
// pass per (arm, length), then --reps measured passes interleaved across the two arms (so drift of a shared machine
// hits both alike); median and min–max per cell and the time ratio on / off of the medians. Random tokens: DCA's
// cost does not depend on what the text says (its quality is the passkey harness's business: notebooks/passkey.ts).
//
//   npx bun notebooks/dca-bench.ts                                       # the passkey model, 1024,2048,4096
//   npx bun notebooks/dca-bench.ts /tmp/qw-ref/7b --backend cuda --lengths 8192,32768 --chunk 8192 --local 1024
import { parseArgs } from "node:util";
import { mkdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join, resolve } from "node:path";
import { openModel } from "../engine/index.ts";
import { benchPrompt } from "../engine/measure/bench-core.ts";
import { dcaParams, PASSKEY_MODEL_DIR } from "../engine/measure/passkey.ts";
import { statOf, type Stat } from "../engine/measure/profile.ts";
import { cliArgs } from "../engine/notebook/args.ts";

const USAGE = `usage: npx bun notebooks/dca-bench.ts [MODEL] [options]
  MODEL                   a model directory, .gguf or synthetic:<preset> (default: the passkey model)
  --lengths N,N,...       prompt lengths (default 1024,2048,4096)
  --tg N                  decode steps after each prompt (default 32; 0: prefill only)
  --reps N                measured passes per (arm, length), after one warm-up (default 3, >= 3)
  --chunk N --local N     DCA chunk and local window (default: the model config's, engine/measure/passkey.ts dcaParams)
  --backend auto|cpu|cuda --threads N
  --out DIR               default profiles/raw/dca-bench/<stamp>`;
const { values: o, positionals } = parseArgs({
  args: Bun.argv.slice(2), allowPositionals: true, options: {
    lengths: { type: "string" }, tg: { type: "string" }, reps: { type: "string" }, chunk: { type: "string" },
    local: { type: "string" }, backend: { type: "string" }, threads: { type: "string" }, out: { type: "string" },
    help: { type: "boolean", short: "h" },
  },
});
if (o.help) { console.log(USAGE); process.exit(0); }
const { die, int, backendOpt, threadsOpt } = cliArgs(USAGE);
const lengths = (o.lengths ?? "1024,2048,4096").split(",").map((s) => int(s.trim(), "lengths", 0, 16));
const tg = int(o.tg, "tg", 32, 0), reps = int(o.reps, "reps", 3, 3);
const backend = backendOpt(o.backend);
const threads = threadsOpt(o.threads);
const out = resolve(o.out ?? join("profiles/raw/dca-bench", new Date().toISOString().replace(/[-:]/g, "").slice(0, 15)));

const model = await openModel(positionals[0] ?? PASSKEY_MODEL_DIR, { backend, threads });
const dca = (() => {
  try {
    return dcaParams(model.config, { chunk: o.chunk === undefined ? undefined : int(o.chunk, "chunk", 0, 1), local: o.local === undefined ? undefined : int(o.local, "local", 0, 0) });
  } catch (e) {
    model.close();
    return die((e as Error).message);
  }
})();
const maxLen = Math.max(...lengths);
const arms = ["off", "on"] as const;
const sessions = arms.map((a) => {
  const s = model.newSession({ maxContext: maxLen + tg + 8, dca: { chunk: dca.chunk, local: dca.local } });
  s.setToggle("dca", a);
  s.setSampling(0, { temperature: 0 });
  return s;
});
type Cell = { prefill: number[]; decode: number[] };  // tok/s per measured pass
const cells = new Map<string, Cell>();  // `${arm}@${L}`
const load0 = loadavg()[0];
try {
  for (const L of lengths) {
    const tokens = benchPrompt(L, model.config.vocab_size, 11);
    const pass = (i: number) => {
      const s = sessions[i];
      s.reset(0);
      let t0 = performance.now();
      let tok = s.prefill(0, tokens);
      const prefill = L / ((performance.now() - t0) / 1000);
      t0 = performance.now();
      for (let k = 0; k < tg; k++) tok = s.decode([0], [tok])[0];
      return { prefill, decode: tg ? tg / ((performance.now() - t0) / 1000) : NaN };
    };
    for (let i = 0; i < arms.length; i++) pass(i);  // warm-up
    for (let r = 0; r < reps; r++) {
      const line: string[] = [];
      for (let i = 0; i < arms.length; i++) {
        const k = `${arms[i]}@${L}`, c = cells.get(k) ?? { prefill: [], decode: [] }, v = pass(i);
        c.prefill.push(v.prefill);
        c.decode.push(v.decode);
        cells.set(k, c);
        line.push(`dca ${arms[i]} prefill ${v.prefill.toFixed(0)}${tg ? ` decode ${v.decode.toFixed(1)}` : ""} tok/s`);
      }
      console.error(`length ${L}: round ${r + 1}/${reps}: ${line.join(", ")}`);
    }
  }
} finally {
  for (const s of sessions) s.close();
}
const st = (xs: number[]): Stat => statOf(xs, "tok/s");
const f = (s: Stat, d = 0) => `${s.median.toFixed(d)} (${s.min.toFixed(d)}–${s.max.toFixed(d)})`;
const rows = lengths.map((L) => {
  const off = cells.get(`off@${L}`)!, on = cells.get(`on@${L}`)!;
  const r = { length: L, prefillOff: st(off.prefill), prefillOn: st(on.prefill), decodeOff: tg ? st(off.decode) : undefined, decodeOn: tg ? st(on.decode) : undefined };
  return { ...r, prefillTimeRatio: r.prefillOff.median / r.prefillOn.median, decodeTimeRatio: r.decodeOff && r.decodeOn ? r.decodeOff.median / r.decodeOn.median : undefined };
});
const md = [
  `# DCA cost — ${model.id} (${model.backend}, ${model.device.name})`, "",
  `Command: \`npx bun notebooks/dca-bench.ts ${Bun.argv.slice(2).join(" ")}\`. DCA chunk ${dca.chunk}, local ${dca.local} (${dca.source}); ` +
  `${reps} measured passes per cell after one warm-up, interleaved across the arms; median (min–max); random tokens; ` +
  `load average ${load0.toFixed(2)} at the start, ${loadavg()[0].toFixed(2)} at the end. "× time" = dca on / dca off (goal ≤ 1.3×).`, "",
  `| length | prefill tok/s, dca off | prefill tok/s, dca on | × time |${tg ? ` decode tok/s (tg${tg}), off | decode, on | × time |` : ""}`,
  `|---:|---:|---:|---:|${tg ? "---:|---:|---:|" : ""}`,
  ...rows.map((r) => `| ${r.length} | ${f(r.prefillOff)} | ${f(r.prefillOn)} | ${r.prefillTimeRatio.toFixed(2)}× |` +
    (r.decodeOff && r.decodeOn ? ` ${f(r.decodeOff, 1)} | ${f(r.decodeOn, 1)} | ${r.decodeTimeRatio!.toFixed(2)}× |` : "")),
].join("\n");
mkdirSync(out, { recursive: true });
writeFileSync(join(out, "dca-bench.md"), md + "\n");
writeFileSync(join(out, "dca-bench.json"), JSON.stringify({ model: model.id, backend: model.backend, device: model.device.name, dca, tg, reps, rows }, null, 2) + "\n");
model.close();
console.log(md);
console.error(`\nwritten: ${join(out, "dca-bench.md")}`);
