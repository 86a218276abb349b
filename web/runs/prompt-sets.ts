// Prompt sets (mounted with the runs): saved lists of prompts a run replays with `promptSet`. JSON bodies,
// or JSONL (one prompt per line) with ?name=.
import { Hono } from "hono";
import { z } from "zod";
import { PromptSet, parsePromptSet } from "../../engine/measure/record.ts";
import { HttpError } from "../errors.ts";
import { check, jsonBody } from "../http.ts";
import type { PromptSetStore } from "../store.ts";

const SetName = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, "name: 1–64 of A-Z a-z 0-9 . _ -");

export function promptSetRoutes(promptSets: PromptSetStore) {
  const app = new Hono();
  app.get("/prompt-sets", (c) => c.json({ promptSets: promptSets.list() }));
  app.get("/prompt-sets/:name", (c) => c.json(promptSets.get(c.req.param("name"))));
  app.delete("/prompt-sets/:name", (c) => { promptSets.delete(c.req.param("name")); return c.json({ deleted: c.req.param("name") }); });
  app.post("/prompt-sets", async (c) => {
    const ct = c.req.header("content-type") ?? "";
    let set: PromptSet;
    if (ct.includes("application/json")) set = check(PromptSet, await jsonBody(c), "prompt set");
    else if (ct.includes("ndjson") || ct.includes("jsonl") || ct.includes("text/plain")) {
      const name = check(SetName, c.req.query("name"), "prompt set name (?name=)");
      try { set = parsePromptSet(await c.req.text(), name); } catch (e) {
        throw new HttpError(400, `prompt set: ${e instanceof z.ZodError ? `${e.issues[0]?.path.join(".")}: ${e.issues[0]?.message}` : (e as Error).message}`);
      }
    } else throw new HttpError(415, "expected application/json or application/x-ndjson (JSONL, with ?name=)");
    promptSets.save(set);
    return c.json({ saved: set.name, prompts: set.prompts.length }, 201);
  });
  return app;
}
