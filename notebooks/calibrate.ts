// notebooks/calibrate.ts — measures the device's ceilings and writes profiles/ceilings/<device>.json, which the
// roofline (engine/roofline.ts) uses instead of datasheet numbers.
//
//   bun notebooks/calibrate.ts [--out DIR] [--no-build]
//   bun notebooks/calibrate.ts --from-lab-log FILE [--out DIR]   (no GPU needed: takes the CALIB line that
//       `qwlab all` / `qwlab calib` printed into FILE on the GPU machine; the file records it as the source)
//   bun notebooks/calibrate.ts --backend cpu [--threads N] [--reps R] [--out DIR] [--no-build]
//       the CPU's ceilings, for the CPU backend's profiles (device name = /proc/cpuinfo "model name", as the
//       engine reports it): streaming read bandwidth (cuda/build/bench membw N: 1 GiB, best of 5 passes) and
//       the fp32 FMA peak (cuda/build/bench flops N: 10 independent ymm FMA chains per thread, best of 3 runs
//       of >= 0.3 s). The binary runs R times (default 3); every run is a sample, the file keeps the median.
//       Built with `make -C cuda bench` (g++, no GPU). Run it on an idle machine: the load average is recorded.
//
// The measurement runs in the kernel lab binary (cuda/build/dev/qwlab calib, built from cuda/dev/ with
// `make -C cuda/dev` when missing): device-to-device copy bandwidth (2 GiB, bytes read + written, median of 3
// x 10 timed copies) and the bf16 tensor-core rate (8192^3 GEMM on random data through the engine's prefill
// GEMM path: cuBLASLt when it loads, else our mma.sync kernel; median of 3 x 10). This is the simplest honest
// path: the same binary that checks our kernels measures the roofs, without an extra C ABI entry.
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join, resolve } from "node:path";
import { deviceSlug } from "../engine/roofline.ts";

const root = resolve(import.meta.dir, "..");
const args = process.argv.slice(2);
const flag = (n: string) => args.includes(n);
const opt = (n: string) => {
  const i = args.indexOf(n);
  return i >= 0 ? args[i + 1] : undefined;
};
const outDir = resolve(opt("--out") ?? join(root, "profiles", "ceilings"));
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
  const bw: number[] = [], fl: number[] = [];
  for (let i = 0; i < reps; i++) {  // interleaved, so a burst of outside load hits both alike
    bw.push(run("membw", "GB/s"));
    fl.push(run("flops", "GFLOP/s"));
  }
  const loadAfter = loadavg();
  const bws = stat(bw), fls = stat(fl);
  const command = `bun notebooks/calibrate.ts --backend cpu --threads ${threads}${reps !== 3 ? ` --reps ${reps}` : ""}`;
  const doc = {
    schema: "qwen-workbench/ceilings",
    version: 1,
    device,
    backend: "cpu",
    measured_at: new Date().toISOString(),
    command,
    tool: "cuda/build/bench membw|flops (cuda/tests/bench.cpp)",
    source: "measured now by cuda/build/bench",
    threads,
    device_info: { logical_cpus: cpus().length, avx512f: flags.has("avx512f"), simd_measured: "avx2+fma (256-bit)" },
    load_average: { before: loadBefore, after: loadAfter },
    // the fields engine/roofline.ts and engine/export/ceilings.ts read
    bandwidth_bytes_s: bws.median,
    flops: { fp32: fls.median },
    roof_names: { bandwidth: "read bandwidth", fp32: "fp32 FMA (AVX2)" },
    measurements: {
      read_bandwidth: { what: `streaming read, AVX2 loads, ${threads} thread(s), 1 GiB buffer; one sample = best of 5 passes`,
        unit: "bytes/s", command: `cuda/build/bench membw ${threads}`, ...bws },
      fp32_fma: { what: `fp32 FMA, 10 independent ymm chains per thread, ${threads} thread(s), register-resident, FMA = 2 FLOPs; one sample = best of 3 runs of >= 0.3 s`,
        unit: "FLOP/s", command: `cuda/build/bench flops ${threads}`, ...fls },
    },
    notes: [
      "AVX2 (256-bit) peak: the engine's CPU GEMM/GEMV kernels are AVX2; only the W8 decode GEMV uses AVX-512 (cuda/src/cpu/matmul_avx512.cpp), whose peak is not measured here.",
      "Read bandwidth only (no writes): decode reads the weights.",
    ],
  };
  const path = writeDoc(device, doc);
  const g = (v: number) => (v / 1e9).toFixed(1);
  console.log(`| device | threads | read bandwidth (median, min-max) | fp32 FMA peak (median, min-max) | load avg before/after |\n|---|---:|---:|---:|---|\n| ${device} | ${threads} | ${g(bws.median)} GB/s (${g(bws.min)}-${g(bws.max)}) | ${g(fls.median)} GFLOP/s (${g(fls.min)}-${g(fls.max)}) | ${loadBefore[0].toFixed(2)} / ${loadAfter[0].toFixed(2)} |`);
  console.log(`calibrate: wrote ${path}`);
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

const m = measure();
const c = JSON.parse(m.line.slice(6)) as {
  device: string; sms: number; cc: string; clock_mhz: number; mem_clock_mhz: number; memory_bytes: number;
  driver: number; runtime: number;
  copy_bw_bytes_per_s: { samples: number[]; median: number };
  bf16_flops_per_s: { samples: number[]; median: number; kernel: string; shape: string };
  gemm_library: string;
};
const doc = {
  schema: "qwen-workbench/ceilings",
  version: 1,
  device: c.device,
  measured_at: m.at,
  command: m.command,
  tool: "cuda/build/dev/qwlab calib",
  source: m.source,
  device_info: { sms: c.sms, cc: c.cc, clock_mhz: c.clock_mhz, mem_clock_mhz: c.mem_clock_mhz, memory_bytes: c.memory_bytes,
    driver: c.driver, runtime: c.runtime },
  // the fields engine/roofline.ts reads
  bandwidth_bytes_s: c.copy_bw_bytes_per_s.median,
  flops: { bf16: c.bf16_flops_per_s.median },
  // how they were measured, every sample kept
  measurements: {
    copy_bandwidth: { what: "cudaMemcpyAsync device-to-device, 2 GiB, bytes read + written", unit: "bytes/s",
      samples: c.copy_bw_bytes_per_s.samples, median: c.copy_bw_bytes_per_s.median },
    bf16_tensor_core: { what: `bf16 GEMM ${c.bf16_flops_per_s.shape}, random data, fp32 accumulation`, unit: "FLOP/s",
      kernel: c.bf16_flops_per_s.kernel, library: c.gemm_library, samples: c.bf16_flops_per_s.samples,
      median: c.bf16_flops_per_s.median },
  },
  notes: ["int8 / fp8 tensor-core rates are not measured yet (no int8/fp8 kernels in the engine)."],
};
const path = writeDoc(c.device, doc);
console.log(`| device | copy bandwidth | bf16 tensor core | via |\n|---|---:|---:|---|\n| ${c.device} | ${(c.copy_bw_bytes_per_s.median / 1e9).toFixed(0)} GB/s | ${(c.bf16_flops_per_s.median / 1e12).toFixed(0)} TFLOP/s | ${c.bf16_flops_per_s.kernel} |`);
console.log(`calibrate: wrote ${path}`);
