// Messages between the server (web/notebook/kernel.ts) and one notebook worker (web/notebook/worker.ts),
// validated with zod on arrival in both directions.
import { z } from "zod";
import { Output } from "../../engine/notebook/format.ts";

export const ToNotebook = z.discriminatedUnion("t", [
  /** flag: Int32Array over a SharedArrayBuffer; [0] = 1 while an interrupt is requested (read even in sync loops). */
  z.object({ t: z.literal("init"), cellDir: z.string(), flag: z.instanceof(SharedArrayBuffer) }),
  z.object({ t: z.literal("exec"), id: z.string(), code: z.string() }),
  z.object({ t: z.literal("interrupt") }),
]);
export type ToNotebook = z.infer<typeof ToNotebook>;

export const CellError = z.object({ name: z.string(), message: z.string(), line: z.number().int().optional(), stack: z.string().optional() });
export type CellError = z.infer<typeof CellError>;

export const FromNotebook = z.discriminatedUnion("t", [
  z.object({ t: z.literal("ready") }),
  z.object({ t: z.literal("output"), id: z.string(), output: Output }),
  z.object({ t: z.literal("done"), id: z.string(), ok: z.boolean(), error: CellError.optional() }),
]);
export type FromNotebook = z.infer<typeof FromNotebook>;
