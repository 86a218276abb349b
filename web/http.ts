// HTTP helpers every sub-app shares: zod checks that become 400s naming the field, the JSON body reader
// (415 / 400), and the file-name slug of downloads and profile ids.
import type { Context } from "hono";
import { z } from "zod";
import { HttpError } from "./errors.ts";

/** Parses `data` with `schema`; a failure is a 400 "<what>: <path>: <message>" (the first issue). */
export function check<T extends z.ZodType>(schema: T, data: unknown, what: string): z.infer<T> {
  const r = schema.safeParse(data);
  if (!r.success) {
    const i = r.error.issues[0];
    const where = i.path.length ? `${i.path.join(".")}: ` : "";
    throw new HttpError(400, `${what}: ${where}${i.message}`);
  }
  return r.data;
}

/** The request body as JSON: 415 without Content-Type application/json, 400 when it does not parse. */
export async function jsonBody(c: Pick<Context, "req">): Promise<unknown> {
  const ct = c.req.header("content-type") ?? "";
  if (!ct.includes("application/json")) throw new HttpError(415, "expected Content-Type: application/json");
  try { return await c.req.json(); } catch { throw new HttpError(400, "request body is not valid JSON"); }
}

/** Request fields several sub-apps take: the backend to load on, and a model source (resolved by the context). */
export const BackendField = z.enum(["auto", "cpu", "cuda"]);
export const ModelSource = z.string().min(1).max(4096);

export function slug(s: string) { return s.replace(/[^A-Za-z0-9._-]+/g, "-").slice(0, 80) || "profile"; }
