// engine/spec/cli.ts — the CLI's speculative options (`generate` and `bench`):
//   --speculative off|draft   --draft <model path>   --draft-k N (generate) | N[,N...] (bench; default 1,2,4,8)
// Kept here so engine/cli.ts only wires them in.
import { z } from "zod";
import type { BackendChoice } from "../api.ts";
import { openModel, type Model } from "../index.ts";
import { checkDraftCompatible } from "./compat.ts";
import { MAX_DRAFT_K } from "./draft.ts";

export const SPEC_OPTIONS = {
  speculative: { type: "string" }, draft: { type: "string" }, "draft-k": { type: "string" },
} as const;

export const SPEC_HELP_GENERATE = `      --speculative off|draft     speculative decoding with a draft model (default off)
      --draft PATH                the draft model (same tokenizer as the model), e.g. models/tiny-qwen2-brown-draft
      --draft-k N                 draft tokens per verify step (default 4)
`;
export const SPEC_HELP_BENCH = `      --speculative draft --draft PATH --draft-k N[,N...]   decode tok/s off vs draft (default k 1,2,4,8) on
                                  Brown validation prompts (--prompts N, default 8), acceptance per position
`;

// The values themselves are the registry's (toggle "speculative"); this CLI drives off and draft.
const Kind = z.string();
const K = z.coerce.number().int().min(1).max(MAX_DRAFT_K);

export interface SpecArgs {
  kind: "off" | "draft";
  draft?: string;
  ks: number[];
}

/** Validates the speculative flags; throws an Error whose message says what to fix. */
export function parseSpecArgs(o: Record<string, unknown>, defaultKs: number[]): SpecArgs {
  const kindR = Kind.safeParse(o.speculative ?? (o.draft !== undefined ? "draft" : "off"));
  if (kindR.success && kindR.data === "eagle") throw new Error("--speculative eagle is not implemented yet (only draft)");
  if (!kindR.success || (kindR.data !== "off" && kindR.data !== "draft")) throw new Error(`--speculative must be off or draft, got '${String(o.speculative)}'`);
  const kind: "off" | "draft" = kindR.data;
  const raw = o["draft-k"];
  const ks = raw === undefined ? defaultKs : String(raw).split(",").map((s) => {
    const r = K.safeParse(s.trim());
    if (!r.success || s.trim() === "") throw new Error(`--draft-k expects integers in 1..${MAX_DRAFT_K}, got '${String(raw)}'`);
    return r.data;
  });
  if (kind === "off") {
    if (raw !== undefined) throw new Error("--draft-k needs --speculative draft (and --draft PATH)");
    return { kind, ks: [] };
  }
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
