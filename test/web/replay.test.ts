// Replays on the real CPU engine (embedded default model): the same prompt set under the same toggles gives
// identical tokens — greedy and seeded sampling — even after a run under other toggles in the same session.
import { describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { recordRun, type RunSpec } from "../../engine/measure/record.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const REPO = resolve(import.meta.dir, "../..");
const have = existsSync(join(REPO, "cuda/build/libqwen_cpu.so"));
if (!have) console.warn("[replay] skipped: cuda/build/libqwen_cpu.so is not built (npm install)");

describe.skipIf(!have)("deterministic replay on the CPU engine", () => {
  test("greedy and seeded sampling replay identically; other toggles in between do not leak", async () => {
    const { openModel } = await import("../../engine/index.ts");
    const m = await openModel("default", { backend: "cpu" });
    const s = m.newSession({ maxBatch: 1 });
    const spec = (toggles: RunSpec["toggles"], temperature: number): RunSpec => ({
      id: "r", prompts: [{ prompt: "The old man walked into the room and", seed: 7 }, { prompt: "The jury said", seed: 11 }],
      maxTokens: 12, sampling: { temperature, topK: 40, topP: 0.95, seed: 0 }, toggles, profiling: true, capture: [],
    });
    for (const temp of [0, 0.8]) {
      const a = await recordRun(m, s, spec({}, temp));
      const other = await recordRun(m, s, spec({ gqa: "broadcast", kvCache: "f32" }, temp));
      const b = await recordRun(m, s, spec({}, temp));
      expect(b.tokens).toEqual(a.tokens);
      expect(b.profile.manifest.toggles).toEqual(a.profile.manifest.toggles);
      expect(other.profile.manifest.toggles.gqa).toBe("broadcast");
      if (temp === 0) expect(a.tokens[0].length).toBe(12);
    }
    s.close();
    m.close();
  }, 180_000);
});
