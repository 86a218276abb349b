// llama-bench-style result tables (md, csv, json, jsonl) from one or more profiles. A bench profile contributes
// its `bench` rows; a run profile contributes a prompt-processing row (pp<N>) and a generation row (tg<N>).
// All four formats share one schema (llama-bench's lesson: one schema, or the compare scripts break).
import type { Profile, BenchRow } from "../measure/profile.ts";
import { fmtBytes } from "../measure/aggregate.ts";
import { summaryStats, type SummaryStat } from "../measure/stats.ts";

export const TABLE_FORMATS = ["md", "csv", "json", "jsonl"] as const;
export type TableFormat = (typeof TABLE_FORMATS)[number];

export interface TableRow {
  profile: string;
  label: string;
  model: string;
  size: string;
  weights: string;
  backend: string;
  device: string;
  toggles: string;
  test: string;
  batch: number;
  n_prompt: number;
  n_gen: number;
  tokens_per_s: number;
  tokens_per_s_min: number;
  tokens_per_s_max: number;
  samples: number;
  roofline_pct: number | null;
  build_commit: string;
}

function weightsOf(p: Profile): string {
  const t = p.manifest.model.weight_types;
  if (!t) return "?";
  const e = Object.entries(t).sort((a, b) => b[1] - a[1]);
  const out = p.manifest.model.weights_output;  // the lm_head requantized at load (the toggles show the layers')
  return (e.map(([k]) => k).slice(0, 2).join("+") || "?") + (out ? `→output=${out}` : "");
}

function togglesStr(p: Profile): string {
  return Object.entries(p.manifest.toggles).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("/") : v}`).join(" ");
}

export function tableRows(profiles: Profile[]): TableRow[] {
  const rows: TableRow[] = [];
  for (const p of profiles) {
    const base = {
      profile: p.id, label: p.manifest.label ?? p.id, model: p.manifest.model.id,
      size: p.manifest.model.weight_bytes ? fmtBytes(p.manifest.model.weight_bytes) : "?",
      weights: weightsOf(p), backend: p.manifest.device.backend, device: p.manifest.device.name,
      toggles: togglesStr(p), build_commit: p.manifest.git_commit.slice(0, 10),
    };
    if (p.bench?.length) {
      for (const b of p.bench as BenchRow[]) rows.push({
        ...base, model: b.model || base.model, weights: b.weights || base.weights, backend: b.backend || base.backend,
        test: b.test, batch: b.batch, n_prompt: b.n_prompt, n_gen: b.n_gen,
        tokens_per_s: b.tokens_per_s.median, tokens_per_s_min: b.tokens_per_s.min, tokens_per_s_max: b.tokens_per_s.max,
        samples: b.tokens_per_s.samples.length, roofline_pct: b.roofline_pct ?? null,
      });
      continue;
    }
    // A run: the median over its measured repetitions with their min–max (engine/measure/stats.ts), one sample per
    // repetition, the same numbers the Profiles list, Latency cards and Compare show.
    const s = p.summary, st = summaryStats(p);
    const np = s.prefill_tokens ?? 0, ng = s.decode_tokens ?? 0;
    const rate = (test: string, n_prompt: number, n_gen: number, x: SummaryStat | null) => {
      if (x) rows.push({
        ...base, test, batch: 1, n_prompt, n_gen, tokens_per_s: x.median,
        tokens_per_s_min: x.min, tokens_per_s_max: x.max, samples: x.n, roofline_pct: null,
      });
    };
    rate(`pp${np}`, np, 0, st.prefill_tok_s);
    rate(`tg${ng}`, 0, ng, st.decode_tok_s);
  }
  return rows;
}

const COLS: (keyof TableRow)[] = ["label", "model", "size", "weights", "backend", "device", "toggles", "test",
  "batch", "n_prompt", "n_gen", "tokens_per_s", "tokens_per_s_min", "tokens_per_s_max", "samples", "roofline_pct",
  "build_commit", "profile"];

function csvCell(v: unknown): string {
  const s = v === null || v === undefined ? "" : String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function fmtRate(r: TableRow): string {
  const spread = r.tokens_per_s_max - r.tokens_per_s_min;
  return spread > 0 ? `${r.tokens_per_s.toFixed(2)} (${r.tokens_per_s_min.toFixed(2)}–${r.tokens_per_s_max.toFixed(2)})`
    : r.tokens_per_s.toFixed(2);
}

export function renderTable(rows: TableRow[], format: TableFormat): string {
  switch (format) {
    case "json": return JSON.stringify(rows, null, 2) + "\n";
    case "jsonl": return rows.map((r) => JSON.stringify(r)).join("\n") + (rows.length ? "\n" : "");
    case "csv": return [COLS.join(","), ...rows.map((r) => COLS.map((c) => csvCell(r[c])).join(","))].join("\n") + "\n";
    case "md": {
      // Toggles are in csv/json/jsonl; in md the label names the arm (the full toggle list would not fit).
      const head = ["label", "model", "size", "weights", "backend", "test", "t/s (min–max)", "% roofline"];
      const esc = (s: string) => s.replace(/\|/g, "\\|");
      const lines = [
        `| ${head.join(" | ")} |`,
        `| ${head.map((h, i) => (i >= 6 ? "---:" : "---")).join(" | ")} |`,
        ...rows.map((r) => `| ${[r.label, r.model, r.size, r.weights, r.backend, r.test, fmtRate(r),
          r.roofline_pct === null ? "" : r.roofline_pct.toFixed(1)].map((x) => esc(String(x))).join(" | ")} |`),
      ];
      return lines.join("\n") + "\n";
    }
  }
}

export const TABLE_MIME: Record<TableFormat, string> = {
  md: "text/markdown; charset=utf-8", csv: "text/csv; charset=utf-8",
  json: "application/json; charset=utf-8", jsonl: "application/x-ndjson; charset=utf-8",
};
