// Toggle tile = auto on CUDA (QWEN-010; src/cuda/tile_session.cu, src/opt/tile/tile_tune_cuda.cu) on synthetic
// models (bf16 and q8_0: the W8 GEMV path), skipped without a GPU:
//  - the tuner's answer has the CPU tuner's shape (engine/tuning.ts parses it) and lists the CUDA model's shapes
//    (q|k|v and gate|up fused: 5 GEMV + 4 GEMM); every candidate's output is bitwise equal to fixed's or within the
//    bound of a reordered fp32 sum (a candidate outside it is a kernel bug: the check is what keeps it unchosen);
//  - first use of tile = auto writes <QW_TUNING_DIR>/<device>.json, a second session reads it;
//  - greedy tokens under the tuned table, and with every shape forced onto one non-fixed candidate, equal fixed's
//    (up to a near-tie of fixed's logits within the two runs' difference, reported), logits within bf16 noise.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openModel, type Model } from "../../engine/index.ts";
import { deviceKey, tileInfo, TuningFileSchema } from "../../engine/tuning.ts";
import { noGpu } from "./gpu.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout();

type Session = ReturnType<Model["newSession"]>;

for (const type of ["bf16", "q8_0"]) {
  describe.skipIf(noGpu())(`CUDA tile tuner, synthetic:tiny:${type}`, () => {
    let dir = "";
    let gpu: Model;
    const prevDir = process.env.QW_TUNING_DIR;
    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), "qw-tile-cuda-"));
      process.env.QW_TUNING_DIR = dir;
      gpu = (await openModel(`synthetic:tiny:${type}`, { backend: "cuda" })) as Model;
    });
    afterAll(() => {
      gpu?.close();
      if (prevDir === undefined) delete process.env.QW_TUNING_DIR;
      else process.env.QW_TUNING_DIR = prevDir;
      rmSync(dir, { recursive: true, force: true });
    });
    const ids = Array.from({ length: 24 }, (_, i) => (i * 7919 + 13) % 8000);
    /** Greedy tokens and the logits each came from (the prefill's, then 8 decode steps'). */
    const greedy = (setup: (s: Session) => void) => {
      const s = gpu.newSession({ maxBatch: 1, maxContext: 128, maxPrefill: 64 });
      try {
        setup(s);
        s.setLogitsMode(1);
        s.setSampling(0, { temperature: 0 });
        const tokens = [s.prefill(0, ids)];
        const logits = [s.logits().data.slice()];
        for (let k = 0; k < 8; k++) {
          tokens.push(s.decode([0], [tokens[tokens.length - 1]])[0]);
          logits.push(s.logits().data.slice());
        }
        return { tokens, logits };
      } finally {
        s.close();
      }
    };
    type Run = ReturnType<typeof greedy>;
    /** Same tokens as fixed, step by step, until a step where fixed's top-2 gap is within twice the logit difference
     *  of the two runs (a near-tie that reordered fp32 sums may break; reported, and the sequences diverge after it);
     *  logits within bf16 noise (relative L2 < 2e-2, the fusion tests' bound) up to there. */
    const sameAsFixed = (what: string, r: Run, fixed: Run) => {
      for (let k = 0; k < fixed.tokens.length; k++) {
        const f = fixed.logits[k], g = r.logits[k];
        let num = 0, den = 0, maxAbs = 0, top = -Infinity, second = -Infinity;
        for (let j = 0; j < f.length; j++) {
          const d = g[j] - f[j];
          num += d * d;
          den += f[j] * f[j];
          maxAbs = Math.max(maxAbs, Math.abs(d));
          if (f[j] > top) [second, top] = [top, f[j]];
          else if (f[j] > second) second = f[j];
        }
        expect(Math.sqrt(num / Math.max(den, 1e-30))).toBeLessThan(2e-2);
        if (top - second <= 2 * maxAbs) {
          console.log(`[tile cuda ${type}] ${what}: step ${k} is a near-tie (gap ${(top - second).toExponential(2)}, max |diff| ${maxAbs.toExponential(2)}): tokens compared up to it`);
          return;
        }
        expect(r.tokens[k]).toBe(fixed.tokens[k]);
      }
    };

    test("the tuner's answer: every shape, every candidate checked against fixed", () => {
      const s = gpu.newSession({ maxBatch: 1, maxContext: 128, maxPrefill: 64 });
      try {
        const t = s.tiles!();
        const info = tileInfo(t)!;
        expect(info.device.backend).toBe("cuda");
        const dry = JSON.parse(t.tileTune(JSON.stringify({ dryRun: true }))).shapes as { key: string; op: string; kind: string }[];
        expect(dry.map((x) => x.op).sort()).toEqual(["down", "down", "gate_up", "gate_up", "lm_head", "o_proj", "o_proj", "qkv", "qkv"]);
        const a = JSON.parse(t.tileTune(JSON.stringify({ reps: 3, repMs: 0.5 }))) as {
          shapes: { key: string; kind: string; candidates: { name: string; samplesNs: number[]; bitwiseEqual: boolean; withinBound: boolean; maxAbsDiff: number }[] }[];
        };
        expect(a.shapes.length).toBe(9);
        for (const sh of a.shapes) {
          expect(sh.candidates.map((c) => c.name)).toEqual(info.candidates[sh.kind as "gemv" | "gemm"].map((c) => c.name));
          for (const c of sh.candidates) {
            if (!c.bitwiseEqual) console.log(`[tile cuda ${type}] ${sh.key} ${c.name}: reordered, max |diff| ${c.maxAbsDiff.toExponential(2)}, within bound ${c.withinBound}`);
            expect(c.samplesNs.length).toBe(3);
            expect(c.samplesNs.every((v) => v > 0)).toBe(true);
            expect(c.bitwiseEqual || c.withinBound).toBe(true);
          }
        }
        expect(() => t.tileTune(JSON.stringify({ only: "gemv.bf16:1x1" }))).toThrow(/no shape/);
        expect(() => t.tileTune(JSON.stringify({ candidates: ["r3.ks9"] }))).toThrow(/not a gemv candidate/);
      } finally {
        s.close();
      }
    });

    test("first use of auto writes the device's file, the next session reads it; tokens equal fixed's", () => {
      const fixed = greedy(() => {});
      let path = "";
      const tuned = greedy((s) => {
        s.setToggle("tile", "auto");
        const st = s.tileStatus!()!;
        expect(st.source).toBe("tuned");
        path = join(dir, `${deviceKey(tileInfo(s.tiles!())!.device)}.json`);
        expect(st.path).toBe(path);
        expect(st.entries).toBe(9);
      });
      expect(existsSync(path)).toBe(true);
      const f = TuningFileSchema.parse(JSON.parse(readFileSync(path, "utf8")));
      expect(f.device.backend).toBe("cuda");
      for (const [k, e] of Object.entries(f.shapes)) console.log(`[tile cuda ${type}] ${k}: ${e.choice} (${e.verdict})`);
      sameAsFixed("tuned", tuned, fixed);
      const again = greedy((s) => {
        s.setToggle("tile", "auto");
        expect(s.tileStatus!()).toMatchObject({ source: "file", entries: 9 });
      });
      sameAsFixed("tuned, from the file", again, fixed);
    });

    test("every shape forced onto each non-fixed candidate: same tokens, logits within bf16 noise", () => {
      const fixed = greedy(() => {});
      const probe = gpu.newSession({ maxBatch: 1, maxContext: 128, maxPrefill: 64 });
      const info = tileInfo(probe.tiles!())!;
      const shapes = JSON.parse(probe.tiles!().tileTune(JSON.stringify({ dryRun: true }))).shapes as { key: string; kind: "gemv" | "gemm" }[];
      probe.close();
      const gv = info.candidates.gemv.slice(1).map((c) => c.name), gm = info.candidates.gemm.slice(1).map((c) => c.name);
      for (let i = 0; i < Math.max(gv.length, gm.length); i++) {
        const pick = { gemv: gv[i % gv.length], gemm: gm[i % gm.length] };
        const r = greedy((s) => {
          s.setToggle("tile", "auto");
          s.tiles!().tileSet(JSON.stringify(Object.fromEntries(shapes.map((x) => [x.key, pick[x.kind]]))));
        });
        sameAsFixed(`gemv ${pick.gemv} / gemm ${pick.gemm}`, r, fixed);
      }
    });
  });
}
