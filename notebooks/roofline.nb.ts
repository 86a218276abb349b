// %% [markdown]
// # Roofline of one run
//
// One profiled run; every op gets its arithmetic intensity (FLOP/byte) and achieved FLOP/s from the engine's
// op records, drawn log-log under the device's measured roofs (DRAM, cache and compute: `profiles/raw/ceilings/`,
// then `profiles/ceilings/`, made by `notebooks/calibrate.ts`). Runs in the Notebook page or with `bun notebooks/roofline.nb.ts`.

// %% Run a prompt with profiling on
import { openModel } from "../engine/index.ts";
import { recordRun } from "../engine/measure/record.ts";
import { loadCeilings, rooflinePoints } from "../engine/measure/roofline.ts";
import { rooflineSvg } from "../engine/export/svg.ts";
import { opColor } from "../engine/export/palette.ts";
import { display, plot, Plot, plotly, svg, table } from "../engine/notebook/display.ts";

const model = await openModel(process.env.QW_NB_MODEL ?? "default");
const session = model.newSession({ maxBatch: 1 });
const { profile } = await recordRun(model, session, {
  id: "nb-roofline", prompts: [{ prompt: "The old man walked into the room and" }], maxTokens: 16,
  sampling: { temperature: 0, topK: 0, topP: 1, seed: 0 }, toggles: {}, profiling: true, capture: [], label: "roofline",
});
display(`${model.id} · ${model.device.name} · TTFT ${profile.summary.ttft_ms?.toFixed(2)} ms · decode ${profile.summary.decode_tok_s?.toFixed(1)} tok/s`);

// %% One point per op and phase
const points = rooflinePoints(profile, "op");
table(points.map((p) => ({
  phase: p.phase, op: p.label, "FLOP/byte": +p.intensity.toPrecision(3), "GFLOP/s": +(p.flopPerS / 1e9).toPrecision(3),
  "GB/s": +(p.bytes / p.seconds / 1e9).toPrecision(3), "ms": +(p.seconds * 1e3).toPrecision(3),
})));

// %% Log-log, interactive
plotly(["prefill", "decode"].map((phase) => {
  const ps = points.filter((p) => p.phase === phase);
  return { type: "scatter", mode: "markers+text", name: phase, x: ps.map((p) => p.intensity), y: ps.map((p) => p.flopPerS),
    text: ps.map((p) => p.label), textposition: "top center", marker: { symbol: phase === "prefill" ? "circle" : "triangle-up", size: 9 } };
}), { xaxis: { type: "log", title: { text: "arithmetic intensity (FLOP/byte)" } }, yaxis: { type: "log", title: { text: "FLOP/s" } }, height: 420 });

// %% Where a decode step's time goes (Observable Plot, rendered on the server)
const decodeOps = points.filter((p) => p.phase === "decode").sort((a, b) => b.seconds - a.seconds);
plot({
  marginLeft: 90, height: 40 + 22 * decodeOps.length, x: { label: "ms per decode step (all layers)", grid: true },
  marks: [Plot.barX(decodeOps, { y: "label", x: (d: (typeof decodeOps)[number]) => d.seconds * 1e3, fill: (d: (typeof decodeOps)[number]) => opColor(d.op ?? ""), sort: { y: "-x" } }), Plot.ruleX([0])],
});

// %% With the device's roofs (Observable Plot, rendered on the server; the run's device picks its ceilings file)
svg(rooflineSvg([profile], loadCeilings(), "op"));
session.close();
model.close();
