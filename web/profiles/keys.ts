// Profile keys as requests give them (a path under the profiles root, without .json): one in the URL, or a
// comma-separated list in ?keys= (1–16). The store confines them again; this is the first, cheap refusal.
import type { Context } from "hono";
import { z } from "zod";
import { HttpError } from "../errors.ts";
import { check } from "../http.ts";

export const KeyParam = z.string().regex(/^[A-Za-z0-9._\/-]{1,300}$/, "invalid profile key");

export const keyOf = (c: Context) => check(KeyParam, c.req.param("key"), "profile key");

export function keysParam(c: Context): string[] {
  const keys = (c.req.query("keys") ?? "").split(",").filter(Boolean);
  if (!keys.length || keys.length > 16) throw new HttpError(400, "keys: give 1–16 profile keys, comma-separated");
  return keys.map((k) => check(KeyParam, k, "profile key"));
}

export const RooflineGroup = z.enum(["op", "layer", "layer-op"]).default("op");
