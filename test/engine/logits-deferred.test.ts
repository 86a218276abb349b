// The logits readout contract on the CPU backend (test/engine/logits-helpers.ts): rows kept in the session's buffer
// until read (Sink::logits_deferred) give what the eager copy gave; the GPU twin is test/gpu/logits.test.ts.
import { afterAll, beforeAll, describe, test } from "bun:test";
import { openModel, type Model } from "../../engine/index.ts";
import { checkDeferredLogits } from "./logits-helpers.ts";

describe("deferred logits (CPU)", () => {
  let m: Model;
  beforeAll(async () => { m = (await openModel("default", { backend: "cpu", threads: 2 })) as Model; });
  afterAll(() => m?.close());
  test("argmax = the host rule; rows read late = the eager rows; the next step replaces them", () => {
    checkDeferredLogits(m);
  });
});
