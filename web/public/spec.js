// Speculative decoding on the Run page (toggle speculative = draft | eagle): the draft model / EAGLE head fields shown
// under the toggle, reading them into a run's `draft` / `eagle` field, and the chart of a finished run's acceptance
// and step time split (profile summary.speculative).

import { fmt } from "./format.js";

// speculative = draft needs a draft model (a path under the model roots, same tokenizer) and k per verify step
export function specFields(ns) {
  return `<div class="spec-draft line" hidden><label>draft model (under a model root) <input class="spec-model" name="${ns}-spec-model" value="tiny-qwen2-brown-draft" title="a model directory or .gguf under a model root, with the same tokenizer"></label>
    <label>k <input class="spec-k" name="${ns}-spec-k" type="number" min="1" max="64" value="4"></label></div>
    <div class="spec-eagle line" hidden><label>EAGLE head (under a model root) <input class="spec-head" name="${ns}-spec-head" value="tiny-qwen2-brown-eagle" title="a SafeAILab-layout head directory (config.json + model.safetensors) for this model"></label>
    <label>tree depth <input class="spec-depth" name="${ns}-spec-depth" type="number" min="1" max="16" value="5"></label>
    <label>top-k per node <input class="spec-topk" name="${ns}-spec-topk" type="number" min="1" max="16" value="4"></label>
    <label>node budget <input class="spec-budget" name="${ns}-spec-budget" type="number" min="1" max="128" value="16"></label></div>`;
}
/** Shows the draft fields while the toggle is draft, the EAGLE fields while it is eagle. */
export function wireSpecFields(div) {
  div.querySelector(".global").addEventListener("change", (e) => {
    div.querySelector(".spec-draft").hidden = e.target.value !== "draft";
    div.querySelector(".spec-eagle").hidden = e.target.value !== "eagle";
  });
}
// speculative = eagle (greedy; CPU and CUDA): an EAGLE head and its EAGLE-2 tree (depth, top-k per node, node budget)
export function readEagle(root) {
  const div = root.querySelector('.toggle[data-id="speculative"]');
  if (!div || div.querySelector(".global").value !== "eagle") return undefined;
  const n = (c) => Number(div.querySelector(c).value);
  return { head: div.querySelector(".spec-head").value.trim(), depth: n(".spec-depth"), topK: n(".spec-topk"), budget: n(".spec-budget") };
}
export function readDraft(root) {
  const div = root.querySelector('.toggle[data-id="speculative"]');
  if (!div || div.querySelector(".global").value !== "draft") return undefined;
  return { model: div.querySelector(".spec-model").value.trim(), k: Number(div.querySelector(".spec-k").value) };
}

// A speculative run (draft or eagle): acceptance by draft position / tree depth (given the earlier ones were
// accepted) and the time split of a step: median ms per phase (engine/spec/phases.ts) where the profile has them,
// else draft vs verify; from the profile's summary.speculative.
export function drawSpec(el, sp) {
  el.hidden = !sp;
  if (!sp) return;
  const x = sp.conditional_acceptance_by_position.map((_, i) => `${sp.tree ? "depth" : "position"} ${i + 1}`);
  const title = sp.tree ? `eagle depth ${sp.tree.depth}, top-k ${sp.tree.top_k}, budget ${sp.tree.budget}` : `draft k = ${sp.k}`;
  Plotly.react(el, [
    { type: "bar", x, y: sp.conditional_acceptance_by_position.map((v) => 100 * v), name: "acceptance %" },
    sp.phases?.length ? { type: "bar", x: sp.phases.map((p) => p.phase), y: sp.phases.map((p) => p.ms_per_step.median), xaxis: "x2", yaxis: "y2", name: "ms per step (median)" }
      : { type: "bar", x: ["draft", "verify"], y: [sp.draft_ms_per_step.median, sp.verify_ms_per_step.median], xaxis: "x2", yaxis: "y2", name: "ms per step (median)" },
  ], {
    title: { text: `${title}: ${fmt(sp.tokens_per_step, 2)} tokens per verify step`, font: { size: 13 } },
    grid: { rows: 1, columns: 2, pattern: "independent" }, height: 260, margin: { l: 50, r: 20, t: 40, b: 40 },
    yaxis: { title: "acceptance % (given the earlier)", range: [0, 100] }, yaxis2: { title: "ms per step" }, showlegend: false,
  }, { displaylogo: false, responsive: true });
}
