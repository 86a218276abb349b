// Shared helpers for web tests (test/web and the sub-app tests beside web/*/routes.ts): a temp workbench app
// over the fake engine, run helpers, and an SSE reader.
import { afterAll, expect } from "bun:test";
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApp, type AppDeps } from "../../web/app.ts";
import { EngineCore, LocalHost, type EngineHost } from "../../web/core.ts";
import { catalog, makeFakeOpenModel, type FakeOptions } from "./fake-engine.ts";

export interface Sse { id: number; event: string; data: any }

export function tempDirs() {
  const base = mkdtempSync(join(tmpdir(), "qwb-web-"));
  const profiles = join(base, "profiles"), models = join(base, "models");
  mkdirSync(profiles, { recursive: true });
  mkdirSync(join(models, "hf-model"), { recursive: true });
  writeFileSync(join(models, "hf-model", "config.json"), "{}");
  writeFileSync(join(models, "hf-model", "model.safetensors"), "x");
  writeFileSync(join(models, "small.gguf"), "GGUF");
  return { base, profiles, models, cleanup: () => rmSync(base, { recursive: true, force: true }) };
}

export function fakeApp(fake: FakeOptions = {}, extra: Partial<AppDeps> = {}, host?: EngineHost) {
  const dirs = tempDirs();
  const h = host ?? new LocalHost(new EngineCore(makeFakeOpenModel(fake), catalog));
  const app = createApp({ host: h, profilesRoot: dirs.profiles, modelRoots: [dirs.models], heartbeatMs: 200, ...extra });
  return { app, dirs, host: h };
}

type App = ReturnType<typeof fakeApp>["app"];

/** fakeApp for one test file: the temp folders of every app it made are removed after the file's tests. */
export function appsForFile(): (...a: Parameters<typeof fakeApp>) => ReturnType<typeof fakeApp> {
  const envs: { cleanup: () => void }[] = [];
  afterAll(() => envs.forEach((e) => e.cleanup()));
  return (...a) => {
    const r = fakeApp(...a);
    envs.push(r.dirs);
    return r;
  };
}

export async function startRun(app: App, body: unknown) {
  const res = await app.request("/api/runs", json(body));
  expect(res.status).toBe(202);
  return (await res.json()) as { id: string };
}

export async function runToEnd(app: App, body: unknown): Promise<{ id: string; events: Sse[] }> {
  const { id } = await startRun(app, body);
  const events = await readSse(await app.request(`/api/tasks/${id}/events`));
  return { id, events };
}

export async function readSse(res: Response, until = (e: Sse) => ["done", "error", "cancelled"].includes(e.event), timeoutMs = 120_000): Promise<Sse[]> {
  const out: Sse[] = [];
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let buf = "";
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const { value, done } = await Promise.race([
      reader.read(),
      new Promise<{ value: undefined; done: true }>((r) => setTimeout(() => r({ value: undefined, done: true }), Math.max(1, deadline - Date.now()))),
    ]);
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i); buf = buf.slice(i + 2);
      const ev: Partial<Sse> = {};
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const k = line.slice(0, line.indexOf(":")), v = line.slice(line.indexOf(":") + 1).replace(/^ /, "");
        if (k === "id") ev.id = Number(v); else if (k === "event") ev.event = v; else if (k === "data") data.push(v);
      }
      if (!ev.event && !data.length) continue;
      const e = { id: ev.id ?? 0, event: ev.event ?? "message", data: data.length ? JSON.parse(data.join("\n")) : null };
      out.push(e);
      if (until(e)) { await reader.cancel().catch(() => {}); return out; }
    }
  }
  await reader.cancel().catch(() => {});
  return out;
}

export const json = (body: unknown) => ({ method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

/** fakeApp over the real engine (engine/index.ts: the native library, in-process), for one test file. */
export function cpuEngineApps(): () => Promise<App> {
  const make = appsForFile();
  return async () => {
    const { openModel } = await import("../../engine/index.ts");
    return make({}, {}, new LocalHost(new EngineCore(openModel))).app;
  };
}

/** POSTs a task (a run, a load, …) and reads its events to the end. */
export async function taskEvents(app: App, path: string, body: unknown): Promise<Sse[]> {
  const r = await app.request(path, json(body));
  expect(r.status).toBe(202);
  const j = (await r.json()) as { id?: string; task: { id: string } };
  return readSse(await app.request(`/api/tasks/${j.id ?? j.task.id}/events`));
}
