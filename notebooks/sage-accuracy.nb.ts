// %% [markdown]
// # SageAttention accuracy (issue 11)
//
// Each Sage arm (`attention` = sage-int8 | sage-fp8, every layer) against flash-bf16 on the same prompt, through the
// quantization-error machinery (`engine/measure/quant-error.ts`, the Quantization error page's code): per layer
// cosine, relative L1 and max abs of the attention output before o_proj (`attn.hook_z`) and of the residual stream,
// logits KL, and both arms' perplexity on the Brown validation text. Then each layer alone in each arm: that layer's
// own error (its inputs are flash-bf16's), and the layers before it unchanged (the toggle reaches that layer only). Runs in the Notebook page or with `bun notebooks/sage-accuracy.nb.ts`
// (QW_NB_PROMPT: captured prompt tokens, default 512; QW_NB_CTX: perplexity window, default 256;
// QW_NB_MAX_TOKENS: text tokens, default 4096).

// %% Measure both arms
import { openModel } from "../engine/index.ts";
import { implementedValues } from "../engine/measure/sweep.ts";
import { recordQuantError } from "../engine/measure/quant-error.ts";
import { textTokens } from "../engine/measure/perplexity-run.ts";
import { hookName } from "../engine/catalog.ts";
import { quantSvg } from "../engine/export/svg.ts";
import type { Profile } from "../engine/measure/profile.ts";
import { display, plotly, svg, table } from "../engine/notebook/display.ts";

const model = await openModel(process.env.QW_NB_MODEL ?? "default");
const session = model.newSession({ maxBatch: 1 });
const att = model.toggleRegistry().find((d) => d.id === "attention");
const arms = att ? implementedValues(att, model.backend).filter((v) => v.startsWith("sage-")) : [];
if (!arms.length) throw new Error(`the ${model.backend} backend implements no Sage arm of toggle attention`);
const L = model.config.num_hidden_layers;
const hooks = [
  ...Array.from({ length: L }, (_, l) => [hookName("attn.hook_z", l), hookName("hook_resid_post", l)]).flat(),
  hookName("hook_logits"),
];
const ctx = Number(process.env.QW_NB_CTX ?? 256), maxTokens = Number(process.env.QW_NB_MAX_TOKENS ?? 4096);
// The captured prompt: the first QW_NB_PROMPT tokens (default 512) of the Brown text, so every layer attends over
// several query and key blocks (32 / 64) with real activations.
const promptLen = Number(process.env.QW_NB_PROMPT ?? 512);
const prompt = { tokens: textTokens(model, { kind: "brown" }, promptLen).tokens };
display(`${model.id} on ${model.device.name} · ${L} layers · prompt ${prompt.tokens.length} Brown tokens · ` +
  `perplexity ctx ${ctx} over ${maxTokens} tokens`);
const profiles: Profile[] = [];
for (const arm of arms) {
  const p = await recordQuantError(model, session, {
    id: `nb-sage-${arm}`, prompt, repeats: 3, hooks,
    reference: { label: "attention=flash-bf16", toggles: { attention: "flash-bf16" } },
    candidate: { label: `attention=${arm}`, toggles: { attention: arm } },
    perplexity: { text: "brown", ctx, maxTokens },
  });
  profiles.push(p);
  const q = p.quant_error![0];
  display(`## ${arm}`);
  table(q.layers.map((l) => ({
    hook: l.hook, cosine: +l.cosine.toFixed(6), "rel L1": +l.rel_l1.toExponential(3), "max abs": +l.max_abs.toExponential(3),
  })));
  if (q.logits) display(`logits: KL ${q.logits.kl.toExponential(3)} nats · top-1 agreement ${(100 * q.logits.top1_agreement).toFixed(1)} %`);
  const pp = q.perplexity;
  if (pp?.reference != null && pp.candidate != null)
    display(`perplexity (${pp.tokens} tokens, ctx ${pp.ctx}): flash-bf16 ${pp.reference.toFixed(4)} · ${arm} ` +
      `${pp.candidate.toFixed(4)} · ${(100 * (pp.candidate / pp.reference - 1)).toFixed(3)} %`);
}

// %% Relative L1 of the attention output per layer (target <= 0.03), and the page's figure per arm
const zOf = (p: Profile) => p.quant_error![0].layers.filter((l) => l.hook.endsWith("attn.hook_z"));
plotly([
  ...profiles.map((p, i) => ({ type: "bar", name: arms[i], x: zOf(p).map((l) => l.hook.replace(/^blocks\.(\d+)\..*/, "L$1")), y: zOf(p).map((l) => l.rel_l1) })),
  { type: "scatter", mode: "lines", name: "target", x: zOf(profiles[0]).map((l) => l.hook.replace(/^blocks\.(\d+)\..*/, "L$1")), y: zOf(profiles[0]).map(() => 0.03) },
], { title: { text: "attn.hook_z relative L1 against flash-bf16" }, barmode: "group", height: 320 });
for (const p of profiles) svg(quantSvg(p));

// %% One layer at a time: each layer alone in each arm (flash-bf16 elsewhere), so its inputs are flash-bf16's and the
// error is that layer's own; the all-layer rows above also carry the drift of the layers before
const alone: Record<string, string | number>[] = [];
for (const arm of arms)
  for (let l = 0; l < L; l++) {
    const one = Array.from({ length: L }, (_, i) => (i === l ? arm : "flash-bf16"));
    const p1 = await recordQuantError(model, session, {
      id: `nb-sage-${arm}-L${l}`, prompt, repeats: 1, hooks: [hookName("attn.hook_z", l)],
      reference: { label: "attention=flash-bf16", toggles: { attention: "flash-bf16" } },
      candidate: { label: `attention=${one.join("/")}`, toggles: { attention: one } },
    });
    // every layer's hook_z is compared (recordQuantError adds them when attention differs): upstream layers are exact
    const z = p1.quant_error![0].layers.filter((x) => x.hook.endsWith("attn.hook_z"));
    const own = z.find((x) => x.layer === l)!;
    alone.push({ arm, layer: l, cosine: +own.cosine.toFixed(6), "rel L1": +own.rel_l1.toExponential(3),
      "max abs": +own.max_abs.toExponential(3), "layers before unchanged": z.filter((x) => x.layer < l).every((x) => x.rel_l1 === 0) ? "yes" : "no" });
  }
table(alone);
session.close();
model.close();
