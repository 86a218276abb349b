// notebooks/tile-calibrate.ts — `npm run calibrate -- --tile [MODEL]` (toggle tile, QWEN-010): measures every tile
// candidate of every GEMV / GEMM shape of MODEL on this device through the native tuner, keeps fixed for every
// shape where no candidate is faster outside both spreads (screening and confirmation: engine/tuning.ts), writes
// profiles/tuning/<device>.json and prints the per-shape table (fixed vs chosen: median (min–max) µs per call).
// Then the end-to-end check (engine/tuning.ts checkSteps): the model's decode step (GEMV shapes) and prefill (GEMM
// shapes) with the tuned table against fixed; a choice the step is slower with goes back to fixed (--no-step-check:
// per-shape choices only).
import { basename } from "node:path";
import { openModel } from "../engine/index.ts";
import { applyStepCheck, checkSteps, modelShapes, tileInfo, tuneAndSave, tuningDir, writeTuningFile } from "../engine/tuning.ts";
import { stepSessionDims, stepTimers } from "../engine/tuning-step.ts";

export interface TileCalibrateOptions {
  model: string;
  backend: "cpu" | "cuda";
  threads?: number;
  reps: number;
  gemmTokens: number;
  dir?: string;
  /** time the model's steps with the tuned table against fixed (default true) */
  stepCheck?: boolean;
}

const us = (ns: number) => (ns / 1e3).toFixed(ns < 1e5 ? 2 : 1);

export async function calibrateTiles(o: TileCalibrateOptions): Promise<number> {
  const m = await openModel(o.model, { backend: o.backend, threads: o.threads });
  try {
    const s = m.newSession(stepSessionDims({ tokens: o.gemmTokens }));
    const native = s.tiles?.();
    const info = native ? tileInfo(native) : null;
    if (!native || !info) {
      console.error(`calibrate --tile: the ${o.backend} backend has no tile tuning yet (tile = fixed only)`);
      return 1;
    }
    const dir = o.dir ?? tuningDir();
    console.log(`calibrate --tile: ${o.model} on ${JSON.stringify(info.device)}; ${info.candidates.gemv.length} GEMV and ${info.candidates.gemm.length} GEMM candidates, ${o.reps} repetitions (screening), then >= 5 for the confirmation; GEMM at ${o.gemmTokens} tokens`);
    const r = tuneAndSave(native, info, dir, { reps: o.reps, gemmTokens: o.gemmTokens, log: (l) => console.log(l) });
    if (r.replaced) console.log(`calibrate --tile: replaced ${r.path}: ${r.replaced}`);
    let file = r.file;
    if (o.stepCheck !== false) {
      const mine = new Set(modelShapes(native).map((x) => x.key));
      const entries = Object.fromEntries(Object.entries(file.shapes).filter(([k]) => mine.has(k)));
      s.setToggle("tile", "auto");  // loads the file just written (every shape present: nothing measured again)
      const timers = stepTimers(s, { tokens: o.gemmTokens });
      const log = (l: string) => console.log(l);
      for (const [kind, step] of [["gemv", "decode"], ["gemm", "prefill"]] as const) {
        const c = checkSteps(entries, kind, step, basename(o.model), timers[step], { reps: Math.max(5, o.reps), log });
        if (c) file = applyStepCheck(file, c);
        else console.log(`tile: end to end (${step}): no ${kind} shape chose other than fixed: nothing to check`);
      }
      writeTuningFile(r.path, file);
    }
    console.log(`\n| shape | op | fixed µs | chosen | chosen µs | fixed / chosen | verdict |\n|---|---|---|---|---|---|---|`);
    for (const [k, e] of Object.entries(file.shapes)) {
      const f = e.fixedNs, c = e.choiceNs;
      console.log(`| ${k} | ${e.op} | ${us(f.median)} (${us(f.min)}–${us(f.max)}) | ${e.choice} | ${us(c.median)} (${us(c.min)}–${us(c.max)}) | ${(f.median / c.median).toFixed(3)} | ${e.verdict} |`);
    }
    for (const c of file.stepChecks ?? []) if (c.model === basename(o.model)) console.log(`end to end, ${c.step}: ${c.verdict}`);
    console.log(`calibrate --tile: wrote ${r.path}`);
    return 0;
  } finally {
    m.close();
  }
}
