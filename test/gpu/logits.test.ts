// Logits rows left on the device until read (Sink::logits_deferred, cuda/src/cuda/layers.cu): after a step with
// logits mode 1 or 2 the CUDA backend keeps the rows in its buffer; qw_session_read_logits copies them on first
// use, and the greedy argmax (qw_session_read_topk with k = 1, no log-probabilities) runs on the device, so only
// the ids cross. Checked here: the device argmax equals the host rule (ties to the lower id) on every row of a
// verify-like pass, the rows read after it are the rows a hook capture of the same step gives (the eager path),
// and a later step replaces them. The test/engine twin runs the same checks on the CPU backend (host rows).
import { afterAll, beforeAll, describe, test } from "bun:test";
import { openModel, type Model } from "../../engine/index.ts";
import { noGpu } from "./gpu.ts";
import { generousTimeout } from "../setup.ts";
import { checkDeferredLogits } from "../engine/logits-helpers.ts";

generousTimeout();

describe.skipIf(noGpu())("deferred logits (CUDA)", () => {
  let m: Model;
  beforeAll(async () => { m = (await openModel("default", { backend: "cuda" })) as Model; });
  afterAll(() => m?.close());
  test("argmax on the device = the host rule; rows read late = the eager rows; the next step replaces them", () => {
    checkDeferredLogits(m);
  });
});
