// Tokenizer speed (moved out of the test suite: tests assert behaviour, the speed lives here).
//
//   bun notebooks/tokenizer-bench.ts [--reps 3]
//
// Measures, after one warm-up pass, --reps (>= 3) repetitions of: loading the full Qwen tokenizer
// (models/qwen-tokenizer), encoding ~4k tokens of unique pseudo-words with a fresh tokenizer (no word-cache
// hits, the worst case), encoding the tokenizer corpus three times over (realistic text), and decoding. Prints
// the median with min–max of each, the load average and the machine.
import { readFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { loadQwenTokenizer } from "../engine/text/tokenizer.ts";
import { statOf, type Stat } from "../engine/measure/profile.ts";

/** ~`n` space-separated pseudo-words of 2–9 letters (Latin, accented, CJK), deterministic in `seed`. */
export function pseudoWords(n: number, seed: number): string {
  let x = seed;
  const rnd = () => ((x = (x * 1103515245 + 12345) >>> 0) >>> 8) / (1 << 24);
  const letters = "abcdefghijklmnopqrstuvwxyzéü中文";
  const words: string[] = [];
  for (let i = 0; i < n; i++) {
    let w = "";
    for (let k = 2 + Math.floor(rnd() * 8); k > 0; k--) w += letters[Math.floor(rnd() * letters.length)];
    words.push(w);
  }
  return words.join(" ");
}

function main() {
  const args = process.argv.slice(2);
  if (args.includes("--help") || args.includes("-h")) {
    console.log("usage: bun notebooks/tokenizer-bench.ts [--reps N (>= 3, default 3)]");
    return;
  }
  const i = args.indexOf("--reps");
  const reps = Math.max(3, i >= 0 ? Number(args[i + 1]) || 3 : 3);
  const corpus = (JSON.parse(readFileSync(join(import.meta.dir, "../test/fixtures/tokenizer/corpus.json"), "utf8")) as { texts: { text: string }[] }).texts;
  const text = pseudoWords(1100, 12345);
  const text2 = corpus.map((c) => c.text).join("\n").repeat(3);
  const time = (f: () => unknown) => { const t0 = performance.now(); const v = f(); return { ms: performance.now() - t0, v }; };
  const samples: Record<string, number[]> = { load: [], "encode unique words": [], "encode corpus": [], decode: [] };
  let nTok = 0, nTok2 = 0;
  const load0 = loadavg()[0];
  for (let r = 0; r < reps + 1; r++) {
    const load = time(() => loadQwenTokenizer());
    const t = load.v as ReturnType<typeof loadQwenTokenizer>;
    const enc = time(() => t.encode(text));
    const enc2 = time(() => t.encode(text2));
    const ids = enc.v as number[];
    const dec = time(() => t.decode(ids));
    nTok = ids.length; nTok2 = (enc2.v as number[]).length;
    if (r === 0) continue; // warm-up
    samples.load.push(load.ms); samples["encode unique words"].push(enc.ms); samples["encode corpus"].push(enc2.ms); samples.decode.push(dec.ms);
  }
  const f = (s: Stat) => `${s.median.toFixed(1)} ms (${s.min.toFixed(1)}–${s.max.toFixed(1)})`;
  console.log(`tokenizer bench · ${cpus()[0]?.model ?? "?"} × ${cpus().length} · load average ${load0.toFixed(2)} → ${loadavg()[0].toFixed(2)} · median (min–max) of ${reps} after a warm-up`);
  console.log(`unique words: ${nTok} tokens · corpus: ${nTok2} tokens`);
  for (const [k, v] of Object.entries(samples)) console.log(`  ${k.padEnd(20)} ${f(statOf(v, "ms"))}`);
}

if (import.meta.main) main();
