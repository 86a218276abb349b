// Tensor-parallel scaling (issue 18 item 4): per model (synthetic Qwen2.5 shapes, random weights) × tp degree ×
// decode batch × prefill length, tok/s (median and min–max of >= 3 reps after a warm-up), speedup vs tp1 of the
// same run, efficiency against the aggregate-bandwidth roofline (bytes per step / (N × one device's measured
// bandwidth, profiles/ceilings)), the all-reduce share of a decode step per rank (a profiled pass apart from the
// timed ones), and, on CUDA with >= 2 devices, the NCCL floor: cuda/dev/tplab's all-reduce latency and bus
// bandwidth for the message sizes one layer sends. Splits the engine refuses, or that would not fit memory, are
// skipped with the reason. Writes DIR/tp-scaling.md, DIR/tp-scaling.json and, per model, a bench profile of all its
// loads' rows (DIR/tp-<model>-<type>.json, the web Bench page and `bench --report` read it).
//
//   npx bun notebooks/tp-scaling.ts --backend cpu --models tiny --tp 1,2 --pp 64 --tg 8 --reps 3   # the CPU emulation
//   npx bun notebooks/tp-scaling.ts --backend cuda --models 7b,32b,72b --tp 1,2,4,8                # a multi-GPU machine
import { parseArgs } from "node:util";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { loadavg } from "node:os";
import { cliArgs } from "../engine/notebook/args.ts";
import { parseSyntheticSource, syntheticGgufPath } from "../engine/index.ts";
import { REPO_ROOT } from "../engine/constants.ts";
import { parallelValues } from "../engine/formats/parallel.ts";
import { SYNTH_TYPES } from "../engine/synth/types.ts";
import { PROFILE_SCHEMA_VERSION, writeProfile, type BenchRow, type Manifest } from "../engine/measure/profile.ts";
import { deviceMemoryBytes, runTplab, runTpLoad, tpContextTokens, tpSkipReason, type TpLoadResult } from "../engine/measure/tp-run.ts";
import { ncclFloorMd, parseTpList, tpDegreesOf, tpTableMd, withScaling, type NcclFloor, type TpCell, type TpSkip } from "../engine/measure/tp-scaling.ts";

const USAGE = `usage: npx bun notebooks/tp-scaling.ts [options]
  --models LIST      synthetic presets (tiny, 0.5b, 1.5b, 7b, 32b, 72b); default: 7b,32b,72b on CUDA, tiny,0.5b on the CPU
  --type T           weight type of the synthetic models (${SYNTH_TYPES.join(", ")}; default bf16)
  --tp LIST          tensor-parallel degrees (default 1,2,4,8; refused or too large splits are skipped, saying why)
  --batches LIST     decode batches (default 1,16)       --tg N     decode steps per measurement (default 32)
  --pp LIST          prefill lengths (default 512,4096; 0 = none)
  --reps N (>= 3, default 3) --warmup N (default 1)
  --no-share         skip the profiled pass that measures the all-reduce share of a decode step
  --tplab PATH       the multi-GPU lab (default cuda/build/dev/tplab; make -C cuda/dev tplab);  --no-nccl: skip it
  --drop-synthetic   delete a synthetic checkpoint this run wrote once its model is done (72B bf16 is 145 GB)
  --backend auto|cpu|cuda --threads N
  --out DIR          default profiles/raw/tp-scaling/<stamp>`;

const { die, int, backendOpt, threadsOpt } = cliArgs(USAGE);
const { values: o } = (() => { try { return parseArgs({
  args: Bun.argv.slice(2), options: {
    models: { type: "string" }, type: { type: "string" }, tp: { type: "string" }, batches: { type: "string" }, tg: { type: "string" },
    pp: { type: "string" }, reps: { type: "string" }, warmup: { type: "string" }, "no-share": { type: "boolean" }, tplab: { type: "string" },
    "no-nccl": { type: "boolean" }, "drop-synthetic": { type: "boolean" }, backend: { type: "string" }, threads: { type: "string" },
    out: { type: "string" }, help: { type: "boolean", short: "h" },
  },
}); } catch (e) { return die((e as Error).message); } })();
if (o.help) { console.log(USAGE); process.exit(0); }
const backend = backendOpt(o.backend);
const threads = threadsOpt(o.threads);
const dev = (() => { try { return deviceMemoryBytes(backend, threads); } catch (e) { return die(`--backend ${backend}: ${(e as Error).message}`); } })();
const type = o.type ?? "bf16";
if (!(SYNTH_TYPES as readonly string[]).includes(type)) die(`--type must be one of ${SYNTH_TYPES.join(", ")}, got '${type}'`);
const models = (o.models ?? (dev.backend === "cuda" ? "7b,32b,72b" : "tiny,0.5b")).split(",").map((s) => s.trim());
for (const m of models) { try { parseSyntheticSource(`synthetic:${m}:${type}`); } catch (e) { die(`--models: ${(e as Error).message}`); } }
let tps: number[] = [];
try { tps = parseTpList(o.tp ?? "1,2,4,8", tpDegreesOf(parallelValues())); } catch (e) { die((e as Error).message); }
const list = (v: string | undefined, name: string, dflt: number[], min: number) => (v === undefined ? dflt : v.split(",").map((s) => int(s.trim(), name, 0, min)));
const batches = list(o.batches, "batches", [1, 16], 1), pps = list(o.pp, "pp", [512, 4096], 0).filter((p) => p > 0);
const tg = int(o.tg, "tg", 32, 0), reps = int(o.reps, "reps", 3, 3), warmup = int(o.warmup, "warmup", 1, 0);
const out = resolve(o.out ?? join(REPO_ROOT, "profiles/raw/tp-scaling", new Date().toISOString().replace(/[-:]/g, "").slice(0, 15)));
const emulation = dev.backend === "cpu";
mkdirSync(out, { recursive: true });
const log = (m: string) => console.error(m);

// ------------------------------------------------------------------------------------------------ the runs
const cells: TpCell[] = [], skips: TpSkip[] = [];
const loads: { model: string; ranks: number; device: TpLoadResult["device"]; weight_bytes: number; bandwidth?: TpLoadResult["bandwidth"]; load: [number, number] }[] = [];
const profiles: string[] = [];
for (const m of models) {
  const source = `synthetic:${m}:${type}`;
  const mRows: BenchRow[] = [];
  let manifest: Manifest | undefined;
  const file = syntheticGgufPath(parseSyntheticSource(source)!);
  const existed = existsSync(file);
  for (const ranks of tps) {
    const why = tpSkipReason(source, ranks, { backend, threads, contextTokens: tpContextTokens({ pps, tg }) });
    if (why) {
      log(`${m} tp${ranks}: skipped — ${why}`);
      skips.push({ model: m, ranks, reason: why });
      continue;
    }
    log(`${m} tp${ranks}: loading ${source} (${dev.backend}) ...`);
    const l0 = loadavg()[0];
    try {
      const r = await runTpLoad(source, ranks, { backend, threads, pps, tg, batches, reps, warmup, share: !o["no-share"], onProgress: (x) => log(`  ${m} ${x}`) });
      cells.push(...r.cells);
      mRows.push(...r.rows);
      manifest ??= { ...r.manifest, command: `npx bun notebooks/tp-scaling.ts ${Bun.argv.slice(2).join(" ")}` };
      loads.push({ model: m, ranks, device: r.device, weight_bytes: r.weightBytes, ...(r.bandwidth ? { bandwidth: r.bandwidth } : {}), load: [l0, loadavg()[0]] });
    } catch (e) {  // a refusal at load (e.g. a q8 split off a group boundary) or on the device: said, not fatal
      const why2 = (e as Error).message;
      log(`${m} tp${ranks}: failed — ${why2}`);
      skips.push({ model: m, ranks, reason: `load or run failed: ${why2}` });
    }
  }
  if (manifest && mRows.length) {  // the model's rows over every tp as one bench profile (the first load's manifest)
    const path = join(out, `tp-${m}-${type}.json`);
    writeProfile(path, {
      schema: "qwen-workbench/profile", version: PROFILE_SCHEMA_VERSION, id: `tp-${m}-${type}`, kind: "bench", manifest, summary: {}, kernels: [], bench: mRows,
      notes: [`notebooks/tp-scaling.ts: one load per tp value; ${warmup} warm-up + ${reps} measured repetitions; the manifest is the first load's`,
        ...(emulation ? ["CPU emulation of the ranks (one after another): the tok/s are no speed claim"] : [])],
    });
    profiles.push(path);
  }
  if (o["drop-synthetic"] && !existed && existsSync(file)) { rmSync(file, { force: true }); log(`removed ${file} (written by this run)`); }
}
const table = withScaling(cells);

// ------------------------------------------------------------------------------------------------ NCCL floor
const floors: NcclFloor[] = [], floorNotes: string[] = [];
if (emulation) floorNotes.push("not measured: the CPU emulation has no NCCL (its all-reduce is an fp32 sum in rank order in one process)");
else if (o["no-nccl"]) floorNotes.push("not measured (--no-nccl)");
else {
  const bin = resolve(o.tplab ?? join(REPO_ROOT, "cuda/build/dev/tplab"));
  const shapes = models.filter((m) => ["7b", "32b", "72b"].includes(m));
  if (!existsSync(bin)) floorNotes.push(`not measured: ${bin} is not built (make -C cuda/dev tplab)`);
  else if (!shapes.length) floorNotes.push("not measured: tplab has the 7b / 32b / 72b layer shapes only");
  for (const preset of existsSync(bin) ? shapes : []) for (const ranks of tps.filter((n) => n > 1)) {
    const r = runTplab(bin, preset, ranks);
    if (r.floor) floors.push(r.floor);
    else { floorNotes.push(`${preset} tp${ranks}: ${r.note}`); log(`tplab ${preset} ${ranks}: ${r.note}`); }
  }
}

// ------------------------------------------------------------------------------------------------ report
const devices = [...new Set(loads.map((l) => `${l.device.name} (${l.device.backend}${l.device.threads ? `, ${l.device.threads} threads` : ""})`))];
const bws = [...new Set(loads.filter((l) => l.bandwidth).map((l) => `${(l.bandwidth!.bytesS / 1e9).toFixed(1)} GB/s (profiles/ceilings/${l.bandwidth!.file})`))];
const command = `npx bun notebooks/tp-scaling.ts ${Bun.argv.slice(2).join(" ")}`;
const md = [
  "# Tensor-parallel scaling",
  "",
  `Device: ${devices.join(", ") || "none loaded"}. Command: \`${command}\`. Synthetic Qwen2.5 shapes, ${type} weights (random). ` +
    `${warmup} warm-up + ${reps} measured repetitions per test; tok/s median (min–max). Decode = tg${tg} after an 8-token prompt per sequence, tok/s of all sequences of the batch together; prefill = one pass of N tokens.`,
  "",
  ...(emulation ? ["**CPU emulation: the ranks run one after another on the same cores, so tok/s does not rise with N. " +
    "These numbers exercise the machinery (loads, refusals, table, share pass); they are no speed claim.**", ""] : []),
  `Roofline (decode): bytes per step (weights as loaded + the KV cache at the mean context) / (N × ${bws.length ? bws.join(", ") : "—"}); ` +
    `${bws.length ? "" : "no measured bandwidth ceiling for this device, so no roofline columns; "}× tp1 = speedup over tp1 of the same run; ÷ N = that speedup over N. ` +
    "All-reduce share = Σ all_reduce + all_gather record time / the rank's record time per decode step, from a profiled pass apart from the timed ones.",
  "",
  tpTableMd(table, skips),
  "",
  "## NCCL floor (all-reduce of one layer's activations, cuda/dev/tplab, same run)",
  "",
  ...(floors.length ? [ncclFloorMd(floors), ""] : []),
  ...floorNotes.map((n) => `- ${n}`),
  "",
].join("\n");
writeFileSync(join(out, "tp-scaling.md"), md);
writeFileSync(join(out, "tp-scaling.json"), JSON.stringify({
  command, date: new Date().toISOString(), backend: dev.backend, emulation, type, models, tp: tps, batches, pp: pps, tg, reps, warmup,
  loads, cells: table, skips, nccl: { floors, notes: floorNotes },
}, null, 2) + "\n");
console.log(md);
console.error(`wrote ${join(out, "tp-scaling.md")}, tp-scaling.json${profiles.length ? ` and ${profiles.map((p) => p.split("/").pop()).join(", ")}` : ""}`);
