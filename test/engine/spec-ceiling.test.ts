// speedupAtFullAcceptance (engine/spec/bench.ts): the speculative notebook's "vs off if all accepted" column, on
// hand-made arm results (no engine, no timing).
import { test, expect } from "bun:test";
import { speedupAtFullAcceptance, type SpecArmResult } from "../../engine/spec/bench.ts";
import type { SpecSummary } from "../../engine/spec/stats.ts";

const stat = (median: number) => ({ samples: [median, median, median], median, min: median, max: median, unit: "tok/s" });
const arm = (k: number, tokS: number, tokensPerStep?: number): SpecArmResult =>
  ({ arm: k ? `draft k=${k}` : "off", k, tokS: stat(tokS), ...(tokensPerStep ? { spec: { tokens_per_step: tokensPerStep } as SpecSummary } : {}) }) as SpecArmResult;

test("measured speedup scaled to k + 1 tokens per step", () => {
  const off = arm(0, 11107.5);
  // the H100 third run's draft k = 1 arm: 0.66x off at 1.49 tokens per step: 0.89x even if every draft were accepted
  expect(speedupAtFullAcceptance(arm(1, 7359.4, 1.49), off)).toBeCloseTo((7359.4 / 11107.5) * 2 / 1.49, 10);
  expect(speedupAtFullAcceptance(arm(1, 7359.4, 1.49), off)!).toBeLessThan(1);
  // an arm already accepting everything keeps its measured speedup
  expect(speedupAtFullAcceptance(arm(4, 20000, 5), arm(0, 10000))).toBeCloseTo(2, 12);
});

test("no value for off, for arms without statistics, or for a zero baseline", () => {
  expect(speedupAtFullAcceptance(arm(0, 100), arm(0, 100))).toBeNull();
  expect(speedupAtFullAcceptance(arm(2, 100), arm(0, 100))).toBeNull();
  expect(speedupAtFullAcceptance(arm(2, 100, 2), arm(0, 0))).toBeNull();
});
