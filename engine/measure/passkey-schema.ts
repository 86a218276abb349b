// engine/measure/passkey-schema.ts — zod schema of a passkey result (engine/measure/passkey.ts PasskeyResult), for
// results that cross a boundary: the engine worker's reply and the files the web workbench lists and exports.
import { z } from "zod";
import type { PasskeyResult } from "./passkey.ts";

export type { PasskeyResult };

const Frac = z.number().min(0).max(1);
export const PasskeyResultSchema = z.object({
  schema: z.literal("qwen-workbench/passkey"),
  model: z.string(), backend: z.string(), device: z.string(),
  dca: z.object({ on: z.boolean(), chunk: z.number().int(), local: z.number().int(), source: z.string() }),
  sparse: z.object({
    on: z.literal(true), vertical: z.number().int(), slash: z.number().int(), local: z.number().int(), sink: z.number().int(),
    stats: z.boolean(), byLength: z.array(z.object({ length: z.number().int(), density: Frac, recall: Frac.nullable() })),
  }).optional(),
  lengths: z.array(z.number().int().positive()).min(1),
  trials: z.number().int().positive(), seed: z.number().int(), buckets: z.number().int().min(1).max(20),
  byLength: z.array(z.object({ length: z.number().int(), n: z.number().int(), correct: z.number().int(), accuracy: Frac })),
  cells: z.array(z.object({ length: z.number().int(), bucket: z.number().int(), n: z.number().int(), correct: z.number().int(), accuracy: Frac.nullable() })),
  trialsDetail: z.array(z.object({
    length: z.number().int(), trial: z.number().int(), key: z.string(), depth: Frac, bucket: z.number().int(), generated: z.string(),
    correct: z.boolean(), density: Frac.optional(), recall: Frac.optional(),
  })),
  warnings: z.array(z.string()),
  seconds: z.number().nonnegative(),
}).passthrough();

/** A checked passkey result (throws a ZodError naming the first bad field). */
export function parsePasskeyResult(x: unknown): PasskeyResult {
  return PasskeyResultSchema.parse(x) as unknown as PasskeyResult;
}
