// notebooks/calibrate.ts — measures the device's ceilings and writes profiles/ceilings/<device>.json, which the
// roofline (engine/roofline.ts) uses instead of datasheet numbers.
//
//   bun notebooks/calibrate.ts [--out DIR] [--no-build]
//   bun notebooks/calibrate.ts --from-lab-log FILE [--out DIR]   (no GPU needed: takes the CALIB line that
//       `qwlab all` / `qwlab calib` printed into FILE on the GPU machine; the file records it as the source)
//
// The measurement runs in the kernel lab binary (cuda/build/dev/qwlab calib, built from cuda/dev/ with
// `make -C cuda/dev` when missing): device-to-device copy bandwidth (2 GiB, bytes read + written, median of 3
// x 10 timed copies) and the bf16 tensor-core rate (8192^3 GEMM on random data through the engine's prefill
// GEMM path: cuBLASLt when it loads, else our mma.sync kernel; median of 3 x 10). This is the simplest honest
// path: the same binary that checks our kernels measures the roofs, without an extra C ABI entry.
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
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
mkdirSync(outDir, { recursive: true });
const path = join(outDir, `${deviceSlug(c.device)}.json`);
const tmp = `${path}.${process.pid}.tmp`;
writeFileSync(tmp, JSON.stringify(doc, null, 2) + "\n");
renameSync(tmp, path);
console.log(`| device | copy bandwidth | bf16 tensor core | via |\n|---|---:|---:|---|\n| ${c.device} | ${(c.copy_bw_bytes_per_s.median / 1e9).toFixed(0)} GB/s | ${(c.bf16_flops_per_s.median / 1e12).toFixed(0)} TFLOP/s | ${c.bf16_flops_per_s.kernel} |`);
console.log(`calibrate: wrote ${path}`);
