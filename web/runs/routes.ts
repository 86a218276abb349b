// Runs sub-app (mounted at /api): POST /runs starts a measured run (a task), the task routes follow and cancel
// it (task-routes.ts), and the prompt sets a run can replay live here too (prompt-sets.ts).
import { Hono } from "hono";
import { z } from "zod";
import { ProfilingMode, ToggleValues } from "../../engine/measure/profile.ts";
import { PromptSpec, SamplingSpec, newProfileId, type RunSpec } from "../../engine/measure/record.ts";
import type { WebContext } from "../context.ts";
import { toggleProblem } from "../core.ts";
import { HttpError } from "../errors.ts";
import { checkHooks, expandHooks } from "../catalog.ts";
import { BackendField, check, jsonBody, ModelSource, slug } from "../http.ts";
import { promptSetRoutes } from "./prompt-sets.ts";
import { WEIGHTS_TOGGLE } from "../../engine/formats/requant.ts";
import { PARALLEL_TOGGLE } from "../../engine/formats/parallel.ts";
import { taskRoutes, type SseOptions } from "./task-routes.ts";
import { SparseOptionsSchema } from "../../engine/sparse.ts";

const RunRequest = z.object({
  model: ModelSource.optional(),
  backend: BackendField.optional(),
  prompt: z.string().min(1).max(200_000).optional(),
  messages: z.array(z.object({ role: z.enum(["system", "user", "assistant"]), content: z.string().max(200_000) }).strict()).min(1).max(256).optional(),
  tokens: z.array(z.number().int().min(0)).min(1).max(200_000).optional(),
  promptSet: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/).optional(),
  prompts: z.array(PromptSpec).min(1).max(1000).optional(),
  maxTokens: z.number().int().min(1).max(4096).default(32),
  // Measured passes over the prompt(s) (the summary is their median, with min–max) after `warmup` unrecorded
  // passes: the first run after a load pays for cold caches and lazy set-up, which is not the toggle's cost.
  repeats: z.number().int().min(1).max(20).default(3),
  warmup: z.number().int().min(0).max(3).default(1),
  // decode steps per engine call (engine/measure/record.ts DEFAULT_STEPS_PER_SYNC when absent; 1 = one per token)
  stepsPerSync: z.number().int().min(1).max(64).optional(),
  sampling: SamplingSpec.partial().default({}),
  toggles: ToggleValues.default({}),
  profiling: z.union([z.boolean(), ProfilingMode]).default(true), // true: kernels (events where CUPTI is missing)
  capture: z.array(z.string().max(200)).max(512).default([]), // hook names: checked against the engine's catalog
  label: z.string().max(120).optional(),
  // speculative decoding with a draft model (toggle speculative = draft): a model under the roots, k per step
  draft: z.object({ model: ModelSource, k: z.number().int().min(1).max(64).default(4) }).strict().optional(),
  // sparse prefill budgets (toggle sparsePrefill = vertical-slash): the run gets a session with them
  sparse: SparseOptionsSchema.optional(),
  // speculative decoding with an EAGLE head (toggle speculative = eagle): a head directory under the roots, its tree
  eagle: z.object({
    head: ModelSource, depth: z.number().int().min(1).max(16).default(5), topK: z.number().int().min(1).max(16).default(4),
    budget: z.number().int().min(1).max(128).default(16),
  }).strict().optional(),
}).strict().refine((r) => [r.prompt, r.messages, r.tokens, r.promptSet, r.prompts].filter((x) => x !== undefined).length === 1,
  { message: "give exactly one of prompt, messages, tokens, promptSet or prompts" });
export type RunRequest = z.infer<typeof RunRequest>;

export function runRoutes(ctx: WebContext, sse: SseOptions) {
  const { host, tasks, profiles } = ctx;
  const app = new Hono();

  app.post("/runs", async (c) => {
    const req = check(RunRequest, await jsonBody(c), "run");
    if (req.capture.length) checkHooks(await ctx.catalog(), req.capture, "run: capture");
    const source = req.model !== undefined ? ctx.resolveSource(req.model) : undefined;
    const draftPath = req.draft ? ctx.resolveSource(req.draft.model) : undefined;
    const draft = req.draft && draftPath ? { model: draftPath, k: req.draft.k, root: ctx.rootOf(draftPath) } : undefined;
    const headPath = req.eagle ? ctx.resolveSource(req.eagle.head) : undefined;
    const eagle = req.eagle && headPath ? { ...req.eagle, head: headPath, root: ctx.rootOf(headPath) } : undefined;
    if (draft && eagle) throw new HttpError(400, "run: give either draft or eagle, not both");
    if (draft) req.toggles.speculative = "draft";
    else if (eagle) req.toggles.speculative = "eagle";
    else if (req.toggles.speculative === "draft") throw new HttpError(400, "run: speculative = draft needs a draft model (field draft: {model, k})");
    else if (req.toggles.speculative === "eagle") throw new HttpError(400, "run: speculative = eagle needs an EAGLE head (field eagle: {head, depth, topK, budget})");
    let prompts: z.infer<typeof PromptSpec>[];
    let setName: string | undefined;
    let setSampling = {};
    let setMax: number | undefined;
    if (req.promptSet) {
      const s = ctx.promptSets.get(req.promptSet);
      prompts = s.prompts; setName = s.name; setSampling = s.sampling ?? {}; setMax = s.maxTokens;
    } else if (req.prompts) prompts = req.prompts;
    else prompts = [{ prompt: req.prompt, messages: req.messages, tokens: req.tokens }];
    // A 400 now when the model that will run them is already loaded; otherwise the engine refuses them when
    // the run starts (EngineCore.run), and the task fails with the same message.
    const cur = host.loaded();
    if (cur && (!source || source === cur.source)) {
      const bad = toggleProblem(cur, req.toggles);
      if (bad) throw new HttpError(400, `run: toggles: ${bad}`);
    }
    ctx.guardQueue();
    const sampling = SamplingSpec.parse({ ...setSampling, ...req.sampling });
    const t = tasks.submit("run", req.label, async (t) => {
      const par = req.toggles[PARALLEL_TOGGLE]; // a list (per layer) is the engine's to refuse when the run starts
      const info = await ctx.ensureModel(t, source, req.backend, req.toggles[WEIGHTS_TOGGLE], typeof par === "string" ? par : undefined);
      const id = newProfileId(req.label ? slug(req.label) : "run");
      const spec: RunSpec = {
        id, prompts, maxTokens: setMax ?? req.maxTokens, sampling, toggles: req.toggles, profiling: req.profiling,
        capture: expandHooks(req.capture, info.config.num_hidden_layers), label: req.label ?? id, promptSetName: setName,
        repeats: req.repeats, warmup: req.warmup, ...(req.stepsPerSync ? { stepsPerSync: req.stepsPerSync } : {}), ...(draft ? { draft } : {}), ...(eagle ? { eagle } : {}), ...(req.sparse ? { sparse: req.sparse } : {}),
        command: `POST /api/runs ${JSON.stringify({ ...req, prompt: req.prompt && req.prompt.length > 200 ? req.prompt.slice(0, 200) + "…" : req.prompt }).slice(0, 1500)}`,
      };
      const r = await host.run(t.id, spec, ctx.relay(t));
      if (t.shutdownReason) {
        // Graceful shutdown (D6): what was measured is kept, marked partial so no one mistakes it for a full run.
        r.profile.partial = t.shutdownReason;
        r.profile.notes = [...(r.profile.notes ?? []), `partial: ${t.shutdownReason}`];
      }
      const key = profiles.save(r.profile);
      return {
        profileKey: key, profileId: r.profile.id, cancelled: r.cancelled, summary: r.profile.summary, text: r.profile.output_text,
        ...(t.shutdownReason ? { partial: t.shutdownReason, shutdown: true } : {}),
      };
    });
    return c.json({ task: t.view(), id: t.id, events: `/api/tasks/${t.id}/events` }, 202);
  });

  app.route("/", taskRoutes(tasks, sse));
  app.route("/", promptSetRoutes(ctx.promptSets));
  return app;
}
