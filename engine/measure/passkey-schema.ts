// engine/measure/passkey-schema.ts — a passkey result (engine/measure/passkey.ts runs the test) as data: its types, the
// zod schema for results that cross a boundary (the engine worker's reply, the files the web workbench lists and
// exports), and its text views (title, heat-map table). Pure: nothing here runs the engine (engine/export/ reads it).
import { z } from "zod";


const Frac = z.number().min(0).max(1);
export const PasskeyResultSchema = z.object({
  schema: z.literal("qwen-workbench/passkey"),
  model: z.string(), backend: z.string(), device: z.string(),
  dca: z.object({ on: z.boolean(), chunk: z.number().int(), local: z.number().int(), source: z.string() }),
  sparse: z.object({
    on: z.literal(true), vertical: z.number().int(), slash: z.number().int(), local: z.number().int(), sink: z.number().int(),
    // absent in results saved before block-sparse existed: those are vertical-slash
    mode: z.enum(["vertical-slash", "block-sparse"]).optional(), blocks: z.number().int().optional(),
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

export interface PasskeyTrial {
  length: number;
  trial: number;
  key: string;
  depth: number;
  bucket: number;
  generated: string;
  correct: boolean;
  /** Sparse prefill: keys visited / dense keys (mean over layers and heads); with stats, mean recall of mass. */
  density?: number;
  recall?: number;
}

export interface PasskeyCell { length: number; bucket: number; n: number; correct: number; accuracy: number | null }

export interface PasskeyResult {
  schema: "qwen-workbench/passkey";
  model: string;
  backend: string;
  device: string;
  dca: { on: boolean; chunk: number; local: number; source: string };
  /** Sparse prefill: its budgets, and per length the mean density / recall over the trials. */
  sparse?: { on: true; mode?: "vertical-slash" | "block-sparse"; vertical: number; slash: number; blocks?: number; local: number; sink: number; stats: boolean;
    byLength: { length: number; density: number; recall: number | null }[] };
  lengths: number[];
  trials: number;
  seed: number;
  buckets: number;
  byLength: { length: number; n: number; correct: number; accuracy: number }[];
  cells: PasskeyCell[];
  trialsDetail: PasskeyTrial[];
  warnings: string[];
  seconds: number;
}

/** The heat map as a markdown table: one row per length, one column per depth bucket ("acc % (n)"), then all. */
export function passkeyTable(r: PasskeyResult): string {
  const pct = (x: number | null) => (x === null ? "–" : `${(100 * x).toFixed(0)} %`);
  const head = Array.from({ length: r.buckets }, (_, b) => `depth ${Math.round((100 * b) / r.buckets)}–${Math.round((100 * (b + 1)) / r.buckets)} %`);
  // With sparse prefill: the mean share of keys visited and (with stats) the mean recall of attention mass.
  const sp = r.sparse ? [" keys visited | recall |", "---:|---:|"] : ["", ""];
  const lines = [`| length | ${head.join(" | ")} | all |${sp[0]}`, `|---:|${head.map(() => "---:").join("|")}|---:|${sp[1]}`];
  for (const L of r.byLength) {
    const cells = r.cells.filter((c) => c.length === L.length).map((c) => `${pct(c.accuracy)} (${c.n})`);
    const s = r.sparse?.byLength.find((x) => x.length === L.length);
    const extra = s ? ` ${(100 * s.density).toFixed(1)} % | ${s.recall === null ? "–" : s.recall.toFixed(4)} |` : "";
    lines.push(`| ${L.length} | ${cells.join(" | ")} | **${pct(L.accuracy)}** (${L.correct}/${L.n}) |${extra}`);
  }
  return lines.join("\n");
}

/** A sparse run's pattern and the budgets it uses, e.g. "block-sparse (blocks 8, local 64, sink 64)". */
export function sparseBudgetText(s: NonNullable<PasskeyResult["sparse"]>): string {
  return s.mode === "block-sparse"
    ? `block-sparse (blocks ${s.blocks}, local ${s.local}, sink ${s.sink})`
    : `vertical-slash (vertical ${s.vertical}, slash ${s.slash}, local ${s.local}, sink ${s.sink})`;
}

/** One line naming the run: model, backend, dca setting. */
export function passkeyTitle(r: PasskeyResult): string {
  const sp = r.sparse ? `, sparse prefill ${sparseBudgetText(r.sparse)}` : "";
  return `passkey: ${r.model} on ${r.backend} (${r.device}), dca ${r.dca.on ? `on (chunk ${r.dca.chunk}, local ${r.dca.local}, from ${r.dca.source})` : "off"}${sp}, ` +
    `${r.trials} trial(s) per length, seed ${r.seed}, ${r.seconds.toFixed(1)} s`;
}
