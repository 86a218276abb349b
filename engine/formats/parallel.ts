// engine/formats/parallel.ts — the `parallel` model option (tensor parallelism, QWEN-018) on the TypeScript side:
// its check against the library's registry and the native config key it becomes. Like `weights`, it is chosen when
// a model loads (openModel(source, { parallel: "tp2" })): the weights are sharded over the ranks then, so sessions
// report it as the toggle `parallel` and refuse to change it. The sharding plan and its checks (which models split
// how many ways) are native: cuda/src/opt/parallel/tp_plan.hpp.
import { z } from "zod";
import { toggleRegistry } from "../catalog.ts";

/** The registry toggle that reports the option (a session cannot change it: reload instead). */
export const PARALLEL_TOGGLE = "parallel";

/** The values, from the library's toggle registry (the one source of toggle names and values). */
export function parallelValues(): string[] {
  return toggleRegistry().find((t) => t.id === PARALLEL_TOGGLE)?.values ?? [];
}

export const ParallelSchema = z.string().superRefine((v, ctx) => {
  if (!parallelValues().includes(v)) ctx.addIssue({ code: "custom", message: `parallel option: ${JSON.stringify(v)} is not a value (accepted: ${parallelValues().join(", ")})` });
});

/** Validates the option (undefined = the default, one device); the message names the accepted values. */
export function checkParallelOption(v: unknown): string | undefined {
  if (v === undefined) return undefined;
  const r = ParallelSchema.safeParse(v);
  if (!r.success) throw new Error(r.error.issues[0]?.message ?? "parallel option: not a string");
  return r.data;
}

/** The key qw_model_create reads next to the HF config (absent for the default). */
export function nativeParallelConfig(v: string | undefined): Record<string, unknown> {
  return v === undefined || v === parallelValues()[0] ? {} : { parallel: v };
}
