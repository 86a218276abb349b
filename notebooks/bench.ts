// notebooks/bench.ts — the benchmark of docs/ARCHITECTURE.md §Measurement on synthetic Qwen2.5-shaped models.
//
//   bun notebooks/bench.ts [--models 0.5b,1.5b,7b] [--types bf16,q8_0,q4_k_m] [--backend cuda|cpu|auto]
//                          [--batches 1,8,16] [--pp 512,4096,32768] [--tg 128] [--reps 3] [--quick]
//                          [--peers peers.jsonl[,more.jsonl]] [--hf-root DIR] [--out DIR]
//
// For each model x weight type: decode tok/s at each batch (greedy, tg tokens after a short prompt), TPOT
// median / p90, % of the bandwidth roofline (weight bytes per step over the measured copy bandwidth of
// profiles/ceilings/<device>.json), prefill tok/s and TTFT at each prompt length, a per-op breakdown of one
// decode step (profiling mode, with its overhead against the fast mode), >= 3 repetitions (median, min–max).
// Writes one profile JSON per model x type and bench.{md,csv,jsonl} into --out (default profiles/bench/), and
// prints a llama-bench-style table last. Peer numbers (notebooks/peers/*.py JSON lines) are merged with --peers.
// --quick: 0.5b bf16, batch 1 and 8, pp512, tg 64.
// --report DIR: run nothing; read the bench profiles (*.json) in DIR, merge --peers and write the tables (a run's
// numbers next to its peers', e.g. `bun notebooks/bench.ts --report profiles/h200/run3 --peers
// profiles/h200/run3/peers.jsonl --out DIR`).
// --hf-root DIR: bf16 runs of model m open DIR/<m> (a random-init HF checkpoint from
// notebooks/peers/make_ref.py --no-ref) instead of writing synthetic:<m>:bf16 as GGUF first (generating 7B random
// weights in TypeScript takes minutes; the GPU does it in seconds). Quantized types always use our GGUF writer.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { openModel, type Model } from "../engine/index.ts";
import { benchTableCsv, benchTableMd, benchPrompt, percentile, runBenchCase, weightLabel } from "../engine/measure/bench-core.ts";
import { ceilingsForDevice, decodeRooflinePct, deviceSlug, dramBandwidth } from "../engine/measure/roofline.ts";
import {
  BenchRow, PROFILE_SCHEMA_VERSION, readProfile, statOf, writeProfile, type Fidelity, type OpColumns,
  type Profile, type ProfilingMode,
} from "../engine/measure/profile.ts";
import { fidelityLines, measureFidelity } from "../engine/measure/fidelity.ts";
import { opName } from "../engine/catalog.ts";

const USAGE = `usage: npm run bench -- [options]        (= bun notebooks/bench.ts)
  --models 0.5b,1.5b,7b       synthetic Qwen2.5 shapes (default all three; --quick: 0.5b)
  --types bf16,q8_0,q4_k_m    weight types (default all three; --quick: bf16)
  --backend cuda|cpu|auto     (default cuda)
  --batches 1,8,16            decode batch sizes (1..16)
  --pp 512,4096,32768         prefill lengths
  --tg 128                    decode tokens per repetition
  --reps 3                    measured repetitions after a warm-up (at least 3)
  --quick                     0.5b bf16, batches 1 and 8, pp512, tg 64
  --peers FILE[,FILE]         peer results (notebooks/peers/*.py JSON lines) merged into the tables
  --hf-root DIR               bf16 runs open DIR/<model> (random-init HF checkpoints) instead of a synthetic GGUF
  --report DIR                run nothing: tables from the bench profiles in DIR (and --peers)
  --out DIR                   profiles and bench.{md,csv,jsonl} (default profiles/bench)
  -h, --help                  this text`;

const root = resolve(import.meta.dir, "..");
const args = process.argv.slice(2);
if (args.includes("--help") || args.includes("-h")) {
  console.log(USAGE);
  process.exit(0);
}
const has = (n: string) => args.includes(n);
const opt = (n: string, d?: string) => {
  const i = args.indexOf(n);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : d;
};
const list = (s: string) => s.split(",").map((x) => x.trim()).filter(Boolean);
const quick = has("--quick");
const models = list(opt("--models", quick ? "0.5b" : "0.5b,1.5b,7b")!);
const types = list(opt("--types", quick ? "bf16" : "bf16,q8_0,q4_k_m")!);
const batches = list(opt("--batches", quick ? "1,8" : "1,8,16")!).map(Number);
const pps = list(opt("--pp", quick ? "512" : "512,4096,32768")!).map(Number).filter((n) => n > 0);
const tg = Number(opt("--tg", quick ? "64" : "128"));
const reps = Math.max(3, Number(opt("--reps", "3")));
const backend = (opt("--backend", "cuda") ?? "cuda") as "cuda" | "cpu" | "auto";
const outDir = resolve(opt("--out", join(root, "profiles", "bench"))!);
const peerFiles = list(opt("--peers", "")!);
const hfRoot = opt("--hf-root");
for (const b of batches) if (!(b >= 1 && b <= 16)) throw new Error(`--batches: ${b} is outside 1..16`);
const reportDir = opt("--report");
const fail = (msg: string): never => {
  console.error(`bench: ${msg}`);
  process.exit(2);
};
if (has("--report") && !reportDir) fail("--report needs a directory of bench profiles");

const log = (s: string) => console.log(`[bench] ${s}`);
mkdirSync(outDir, { recursive: true });
const allRows: BenchRow[] = [];
const summaryLines: string[] = [];

function sumOps(ops: OpColumns, kernels: string[], step: number) {
  const by = new Map<string, { ns: number; bytes: number; flops: number; kernel: Set<string>; calls: number }>();
  let total = 0;
  for (let i = 0; i < ops.step.length; i++) {
    if (ops.step[i] !== step) continue;
    const name = opName(ops.op[i]);
    const e = by.get(name) ?? { ns: 0, bytes: 0, flops: 0, kernel: new Set<string>(), calls: 0 };
    const ns = ops.t_end_ns[i] - ops.t_start_ns[i];
    e.ns += ns; e.bytes += ops.bytes[i]; e.flops += ops.flops[i]; e.calls++;
    e.kernel.add(kernels[ops.kernel[i]] ?? "?");
    by.set(name, e);
    total += ns;
  }
  return { by, total };
}

if (reportDir) {
  const dir = resolve(reportDir);
  if (!existsSync(dir)) fail(`--report: ${dir} does not exist`);
  const files = readdirSync(dir).filter((f) => f.endsWith(".json")).sort();
  for (const f of files) {
    let p: Profile;
    try {
      p = readProfile(join(dir, f));
    } catch (e) {
      log(`--report: skipped ${f} (${(e as Error).message.split("\n")[0]})`);
      continue;
    }
    if (p.kind !== "bench" || !p.bench?.length) continue;
    allRows.push(...p.bench);
    const step = (p.notes ?? []).find((n) => n.startsWith("decode step breakdown"));
    const fast = (p.notes ?? []).find((n) => n.startsWith("fast-mode step") || n.startsWith("profiling fidelity"));
    if (step) summaryLines.push(`### ${p.manifest?.label ?? f}: ${step.replace(/:\n/, "\n\n")}\n\n${fast ?? ""}\n`);
  }
  if (!allRows.length) fail(`--report: no bench profiles in ${dir}`);
  log(`--report: ${allRows.length} rows from ${files.length} files in ${dir}`);
}

for (const m of reportDir ? [] : models) {
  for (const t of types) {
    const hfDir = hfRoot && t === "bf16" ? join(resolve(hfRoot), m) : undefined;
    const source = hfDir && existsSync(join(hfDir, "config.json")) ? hfDir : `synthetic:${m}:${t}`;
    log(`opening ${source} (backend ${backend}) ...`);
    const t0 = performance.now();
    const model = (await openModel(source, { backend })) as Model;
    log(`loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${(model.weightBytes / 1e9).toFixed(2)} GB, ${weightLabel(model)}, ${model.device.name}`);
    const ceilings = ceilingsForDevice(model.device.name, undefined, model.backend);
    const bw = dramBandwidth(ceilings);
    if (!bw) log(`no ceilings for ${model.device.name} (profiles/ceilings/${deviceSlug(model.device.name)}.json): run notebooks/calibrate.ts first for roofline %`);
    const rows: BenchRow[] = [];
    const notes: string[] = [];
    const summary: Profile["summary"] = {};
    let ops: OpColumns | undefined;
    let kernels: string[] = [];
    const profileExtra: Partial<Profile> = {};

    // ---- decode at each batch
    const maxB = Math.max(...batches);
    const dctx = Math.min(model.config.max_position_embeddings, 8 + tg + 16);
    const ds = model.newSession({ maxBatch: maxB, maxContext: dctx, maxPrefill: Math.min(64, dctx) });
    for (const b of batches) {
      const r = runBenchCase(model, ds, { nPrompt: 0, nGen: tg, batch: b }, { reps, onProgress: (s) => log(`${m} ${t} ${s}`) });
      for (const row of r.rows) {
        if (bw && r.decode) row.roofline_pct = decodeRooflinePct(model.weightBytes, r.decode.median, b, bw);
        rows.push(row);
      }
      if (b === 1 && r.decode) {
        summary.decode_tok_s = r.decode.median;
        summary.decode_tokens = tg;
        if (r.tpot) summary.tpot_ms = r.tpot;
      }
    }
    // ---- profiling fidelity (each mode against off, interleaved rounds) + the per-op table of one decode step
    {
      const modes: ProfilingMode[] = model.backend === "cuda" ? ["kernels", "events"] : ["kernels"];
      const prompt = benchPrompt(8, model.config.vocab_size, 7);
      const fr = measureFidelity(ds, {
        modes, rounds: reps, steps: Math.min(32, dctx - 8 - 4), prime: () => { ds.reset(); return ds.prefill(0, prompt); },
      });
      ops = fr.ops;
      kernels = fr.kernels;
      summary.profiling_overhead_pct = fr.fidelity.overhead_pct?.[modes[0]]?.median;
      const lastStep = Math.max(...fr.ops.step);
      const { by, total } = sumOps(fr.ops, fr.kernels, lastStep);
      const lines = ["| op | kernels | calls | time (us) | share | GB/s | % of copy bw |", "|---|---|---:|---:|---:|---:|---:|"];
      const sorted = [...by.entries()].sort((a, b) => b[1].ns - a[1].ns);
      for (const [name, e] of sorted) {
        const gbs = e.bytes / e.ns;
        lines.push(`| ${name} | ${[...e.kernel].slice(0, 4).join(", ")} | ${e.calls} | ${(e.ns / 1e3).toFixed(1)} | ${((100 * e.ns) / total).toFixed(1)}% | ${gbs.toFixed(0)} | ${bw ? ((100 * gbs * 1e9) / bw).toFixed(1) + "%" : "-"} |`);
      }
      lines.push(`| (sum of records) | | | ${(total / 1e3).toFixed(1)} | | | |`);
      const fid = fidelityLines(fr.fidelity, fr.stepMs);
      notes.push(`decode step breakdown (batch 1, profiling ${modes[0]}, step ${lastStep}):\n${lines.join("\n")}`);
      notes.push(`profiling fidelity (${reps} interleaved rounds of ${Math.min(32, dctx - 12)} steps):\n${fid}`);
      summaryLines.push(`### ${m} ${t}: one decode step (profiling ${modes[0]})\n\n${lines.join("\n")}\n\n${fid}\n`);
      (profileExtra as { fidelity?: Fidelity }).fidelity = fr.fidelity;
    }
    ds.close();

    // ---- prefill at each prompt length (one session sized for the longest)
    // (a prompt of max_position_embeddings tokens is valid: positions 0 .. mpe-1; the sampled token is not stored)
    const maxPP = Math.min(Math.max(...pps), model.config.max_position_embeddings);
    const ps = model.newSession({ maxBatch: 1, maxContext: maxPP, maxPrefill: maxPP });
    for (const p of pps) {
      if (p > maxPP) { notes.push(`pp${p} skipped: exceeds max_position_embeddings`); continue; }
      const r = runBenchCase(model, ps, { nPrompt: p, nGen: 0 }, { reps, onProgress: (s) => log(`${m} ${t} ${s}`) });
      for (const row of r.rows) {
        if (r.ttft) row.extra = { ...(row.extra ?? {}), ttft_ms: r.ttft };
        rows.push(row);
      }
      if (p === pps[0] && r.prefill) {
        summary.prefill_tok_s = r.prefill.median;
        summary.prefill_tokens = p;
        summary.ttft_ms = r.ttft?.median;
      }
    }
    ps.close();

    const id = `bench-${m}-${t}-${deviceSlug(model.device.name)}-${new Date().toISOString().replace(/[:.]/g, "-")}`;
    const profile: Profile = {
      schema: "qwen-workbench/profile", version: PROFILE_SCHEMA_VERSION, id, kind: "bench",
      manifest: model.manifest({ command: `bun notebooks/bench.ts ${args.join(" ")}`, label: `${m}:${t}` }),
      summary, kernels, ...(ops ? { ops } : {}), bench: rows, ...profileExtra,
      ...(ceilings ? { ceilings: { ...ceilings } } : {}), notes,
    };
    log(`wrote ${writeProfile(join(outDir, `${id}.json`), profile)}`);
    allRows.push(...rows);
    model.close();
  }
}

// ---- peers
for (const f of peerFiles) {
  if (!existsSync(f)) { log(`peers file ${f} not found, skipped`); continue; }
  for (const line of readFileSync(f, "utf8").split("\n")) {
    if (!line.trim().startsWith("{")) continue;
    try {
      const raw = JSON.parse(line);
      if (raw.tokens_per_s && Array.isArray(raw.tokens_per_s.samples) && !raw.tokens_per_s.median)
        raw.tokens_per_s = statOf(raw.tokens_per_s.samples, "tok/s");
      const r = BenchRow.safeParse(raw);
      if (r.success) allRows.push(r.data);
      else log(`peers ${f}: skipped a line (${r.error.issues[0]?.message})`);
    } catch {
      /* not a JSON line */
    }
  }
}

const md = benchTableMdWithSystem(allRows);
const side = sideBySide(allRows);
writeFileSync(join(outDir, "bench.md"), md + "\n\n" + side + "\n\n" + summaryLines.join("\n") + "\n");
writeFileSync(join(outDir, "bench.csv"), benchTableCsv(allRows) + "\n");
writeFileSync(join(outDir, "bench.jsonl"), allRows.map((r) => JSON.stringify(r)).join("\n") + "\n");
console.log("\n" + summaryLines.join("\n"));
console.log(md);
console.log("\n" + side);

function benchTableMdWithSystem(rows: BenchRow[]): string {
  const head = "| system | model | weights | backend | test | t/s (median) | min–max | reps | % roofline | TPOT med / p90 (ms) |\n|---|---|---|---|---|---:|---:|---:|---:|---:|";
  const lines = rows.map((r) => {
    const tp = (r.extra as { tpot_ms?: { median: number; p90: number } } | undefined)?.tpot_ms;
    return `| ${r.system} | ${r.model} | ${r.weights} | ${r.backend} | ${r.test} | ${r.tokens_per_s.median.toFixed(1)} | ${r.tokens_per_s.min.toFixed(1)}–${r.tokens_per_s.max.toFixed(1)} | ${r.tokens_per_s.samples.length} | ${r.roofline_pct !== undefined ? r.roofline_pct.toFixed(1) : "-"} | ${tp ? `${tp.median.toFixed(3)} / ${tp.p90.toFixed(3)}` : "-"} |`;
  });
  void benchTableMd;
  return [head, ...lines].join("\n");
}

/** The shape a row belongs to ("0.5b" from "0.5b", "synthetic:0.5b:q8_0:s0", "qwen2.5-0.5b-…"), or the model. */
function shapeOf(model: string): string {
  const m = /(?:^|[:\-/])(0\.5b|1\.5b|7b|tiny)(?:$|[:\-/])/i.exec(model);
  return m ? m[1].toLowerCase() : model;
}

/** Decode tok/s of every system side by side, one line per (shape, test): ours per weight type, then the peers. */
export function sideBySide(rows: BenchRow[]): string {
  const decode = rows.filter((r) => r.test.startsWith("tg"));
  const cols: string[] = [];
  const cell = new Map<string, BenchRow>();
  const keys: string[] = [];
  for (const r of decode) {
    // our quantized mixes are labelled by the requested type (q4_k_m), not by the per-tensor type list
    const ty = /:(q8_0|q4_k_m|q4_0|bf16|f16|f32)(?::|$)/i.exec(r.model)?.[1]?.toLowerCase() ?? r.weights;
    const col = r.system === "qwen-workbench" ? `ours ${ty}` : r.system;
    if (!cols.includes(col)) cols.push(col);
    const key = `${shapeOf(r.model)}|${r.test}`;
    if (!keys.includes(key)) keys.push(key);
    cell.set(`${key}|${col}`, r);
  }
  if (!keys.length) return "";
  cols.sort((a, b) => Number(!a.startsWith("ours")) - Number(!b.startsWith("ours")));
  const head = `| model | test | ${cols.join(" | ")} | ours bf16 / best peer |\n|---|---|${cols.map(() => "---:").join("|")}|---:|`;
  const lines = keys.map((key) => {
    const [shape, test] = key.split("|");
    const vals = cols.map((c) => cell.get(`${key}|${c}`));
    const ours = cell.get(`${key}|ours bf16`)?.tokens_per_s.median;
    const peers = cols.filter((c) => !c.startsWith("ours")).map((c) => cell.get(`${key}|${c}`)?.tokens_per_s.median).filter((v): v is number => v !== undefined);
    const best = peers.length ? Math.max(...peers) : undefined;
    const fmt = (r?: BenchRow) => (r ? `${r.tokens_per_s.median.toFixed(1)} (${r.tokens_per_s.min.toFixed(1)}–${r.tokens_per_s.max.toFixed(1)})` : "–");
    return `| ${shape} | ${test} | ${vals.map(fmt).join(" | ")} | ${ours !== undefined && best ? `${(ours / best).toFixed(2)}×` : "–"} |`;
  });
  return `Decode tok/s side by side (median, min–max):\n\n${head}\n${lines.join("\n")}`;
}
