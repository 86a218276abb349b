// Pages sub-app (mounted at /): the page, its static files (confined to the public folder), and plotly.js
// served from node_modules (the page has no build step and loads nothing from the network).
import { Hono } from "hono";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { HttpError } from "../errors.ts";
import { confine } from "../paths.ts";

const MIME: Record<string, string> = { html: "text/html; charset=utf-8", js: "text/javascript; charset=utf-8", css: "text/css; charset=utf-8", svg: "image/svg+xml", png: "image/png", ico: "image/x-icon" };

export function pageRoutes(publicDir = new URL("../public", import.meta.url).pathname) {
  const root = resolve(publicDir);
  const app = new Hono();
  const plotlyPath = (() => {
    try { return Bun.resolveSync("plotly.js/dist/plotly.min.js", import.meta.dir); } catch { return null; }
  })();
  app.get("/vendor/plotly.min.js", () => {
    if (!plotlyPath || !existsSync(plotlyPath)) throw new HttpError(404, "plotly.js is not installed (npm install)");
    return new Response(Bun.file(plotlyPath), { headers: { "Content-Type": "text/javascript; charset=utf-8", "Cache-Control": "public, max-age=86400" } });
  });
  const serve = (rel: string) => {
    const p = confine(root, rel, { mustExist: true });
    const ext = p.split(".").pop() ?? "";
    return new Response(Bun.file(p), { headers: { "Content-Type": MIME[ext] ?? "application/octet-stream", "Cache-Control": "no-cache" } });
  };
  app.get("/", () => serve("index.html"));
  app.get("/static/*", (c) => serve(decodeURIComponent(new URL(c.req.url).pathname.slice("/static/".length))));
  app.get("/favicon.ico", (c) => c.body(null, 204));
  return app;
}
