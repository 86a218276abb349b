// engine/sparse.ts — sparse prefill (toggle "sparsePrefill" = vertical-slash | block-sparse, cuda/src/opt/sparse_prefill/): the one
// translation of SparseOptions into native session options, the zod schema of what a session reports about it
// (qw_session_info_json "sparsePrefill"), the CLI / notebook flags, and a per-layer table of recall and error.
import { z } from "zod";
import type { SparseInfo, SparseMode, SparseOptions } from "./api.ts";
import { toggleRegistry } from "./catalog.ts";

const BUDGETS = [["vertical", 0], ["slash", 0], ["blocks", 0], ["local", 1], ["sink", 0]] as const;

/** `value` as a value of toggle sparsePrefill in `registry` (the native library's; default: this process's), else an
 *  Error listing the values (cuda/src/opt/sparse_prefill/sparse_prefill.cpp is their one source). */
export function sparseMode(value: string, what: string, registry: { id: string; values: string[] }[] = toggleRegistry()): "off" | SparseMode {
  const values = registry.find((t) => t.id === "sparsePrefill")?.values ?? [];
  if (!values.includes(value)) throw new Error(`${what} must be ${values.join(", ")}, got '${value.slice(0, 40)}'`);
  return value as "off" | SparseMode;
}
const MAX_BUDGET = 2 ** 30;

/** SparseOptions → the qw_session_create keys (sparse_vertical, …); throws naming a bad value. */
export function sparseSessionOptions(o?: SparseOptions): Record<string, number | boolean> {
  if (!o) return {};
  const out: Record<string, number | boolean> = {};
  for (const [k, min] of BUDGETS) {
    const v = o[k];
    if (v === undefined) continue;
    if (!Number.isInteger(v) || v < min || v > MAX_BUDGET) {
      const why = k === "local" ? " (diagonal 0, each query's own key, is always visited)" : "";
      throw new Error(`sparse.${k} must be an integer in [${min}, ${MAX_BUDGET}]${why}, got ${String(v)}`);
    }
    out[`sparse_${k}`] = v;
  }
  if (o.stats !== undefined) {
    if (typeof o.stats !== "boolean") throw new Error(`sparse.stats must be true or false, got ${String(o.stats)}`);
    out.sparse_stats = o.stats;
  }
  return out;
}

const HeadSchema = z.object({
  rows: z.number().nonnegative(), density: z.number().min(0).max(1),
  recall: z.number().optional(), relL2: z.number().optional(), cosine: z.number().optional(),
});
export const SparseInfoSchema = z.object({
  vertical: z.number().int(), slash: z.number().int(), local: z.number().int(), sink: z.number().int(),
  blocks: z.number().int(), blockSize: z.number().int(),
  lastQ: z.number().int(), stats: z.boolean(), steps: z.number().int().nonnegative(),
  layers: z.array(z.object({ layer: z.number().int(), heads: z.array(HeadSchema) })),
});

/** Usage lines of the flags below (CLI passkey / bench, notebooks). */
export const SPARSE_FLAGS_HELP = `      --sparse off|vertical-slash|block-sparse   MInference sparse prefill (toggle sparsePrefill; default off)
      --sparse-vertical N --sparse-slash N   vertical-slash: columns / diagonals per head beyond the forced
                                  ones (default 1000 / 6096)
      --sparse-blocks N           block-sparse: key blocks (64 positions) per query block beyond the forced
                                  ones (default 100)
      --sparse-local N --sparse-sink N       diagonals / first columns always visited (default 100 / 30;
                                  block-sparse: the ceil(N / 64) nearest / first blocks)
      --sparse-stats              also run dense attention: recall of attention mass and output error per layer
`;

/** parseArgs option specs of those flags. */
export const SPARSE_FLAG_SPECS = {
  sparse: { type: "string" }, "sparse-vertical": { type: "string" }, "sparse-slash": { type: "string" }, "sparse-blocks": { type: "string" },
  "sparse-local": { type: "string" }, "sparse-sink": { type: "string" }, "sparse-stats": { type: "boolean" },
} as const;

/** The flags' values → {mode, options}; `fail` reports a bad value (and does not return). */
export function sparseFromFlags(o: Record<string, unknown>, fail: (m: string) => never): { mode: "off" | SparseMode; options?: SparseOptions } {
  let mode: "off" | SparseMode = "off";
  try {
    mode = sparseMode((o.sparse as string | undefined) ?? "off", "--sparse");
  } catch (e) {
    fail((e as Error).message);
  }
  const options: SparseOptions = {};
  for (const [k, min] of BUDGETS) {
    const v = o[`sparse-${k}`];
    if (v === undefined) continue;
    const x = Number(v);
    if (typeof v !== "string" || v.trim() === "" || !Number.isInteger(x) || x < min) fail(`--sparse-${k} expects an integer >= ${min}, got '${String(v)}'`);
    options[k] = x;
  }
  if (o["sparse-stats"]) options.stats = true;
  return { mode, ...(Object.keys(options).length ? { options } : {}) };
}

/** Per layer: density, and with stats recall / rel L2 / cosine as min–mean–max over the heads (markdown). */
export function sparseInfoTable(info: SparseInfo): string {
  const f = (xs: (number | undefined)[], digits: number) => {
    const v = xs.filter((x): x is number => x !== undefined);
    if (!v.length) return "–";
    const mean = v.reduce((a, b) => a + b, 0) / v.length;
    return `${Math.min(...v).toFixed(digits)} / ${mean.toFixed(digits)} / ${Math.max(...v).toFixed(digits)}`;
  };
  const lines = [
    `sparse prefill budgets: vertical ${info.vertical}, slash ${info.slash}, blocks ${info.blocks} (of ${info.blockSize}), local ${info.local}, sink ${info.sink}, last ${info.lastQ} queries; ${info.steps} step(s)`,
    "", "| layer | density (min / mean / max over heads) | recall | rel L2 | cosine |", "|---:|---|---|---|---|",
  ];
  for (const l of info.layers) {
    const h = l.heads;
    lines.push(`| ${l.layer} | ${f(h.map((x) => x.density), 3)} | ${f(h.map((x) => x.recall), 4)} | ${f(h.map((x) => x.relL2), 4)} | ${f(h.map((x) => x.cosine), 5)} |`);
  }
  return lines.join("\n");
}

/** The profile summary's `sparse` block: what the session's latest prompt measured, when any layer ran sparse. */
export function sparseSummary(session: { sparseInfo?(): SparseInfo }): { sparse?: SparseInfo } {
  const info = session.sparseInfo?.();
  return info && info.steps > 0 ? { sparse: info } : {};
}

/** zod schema of SparseOptions where they enter over HTTP or between threads (the native front checks again). */
export const SparseOptionsSchema = z.object({
  vertical: z.number().int().min(0).max(MAX_BUDGET).optional(),
  slash: z.number().int().min(0).max(MAX_BUDGET).optional(),
  blocks: z.number().int().min(0).max(MAX_BUDGET).optional(),
  local: z.number().int().min(1, "sparse.local must be >= 1 (each query's own key is always visited)").max(MAX_BUDGET).optional(),
  sink: z.number().int().min(0).max(MAX_BUDGET).optional(),
  stats: z.boolean().optional(),
}).strict();
