// The sm_90a flash prefill (cuda/src/opt/attention/fa3_prefill.cu; the default on sm_90, QW_FLASH_WGMMA=0 turns it
// off) end to end through the engine: the embedded model (hd 64, G = 4) prefilled by a child process per arm
// (fa3-run.ts; the switch is read from the process environment), the wgmma arm against the mma.sync arm layer by
// layer (attn.hook_z), for one prefill of 700 tokens, the same tokens as three chunks against the cache, and a second
// sequence in its own slot; and each layer's attention kernel is the one the switch names. With the lab's fa3
// section (cuda/dev/lab/fa3.cu) it is what made the kernel the default. Needs an sm_90 device (H100 / H200).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tensorError } from "../../engine/measure/metrics.ts";
import { REPO, noGpu } from "./gpu.ts";
import type { Fa3RunSummary } from "./fa3-run.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout();

describe.skipIf(noGpu())("flash prefill wgmma (QW_FLASH_WGMMA=1, the sm_90 default) vs mma.sync (=0) through the engine", () => {
  let dir = "";
  const arms: Record<"mma" | "wgmma", { sum: Fa3RunSummary; dir: string }> = {} as never;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "qw-fa3-"));
    for (const arm of ["mma", "wgmma"] as const) {
      const env: Record<string, string | undefined> = { ...process.env };
      env.QW_FLASH_WGMMA = arm === "wgmma" ? "1" : "0";  // whatever the parent's environment says (unset = wgmma on sm_90)
      const out = join(dir, arm);
      const r = Bun.spawnSync([process.execPath, join(REPO, "test", "gpu", "fa3-run.ts"), out], { cwd: REPO, env, stdout: "pipe", stderr: "pipe" });
      if (r.exitCode !== 0) throw new Error(`fa3-run.ts (${arm}) failed: ${r.stderr.toString()}`);
      arms[arm] = { sum: JSON.parse(readFileSync(join(out, "summary.json"), "utf8")) as Fa3RunSummary, dir: out };
    }
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  const z = (arm: "mma" | "wgmma", run: string) => new Float32Array(readFileSync(join(arms[arm].dir, `${run}.f32`)).buffer.slice(0));

  test("the switch reaches every layer: attn_prefill_wgmma with it, attn_prefill_mma without", () => {
    for (const run of ["one", "chunked", "second"]) {
      for (const k of arms.wgmma.sum.runs[run].kernels) expect(k).toEqual(["attn_prefill_wgmma"]);
      for (const k of arms.mma.sum.runs[run].kernels) expect(k).toEqual(["attn_prefill_mma"]);
    }
  });

  for (const run of ["one", "chunked", "second"])
    test(`${run}: every layer's attention output matches the mma.sync arm (cosine >= 0.9995, rel L1 <= 0.01)`, () => {
      const info = arms.mma.sum.runs[run];
      const a = z("mma", run), b = z("wgmma", run), per = info.rows * info.cols;
      expect(b.length).toBe(a.length);
      for (let l = 0; l < info.layers; l++) {
        const e = tensorError(a.subarray(l * per, (l + 1) * per), b.subarray(l * per, (l + 1) * per));
        console.log(`[fa3] ${run} layer ${l}: cos ${e.cosine.toFixed(6)} relL1 ${e.rel_l1.toFixed(5)} max abs ${e.max_abs.toExponential(2)}`);
        expect(e.cosine).toBeGreaterThanOrEqual(0.9995);
        expect(e.rel_l1).toBeLessThanOrEqual(0.01);
      }
      console.log(`[fa3] ${run}: last-position argmax mma ${info.argmax}, wgmma ${arms.wgmma.sum.runs[run].argmax}`);
    });

  test("wgmma arm: the last chunk (rows 600..699 against 600 cached keys) agrees with one prefill of 700", () => {
    const one = z("wgmma", "one"), ch = z("wgmma", "chunked");
    const info = arms.wgmma.sum.runs.one, cols = info.cols;
    expect(arms.wgmma.sum.runs.chunked.rows).toBe(100);
    for (let l = 0; l < info.layers; l++) {
      const a = one.subarray((l * 700 + 600) * cols, (l + 1) * 700 * cols), b = ch.subarray(l * 100 * cols, (l + 1) * 100 * cols);
      const e = tensorError(a, b);
      expect(e.cosine).toBeGreaterThanOrEqual(0.9995);
    }
  });
});
