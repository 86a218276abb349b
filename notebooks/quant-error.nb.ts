// %% [markdown]
// # Quantization error of a toggle
//
// The same prompt is replayed under a reference and a candidate toggle set with the residual stream captured
// after every layer and the logits at the end: per layer 1 − cosine, SQNR, relative L1 and max abs, logits KL
// and top-1 agreement, and what each layer's time changed (`engine/measure/quant-error.ts`, the same code as the
// Quantization error page). Runs in the Notebook page or with `bun notebooks/quant-error.nb.ts`.

// %% Choose the candidate
import { openModel } from "../engine/index.ts";
import { implementedValues } from "../engine/measure/sweep.ts";
import { effectiveDefault } from "../engine/measure/record.ts";
import { recordQuantError } from "../engine/measure/quant-error.ts";
import { quantSvg } from "../engine/export/svg.ts";
import { display, plotly, svg, table } from "../engine/notebook/display.ts";

const model = await openModel(process.env.QW_NB_MODEL ?? "default");
const session = model.newSession({ maxBatch: 1 });
// kvCache when the backend has two values for it (bf16 vs f32 cache), else the first toggle that has two
const reg = model.toggleRegistry();
const def = reg.find((d) => d.id === "kvCache" && implementedValues(d, model.backend).length > 1)
  ?? reg.find((d) => implementedValues(d, model.backend).length > 1);
if (!def) throw new Error(`no toggle has two implemented values on ${model.backend}`);
const refValue = effectiveDefault(def, model.backend)!;
const candValue = implementedValues(def, model.backend).find((v) => v !== refValue)!;
display(`reference ${def.id}=${refValue} · candidate ${def.id}=${candValue} · ${model.id} on ${model.device.name}`);

// %% Measure
const p = await recordQuantError(model, session, {
  id: "nb-quant-error", prompt: { prompt: "The jury said it did find that the court" }, repeats: 3,
  reference: { label: `${def.id}=${refValue}`, toggles: { [def.id]: refValue } },
  candidate: { label: `${def.id}=${candValue}`, toggles: { [def.id]: candValue } },
});
const q = p.quant_error![0];
if (q.logits) display(`logits: KL ${q.logits.kl.toExponential(3)} nats · top-1 agreement ${(100 * q.logits.top1_agreement).toFixed(1)} %`);
table(q.layers.map((l) => ({
  hook: l.hook, "1 − cos": +(1 - l.cosine).toExponential(2), "SQNR dB": +l.sqnr_db.toFixed(1),
  "rel L1": +l.rel_l1.toExponential(2), "max abs": +l.max_abs.toExponential(2),
})));

// %% SQNR per layer
plotly([{ type: "bar", x: q.layers.map((l) => l.hook.replace(/^blocks\./, "L").replace(".hook_", " ")), y: q.layers.map((l) => l.sqnr_db) }],
  { title: { text: `SQNR of ${q.candidate_label} against ${q.reference_label}` }, yaxis: { title: { text: "dB (higher is better)" } }, height: 320 });
svg(quantSvg(p));
session.close();
model.close();
