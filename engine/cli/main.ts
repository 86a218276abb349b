#!/usr/bin/env bun
// engine/cli/main.ts — the command line of qwen-workbench (`npm run cli -- <command>`):
//   generate, synth, convert, inspect, bench, perplexity, passkey, help. With no arguments on a terminal it starts an interactive generate.
// User errors (bad flags, missing files, bad values) print one clear line and exit 1; no stack traces
// unless QW_DEBUG=1.
import { parseArgs } from "node:util";
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { REPO_ROOT } from "../constants.ts";
import { createInterface } from "node:readline";
import type { BackendChoice, EngineModel, EngineSession, GenerateEvent, OpenOptions, Progress } from "../api.ts";
import { benchPrompt, benchTableCsv, benchTableMd, percentile, runBenchCase, weightLabel } from "../measure/bench-core.ts";
import { parseTpList, shareLabel, tpDegreesOf } from "../measure/tp-scaling.ts";
import { profiledCommShare } from "../measure/tp-run.ts";
import { parallelValues } from "../formats/parallel.ts";
import { fidelityLines, measureFidelity } from "../measure/fidelity.ts";
import { ggmlTypeName } from "../formats/gguf.ts";
import { openModel, parseSyntheticSource, SYNTHETIC_DIR, type Model } from "../index.ts";
import { removeOwnTempFiles } from "../io/tempfiles.ts";
import { openModelSource } from "../formats/modelfile.ts";
import {
  PROFILE_SCHEMA_VERSION, writeProfile, type BenchRow, type Fidelity, type Profile, type ProfilingMode,
} from "../measure/profile.ts";
import { SessionError } from "../session.ts";
import {
  isPreset, paramCount, planType, PRESET_NAMES, synthSpec, SYNTH_TYPES, tensorList, writeSyntheticGguf, writeSyntheticHf,
  type SynthType,
} from "../synth/synthetic.ts";
import { parseToggleArg, validateToggleSettings } from "../toggles.ts";
import { QwenError } from "../ffi.ts";
import { ceilingsForDevice, decodeRooflinePct, dramBandwidth, rooflinePoints } from "../measure/roofline.ts";
import { cmdPerplexity, PERPLEXITY_HELP } from "./perplexity.ts";
import { cmdPasskey, PASSKEY_HELP } from "./passkey.ts";
import { convertModel, CONVERT_SCHEMES } from "../formats/convert.ts";
import type { QuantScheme } from "../formats/quant.ts";
import { parseWeightsArg, type WeightsOption } from "../formats/requant.ts";
import { openDraft, parseSpecArgs, SPEC_HELP_BENCH, SPEC_HELP_GENERATE, SPEC_OPTIONS } from "../spec/cli.ts";
import { specHost, speculativeGenerate, type SpecDoneEvent } from "../spec/draft.ts";
import { brownPromptSet, runSpecBench, specBenchRows } from "../spec/bench.ts";
import { summarizeSpec } from "../spec/stats.ts";
import { openEagleHead } from "../spec/eagle-head.ts";
import { eagleGenerate } from "../spec/eagle.ts";

/** An error whose message is the whole story (bad input): printed without a stack. */
class UsageError extends Error {}

const HELP = `qwen-workbench CLI — Qwen2/Qwen2.5 inference through libqwen (CPU or CUDA)

usage: npm run cli -- <command> [options]

commands
  generate [model] [prompt...]   stream a continuation (model: default | file.gguf | HF dir | synthetic:<preset>[:type])
      --prompt TEXT               the prompt (or give it as trailing words)
      --chat                      wrap the prompt as a user message in the model's chat template
      --backend auto|cpu|cuda     (default auto: CUDA when available)
      --threads N                 CPU threads (0 = all cores)
      --temperature T --top-k K --top-p P --seed S   sampling (default greedy)
      --max-tokens N              tokens to generate (default 64)
      --steps-per-sync N          decode steps per engine call (default 1); N > 1: the same tokens, the host's
                                  turnaround between steps hidden (on CUDA the tokens stay on the GPU)
      --max-context N             session context (default min(4096, model max))
      --toggle id=value,...       engine toggles (per-layer values as v0/v1/...)
      --weights F[,L=F...]        requantize the 7 projections per layer at load: as-loaded | bf16 | q8 | q4,
                                  then per-layer overrides (e.g. q4,0=bf16,27=bf16); embeddings stay; the
                                  lm_head too unless output=F names its format (e.g. q4,output=q8; refused on
                                  a tied model, whose lm_head is the embedding)
      --tp N                      tensor parallelism over N ranks at load (1 | 2 | 4 | 8; model option parallel;
                                  CPU: an emulation of the ranks, CUDA: N devices, compile-checked only)
      --profile out.json          record op timings and write a profile (docs/ARCHITECTURE.md §Measurement)
      --profiling MODE            with --profile: the profiling mode (the library's names: off | events | kernels |
                                  counters; default: kernels, events where CUPTI is missing). counters: measured
                                  DRAM bytes, L2 hit rate, SM / tensor throughput per op (CUDA + CUPTI only)
${SPEC_HELP_GENERATE}  synth <preset>                 write a synthetic model (presets: ${PRESET_NAMES.join(", ")})
      --format gguf|hf            (default gguf)
      --type ${SYNTH_TYPES.join("|")}   (default bf16; tiny: f32)
      --seed N                    (default 0)
      --out PATH                  (default models/synthetic/<name>.gguf or <name>/)
                                  env QW_SYNTH_WORKERS=N: encoder workers (default min(cores - 1, 12); 1 = in-process)
  convert <model> --type T --out FILE.gguf   a model (HF dir, GGUF, default) as a GGUF of weight type T
                                  (${CONVERT_SCHEMES.join(", ")}) with its tokenizer embedded
  inspect <model>                print config, metadata and the tensor table of a GGUF file or HF dir (or a preset)
  bench [model]                  prefill and decode tok/s, median and min–max over repetitions
      --pp N[,N...]               prompt lengths (default 128)
      --tg N[,N...]               tokens generated (default 32)
      --batch N[,N...]            decode batch sizes (default 1)
      -d, --depth N[,N...]        KV depth: tokens prefilled (untimed) before each pp / tg test, as llama-bench -d
                                  (default 0; e.g. -d 4096,16384,32768 --pp 0 --tg 128: "tg128 b1 @ d4096" ...)
      --max-context N             the session's max context (default: what the tests need; random-weight
                                  synthetic shapes accept any length, RoPE has no trained limit there)
      --reps N                    measured repetitions (default 3, minimum 3), one warm-up excluded
      --retries N                 re-run a sample while other processes use > --max-contention % CPU (default 3, 10 %)
      --steps-per-sync N[,N...]   decode steps per engine call (default 1: one synchronization per token, as
                                  llama-bench); N > 1 queues N steps with the tokens kept on the GPU (rows "tg128 b1 s8")
      --backend --threads --toggle --weights   as for generate
      --tp N[,N...]               tensor parallelism (1 | 2 | 4 | 8), one load per value and the same tests on each:
                                  rows say "cpu tp2" / "cuda tp4"; at tp > 1 a profiled pass after the timed ones gives
                                  the all-reduce share of a decode step per rank when the backend keeps per-rank
                                  records (the CPU emulation runs its ranks one after another: its speed means nothing)
      --out profile.json          write a bench profile;  --format md|csv|json|jsonl (default md)
${SPEC_HELP_BENCH}${PERPLEXITY_HELP}${PASSKEY_HELP}  help                           this text

examples
  npm run cli -- generate --prompt "The jury said"
  npm run cli -- synth 0.5b --type q8_0
  npm run cli -- bench synthetic:0.5b:f16 --threads 2 --pp 64 --tg 16
`;

function fail(msg: string): never {
  throw new UsageError(msg);
}

function num(v: string | undefined, name: string, opts: { int?: boolean; min?: number; max?: number } = {}): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (v.trim() === "" || !Number.isFinite(x)) fail(`--${name} expects a number, got '${v}'`);
  if (opts.int && !Number.isInteger(x)) fail(`--${name} expects an integer, got '${v}'`);
  if (opts.min !== undefined && x < opts.min) fail(`--${name} must be >= ${opts.min}, got ${v}`);
  if (opts.max !== undefined && x > opts.max) fail(`--${name} must be <= ${opts.max}, got ${v}`);
  return x;
}
function numList(v: string | undefined, name: string, dflt: number[]): number[] {
  if (v === undefined) return dflt;
  return v.split(",").map((s) => num(s, name, { int: true, min: 1 })!);
}
function backendOf(v: string | undefined): BackendChoice {
  if (v === undefined) return "auto";
  if (v !== "auto" && v !== "cpu" && v !== "cuda") fail(`--backend must be auto, cpu or cuda, got '${v}'`);
  return v;
}

function parse(argv: string[], options: Record<string, { type: "string" | "boolean"; short?: string }>) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    fail(`${(e as Error).message.replace(/\. To specify a positional.*$/s, "")} (see \`npm run cli -- help\`)`);
  }
}

/** Whether a positional looks like a model rather than prompt text. */
function looksLikeModel(s: string): boolean {
  if (s === "default" || s.startsWith("synthetic:") || isPreset(s.split(":")[0])) return true;
  if (s.endsWith(".gguf") || s.includes("/")) return true;
  return existsSync(s) && (statSync(s).isDirectory() || s.endsWith(".gguf"));
}

function progressPrinter(label: string): (p: Progress) => void {
  const tty = process.stderr.isTTY;
  let lastPct = -1, lastStage = "", lastT = 0;
  return (p) => {
    const pct = p.total > 0 ? Math.floor((100 * p.done) / p.total) : 0;
    if (tty) {
      process.stderr.write(`\r\x1b[K${label} ${p.stage} ${p.done}/${p.total} (${pct}%)${p.message ? " " + p.message : ""}`);
      if (p.done === p.total && p.stage === "finalize") process.stderr.write("\n");
      return;
    }
    // Logs (no TTY): a line per stage change, every 10 %, and at least every 10 s of a long step.
    const now = performance.now();
    if (p.stage !== lastStage || pct >= lastPct + 10 || (p.done === p.total && pct !== lastPct) || now - lastT > 10_000) {
      process.stderr.write(`${label} ${p.stage} ${p.done}/${p.total} (${pct}%)${p.message ? " " + p.message : ""}\n`);
      lastPct = pct;
      lastStage = p.stage;
      lastT = now;
    }
  };
}

function weightsOf(v: string | undefined): WeightsOption {
  if (v === undefined) return {};
  try {
    return parseWeightsArg(v);
  } catch (e) {
    fail((e as Error).message);
  }
}

async function open(model: string, backend: BackendChoice, threads: number | undefined, weights: WeightsOption = {}, tp?: string): Promise<Model> {
  const t0 = performance.now();
  const parallel = tp === undefined ? undefined : (`tp${tp}` as OpenOptions["parallel"]);  // checked against the registry by openModel
  const m = (await openModel(model, { backend, threads, ...weights, parallel, onProgress: progressPrinter("loading") })) as Model;
  process.stderr.write(`${m.id}: ${m.backend} (${m.device.name}${m.device.threads ? `, ${m.device.threads} threads` : ""}), ` +
    `${(m.weightBytes / 1e6).toFixed(1)} MB weights [${weightLabel(m)}], loaded in ${((performance.now() - t0) / 1000).toFixed(2)} s\n`);
  for (const w of m.warnings) process.stderr.write(`warning: ${w}\n`);
  return m;
}

function applyToggles(m: Model, s: { setToggle(id: string, v: string, layer?: number): void }, arg: string | undefined): void {
  if (!arg) return;
  const settings = validateToggleSettings(m.toggleRegistry(), parseToggleArg(arg), { backend: m.backend, nLayers: m.config.num_hidden_layers });
  for (const [id, v] of Object.entries(settings)) {
    if (Array.isArray(v)) v.forEach((x, L) => s.setToggle(id, x, L));
    else s.setToggle(id, v, -1);
  }
}

// ------------------------------------------------------------------------------------------------
async function cmdGenerate(argv: string[]): Promise<void> {
  const { values: o, positionals } = parse(argv, {
    model: { type: "string" }, prompt: { type: "string", short: "p" }, chat: { type: "boolean" }, backend: { type: "string" },
    threads: { type: "string" }, temperature: { type: "string" }, "top-k": { type: "string" }, "top-p": { type: "string" },
    seed: { type: "string" }, "max-tokens": { type: "string", short: "n" }, "max-context": { type: "string" },
    toggle: { type: "string" }, profile: { type: "string" }, profiling: { type: "string" }, weights: { type: "string" }, tp: { type: "string" }, ...SPEC_OPTIONS,
    "steps-per-sync": { type: "string" },
  });
  if (o.profiling !== undefined && !o.profile) fail("generate: --profiling needs --profile out.json (where the records go)");
  let model = o.model as string | undefined;
  const pos = [...positionals];
  if (!model && pos.length && looksLikeModel(pos[0])) model = pos.shift();
  const prompt = (o.prompt as string | undefined) ?? (pos.length ? pos.join(" ") : undefined);
  if (prompt === undefined) fail("generate: give a prompt (--prompt TEXT or trailing words)");
  const temperature = num(o.temperature as string, "temperature", { min: 0, max: 100 }) ?? 0;
  const topK = num(o["top-k"] as string, "top-k", { int: true, min: 0 }) ?? 0;
  const topP = num(o["top-p"] as string, "top-p", { min: Number.MIN_VALUE, max: 1 }) ?? 1;
  const seed = num(o.seed as string, "seed", { int: true, min: 0 }) ?? 0;
  const maxTokens = num(o["max-tokens"] as string, "max-tokens", { int: true, min: 1 }) ?? 64;
  const stepsPerSync = num(o["steps-per-sync"] as string, "steps-per-sync", { int: true, min: 1, max: 4096 }) ?? 1;
  const maxContext = num(o["max-context"] as string, "max-context", { int: true, min: 1 });
  const threads = num(o.threads as string, "threads", { int: true, min: 0 });
  const spec = (() => { try { return parseSpecArgs(o, [4]); } catch (e) { fail((e as Error).message); } })();
  if (spec.ks.length > 1) fail("generate: --draft-k takes one value");
  const m = await open(model ?? "default", backendOf(o.backend as string), threads, weightsOf(o.weights as string | undefined), o.tp as string | undefined);
  const hm = spec.eagle ? await openEagleHead(spec.eagle, m) : undefined;
  const dm = !hm && spec.draft ? await openDraft(m, spec.draft, threads) : undefined;
  try {
    const s = m.newSession({ maxContext });
    applyToggles(m, s, o.toggle as string | undefined);
    if (hm) s.setToggle("speculative", "eagle");
    else if (dm) s.setToggle("speculative", "draft");
    else if (s.toggles().speculative !== "off") fail(`generate: speculative=${s.toggles().speculative} needs ${s.toggles().speculative === "eagle" ? "--eagle DIR" : "--draft PATH"}`);
    const ds = dm?.newSession({ maxContext: s.maxContext });
    const hs = hm?.newSession({ maxContext: s.maxContext });
    const profile = o.profile as string | undefined;
    if (profile) setProfilingMode(m, s, o.profiling as string | undefined);
    const t0 = performance.now();
    const tokens: Profile["tokens"] = [];
    let done: Extract<GenerateEvent, { type: "done" }> | undefined;
    let promptTokens = 0;
    if (!o.chat) process.stdout.write(prompt);
    const gopts = { ...(o.chat ? { messages: [{ role: "user", content: prompt }] } : { prompt }), maxTokens, temperature, topK, topP, seed };
    if (stepsPerSync > 1 && (hs || ds)) fail("generate: --steps-per-sync applies to plain decoding, not with --draft or --eagle");
    const gen = hs && spec.tree ? eagleGenerate(s, hs, specHost(m), { ...gopts, tree: spec.tree })
      : ds && dm ? speculativeGenerate(s, ds, specHost(m), { ...gopts, k: spec.ks[0] }) : s.generate({ ...gopts, stepsPerSync });
    for await (const ev of gen) {
      if (ev.type === "prefill") promptTokens = ev.promptTokens;
      else if (ev.type === "token") {
        process.stdout.write(ev.text);
        tokens.push({ index: ev.index, token: ev.token, text: ev.text, t_ms: performance.now() - t0, phase: ev.phase });
      } else done = ev;
    }
    process.stdout.write("\n");
    if (!done) return;
    const specSummary = (dm || hm) && "speculative" in done
      ? summarizeSpec((done as SpecDoneEvent).speculative, spec.eagle ?? spec.draft ?? "", true, hm ? spec.tree : undefined) : undefined;
    if (specSummary) {
      const arm = specSummary.tree ? `eagle depth=${specSummary.tree.depth} topk=${specSummary.tree.top_k} budget=${specSummary.tree.budget}` : `draft k=${specSummary.k}`;
      process.stderr.write(`[speculative ${arm}: ${specSummary.steps} verify steps, ${specSummary.tokens_per_step.toFixed(2)} tokens/step, ` +
        `acceptance ${(100 * specSummary.acceptance_rate).toFixed(1)} % (by position ${specSummary.acceptance_by_position.map((x) => (100 * x).toFixed(0)).join("/")} %), ` +
        `draft ${specSummary.draft_ms_per_step.median.toFixed(2)} ms vs verify ${specSummary.verify_ms_per_step.median.toFixed(2)} ms per step (median)]\n`);
    }
    const tp = [...done.tpotMs].sort((a, b) => a - b);
    process.stderr.write(`[${promptTokens} prompt tokens, ${done.tokens.length} generated, stop: ${done.reason}] ` +
      `TTFT ${done.ttftMs.toFixed(1)} ms, prefill ${done.prefillTokS.toFixed(1)} tok/s, decode ${done.decodeTokS.toFixed(1)} tok/s` +
      (tp.length ? `, TPOT median ${percentile(tp, 50).toFixed(2)} ms p90 ${percentile(tp, 90).toFixed(2)} ms` : "") + "\n");
    if (profile) {
      const rec = s.takeRecords();
      const prof: Profile = {
        schema: "qwen-workbench/profile", version: PROFILE_SCHEMA_VERSION, id: profileId(profile), kind: "run",
        manifest: m.manifest({
          toggles: s.toggles(), command: `npm run cli -- generate ${argv.join(" ")}`,
          prompts: [{ text: prompt, tokens: promptTokens, seed }], sampling: { temperature, top_k: topK, top_p: topP, seed },
        }),
        summary: {
          prefill_tokens: promptTokens, decode_tokens: done.tpotMs.length, ttft_ms: done.ttftMs,
          ...(tp.length ? { tpot_ms: { median: percentile(tp, 50), p90: percentile(tp, 90), min: tp[0], max: tp[tp.length - 1] } } : {}),
          prefill_tok_s: done.prefillTokS, decode_tok_s: done.decodeTokS, records_dropped: rec.dropped, profiling_mode: s.profilingMode,
          ...(specSummary ? { speculative: specSummary } : {}),
        },
        kernels: rec.kernels, ops: rec.ops, ...(rec.countersMeta ? { counters_meta: rec.countersMeta } : {}), tokens, output_text: done.text,
        notes: ["timings recorded with profiling on (op records per op)", `profiling mode: ${s.profilingMode}`,
          ...(rec.countersMeta?.unavailable ?? [])],
      };
      writeProfile(resolve(profile), prof);
      process.stderr.write(`profile: ${resolve(profile)} (${rec.ops.op.length} op records)\n`);
      const pts = rooflinePoints(prof, "op").filter((p) => p.phase === "decode").sort((a, b) => b.seconds - a.seconds);
      const tot = pts.reduce((a, p) => a + p.seconds, 0);
      if (tot > 0) {
        process.stderr.write("decode time by op (all layers, mean per step):\n");
        for (const p of pts.slice(0, 8)) {
          const measured = p.measuredBytes === undefined ? "" : `  measured ${(p.measuredBytes / 1e6).toFixed(3)} MB vs modelled ${(p.bytes / 1e6).toFixed(3)} MB` +
            (p.measuredBytesPerS !== undefined ? ` (${(p.measuredBytesPerS / 1e9).toFixed(1)} GB/s)` : "") + (p.l2HitPct !== undefined ? `, L2 hit ${p.l2HitPct.toFixed(1)} %` : "");
          process.stderr.write(`  ${(p.op ?? "").padEnd(11)} ${(100 * p.seconds / tot).toFixed(1).padStart(5)}%  ${(p.seconds * 1e3).toFixed(3).padStart(8)} ms  ${(p.bytesPerS / 1e9).toFixed(1).padStart(7)} GB/s  ${(p.flopPerS / 1e9).toFixed(1).padStart(7)} GFLOP/s  ${p.kernels.join(",")}${measured}\n`);
        }
      }
    }
    s.close();
  } finally {
    hm?.close();
    dm?.close();
    m.close();
  }
}

// --profiling MODE (names from the library's catalog); absent: the low-overhead mode. A mode the backend refuses
// (counters without CUDA + CUPTI, kernels at tp > 1) is an error carrying the engine's reason.
function setProfilingMode(m: EngineModel, s: EngineSession, mode: string | undefined): void {
  if (mode === undefined) return s.setProfiling(true);
  const modes = m.profilingModes();
  if (!modes.includes(mode)) fail(`--profiling ${JSON.stringify(mode)}: not one of ${modes.join(", ")}`);
  try {
    s.setProfiling(mode as ProfilingMode);
  } catch (e) {
    fail(`--profiling ${mode}: ${(e as Error).message}`);
  }
}

function profileId(path: string): string {
  return (path.split("/").pop() ?? "profile").replace(/\.json$/, "");
}

// ------------------------------------------------------------------------------------------------
async function cmdSynth(argv: string[]): Promise<void> {
  const { values: o, positionals } = parse(argv, {
    format: { type: "string" }, type: { type: "string" }, seed: { type: "string" }, out: { type: "string" }, preset: { type: "string" },
  });
  const preset = (o.preset as string | undefined) ?? positionals[0];
  if (!preset) fail(`synth: give a preset (${PRESET_NAMES.join(", ")})`);
  if (!isPreset(preset)) fail(`synth: unknown preset '${preset}'; presets: ${PRESET_NAMES.join(", ")}`);
  const format = (o.format as string | undefined) ?? "gguf";
  if (format !== "gguf" && format !== "hf") fail(`synth: --format must be gguf or hf, got '${format}'`);
  const tRaw = ((o.type as string | undefined) ?? (preset === "tiny" ? "f32" : "bf16")).toLowerCase();
  const type = (tRaw === "q4_k" ? "q4_k_m" : tRaw) as SynthType;
  if (!(SYNTH_TYPES as readonly string[]).includes(type)) fail(`synth: --type must be one of ${SYNTH_TYPES.join(", ")}, got '${tRaw}'`);
  if (format === "hf" && !["f32", "f16", "bf16"].includes(type)) fail(`synth: the HF format holds float weights only (f32, f16, bf16); use --format gguf for ${type}`);
  const seed = num(o.seed as string, "seed", { int: true, min: 0, max: 2 ** 32 - 1 }) ?? 0;
  const spec = synthSpec(preset, { seed });
  const name = `qwen2.5-${preset}-synthetic-${type}-s${seed}`;
  const out = resolve((o.out as string | undefined) ?? join(SYNTHETIC_DIR, format === "gguf" ? `${name}.gguf` : name));
  process.stderr.write(`synth ${preset} (${(paramCount(spec.config) / 1e6).toFixed(1)} M params) as ${format} ${type} -> ${out}\n`);
  // An interrupted write leaves no half file behind: the writers stream into <name>.tmp-<pid>-<time> files.
  const cleanup = (sig: string) => {
    removeOwnTempFiles([dirname(out), out]);
    process.stderr.write(`\nsynth interrupted (${sig}); partial files removed\n`);
    process.exit(130);
  };
  process.once("SIGINT", () => cleanup("SIGINT"));
  process.once("SIGTERM", () => cleanup("SIGTERM"));
  const t0 = performance.now();
  const r = format === "gguf"
    ? await writeSyntheticGguf(spec, type, out, { onProgress: progressPrinter("synth") })
    : await writeSyntheticHf(spec, type, out, { onProgress: progressPrinter("synth") });
  if (process.stderr.isTTY) process.stderr.write("\n");
  process.stderr.write(`wrote ${(r.bytes / 1e6).toFixed(1)} MB in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  process.stdout.write(out + "\n");
}

// ------------------------------------------------------------------------------------------------
async function cmdConvert(argv: string[]): Promise<void> {
  const { values: o, positionals } = parse(argv, { type: { type: "string" }, out: { type: "string" } });
  const src = positionals[0];
  if (!src) fail("convert: give a model (an HF directory, a .gguf file or 'default')");
  const type = ((o.type as string | undefined) ?? "").toLowerCase() as QuantScheme;
  if (!CONVERT_SCHEMES.includes(type)) fail(`convert: --type must be one of ${CONVERT_SCHEMES.join(", ")}`);
  if (!o.out) fail("convert: give --out FILE.gguf");
  if (src !== "default" && !existsSync(src)) fail(`convert: '${src}' does not exist`);
  const t0 = performance.now();
  const r = await convertModel(src, o.out as string, type);
  process.stderr.write(`wrote ${(r.bytes / 1e6).toFixed(1)} MB (${[...new Set(Object.values(r.types))].join(", ")}) in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  process.stdout.write(r.path + "\n");
}

// ------------------------------------------------------------------------------------------------
function fmtBytes(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : n >= 1e6 ? `${(n / 1e6).toFixed(2)} MB` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} kB` : `${n} B`;
}

function cmdInspect(argv: string[]): void {
  const { values: o, positionals } = parse(argv, { json: { type: "boolean" } });
  const src = positionals[0];
  if (!src) fail("inspect: give a model (.gguf file, HF directory, 'default' or a preset)");
  const syn = !existsSync(src) && src !== "default" ? parseSyntheticSource(src) : undefined;
  if (syn) {
    const spec = synthSpec(syn.preset, { seed: syn.seed });
    const rows = tensorList(spec.config).map((t) => ({ name: t.name, type: ggmlTypeName(planType(syn.type, t, spec.config)), ne: t.ne }));
    if (o.json) return void process.stdout.write(JSON.stringify({ preset: syn, config: spec.config, tensors: rows }, null, 2) + "\n");
    process.stdout.write(`synthetic preset ${syn.preset} (${syn.type}, seed ${syn.seed}), ${(paramCount(spec.config) / 1e6).toFixed(1)} M params\n`);
    process.stdout.write(`config ${JSON.stringify(spec.config)}\n\n| tensor | type | ne |\n|---|---|---|\n`);
    for (const r of rows) process.stdout.write(`| ${r.name} | ${r.type} | [${r.ne.join(", ")}] |\n`);
    return;
  }
  const path = src === "default" ? join(REPO_ROOT, "models", "tiny-qwen2-brown") : resolve(src);
  if (!existsSync(path)) fail(`inspect: '${src}' does not exist`);
  const m = openModelSource(path);
  if (o.json) {
    process.stdout.write(JSON.stringify({ format: m.format, path: m.path, config: m.config, metadata: m.metadata, warnings: m.warnings,
      weight_bytes: m.weightBytes, weight_types: m.weightTypes,
      tensors: m.tensors.map((t) => ({ name: t.name, source: t.sourceName, type: ggmlTypeName(t.ggmlType), ne: t.ne, bytes: t.nbytes })) }, null, 2) + "\n");
    return;
  }
  process.stdout.write(`${m.format.toUpperCase()} ${m.path}\n`);
  process.stdout.write(`weights ${fmtBytes(m.weightBytes)} in ${m.tensors.length} tensors: ${Object.entries(m.weightTypes).map(([k, v]) => `${k}×${v}`).join(", ")}\n`);
  process.stdout.write(`config ${JSON.stringify(m.config)}\n`);
  for (const w of m.warnings) process.stdout.write(`warning: ${w}\n`);
  process.stdout.write("\nmetadata\n");
  const meta = m.metadata;
  for (const [k, v] of Object.entries(meta)) {
    let s = JSON.stringify(v);
    if (s && s.length > 120) s = s.slice(0, 117) + "...";
    process.stdout.write(`  ${k} = ${s}\n`);
  }
  process.stdout.write("\n| tensor | type | ne | bytes |\n|---|---|---|---:|\n");
  for (const t of m.tensors) process.stdout.write(`| ${t.name} | ${ggmlTypeName(t.ggmlType)} | [${t.ne.join(", ")}] | ${fmtBytes(t.nbytes)} |\n`);
}

// ------------------------------------------------------------------------------------------------
/** RssAnon / RssFile of this process from /proc/self/status (Linux), in bytes; zeros elsewhere. */
function rssSplit(): { anon: number; file: number } {
  try {
    const st = readFileSync("/proc/self/status", "utf8");
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(st)?.[1] ?? 0) * 1024;
    return { anon: kb("RssAnon"), file: kb("RssFile") };
  } catch {
    return { anon: 0, file: 0 };
  }
}

/**
 * Resident memory of a loaded model next to its file size (weights stay in their 8/4-bit layouts). RSS growth
 * is split into anonymous memory (the engine's native copy, JS heap) and file-backed pages (the GGUF mmap the
 * loader reads from: clean pages the kernel can drop).
 */
function benchMemory(m: { path: string; weightBytes: number; nativeWeightBytes(): number }, before: { anon: number; file: number }): Record<string, number> {
  const now = rssSplit(), native = m.nativeWeightBytes();
  const file = existsSync(m.path) && statSync(m.path).isFile() ? statSync(m.path).size : 0;
  const mem = { file_bytes: file, weight_bytes: m.weightBytes, native_weight_bytes: native,
    rss_anon_growth_bytes: now.anon - before.anon, rss_file_growth_bytes: now.file - before.file };
  process.stderr.write(`memory: file ${file ? fmtBytes(file) : "-"}, weights ${fmtBytes(m.weightBytes)} as loaded, ` +
    `${fmtBytes(native)} in the engine's native layout; after load RSS +${fmtBytes(now.anon - before.anon)} anonymous, ` +
    `+${fmtBytes(now.file - before.file)} file-backed (GGUF mmap)\n`);
  return mem;
}

async function cmdBench(argv: string[]): Promise<void> {
  const { values: o, positionals } = parse(argv, {
    model: { type: "string" }, pp: { type: "string" }, tg: { type: "string" }, batch: { type: "string" }, reps: { type: "string" },
    depth: { type: "string", short: "d" }, "max-context": { type: "string" },
    backend: { type: "string" }, threads: { type: "string" }, toggle: { type: "string" }, out: { type: "string" }, format: { type: "string" },
    warmup: { type: "string" }, retries: { type: "string" }, "max-contention": { type: "string" }, weights: { type: "string" }, tp: { type: "string" }, ...SPEC_OPTIONS,
    prompts: { type: "string" }, "steps-per-sync": { type: "string" },
  });
  const model = (o.model as string | undefined) ?? positionals[0] ?? "default";
  const syncs = numList(o["steps-per-sync"] as string, "steps-per-sync", [1]);
  const pps = o.pp === "0" ? [] : numList(o.pp as string, "pp", [128]);
  const tgs = o.tg === "0" ? [] : numList(o.tg as string, "tg", [32]);
  const batches = numList(o.batch as string, "batch", [1]);
  const depths = o.depth === undefined ? [0] : (o.depth as string).split(",").map((x) => num(x, "depth", { int: true, min: 0 })!);
  const maxCtxArg = num(o["max-context"] as string, "max-context", { int: true, min: 16 });
  const reps = num(o.reps as string, "reps", { int: true, min: 3 }) ?? 3;
  const warmup = num(o.warmup as string, "warmup", { int: true, min: 0 }) ?? 1;
  const retries = num(o.retries as string, "retries", { int: true, min: 0 }) ?? 3;
  const maxContention = (num(o["max-contention"] as string, "max-contention", { min: 0, max: 100 }) ?? 10) / 100;
  const threads = num(o.threads as string, "threads", { int: true, min: 0 });
  const format = (o.format as string | undefined) ?? "md";
  if (!["md", "csv", "json", "jsonl"].includes(format)) fail(`bench: --format must be md, csv, json or jsonl, got '${format}'`);
  const spec = (() => { try { return parseSpecArgs(o, [1, 2, 4, 8]); } catch (e) { fail((e as Error).message); } })();
  const nPrompts = num(o.prompts as string, "prompts", { int: true, min: 1 }) ?? 8;
  // --tp N[,N...]: one load per value (the split is chosen at load), the same tests on each; with several values
  // every row says its tp and the profile keeps them all
  const tps = o.tp === undefined ? [undefined] : (() => {
    try { return parseTpList(o.tp as string, tpDegreesOf(parallelValues())).map(String); } catch (e) { fail((e as Error).message); }
  })();
  const rows: BenchRow[] = [];
  const summary: Record<string, unknown> = {};
  const byTp: Record<string, Record<string, unknown>> = {};
  const notes: string[] = [];
  const log = (msg: string) => process.stderr.write(`  ${msg}\n`);
  let fidelity: Fidelity | undefined;
  let first: { manifest: Profile["manifest"]; ceil: ReturnType<typeof ceilingsForDevice> } | undefined;
  for (const tp of tps) {
    const rss0 = rssSplit();
    let m: Model;
    try {
      m = await open(model, backendOf(o.backend as string), threads, weightsOf(o.weights as string | undefined), tp);
    } catch (e) {
      // one value of a list that the engine refuses to load (the split, the devices): skipped, saying why
      if (tps.length === 1 || !(e instanceof QwenError)) throw e;
      notes.push(`tp${tp} skipped: ${e.message}`);
      process.stderr.write(`tp${tp} skipped: ${e.message}\n`);
      continue;
    }
    const dm = spec.draft ? await openDraft(m, spec.draft, threads) : undefined;
    const hm = spec.eagle ? await openEagleHead(spec.eagle, m) : undefined;
    const ranks = Number(tp ?? 1);
    const loadRows: BenchRow[] = [];
    const sum: Record<string, unknown> = { memory: benchMemory(m, rss0) };
    try {
      const maxPp = Math.max(0, ...pps), maxTg = Math.max(0, ...tgs);
      const maxD = Math.max(...depths);
      const need = Math.max(maxD + maxPp, Math.max(maxD, 8) + maxTg, 16, dm || hm ? 128 + maxTg + (spec.tree?.budget ?? 0) : 0);
      if (maxCtxArg !== undefined && maxCtxArg < need) fail(`bench: --max-context ${maxCtxArg} is below what the tests need (${need} = depth + pp, or depth + tg)`);
      const s = m.newSession({ maxBatch: Math.max(...batches), maxContext: maxCtxArg ?? need, maxPrefill: Math.min(maxCtxArg ?? need, Math.max(maxPp, 4096)) });
      applyToggles(m, s, o.toggle as string | undefined);
      if (!dm && s.toggles().speculative === "draft") fail("bench: speculative=draft needs --draft PATH");
      if (!hm && s.toggles().speculative === "eagle") fail("bench: speculative=eagle needs --eagle DIR");
      const kv = s.kvInfo?.();
      if (kv) {
        log(`kv cache: ${kv.kvCache}, ${(kv.kvBytesPerToken / 1024).toFixed(2)} KiB per token (all layers, K+V), ` +
          `${(kv.kvBytes / 1048576).toFixed(1)} MiB allocated for ${Math.max(...batches)} x ${s.maxContext} tokens`);
        sum.kv = kv;
      }
      if (dm || hm) {
        // off vs draft at each k vs eagle on Brown validation prompts (engine/spec/bench.ts)
        const ds = dm?.newSession({ maxContext: s.maxContext });
        const hs = hm?.newSession({ maxContext: s.maxContext });
        for (const tg of tgs) {
          const res = await runSpecBench(s, ds, specHost(m), {
            prompts: brownPromptSet(nPrompts), nGen: tg, ks: dm ? spec.ks : [], reps, warmup, draftLabel: spec.draft ?? "", onProgress: log,
            ...(hs && spec.tree ? { eagle: { head: hs, tree: spec.tree, label: spec.eagle ?? "" } } : {}),
          });
          loadRows.push(...specBenchRows(m, res, { nGen: tg, prompts: nPrompts }));
          if (tg === tgs[0]) sum.speculative = res.map((r) => ({ arm: r.arm, tok_s: r.tokS, ...(r.spec ? { spec: r.spec } : {}) }));
        }
        ds?.close();
        hs?.close();
        s.setToggle("speculative", hm ? "eagle" : "draft");
      }
      for (const depth of depths) for (const pp of pps) {
        const r = runBenchCase(m, s, { nPrompt: pp, nGen: 0, depth }, { reps, warmup, retries, maxContention, onProgress: log });
        loadRows.push(...r.rows);
        if (r.ttft) sum[`ttft_ms_pp${pp}${depth ? `_d${depth}` : ""}`] = r.ttft;
        if (pp === pps[0] && depth === depths[0] && r.prefill) sum.prefill_tok_s = r.prefill.median;
        if (pp === pps[0] && depth === depths[0] && r.ttft) sum.ttft_ms = r.ttft.median;
      }
      for (const depth of depths) for (const b of batches) for (const tg of tgs) for (const stepsPerSync of syncs) {
        const r = runBenchCase(m, s, { nPrompt: 0, nGen: tg, batch: b, depth }, { reps, warmup, retries, maxContention, onProgress: log, stepsPerSync });
        loadRows.push(...r.rows);
        if (b === batches[0] && tg === tgs[0] && depth === depths[0] && stepsPerSync === syncs[0] && r.decode) {
          sum.decode_tok_s = r.decode.median;
          sum.tpot_ms = r.tpot;
        }
      }
      // tp > 1: the all-reduce share of a decode step per rank, from a profiled pass after the timed ones (so
      // profiling does not touch their tok/s); a backend that keeps no per-rank records says so instead
      if (ranks > 1 && tgs.length) for (const b of batches) {
        const sh = profiledCommShare(s, m.config.vocab_size, b, Math.min(16, Math.max(...tgs)));
        for (const r of loadRows) if (r.n_gen > 0 && r.batch === b) r.extra = { ...r.extra, ...(sh.shares ? { comm_share: sh.shares, comm_profiling: sh.mode } : { comm_note: sh.note }) };
        log(`tp${ranks} b${b} all-reduce share of a decode step: ${sh.shares ? shareLabel(sh.shares) : sh.note}`);
        if (!sh.shares && sh.note && !notes.includes(`all-reduce share not measured: ${sh.note}`)) notes.push(`all-reduce share not measured: ${sh.note}`);
      }
      // Profiling fidelity (engine/measure/fidelity.ts): each mode against off in interleaved rounds on batch-1 decode, and
      // whether each mode's records add up to the steps. Measured on the first load that accepts profiling.
      if (o.out && tgs.length && !fidelity) {
        const prompt = benchPrompt(8, m.config.vocab_size, 7);
        const steps = Math.max(1, Math.min(32, s.maxContext - 8 - 4));
        const modes: ProfilingMode[] = m.backend === "cuda" ? ["kernels", "events"] : ["kernels"];
        try {
          const fr = measureFidelity(s, { modes, rounds: reps, steps, prime: () => { s.reset(); return s.prefill(0, prompt); } });
          fidelity = fr.fidelity;
          sum.profiling_overhead_pct = fr.fidelity.overhead_pct?.kernels?.median;
          log(`[profiling fidelity]\n${fidelityLines(fr.fidelity, fr.stepMs)}`);
        } catch (e) {
          if (!(e instanceof QwenError) || ranks === 1) throw e;
          notes.push(`profiling fidelity not measured at tp${ranks}: ${(e as Error).message}`);
          s.setProfiling(false);
        }
      }
      // % of the bandwidth roofline for decode rows when the device has measured ceilings; at tpN the aggregate of
      // the N ranks' bandwidth (on the CPU emulation the ranks share one machine: a bound it cannot reach)
      const ceil = ceilingsForDevice(m.device.name, undefined, m.backend);
      const bw = dramBandwidth(ceil);
      if (bw) for (const r of loadRows) if (r.n_gen > 0) r.roofline_pct = decodeRooflinePct(m.weightBytes, r.tokens_per_s.median, r.batch, ranks * bw);
      if (tps.length > 1) for (const r of loadRows) r.backend = `${m.backend} tp${ranks}`;
      first ??= { manifest: m.manifest({ toggles: s.toggles(), command: `npm run cli -- bench ${argv.join(" ")}` }), ceil };
      s.close();
    } finally {
      hm?.close();
      dm?.close();
      m.close();
    }
    rows.push(...loadRows);
    if (tp === tps[0]) Object.assign(summary, sum);
    if (tps.length > 1) byTp[`tp${ranks}`] = sum;
  }
  if (!first) fail(`bench: the engine refused every --tp value: ${notes.join("; ")}`);
  if (tps.length > 1) summary.by_tp = byTp;
  const contended = rows.reduce((a, r) => a + Number((r.extra as { contended_samples?: number } | undefined)?.contended_samples ?? 0), 0);
  if (contended) process.stderr.write(`note: ${contended} measured sample(s) ran while other processes used > ${(maxContention * 100).toFixed(0)}% of the CPU (after ${retries} re-runs each); see extra.others_cpu_share\n`);
  for (const n of notes) process.stderr.write(`note: ${n}\n`);
  if (format === "md") process.stdout.write(benchTableMd(rows) + "\n");
  else if (format === "csv") process.stdout.write(benchTableCsv(rows) + "\n");
  else if (format === "json") process.stdout.write(JSON.stringify(rows, null, 2) + "\n");
  else for (const r of rows) process.stdout.write(JSON.stringify(r) + "\n");
  if (o.out && first) {
    const path = resolve(o.out as string);
    const prof: Profile = {
      schema: "qwen-workbench/profile", version: PROFILE_SCHEMA_VERSION, id: profileId(path), kind: "bench",
      manifest: first.manifest, summary: summary as Profile["summary"], kernels: [], bench: rows, ...(first.ceil ? { ceilings: { ...first.ceil } } : {}),
      ...(fidelity ? { fidelity } : {}),
      notes: [`warm-up ${warmup} excluded, ${reps} measured repetitions; prompts are token ids (tokenization excluded); greedy sampling`,
        ...(tps.length > 1 ? [`one load per --tp value (${tps.map((t) => `tp${t}`).join(", ")}); the manifest is the first load's`] : []), ...notes],
    };
    writeProfile(path, prof);
    process.stderr.write(`profile: ${path}\n`);
  }
}

// ------------------------------------------------------------------------------------------------
async function interactive(): Promise<void> {
  const m = await open("default", "auto", undefined);
  const s = m.newSession();
  process.stderr.write("interactive generate on the embedded model: type a prompt, empty line or Ctrl-D to quit\n");
  const rl = createInterface({ input: process.stdin, output: process.stderr, prompt: "> " });
  rl.prompt();
  for await (const line of rl) {
    if (!line.trim()) break;
    try {
      process.stdout.write(line);
      for await (const ev of s.generate({ prompt: line, maxTokens: 64 })) {
        if (ev.type === "token") process.stdout.write(ev.text);
        else if (ev.type === "done") process.stdout.write(`\n[${ev.tokens.length} tokens, ${ev.decodeTokS.toFixed(1)} tok/s]\n`);
      }
    } catch (e) {
      process.stderr.write(`error: ${(e as Error).message}\n`);
    }
    rl.prompt();
  }
  rl.close();
  m.close();
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case undefined:
        if (process.stdin.isTTY) await interactive();
        else process.stdout.write(HELP);
        return 0;
      case "help": case "--help": case "-h":
        process.stdout.write(HELP);
        return 0;
      case "generate": await cmdGenerate(rest); return 0;
      case "synth": await cmdSynth(rest); return 0;
      case "convert": await cmdConvert(rest); return 0;
      case "inspect": cmdInspect(rest); return 0;
      case "bench": await cmdBench(rest); return 0;
      case "perplexity": await cmdPerplexity(rest); return 0;
      case "passkey": await cmdPasskey(rest); return 0;
      default:
        fail(`unknown command '${cmd}'; commands: generate, synth, convert, inspect, bench, perplexity, passkey, help`);
    }
  } catch (e) {
    const err = e as Error;
    const user = err instanceof UsageError || err instanceof SessionError || err instanceof QwenError || err instanceof Error;
    process.stderr.write(`error: ${err?.message ?? String(e)}\n`);
    if (process.env.QW_DEBUG === "1" || !user) process.stderr.write(`${err?.stack ?? ""}\n`);
    return 1;
  }
}

if (import.meta.main) {
  const code = await main(process.argv.slice(2));
  process.exit(code);
}
