// engine/spec/compat.ts — can this draft model speculate for that target? Token ids must mean the same thing
// in both (same vocabulary, same tokens, same merges, same special tokens), and the logits must have the same
// width, or the draft's proposals and probabilities are meaningless to the target.
import type { EngineModel } from "../api.ts";
import type { QwenTokenizer } from "../text/tokenizer.ts";

/** A model as the check needs it (engine/index.ts Model has `tokenizer.inner`). */
export interface TokenizedModel {
  readonly id: string;
  readonly config: EngineModel["config"];
  readonly tokenizer: EngineModel["tokenizer"] & { readonly inner?: QwenTokenizer };
}

/** Why `draft` cannot draft for `target`, or undefined when it can. */
export function draftIncompatibility(target: TokenizedModel, draft: TokenizedModel): string | undefined {
  const tv = target.config.vocab_size, dv = draft.config.vocab_size;
  if (tv !== dv) return `the draft's vocab_size ${dv} differs from the target's ${tv}`;
  const ti = target.tokenizer.inner, di = draft.tokenizer.inner;
  if (!ti || !di) return "a model without a tokenizer object cannot be checked (open both with openModel)";
  const tm = ti.toGgufMetadata({ chatTemplate: null }), dm = di.toGgufMetadata({ chatTemplate: null });
  const tt = tm["tokenizer.ggml.tokens"] as string[], dt = dm["tokenizer.ggml.tokens"] as string[];
  if (tt.length !== dt.length) return `the tokenizers have ${tt.length} and ${dt.length} tokens`;
  for (let i = 0; i < tt.length; i++) {
    if (tt[i] !== dt[i]) return `token ${i} is ${JSON.stringify(tt[i])} in the target's tokenizer but ${JSON.stringify(dt[i])} in the draft's`;
  }
  const ty = tm["tokenizer.ggml.token_type"] as number[], dy = dm["tokenizer.ggml.token_type"] as number[];
  for (let i = 0; i < ty.length; i++) if (ty[i] !== dy[i]) return `token ${i} (${JSON.stringify(tt[i])}) has a different type (special / normal) in the two tokenizers`;
  const tg = tm["tokenizer.ggml.merges"] as string[], dg = dm["tokenizer.ggml.merges"] as string[];
  if (tg.length !== dg.length) return `the tokenizers have ${tg.length} and ${dg.length} BPE merges`;
  for (let i = 0; i < tg.length; i++) if (tg[i] !== dg[i]) return `BPE merge ${i} differs (${JSON.stringify(tg[i])} vs ${JSON.stringify(dg[i])})`;
  const te = [...target.tokenizer.eosIds].sort((a, b) => a - b).join(","), de = [...draft.tokenizer.eosIds].sort((a, b) => a - b).join(",");
  if (te !== de) return `the end-of-sequence ids differ (target ${te || "none"}, draft ${de || "none"})`;
  return undefined;
}

/** Throws a clear error when the draft cannot draft for the target. */
export function checkDraftCompatible(target: TokenizedModel, draft: TokenizedModel): void {
  const why = draftIncompatibility(target, draft);
  if (why) {
    throw new Error(`the draft model ${draft.id} cannot speculate for ${target.id}: ${why}. ` +
      "A draft must share the target's tokenizer exactly (e.g. a smaller model of the same family).");
  }
}
