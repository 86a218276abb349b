// Capture-point (hook) names as requests give them: a per-layer hook of one layer (blocks.3.hook_resid_post),
// of every layer (blocks.*.attn.hook_q), or a global one (hook_logits).
import { z } from "zod";

const HOOK_RE = /^(blocks\.(\d+|\*)\.(hook_resid_pre|attn\.hook_[qkvz]|hook_attn_out|hook_resid_mid|mlp\.hook_pre|mlp\.hook_post|hook_resid_post)|hook_logits)$/;
export const HookName = z.string().regex(HOOK_RE, "unknown hook name (e.g. blocks.3.hook_resid_post, blocks.*.attn.hook_q, hook_logits)");
export const PER_LAYER_HOOKS = ["hook_resid_pre", "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_z", "hook_attn_out", "hook_resid_mid", "mlp.hook_pre", "mlp.hook_post", "hook_resid_post"];
export const GLOBAL_HOOKS = ["hook_logits"];

/** blocks.*.X → one name per layer; a layer past the model's last is an error; duplicates dropped. */
export function expandHooks(hooks: string[], nLayers: number): string[] {
  const out: string[] = [];
  for (const h of hooks) {
    if (h.startsWith("blocks.*.")) for (let l = 0; l < nLayers; l++) out.push(h.replace("*", String(l)));
    else {
      const m = /^blocks\.(\d+)\./.exec(h);
      if (m && Number(m[1]) >= nLayers) throw new Error(`hook ${h}: the model has ${nLayers} layers`);
      out.push(h);
    }
  }
  return [...new Set(out)];
}
