// Quant sub-app (mounted at /api): POST /quant (quantization error between two arms: a toggle set on a
// model each, optionally with perplexity / KL on a text) and POST /perplexity (perplexity of the loaded model
// over a text, optionally against a reference arm). Both refuse a comparison whose two arms are the same model
// with the same effective toggles: it can only measure zero.
import { Hono } from "hono";
import { z } from "zod";
import { QuantPhase, ToggleValues } from "../../engine/measure/profile.ts";
import { effectiveDefault, newProfileId } from "../../engine/measure/record.ts";
import { defaultQuantHooks } from "../../engine/measure/quant-error.ts";
import { WEIGHTS_TOGGLE } from "../../engine/formats/requant.ts";
import { PARALLEL_TOGGLE } from "../../engine/formats/parallel.ts";
import type { WebContext } from "../context.ts";
import type { ModelInfo } from "../core.ts";
import { HttpError } from "../errors.ts";
import { checkHooks, expandHooks } from "../catalog.ts";
import { BackendField, check, jsonBody, ModelSource } from "../http.ts";

const TextRef = z.union([z.literal("brown"), z.object({ text: z.string().min(1).max(1_000_000) }).strict()]);
const Arm = z.object({ label: z.string().max(120).optional(), toggles: ToggleValues.default({}), model: ModelSource.optional() }).strict();

/** Effective toggles (registry defaults filled in, uniform per-layer masks folded) for comparing two arms. The
 *  load options (weights, parallel) unnamed stay as loaded, so their effective value is the loaded model's. */
function effective(info: ModelInfo | null, t: Record<string, string | string[]>): string {
  const out: Record<string, unknown> = {};
  const fold = (v: string | string[]) => (Array.isArray(v) && v.every((x) => x === v[0]) ? v[0] : v);
  const loaded: Record<string, string | string[] | undefined> = info ? { [WEIGHTS_TOGGLE]: info.weights, [PARALLEL_TOGGLE]: info.parallel } : {};
  if (info) for (const d of info.registry) out[d.id] = fold(t[d.id] ?? loaded[d.id] ?? effectiveDefault(d, info.backend) ?? "");
  else for (const k of Object.keys(t).sort()) out[k] = fold(t[k]);
  return JSON.stringify(out);
}

const QuantRequest = z.object({
  model: ModelSource.optional(),
  backend: BackendField.optional(),
  prompt: z.string().min(1).max(200_000),
  reference: Arm,
  candidate: Arm,
  hooks: z.array(z.string().max(200)).max(512).optional(), // checked against the engine's catalog
  repeats: z.number().int().min(1).max(20).default(3),
  // decode: one decode step instead of the prefill (arms that act only in decode, e.g. CUDA actQuant = int8)
  phase: QuantPhase.default("prefill"),
  perplexity: z.object({
    text: TextRef.default("brown"), ctx: z.number().int().min(2).max(4096).default(512), maxTokens: z.number().int().min(2).max(200_000).default(4096),
  }).strict().optional(),
}).strict();
const PerplexityRequest = z.object({
  model: ModelSource.optional(),
  backend: BackendField.optional(),
  text: TextRef.default("brown"),
  ctx: z.number().int().min(2).max(4096).default(512),
  score: z.enum(["all", "half"]).default("all"),
  phase: z.enum(["prefill", "decode"]).default("prefill"),  // decode: one decode step per scored token
  maxTokens: z.number().int().min(2).max(2_000_000).optional(),
  toggles: ToggleValues.default({}),
  label: z.string().max(120).optional(),
  reference: Arm.optional(),
}).strict();

export function quantRoutes(d: WebContext) {
  const app = new Hono();

  /** The two arms' model sources (undefined = the model the task runs on); 400 when nothing differs. */
  function arms(main: string | undefined, ref: z.infer<typeof Arm>, cand: z.infer<typeof Arm> | { toggles: Record<string, string | string[]>; model?: string }) {
    const rm = ref.model !== undefined ? d.resolveSource(ref.model) : undefined;
    const cm = cand.model !== undefined ? d.resolveSource(cand.model) : undefined;
    const base = main ?? d.host.loaded()?.source ?? "default";
    const info = d.host.loaded();
    const usable = info && info.source === base ? info : null;
    if ((rm ?? base) === (cm ?? base) && effective(usable, ref.toggles) === effective(usable, cand.toggles)) {
      throw new HttpError(400, "reference and candidate are the same model with the same toggles: nothing to compare (change a toggle or pick another model for one arm)");
    }
    return { rm, cm };
  }

  app.post("/quant", async (c) => {
    const req = check(QuantRequest, await jsonBody(c), "quant");
    if (req.hooks?.length) checkHooks(await d.catalog(), req.hooks, "quant: hooks");
    const source = req.model !== undefined ? d.resolveSource(req.model) : undefined;
    const { rm, cm } = arms(source, req.reference, req.candidate);
    d.guardQueue();
    const t = d.tasks.submit("quant", `${req.candidate.label ?? "candidate"} vs ${req.reference.label ?? "reference"}`, async (t) => {
      const info = await d.ensureModel(t, source, req.backend);
      const nL = info.config.num_hidden_layers;
      const p = await d.host.quant(t.id, {
        id: newProfileId("quant"), prompt: { prompt: req.prompt }, repeats: req.repeats, phase: req.phase,
        reference: { label: req.reference.label ?? "reference", toggles: req.reference.toggles, ...(rm ? { model: rm } : {}) },
        candidate: { label: req.candidate.label ?? "candidate", toggles: req.candidate.toggles, ...(cm ? { model: cm } : {}) },
        hooks: req.hooks ? expandHooks(req.hooks, nL) : defaultQuantHooks(nL),
        ...(req.perplexity ? { perplexity: req.perplexity } : {}),
        command: "POST /api/quant",
      }, d.relay(t));
      const key = d.profiles.save(p);
      return { profileKey: key, profileId: p.id, quant_error: p.quant_error };
    });
    return c.json({ task: t.view(), id: t.id, events: `/api/tasks/${t.id}/events` }, 202);
  });

  app.post("/perplexity", async (c) => {
    const req = check(PerplexityRequest, await jsonBody(c), "perplexity");
    const source = req.model !== undefined ? d.resolveSource(req.model) : undefined;
    const rm = req.reference ? arms(source, req.reference, { toggles: req.toggles }).rm : undefined;
    d.guardQueue();
    const t = d.tasks.submit("perplexity", req.label ?? `perplexity ctx ${req.ctx}`, async (t) => {
      const par = req.toggles.parallel;  // a load option like weights: the measured arm runs on the model loaded with it
      await d.ensureModel(t, source, req.backend, req.toggles.weights, typeof par === "string" ? par : undefined);
      const r = await d.host.perplexity(t.id, {
        text: req.text, ctx: req.ctx, score: req.score, phase: req.phase, maxTokens: req.maxTokens, toggles: req.toggles, label: req.label ?? "candidate",
        ...(req.reference ? { reference: { toggles: req.reference.toggles, label: req.reference.label ?? "reference", ...(rm ? { model: rm } : {}) } } : {}),
      }, d.relay(t));
      return { perplexity: r };
    });
    return c.json({ task: t.view(), id: t.id, events: `/api/tasks/${t.id}/events` }, 202);
  });

  return app;
}
