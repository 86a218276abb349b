// %% [markdown]
// # Quantization error of a toggle
//
// The same prompt is replayed under a reference and a candidate toggle set with the residual stream captured
// after every layer and the logits at the end: per layer 1 − cosine, SQNR, relative L1 and max abs, logits KL
// and top-1 agreement, and what each layer's time changed (`engine/measure/quant-error.ts`, the same code as the
// Quantization error page), then the K/V error of every KV-cache and Sage arm. Runs in the Notebook page or with
// `bun notebooks/quant-error.nb.ts`. QW_NB_PHASE=decode measures the candidate on one decode step instead of the
// prefill (arms that act only in decode, e.g. CUDA actQuant = int8); the K/V section is always a prefill.
// QW_NB_TOGGLE=id=value names the candidate (the reference: that toggle's default) instead of the first toggle with
// two values; QW_NB_WEIGHTS=bf16|q8|q4 loads the model with that weights option (e.g. actQuant needs W8 / W4 weights),
// in the CLI's --weights form (q4,0=bf16 or, on an untied model, q4,output=q8: the lm_head requantized too):
//   QW_NB_WEIGHTS=q4 QW_NB_TOGGLE=actQuant=int8 QW_NB_PHASE=decode bun notebooks/quant-error.nb.ts

// %% Choose the candidate
import { openModel } from "../engine/index.ts";
import { implementedValues } from "../engine/measure/sweep.ts";
import { effectiveDefault } from "../engine/measure/record.ts";
import { recordQuantError } from "../engine/measure/quant-error.ts";
import { quantSvg } from "../engine/export/svg.ts";
import { textTokens } from "../engine/measure/perplexity-run.ts";
import { display, plotly, svg, table } from "../engine/notebook/display.ts";
import { QuantPhase } from "../engine/measure/profile.ts";
import { parseWeightsArg, type WeightsOption } from "../engine/formats/requant.ts";

const phaseArg = QuantPhase.safeParse(process.env.QW_NB_PHASE ?? "prefill");
if (!phaseArg.success) throw new Error(`QW_NB_PHASE must be prefill or decode, got ${JSON.stringify(process.env.QW_NB_PHASE)}`);
const phase = phaseArg.data;
function weightsOption(v: string | undefined): WeightsOption {
  if (v === undefined) return {};
  try {
    return parseWeightsArg(v);
  } catch (e) {
    throw new Error((e as Error).message.replace(`--weights ${v}:`, "QW_NB_WEIGHTS:"));
  }
}
const model = await openModel(process.env.QW_NB_MODEL ?? "default", weightsOption(process.env.QW_NB_WEIGHTS));
const session = model.newSession({ maxBatch: 1 });
const reg = model.toggleRegistry();
const named = process.env.QW_NB_TOGGLE;
const m = named === undefined ? null : /^([A-Za-z]+)=([A-Za-z0-9_.-]+)$/.exec(named);
if (named !== undefined && !m) throw new Error(`QW_NB_TOGGLE must be id=value (e.g. actQuant=int8), got ${JSON.stringify(named)}`);
// the named toggle; else kvCache when the backend has two values for it (bf16 vs f32 cache), else the first toggle
// that has two
const def = m ? reg.find((d) => d.id === m[1])
  : reg.find((d) => d.id === "kvCache" && implementedValues(d, model.backend).length > 1) ?? reg.find((d) => implementedValues(d, model.backend).length > 1);
if (!def) throw new Error(m ? `QW_NB_TOGGLE: no toggle ${m[1]} (toggles: ${reg.map((d) => d.id).join(", ")})` : `no toggle has two implemented values on ${model.backend}`);
const refValue = effectiveDefault(def, model.backend)!;
const candValue = m ? m[2] : implementedValues(def, model.backend).find((v) => v !== refValue)!;
if (!implementedValues(def, model.backend).includes(candValue)) throw new Error(`QW_NB_TOGGLE: ${def.id}=${candValue} is not implemented on ${model.backend} (values: ${implementedValues(def, model.backend).join(", ")})`);
if (candValue === refValue) throw new Error(`QW_NB_TOGGLE: ${def.id}=${candValue} is the reference (the default): nothing to compare`);
display(`reference ${def.id}=${refValue} · candidate ${def.id}=${candValue} · ${model.id} on ${model.device.name} · phase ${phase}`);

// %% Measure
const p = await recordQuantError(model, session, {
  id: "nb-quant-error", prompt: { prompt: "The jury said it did find that the court" }, repeats: 3, phase,
  reference: { label: `${def.id}=${refValue}`, toggles: { [def.id]: refValue } },
  candidate: { label: `${def.id}=${candValue}`, toggles: { [def.id]: candValue } },
});
const q = p.quant_error![0];
for (const f of q.findings ?? []) display(`finding: ${f}`);
if (q.logits) display(`logits: KL ${q.logits.kl.toExponential(3)} nats · top-1 agreement ${(100 * q.logits.top1_agreement).toFixed(1)} %`);
table(q.layers.map((l) => ({
  hook: l.hook, "1 − cos": +(1 - l.cosine).toExponential(2), "SQNR dB": +l.sqnr_db.toFixed(1),
  "rel L1": +l.rel_l1.toExponential(2), "max abs": +l.max_abs.toExponential(2),
})));

// %% SQNR per layer
plotly([{ type: "bar", x: q.layers.map((l) => l.hook.replace(/^blocks\./, "L").replace(".hook_", " ")), y: q.layers.map((l) => l.sqnr_db) }],
  { title: { text: `SQNR of ${q.candidate_label} against ${q.reference_label}` }, yaxis: { title: { text: "dB (higher is better)" } }, height: 320 });
svg(quantSvg(p));

// %% K/V error of the KV-cache and attention arms (issue 11)
// Each kvCache value and each Sage arm against kvCache = bf16 with flash-bf16 on 512 Brown tokens (so KIVI's groups
// behind its 128-token window are quantized): per layer K and V as each arm's attention reads them against the
// fp32 K/V (`engine/measure/kv-error.ts`), the attention output's error (attn.hook_z) and the time the layer saved.
const kvArms = [
  ...(reg.find((d) => d.id === "kvCache") ? implementedValues(reg.find((d) => d.id === "kvCache")!, model.backend) : [])
    .filter((v) => !["bf16", "f32"].includes(v)).map((v) => ({ kvCache: v })),
  ...(reg.find((d) => d.id === "attention") ? implementedValues(reg.find((d) => d.id === "attention")!, model.backend) : [])
    .filter((v) => v.startsWith("sage-")).map((v) => ({ attention: v })),
];
const kvPrompt = { tokens: textTokens(model, { kind: "brown" }, 512).tokens };
const kvRows: Record<string, string | number>[] = [];
for (const arm of kvArms) {
  const label = Object.entries(arm).map(([k, v]) => `${k}=${v}`).join(" ");
  const r = await recordQuantError(model, session, {
    id: `nb-kv-${label}`, prompt: kvPrompt, repeats: 3,
    reference: { label: "kvCache=bf16 attention=flash-bf16", toggles: { kvCache: "bf16", attention: "flash-bf16" } },
    candidate: { label, toggles: { kvCache: "bf16", attention: "flash-bf16", ...arm } },
  });
  const qq = r.quant_error![0];
  // summary.layer_ms (recordQuantError): per-layer prefill ms of both arms, median over the repeats
  const lm = (r.summary as { layer_ms?: { reference: number[]; candidate: number[] } }).layer_ms;
  for (const x of qq.kv ?? []) {
    const z = qq.layers.find((l) => l.layer === x.layer && l.hook.endsWith("attn.hook_z"));
    kvRows.push({
      arm: label, layer: x.layer, "K SQNR dB": +x.k.candidate.sqnr_db.toFixed(1), "K rel L1": +x.k.candidate.rel_l1.toExponential(2),
      "V SQNR dB": +x.v.candidate.sqnr_db.toFixed(1), "V rel L1": +x.v.candidate.rel_l1.toExponential(2),
      "attn out rel L1": z ? +z.rel_l1.toExponential(2) : NaN, "attn out 1 − cos": z ? +(1 - z.cosine).toExponential(2) : NaN,
      "time saved ms": lm ? +(lm.reference[x.layer] - lm.candidate[x.layer]).toFixed(4) : NaN,
    });
  }
}
display(`reference: kvCache=bf16, attention=flash-bf16 (its K/V: bf16 rounding). Time saved = reference − candidate, ms per prefill of ${kvPrompt.tokens.length} tokens, median of 3.`);
table(kvRows);
plotly([...new Set(kvRows.map((r) => r.arm as string))].map((arm) => ({
  type: "scatter", mode: "markers+text", name: arm, text: kvRows.filter((r) => r.arm === arm).map((r) => `L${r.layer}`), textposition: "top center",
  x: kvRows.filter((r) => r.arm === arm).map((r) => r["time saved ms"]), y: kvRows.filter((r) => r.arm === arm).map((r) => r["attn out rel L1"]),
})), { title: { text: "attention output error vs time saved, per layer and arm" }, xaxis: { title: { text: "ms saved per prefill" } },
  yaxis: { title: { text: "attn.hook_z rel L1" }, type: "log" }, height: 360 });
session.close();
model.close();
