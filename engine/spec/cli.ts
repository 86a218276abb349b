// engine/spec/cli.ts — the CLI's speculative options (`generate` and `bench`):
//   --speculative off|draft|eagle   --draft <model path>   --draft-k N (generate) | N[,N...] (bench; default 1,2,4,8)
//   --eagle <head dir>   --tree-depth D   --tree-topk K   --tree-budget B   (speculative = eagle; engine/spec/eagle*.ts)
// Kept here so engine/cli.ts only wires them in.
import { z } from "zod";
import type { BackendChoice } from "../api.ts";
import { openModel, type Model } from "../index.ts";
import { checkDraftCompatible } from "./compat.ts";
import { MAX_DRAFT_K } from "./draft.ts";
import { checkTreeParams, DEFAULT_TREE, type TreeParams } from "./eagle-tree.ts";

export const SPEC_OPTIONS = {
  speculative: { type: "string" }, draft: { type: "string" }, "draft-k": { type: "string" },
  eagle: { type: "string" }, "tree-depth": { type: "string" }, "tree-topk": { type: "string" }, "tree-budget": { type: "string" },
} as const;

const TREE_HELP = `--tree-depth D --tree-topk K --tree-budget B   EAGLE-2 tree: draft levels (default ${DEFAULT_TREE.depth}), children per
                                  expanded node and nodes expanded per level (${DEFAULT_TREE.topK}), draft nodes verified per step (${DEFAULT_TREE.budget})`;
export const SPEC_HELP_GENERATE = `      --speculative off|draft|eagle  speculative decoding with a draft model or an EAGLE head (default off)
      --draft PATH                the draft model (same tokenizer as the model), e.g. models/tiny-qwen2-brown-draft
      --draft-k N                 draft tokens per verify step (default 4)
      --eagle DIR                 an EAGLE-1/2 head in SafeAILab's layout (config.json + model.safetensors), greedy only
      ${TREE_HELP}
`;
export const SPEC_HELP_BENCH = `      --speculative draft --draft PATH --draft-k N[,N...]   decode tok/s off vs draft (default k 1,2,4,8) on
                                  Brown validation prompts (--prompts N, default 8), acceptance per position
      --speculative eagle --eagle DIR [--tree-depth D --tree-topk K --tree-budget B]   off vs the EAGLE head
                                  (with --draft too: off, draft and eagle on the same prompts)
`;

// The values themselves are the registry's (toggle "speculative"); this CLI drives off, draft and eagle.
const Kind = z.string();
const isKind = (k: string): k is SpecArgs["kind"] => k === "off" || k === "draft" || k === "eagle";
const K = z.coerce.number().int().min(1).max(MAX_DRAFT_K);
const Int = z.coerce.number().int();

export interface SpecArgs {
  kind: "off" | "draft" | "eagle";
  draft?: string;
  ks: number[];
  /** speculative = eagle: the head directory and the tree. */
  eagle?: string;
  tree?: TreeParams;
}

function treeArgs(o: Record<string, unknown>): TreeParams {
  const pick = (key: string, dflt: number) => {
    if (o[key] === undefined) return dflt;
    const r = Int.safeParse(String(o[key]).trim());
    if (!r.success || String(o[key]).trim() === "") throw new Error(`--${key} expects an integer, got '${String(o[key])}'`);
    return r.data;
  };
  return checkTreeParams({ depth: pick("tree-depth", DEFAULT_TREE.depth), topK: pick("tree-topk", DEFAULT_TREE.topK), budget: pick("tree-budget", DEFAULT_TREE.budget) });
}

/** Validates the speculative flags; throws an Error whose message says what to fix. */
export function parseSpecArgs(o: Record<string, unknown>, defaultKs: number[]): SpecArgs {
  const implied = o.eagle !== undefined ? "eagle" : o.draft !== undefined ? "draft" : "off";
  const kindR = Kind.safeParse(o.speculative ?? implied);
  if (!kindR.success || !isKind(kindR.data)) throw new Error(`--speculative must be off, draft or eagle, got '${String(o.speculative)}'`);
  const kind = kindR.data;
  const raw = o["draft-k"];
  const ks = raw === undefined ? defaultKs : String(raw).split(",").map((s) => {
    const r = K.safeParse(s.trim());
    if (!r.success || s.trim() === "") throw new Error(`--draft-k expects integers in 1..${MAX_DRAFT_K}, got '${String(raw)}'`);
    return r.data;
  });
  const treeGiven = ["tree-depth", "tree-topk", "tree-budget"].some((k) => o[k] !== undefined);
  if (kind === "off") {
    if (raw !== undefined) throw new Error("--draft-k needs --speculative draft (and --draft PATH)");
    if (treeGiven) throw new Error("--tree-depth/--tree-topk/--tree-budget need --speculative eagle (and --eagle DIR)");
    return { kind, ks: [] };
  }
  if (kind === "eagle") {
    if (typeof o.eagle !== "string" || o.eagle === "") throw new Error("--speculative eagle needs --eagle DIR (an EAGLE head for the model, SafeAILab layout)");
    const withDraft = typeof o.draft === "string" && o.draft !== "";
    return { kind, eagle: o.eagle, tree: treeArgs(o), ks: withDraft ? ks : [], ...(withDraft ? { draft: o.draft as string } : {}) };
  }
  if (treeGiven || o.eagle !== undefined) throw new Error("--eagle and the --tree-* options need --speculative eagle");
  if (typeof o.draft !== "string" || o.draft === "") throw new Error("--speculative draft needs --draft PATH (a model with the same tokenizer)");
  return { kind, draft: o.draft, ks };
}

/** Opens the draft on the target's backend and checks that it can draft for the target. */
export async function openDraft(target: Model, path: string, threads: number | undefined): Promise<Model> {
  const d = (await openModel(path, { backend: target.backend as BackendChoice, threads })) as Model;
  try {
    checkDraftCompatible(target, d);
  } catch (e) {
    d.close();
    throw e;
  }
  return d;
}
