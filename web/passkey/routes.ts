// Passkey sub-app (mounted at /api): POST /passkey runs the passkey retrieval test (engine/measure/passkey.ts) on a
// model with DCA and sparse prefill options and saves the result under <profiles>/raw/passkey/; GET /passkey lists
// the results under <profiles>/passkey/ (committed) and <profiles>/raw/passkey/; GET /passkey/result returns one as
// JSON, the heat-map SVG, CSV or the markdown table (?format=, ?download=1 for an attachment).
import { Hono } from "hono";
import { z } from "zod";
import { lstatSync, mkdirSync, readdirSync, renameSync, writeFileSync } from "node:fs";
import { join, relative, sep } from "node:path";
import { PasskeyResultSchema, passkeyTable, passkeyTitle, type PasskeyResult } from "../../engine/measure/passkey-schema.ts";
import { passkeyCsv, passkeySvg } from "../../engine/export/passkey.ts";
import { readJsonFile } from "../../engine/io/fsafe.ts";
import { sparseMode } from "../../engine/sparse.ts";
import type { WebContext } from "../context.ts";
import { HttpError } from "../errors.ts";
import { confine } from "../paths.ts";
import { BackendField, check, jsonBody, ModelSource, slug } from "../http.ts";

const DIRS = ["passkey", "raw/passkey"];
const MAX_FILE = 64 << 20;

const PasskeyRequest = z.object({
  model: ModelSource.optional(),
  backend: BackendField.optional(),
  lengths: z.array(z.number().int().min(16, "a passkey prompt needs >= 16 tokens").max(1 << 20)).min(1).max(32).default([256, 512, 1024]),
  trials: z.number().int().min(1).max(1000).default(10),
  seed: z.number().int().min(0).max(2 ** 31).default(0),
  buckets: z.number().int().min(1).max(20).default(5),
  dca: z.enum(["off", "on"]).default("off"),
  dcaChunk: z.number().int().min(2).optional(),
  dcaLocal: z.number().int().min(0).optional(),
  sparse: z.string().max(40).default("off"),  // a value of toggle sparsePrefill: checked against the engine's registry
  sparseVertical: z.number().int().min(0).optional(),
  sparseSlash: z.number().int().min(0).optional(),
  sparseBlocks: z.number().int().min(0).optional(),
  sparseLocal: z.number().int().min(1, "sparseLocal must be >= 1 (each query's own key is always visited)").optional(),
  sparseSink: z.number().int().min(0).optional(),
  sparseStats: z.boolean().optional(),
  label: z.string().max(120).optional(),
}).strict();

/** One result file (a single result, or an array of them as notebooks/passkey.ts writes): its entries. */
function entriesOf(key: string, v: unknown, mtime: number) {
  const list = Array.isArray(v) ? v : [v];
  return list.flatMap((x, index) => {
    const r = PasskeyResultSchema.safeParse(x);
    if (!r.success) return [];
    const p = r.data as unknown as PasskeyResult;
    return [{
      key, index, title: passkeyTitle(p), model: p.model, backend: p.backend, dca: p.dca.on, sparse: !!p.sparse,
      label: (x as { label?: string }).label ?? null, date: new Date(mtime).toISOString(),
      byLength: p.byLength.map((b) => ({ length: b.length, accuracy: b.accuracy, n: b.n })),
    }];
  });
}

export function passkeyRoutes(d: WebContext) {
  const app = new Hono();
  const root = d.profiles.root;

  function load(key: string, index: number): PasskeyResult {
    if (!/^[A-Za-z0-9._\/-]{1,300}$/.test(key) || !DIRS.some((dir) => key.startsWith(`${dir}/`)))
      throw new HttpError(400, `invalid passkey result key: ${JSON.stringify(key).slice(0, 80)} (keys come from GET /api/passkey)`);
    const v = readJsonFile(confine(root, `${key}.json`, { mustExist: true }), MAX_FILE) as unknown;
    const x = (Array.isArray(v) ? v : [v])[index];
    if (x === undefined) throw new HttpError(404, `${key} has no result ${index}`);
    const r = PasskeyResultSchema.safeParse(x);
    if (!r.success) throw new HttpError(422, `${key}: not a passkey result (${r.error.issues[0]?.message})`);
    return r.data as unknown as PasskeyResult;
  }

  app.get("/passkey", (c) => {
    const out: ReturnType<typeof entriesOf> = [];
    for (const dir of DIRS) {
      const abs = join(root, dir);
      let names: string[] = [];
      try { names = readdirSync(abs); } catch { continue; }
      for (const n of names.filter((x) => x.endsWith(".json"))) {
        const p = join(abs, n);
        try {
          const st = lstatSync(p);
          if (!st.isFile() || st.size > MAX_FILE) continue;  // no links, FIFOs or devices
          out.push(...entriesOf(relative(root, p).slice(0, -5).split(sep).join("/"), readJsonFile(p, MAX_FILE), st.mtimeMs));
        } catch { /* unreadable: not listed */ }
      }
    }
    return c.json({ results: out.sort((a, b) => b.date.localeCompare(a.date)) });
  });

  app.get("/passkey/result", (c) => {
    const key = c.req.query("key") ?? "", index = Number(c.req.query("index") ?? 0);
    if (!Number.isInteger(index) || index < 0) throw new HttpError(400, "index must be an integer >= 0");
    const r = load(key, index);
    const format = c.req.query("format") ?? "json";
    const name = `${slug(key.split("/").pop() ?? "passkey")}-${index}`;
    const send = (body: string, type: string, ext: string) => {
      if (c.req.query("download") === "1") c.header("Content-Disposition", `attachment; filename="${name}.${ext}"`);
      return c.body(body, 200, { "Content-Type": type });
    };
    if (format === "json") return send(JSON.stringify(r, null, 2), "application/json", "json");
    if (format === "svg") return send(passkeySvg(r), "image/svg+xml", "svg");
    if (format === "csv") return send(passkeyCsv(r), "text/csv; charset=utf-8", "csv");
    if (format === "md") return send(`${passkeyTitle(r)}\n\n${passkeyTable(r)}\n`, "text/markdown; charset=utf-8", "md");
    throw new HttpError(400, `unknown format '${format.slice(0, 40)}': json, svg, csv or md`);
  });

  app.post("/passkey", async (c) => {
    const req = check(PasskeyRequest, await jsonBody(c), "passkey");
    if (req.dcaChunk !== undefined && req.dcaLocal !== undefined && req.dcaLocal >= req.dcaChunk)
      throw new HttpError(400, `passkey: dcaLocal (${req.dcaLocal}) must be smaller than dcaChunk (${req.dcaChunk})`);
    const toggles = (await d.catalog()).toggles;
    let sparse: ReturnType<typeof sparseMode>;
    try {
      sparse = sparseMode(req.sparse, "passkey: sparse", toggles);
    } catch (e) {
      throw new HttpError(400, (e as Error).message);
    }
    const source = req.model !== undefined ? d.resolveSource(req.model) : undefined;
    d.guardQueue();
    const label = req.label ?? `passkey ${req.lengths.join(",")} × ${req.trials}${req.dca === "on" ? " dca" : ""}${req.sparse !== "off" ? ` ${req.sparse}` : ""}`;
    const t = d.tasks.submit("passkey", label, async (t) => {
      await d.ensureModel(t, source, req.backend);
      const sparseOptions = {
        vertical: req.sparseVertical, slash: req.sparseSlash, blocks: req.sparseBlocks, local: req.sparseLocal, sink: req.sparseSink, stats: req.sparseStats,
      };
      const r = await d.host.passkey(t.id, {
        lengths: req.lengths, trials: req.trials, seed: req.seed, buckets: req.buckets, dca: req.dca === "on",
        ...(req.dcaChunk !== undefined || req.dcaLocal !== undefined ? { dcaOptions: { chunk: req.dcaChunk, local: req.dcaLocal } } : {}),
        ...(sparse !== "off" ? { sparse } : {}),
        ...(Object.values(sparseOptions).some((v) => v !== undefined) ? { sparseOptions } : {}),
      }, d.relay(t));
      const dir = join(root, "raw/passkey");
      mkdirSync(dir, { recursive: true });
      const id = `${new Date().toISOString().replace(/[-:]/g, "").slice(0, 15)}-${slug(label)}`;
      const tmp = join(dir, `${id}.json.tmp-${process.pid}-${Date.now()}`);
      writeFileSync(tmp, JSON.stringify({ ...r, label }, null, 1));
      renameSync(tmp, join(dir, `${id}.json`));
      return { key: `raw/passkey/${id}`, index: 0, title: passkeyTitle(r), byLength: r.byLength, warnings: r.warnings };
    });
    return c.json({ task: t.view(), id: t.id, events: `/api/tasks/${t.id}/events` }, 202);
  });

  return app;
}
