// Builds libqwen at `npm install` (and `npm run build`): the CPU library always, the CUDA library when nvcc
// is on PATH and a GPU toolchain works. A missing CUDA toolchain is not an error: the CPU backend serves.
import { execSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";

const force = process.argv.includes("--force");
const jobs = Math.max(1, Number(process.env.QW_JOBS ?? 2));
function run(cmd) {
  console.log(`[build-native] ${cmd}`);
  execSync(cmd, { stdio: "inherit" });
}
if (!existsSync("cuda/Makefile")) {
  console.error("[build-native] cuda/Makefile is missing: is this the qwen-workbench checkout?");
  process.exit(1);
}
run(`make -C cuda -j${jobs} cpu${force ? " -B" : ""}`);
const nvcc = spawnSync("nvcc", ["--version"], { encoding: "utf8" });
const smi = spawnSync("nvidia-smi", ["-L"], { encoding: "utf8" });
if (nvcc.status === 0 && smi.status === 0 && /GPU/.test(smi.stdout)) {
  run(`make -C cuda -j${jobs} cuda`);
} else {
  console.log("[build-native] no GPU here: skipping libqwen_cuda.so (the CPU backend is built).");
}
