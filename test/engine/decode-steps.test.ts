// qw_session_decode_steps on the CPU backend (it runs the steps one by one there: the front's loop), checked by the
// cases test/gpu/decode-steps.test.ts runs on CUDA, where the steps are queued with the tokens kept on the GPU.
import { afterAll, beforeAll, describe, test } from "bun:test";
import { openModel, type Model } from "../../engine/index.ts";
import { cpuLibraryBuilt } from "../reference/fixtures.ts";
import { generousTimeout } from "../setup.ts";
import { checkGenerateSteps, checkStepsEqualLoop, checkStepsRefusals } from "./decode-steps-helpers.ts";

generousTimeout();

describe.skipIf(!cpuLibraryBuilt())("decodeSteps (CPU)", () => {
  let m: Model;
  beforeAll(async () => { m = (await openModel("default", { backend: "cpu", threads: 2 })) as Model; });
  afterAll(() => m?.close());
  test("n steps in one call = n decode calls (tokens, lengths, the next step), batch 1 and 3, greedy and sampled", () => {
    checkStepsEqualLoop(m);
  });
  test("generate with stepsPerSync 5 / 8 = stepsPerSync 1, cut by maxTokens and by a stop inside a call", async () => {
    await checkGenerateSteps(m);
  });
  test("bad input refused with the sequences unchanged; logits mode gives the last step's rows", () => {
    checkStepsRefusals(m);
  });
});
