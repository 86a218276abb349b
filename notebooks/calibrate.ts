// notebooks/calibrate.ts — measures the device's ceilings and writes <device>.json (default directory
// profiles/raw/ceilings/, git-ignored; --out profiles/ceilings for the committed ones), which the roofline
// (engine/measure/roofline.ts) uses instead of datasheet numbers. A local file in profiles/raw/ceilings/ wins over a
// committed one of the same device.
//
//   bun notebooks/calibrate.ts [--out DIR] [--no-build]
//   bun notebooks/calibrate.ts --tile [MODEL] [--backend cpu|cuda] [--threads N] [--reps R] [--gemm-tokens T] [--out DIR]
//       toggle tile (QWEN-010): every tile candidate of every GEMV / GEMM shape of MODEL (default: the embedded
//       model) measured on this device; profiles/tuning/<device>.json (notebooks/tile-calibrate.ts, engine/tuning.ts)
//   bun notebooks/calibrate.ts --from-lab-log FILE [--out DIR]   (no GPU needed: takes the CALIB line that
//       `qwlab all` / `qwlab calib` printed into FILE on the GPU machine; the file records it as the source)
//   bun notebooks/calibrate.ts --backend cpu [--threads N] [--reps R] [--out DIR] [--no-build]
//       the CPU's ceilings, for the CPU backend's profiles (device name = /proc/cpuinfo "model name", as the
//       engine reports it): streaming read bandwidth (cuda/build/bench membw N: 1 GiB, best of 5 passes) and
//       the fp32 FMA peak (cuda/build/bench flops N: 10 independent ymm FMA chains per thread, best of 3 runs
//       of >= 0.3 s; with AVX-512 also the zmm FMA peak, `bench flops512 N`, and with VNNI the int8 dot-product
//       peak of the int8-activation arm, `bench int8 N`: 12 vpdpbusd chains), and the L2 / L3 read bandwidths (cuda/build/bench cachebw N: working sets sized from the
//       cache sizes in /sys/devices/system/cpu/cpu0/cache, else sysconf). The binary runs R times (default 3);
//       every run is a sample, the file keeps the median.
//       Built with `make -C cuda bench` (g++, no GPU). Run it on an idle machine: the load average is recorded.
//
// The measurement runs in the kernel lab binary (cuda/build/dev/qwlab calib, built from cuda/dev/ with
// `make -C cuda/dev` when missing): device-to-device copy bandwidth (2 GiB, bytes read + written, median of 3
// x 10 timed copies), the L2 read bandwidth (cuda/dev/l2bw.cu: half the L2 re-read 400 times, median of 3 x 10;
// absent from logs of older labs) and the bf16 tensor-core rate (8192^3 GEMM on random data through the engine's prefill
// GEMM path: cuBLASLt when it loads, else our mma.sync kernel; median of 3 x 10). This is the simplest honest
// path: the same binary that checks our kernels measures the roofs, without an extra C ABI entry.
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join, resolve } from "node:path";
import { z } from "zod";
import { CeilingsFileSchema, deviceSlug } from "../engine/measure/roofline.ts";

const USAGE = `usage: npm run calibrate -- [options]        (= bun notebooks/calibrate.ts)
  (no option)                 the CUDA device: qwlab calib (copy, L2 and bf16 tensor-core roofs)
  --tile [MODEL]              tile candidates of every GEMV / GEMM shape of MODEL (default: the embedded model) on
                              this device (--backend, default cpu here) -> profiles/tuning/<device>.json (--out DIR);
                              --reps R (default 5) screening repetitions, --gemm-tokens T (default 64) GEMM tokens;
                              then the model's decode step / prefill with the tuned table against fixed, and a choice
                              the step is slower with set back to fixed (--no-step-check: skip that)
  --from-lab-log FILE         take the CALIB line of a kernel-lab log from the GPU machine (no GPU needed)
  --backend cpu               this CPU: read bandwidth, L2 / L3 read bandwidth, fp32 FMA peak (AVX2, and AVX-512
                              when present), int8 dot-product peak with VNNI (cuda/build/bench)
  --threads N                 CPU threads (default: all logical CPUs)
  --reps R                    CPU runs of each benchmark (default 3; the file keeps the median and every sample)
  --out DIR                   where <device>.json goes (default profiles/raw/ceilings, git-ignored;
                              --out profiles/ceilings for the committed ceilings)
  --no-build                  do not run make first
  -h, --help                  this text`;

const root = resolve(import.meta.dir, "..");
const args = process.argv.slice(2);
if (args.includes("--help") || args.includes("-h")) {
  console.log(USAGE);
  process.exit(0);
}
const KNOWN = new Set(["--out", "--from-lab-log", "--backend", "--threads", "--reps", "--no-build", "--tile", "--gemm-tokens", "--no-step-check"]);
for (let i = 0; i < args.length; i++) {
  if (!KNOWN.has(args[i])) {
    console.error(`calibrate: unknown argument ${args[i]}\n${USAGE}`);
    process.exit(2);
  }
  if (args[i] === "--tile" && (i + 1 >= args.length || args[i + 1].startsWith("--"))) continue;  // MODEL is optional
  if (args[i] !== "--no-build") i++;
}
const flag = (n: string) => args.includes(n);
const opt = (n: string) => {
  const i = args.indexOf(n);
  return i >= 0 ? args[i + 1] : undefined;
};
const outDir = resolve(opt("--out") ?? join(root, "profiles", "raw", "ceilings"));
const lab = join(root, "cuda", "build", "dev", "qwlab");

function sh(cmd: string[], env: Record<string, string> = {}): { code: number; out: string } {
  const p = Bun.spawnSync(cmd, { cwd: root, env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode ?? -1, out: p.stdout.toString() + p.stderr.toString() };
}

const fromLog = opt("--from-lab-log");

function measure(): { line: string; source: string; at: string; command: string } {
  if (fromLog) {
    if (!existsSync(fromLog)) {
      console.error(`calibrate: ${fromLog} does not exist`);
      process.exit(1);
    }
    const line = readFileSync(fromLog, "utf8").split("\n").find((l) => l.startsWith("CALIB "));
    if (!line) {
      console.error(`calibrate: no CALIB line in ${fromLog}`);
      process.exit(1);
    }
    return { line, source: `CALIB line of the kernel lab log ${resolve(fromLog)} (qwlab calib run on the device; copied, not re-measured)`,
      at: statSync(fromLog).mtime.toISOString(), command: `bun notebooks/calibrate.ts --from-lab-log ${fromLog}` };
  }
  return { ...runLab(), at: new Date().toISOString(), command: "bun notebooks/calibrate.ts" };
}

function runLab(): { line: string; source: string } {
if (!existsSync(lab) && !flag("--no-build")) {
  console.log("calibrate: building the kernel lab (make -C cuda/dev) ...");
  const b = sh(["make", "-C", "cuda/dev", `-j${navigator.hardwareConcurrency ?? 4}`]);
  if (b.code !== 0) {
    console.error(b.out.split("\n").slice(-30).join("\n"));
    console.error("calibrate: the lab did not build (is nvcc on PATH?)");
    process.exit(1);
  }
}
if (!existsSync(lab)) {
  console.error(`calibrate: ${lab} is missing; build it with make -C cuda/dev on the GPU machine`);
  process.exit(1);
}
const lt = sh(["bash", "cuda/dev/find-cublaslt.sh"]).out.trim().split("\n")[0] ?? "";
const env: Record<string, string> = lt ? { QW_CUBLASLT: lt } : {};
const r = sh([lab, "calib"], env);
const line = r.out.split("\n").find((l) => l.startsWith("CALIB "));
if (r.out.includes("no CUDA device")) {
  console.log("calibrate: no CUDA device here; nothing measured (SKIP)");
  process.exit(0);
}
if (r.code !== 0 || !line) {
  console.error(r.out);
  console.error("calibrate: the lab did not report a CALIB line");
  process.exit(1);
}
return { line, source: "measured now by cuda/build/dev/qwlab calib" };
}

function writeDoc(device: string, doc: unknown): string {
  const ok = CeilingsFileSchema.safeParse(doc); // write only what engine/measure/roofline.ts reads back
  if (!ok.success) {
    console.error(`calibrate: the ceilings document is invalid at ${ok.error.issues[0].path.join(".")}: ${ok.error.issues[0].message}`);
    process.exit(1);
  }
  mkdirSync(outDir, { recursive: true });
  const path = join(outDir, `${deviceSlug(device)}.json`);
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(doc, null, 2) + "\n");
  renameSync(tmp, path);
  return path;
}

function stat(samples: number[]): { samples: number[]; median: number; min: number; max: number } {
  const s = [...samples].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return { samples, median: s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2, min: s[0], max: s[s.length - 1] };
}

/** The CPU name the engine reports (cuda/src/cpu/backend_cpu.cpp cpu_name(): the first "model name" line). */
function cpuModelName(cpuinfo: string): string {
  const line = cpuinfo.split("\n").find((l) => l.startsWith("model name"));
  const v = line && line.includes(":") ? line.slice(line.indexOf(":") + 1).trim() : "";
  return v || "unknown CPU";
}

// ---- CPU cache roofs: `bench cachebw N` prints one line per level, e.g.
//   L2 read bandwidth, 2 thread(s), 512 KiB per thread (L2 1024 KiB, sysconf): 165.3 GB/s (best of 10)
interface CacheSample { bw: number; size: number; perThread: number; from: string }
type CacheLevel = "l2" | "l3";

function runCacheBench(bench: string, threads: number): Partial<Record<CacheLevel, CacheSample>> {
  const r = sh([bench, "cachebw", String(threads)]);
  if (r.code !== 0) {
    console.error(r.out);
    console.error("calibrate: cuda/build/bench cachebw failed");
    process.exit(1);
  }
  const out: Partial<Record<CacheLevel, CacheSample>> = {};
  for (const m of r.out.matchAll(/^L([23]) read bandwidth, \d+ thread\(s\), (\d+) KiB per thread \(L[23] (\d+) KiB, (\w+)\): ([0-9.]+) GB\/s/gm)) {
    out[`l${m[1]}` as CacheLevel] = { perThread: Number(m[2]) * 1024, size: Number(m[3]) * 1024, from: m[4], bw: Math.round(Number(m[5]) * 1e9) };
  }
  return out;
}

/** The ceilings-file fields of the cache roofs (levels the bench could not size are left out, with a note). */
function cacheFields(runs: Partial<Record<CacheLevel, CacheSample>>[], threads: number) {
  const cache_bandwidth_bytes_s: Partial<Record<CacheLevel, number>> = {}, cache_bytes: Partial<Record<CacheLevel, number>> = {};
  const measurements: Record<string, unknown> = {}, notes: string[] = [];
  for (const level of ["l2", "l3"] as const) {
    const s = runs.map((r) => r[level]).filter((x): x is CacheSample => !!x);
    if (!s.length) { notes.push(`${level.toUpperCase()}: no cache size from sysfs or sysconf; not measured.`); continue; }
    const st = stat(s.map((x) => x.bw));
    cache_bandwidth_bytes_s[level] = st.median;
    cache_bytes[level] = s[0].size;
    measurements[`${level}_read_bandwidth`] = {
      what: `read of a ${s[0].perThread >> 10} KiB buffer per thread, re-read from ${level.toUpperCase()} (${s[0].size >> 10} KiB per ${s[0].from}), AVX2 loads, 8 accumulators, ${threads} thread(s), each thread timed by its own CPU time (descheduled time not counted), rate = sum of the threads' rates; one sample = best of 10 runs of 2 GB read`,
      unit: "bytes/s", command: `cuda/build/bench cachebw ${threads}`, ...st,
    };
  }
  return { cache_bandwidth_bytes_s, cache_bytes, measurements, notes };
}

function calibrateCpu(): void {
  const threads = Number(opt("--threads") ?? navigator.hardwareConcurrency ?? 2);
  const reps = Number(opt("--reps") ?? 3);
  if (!(Number.isInteger(threads) && threads > 0) || !(Number.isInteger(reps) && reps >= 1)) {
    console.error("calibrate: --threads and --reps take positive integers");
    process.exit(2);
  }
  const bench = join(root, "cuda", "build", "bench");
  if (!flag("--no-build")) {
    const b = sh(["make", "-C", "cuda", "bench", `-j${navigator.hardwareConcurrency ?? 2}`]);
    if (b.code !== 0) {
      console.error(b.out.split("\n").slice(-30).join("\n"));
      console.error("calibrate: make -C cuda bench failed");
      process.exit(1);
    }
  }
  if (!existsSync(bench)) {
    console.error(`calibrate: ${bench} is missing; build it with make -C cuda bench`);
    process.exit(1);
  }
  const cpuinfo = existsSync("/proc/cpuinfo") ? readFileSync("/proc/cpuinfo", "utf8") : "";
  const device = cpuModelName(cpuinfo);
  const flags = new Set((cpuinfo.split("\n").find((l) => l.startsWith("flags")) ?? "").split(/\s+/));
  if (!flags.has("avx2") || !flags.has("fma")) {
    console.error("calibrate: this CPU has no AVX2/FMA; the bench kernels need them");
    process.exit(1);
  }
  // One run of `bench <mode> <threads>`: the number before `unit` on its output line.
  const run = (mode: string, unit: string): number => {
    const r = sh([bench, mode, String(threads)]);
    const m = new RegExp(`([0-9.]+) ${unit}`).exec(r.out);
    if (r.code !== 0 || !m) {
      console.error(r.out);
      console.error(`calibrate: cuda/build/bench ${mode} printed no ${unit}`);
      process.exit(1);
    }
    return Math.round(Number(m[1]) * 1e9);
  };
  const loadBefore = loadavg();
  if (loadBefore[0] > 0.5) console.log(`calibrate: load average ${loadBefore.map((l) => l.toFixed(2)).join(" ")} (other processes may lower the numbers)`);
  // The prefill GEMM arms' own peaks (gemm_avx512.cpp, gemm_int8_avx512.cpp) where the CPU has the instructions.
  const has512 = flags.has("avx512f") && flags.has("avx512bw"), hasVnni = has512 && flags.has("avx512_vnni");
  const bw: number[] = [], fl: number[] = [], fl512: number[] = [], i8: number[] = [];
  const caches: ReturnType<typeof runCacheBench>[] = [];
  for (let i = 0; i < reps; i++) {  // interleaved, so a burst of outside load hits all alike
    bw.push(run("membw", "GB/s"));
    fl.push(run("flops", "GFLOP/s"));
    if (has512) fl512.push(run("flops512", "GFLOP/s"));
    if (hasVnni) i8.push(run("int8", "GOP/s"));
    caches.push(runCacheBench(bench, threads));
  }
  const cache = cacheFields(caches, threads);
  const loadAfter = loadavg();
  const bws = stat(bw), fls = stat(fl);
  const fl512s = fl512.length ? stat(fl512) : undefined, i8s = i8.length ? stat(i8) : undefined;
  const command = `bun notebooks/calibrate.ts --backend cpu --threads ${threads}${reps !== 3 ? ` --reps ${reps}` : ""}`;
  const doc = {
    schema: "qwen-workbench/ceilings",
    version: 1,
    device,
    backend: "cpu",
    measured_at: new Date().toISOString(),
    command,
    tool: "cuda/build/bench membw|flops|flops512|int8|cachebw (cuda/tests/bench.cpp)",
    source: "measured now by cuda/build/bench",
    threads,
    device_info: { logical_cpus: cpus().length, avx512f: flags.has("avx512f"), avx512_vnni: flags.has("avx512_vnni"),
      simd_measured: has512 ? "avx2+fma (256-bit), avx-512 (512-bit)" + (hasVnni ? ", avx-512 vnni" : "") : "avx2+fma (256-bit)" },
    load_average: { before: loadBefore, after: loadAfter },
    // the fields engine/measure/roofline.ts reads (CeilingsFileSchema)
    bandwidth_bytes_s: bws.median,
    cache_bandwidth_bytes_s: cache.cache_bandwidth_bytes_s,
    cache_bytes: cache.cache_bytes,
    flops: { fp32: fls.median, ...(fl512s ? { fp32_avx512: fl512s.median } : {}), ...(i8s ? { int8: i8s.median } : {}) },
    roof_names: { bandwidth: "read bandwidth", fp32: "fp32 FMA (AVX2)", fp32_avx512: "fp32 FMA (AVX-512)",
      int8: "int8 dot product (VNNI)", l2: "L2 read bandwidth", l3: "L3 read bandwidth" },
    measurements: {
      read_bandwidth: { what: `streaming read, AVX2 loads, ${threads} thread(s), 1 GiB buffer; one sample = best of 5 passes`,
        unit: "bytes/s", command: `cuda/build/bench membw ${threads}`, ...bws },
      fp32_fma: { what: `fp32 FMA, 10 independent ymm chains per thread, ${threads} thread(s), register-resident, FMA = 2 FLOPs; one sample = best of 3 runs of >= 0.3 s`,
        unit: "FLOP/s", command: `cuda/build/bench flops ${threads}`, ...fls },
      ...(fl512s ? { fp32_fma_avx512: { what: `fp32 FMA, 12 independent zmm chains per thread, ${threads} thread(s), register-resident, FMA = 2 FLOPs (the exact prefill GEMM arm's instructions); one sample = best of 3 runs of >= 0.3 s`,
        unit: "FLOP/s", command: `cuda/build/bench flops512 ${threads}`, ...fl512s } } : {}),
      ...(i8s ? { int8_dot: { what: `int8 dot product, 12 independent vpdpbusd zmm chains per thread, ${threads} thread(s), 1 multiply-add = 2 OPs (the actQuant=int8 arm's instruction); one sample = best of 3 runs of >= 0.3 s`,
        unit: "OP/s", command: `cuda/build/bench int8 ${threads}`, ...i8s } } : {}),
      ...cache.measurements,
    },
    notes: [
      has512 ? "Compute roofs: fp32 (AVX2: decode GEMVs, kernels of CPUs without AVX-512), fp32_avx512 (the exact prefill GEMM), int8 (the actQuant=int8 prefill arm, where VNNI is present)." : "AVX2 (256-bit) peak: this CPU has no AVX-512, so every CPU kernel runs AVX2.",
      "Read bandwidth only (no writes): decode reads the weights.",
      "DRAM read bandwidth and the FMA peak are timed with the wall clock (on a loaded machine they come out low: see load_average); the L2/L3 rates with each thread's CPU time.",
      "L3 working set: min(L3 / 2 / threads, 4 MiB) per thread, at least 4x the L2 (cuda/tests/bench.cpp cachebw): the reported L3 can be the whole socket's while a core reaches only its slice at L3 speed.",
      ...cache.notes,
    ],
  };
  const path = writeDoc(device, doc);
  const g = (v: number) => (v / 1e9).toFixed(1);
  console.log(`| device | threads | read bandwidth (median, min-max) | fp32 FMA peak (median, min-max) | load avg before/after |\n|---|---:|---:|---:|---|\n| ${device} | ${threads} | ${g(bws.median)} GB/s (${g(bws.min)}-${g(bws.max)}) | ${g(fls.median)} GFLOP/s (${g(fls.min)}-${g(fls.max)}) | ${loadBefore[0].toFixed(2)} / ${loadAfter[0].toFixed(2)} |`);
  for (const level of ["l2", "l3"] as const) {
    const m = cache.measurements[`${level}_read_bandwidth`] as ReturnType<typeof stat> | undefined;
    if (m) console.log(`| ${device} | ${threads} | ${level.toUpperCase()} read ${g(m.median)} GB/s (${g(m.min)}-${g(m.max)}) | | |`);
  }
  if (fl512s) console.log(`| ${device} | ${threads} | | fp32 FMA (AVX-512) ${g(fl512s.median)} GFLOP/s (${g(fl512s.min)}-${g(fl512s.max)}) | |`);
  if (i8s) console.log(`| ${device} | ${threads} | | int8 dot (VNNI) ${g(i8s.median)} GOP/s (${g(i8s.min)}-${g(i8s.max)}) | |`);
  console.log(`calibrate: wrote ${path}`);
}

if (flag("--tile")) {
  const { calibrateTiles } = await import("./tile-calibrate.ts");
  const m = opt("--tile");
  const num = (n: string, d: number, lo: number) => {
    const v = Number(opt(n) ?? d);
    if (!Number.isInteger(v) || v < lo) {
      console.error(`calibrate: ${n} takes an integer >= ${lo}, not ${opt(n)}`);
      process.exit(2);
    }
    return v;
  };
  const be = opt("--backend") ?? "cpu";
  if (be !== "cpu" && be !== "cuda") {
    console.error(`calibrate: --backend takes cuda or cpu, not ${be}`);
    process.exit(2);
  }
  process.exit(await calibrateTiles({
    model: m === undefined || m.startsWith("--") ? "default" : m, backend: be,
    threads: opt("--threads") ? num("--threads", 0, 1) : undefined, reps: num("--reps", 5, 3),
    gemmTokens: num("--gemm-tokens", 64, 8), dir: opt("--out") ? resolve(opt("--out")!) : undefined,
    stepCheck: !flag("--no-step-check"),
  }));
}

const backend = opt("--backend") ?? "cuda";
if (backend !== "cuda" && backend !== "cpu") {
  console.error(`calibrate: --backend takes cuda or cpu, not ${backend}`);
  process.exit(2);
}
if (backend === "cpu") {
  calibrateCpu();
  process.exit(0);
}

// The CALIB line of qwlab (cuda/dev/lab.cu run_calib); l2_bw_bytes_per_s is absent from older labs' logs.
const Rates = z.object({ samples: z.array(z.number().positive()).min(1), median: z.number().positive() });
const CalibLine = z.object({
  device: z.string().min(1), sms: z.number(), cc: z.string(), clock_mhz: z.number(), mem_clock_mhz: z.number(),
  memory_bytes: z.number(), driver: z.number(), runtime: z.number(),
  copy_bw_bytes_per_s: Rates,
  l2_bw_bytes_per_s: Rates.extend({ buffer_bytes: z.number().positive(), l2_bytes: z.number().positive() }).optional(),
  bf16_flops_per_s: Rates.extend({ kernel: z.string(), shape: z.string() }),
  gemm_library: z.string(),
});
const m = measure();
let calibRaw: unknown;
try { calibRaw = JSON.parse(m.line.slice(6)); } catch { calibRaw = null; }
const parsed = CalibLine.safeParse(calibRaw);
if (!parsed.success) {
  console.error(`calibrate: the CALIB line is not what cuda/dev/lab.cu prints (${parsed.error.issues[0]?.path.join(".")}: ${parsed.error.issues[0]?.message})`);
  process.exit(1);
}
const c = parsed.data;
const l2 = c.l2_bw_bytes_per_s;
const doc = {
  schema: "qwen-workbench/ceilings",
  version: 1,
  device: c.device,
  backend: "cuda",
  measured_at: m.at,
  command: m.command,
  tool: "cuda/build/dev/qwlab calib",
  source: m.source,
  device_info: { sms: c.sms, cc: c.cc, clock_mhz: c.clock_mhz, mem_clock_mhz: c.mem_clock_mhz, memory_bytes: c.memory_bytes,
    driver: c.driver, runtime: c.runtime },
  // the fields engine/measure/roofline.ts reads
  bandwidth_bytes_s: c.copy_bw_bytes_per_s.median,
  ...(l2 ? { cache_bandwidth_bytes_s: { l2: l2.median }, cache_bytes: { l2: l2.l2_bytes } } : {}),
  flops: { bf16: c.bf16_flops_per_s.median },
  roof_names: { bandwidth: "copy bandwidth", bf16: "bf16 tensor core", l2: "L2 read bandwidth" },
  // how they were measured, every sample kept
  measurements: {
    copy_bandwidth: { what: "cudaMemcpyAsync device-to-device, 2 GiB, bytes read + written", unit: "bytes/s",
      samples: c.copy_bw_bytes_per_s.samples, median: c.copy_bw_bytes_per_s.median },
    ...(l2 ? { l2_bandwidth: { what: `${(l2.buffer_bytes / 1048576).toFixed(0)} MiB buffer (half of the ${(l2.l2_bytes / 1048576).toFixed(0)} MiB L2) re-read 400 times per launch with ld.global.cg, 4 blocks x 512 threads per SM (cuda/dev/l2bw.cu)`,
      unit: "bytes/s", samples: l2.samples, median: l2.median } } : {}),
    bf16_tensor_core: { what: `bf16 GEMM ${c.bf16_flops_per_s.shape}, random data, fp32 accumulation`, unit: "FLOP/s",
      kernel: c.bf16_flops_per_s.kernel, library: c.gemm_library, samples: c.bf16_flops_per_s.samples,
      median: c.bf16_flops_per_s.median },
  },
  notes: ["int8 / fp8 tensor-core rates are not measured yet (no int8/fp8 kernels in the engine).",
    ...(l2 ? [] : ["No L2 roof: this CALIB line comes from a lab without the L2 benchmark (cuda/dev/l2bw.cu); re-run qwlab calib."])],
};
const path = writeDoc(c.device, doc);
console.log(`| device | copy bandwidth | L2 read bandwidth | bf16 tensor core | via |\n|---|---:|---:|---:|---|\n| ${c.device} | ${(c.copy_bw_bytes_per_s.median / 1e9).toFixed(0)} GB/s | ${l2 ? `${(l2.median / 1e9).toFixed(0)} GB/s` : "-"} | ${(c.bf16_flops_per_s.median / 1e12).toFixed(0)} TFLOP/s | ${c.bf16_flops_per_s.kernel} |`);
console.log(`calibrate: wrote ${path}`);
