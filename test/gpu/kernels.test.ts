// Every kernel against its CPU reference at real and awkward shapes (fresh random inputs, poisoned outputs):
// runs the kernel lab (cuda/dev/lab.cu) in --quick mode and requires no FAIL. Skips without a GPU.
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO, noGpu } from "./gpu.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // model loads of the 1.5B shape take seconds; no wall-clock is asserted

describe.skipIf(noGpu())("CUDA kernels vs CPU reference (kernel lab)", () => {
  test("qwlab --quick: all checks PASS", () => {
    // cuda/dev/run-gpu.sh runs the lab once and points QW_LAB_LOG at its log: read it instead of re-running
    const logPath = process.env.QW_LAB_LOG;
    if (logPath && existsSync(logPath)) {
      const log = readFileSync(logPath, "utf8");
      const fails = log.split("\n").filter((l) => /FAIL|FATAL/.test(l) && !l.startsWith("|"));
      if (fails.length) console.log(fails.join("\n"));
      if (!/qwlab: \d+ failure\(s\)/.test(log)) console.log(`[test/gpu] ${logPath} has no summary line: the lab did not finish (time limit?)`);
      expect(log).toContain("qwlab: 0 failure(s)");
      return;
    }
    const lab = join(REPO, "cuda", "build", "dev", "qwlab");
    if (!existsSync(lab)) {
      const b = Bun.spawnSync(["make", "-C", "cuda/dev", `-j${navigator.hardwareConcurrency ?? 4}`], { cwd: REPO, stdout: "pipe", stderr: "pipe" });
      expect(b.exitCode).toBe(0);
    }
    const lt = Bun.spawnSync(["bash", "cuda/dev/find-cublaslt.sh"], { cwd: REPO, stdout: "pipe" }).stdout.toString().trim();
    const r = Bun.spawnSync([lab, "all", "--quick"], { cwd: REPO, stdout: "pipe", stderr: "pipe",
      env: { ...process.env, ...(lt ? { QW_CUBLASLT: lt } : {}) } });
    const out = r.stdout.toString() + r.stderr.toString();
    const fails = out.split("\n").filter((l) => /FAIL|FATAL/.test(l) && !l.startsWith("|"));
    if (fails.length) console.log(fails.join("\n"));
    expect(fails).toEqual([]);
    expect(r.exitCode).toBe(0);
  }, 600_000);
});
