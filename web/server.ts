// The only file that listens. `bun web/server.ts [--host 0.0.0.0] [--port N] [--models DIR]... [--profiles DIR]
// [--backend auto|cpu|cuda]`. PORT from the environment (default 8787); bound to 127.0.0.1 unless --host.
// The engine runs in a Bun Worker (web/engine-worker.ts) so blocking FFI never stalls HTTP or SSE.
import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { createApp } from "./app.ts";
import { WorkerHost } from "./worker-host.ts";
import { removeOwnTempFiles, syntheticDir } from "../engine/io/tempfiles.ts";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string" },
    models: { type: "string", multiple: true },
    profiles: { type: "string" },
    backend: { type: "string", default: process.env.QW_BACKEND ?? "auto" },
    engine: { type: "string" },
    "idle-timeout": { type: "string", default: "120" },
    notebooks: { type: "string" },
    "allow-exec": { type: "boolean", default: false },
    help: { type: "boolean", short: "h" },
  },
  strict: true,
});

if (values.help) {
  console.log("usage: bun web/server.ts [--host 127.0.0.1] [--port 8787] [--models DIR]... [--profiles DIR] [--backend auto|cpu|cuda] [--notebooks DIR] [--allow-exec]");
  process.exit(0);
}

const repo = resolve(import.meta.dir, "..");
const port = Number(values.port ?? process.env.PORT ?? 8787);
if (!Number.isInteger(port) || port < 0 || port > 65535) { console.error(`bad port: ${values.port ?? process.env.PORT}`); process.exit(2); }
const backend = values.backend as "auto" | "cpu" | "cuda";
if (!["auto", "cpu", "cuda"].includes(backend)) { console.error(`bad backend: ${backend}`); process.exit(2); }
const modelRoots = [...(values.models ?? []), ...(process.env.QW_MODEL_ROOTS?.split(":").filter(Boolean) ?? [])];
if (!modelRoots.length) modelRoots.push(resolve(repo, "models"));
const engineModule = values.engine ?? process.env.QW_ENGINE_MODULE ?? resolve(repo, "engine/index.ts");

const host = new WorkerHost(resolve(engineModule));
const heartbeatMs = Number(process.env.QW_SSE_HEARTBEAT_MS ?? 5000);
const idleTimeout = Number(values["idle-timeout"]);
if (!(idleTimeout >= 0 && idleTimeout <= 255)) { console.error("--idle-timeout: 0..255 seconds (0 = never)"); process.exit(2); }
// Notebook cells are arbitrary code run by the server: allowed on loopback, beyond it only with --allow-exec.
const loopback = ["127.0.0.1", "localhost", "::1"].includes(values.host!) || values.host!.startsWith("127.");
const exec = loopback || values["allow-exec"]!;
const nbLimits = {
  ...(process.env.QW_NB_CELL_TIMEOUT_S ? { cellTimeoutMs: Number(process.env.QW_NB_CELL_TIMEOUT_S) * 1000 } : {}),
  ...(process.env.QW_NB_MEMORY_MB ? { memoryMb: Number(process.env.QW_NB_MEMORY_MB) } : {}),
};
const app = createApp({
  host, modelRoots, defaultBackend: backend, heartbeatMs,
  notebooks: {
    dir: resolve(values.notebooks ?? process.env.QW_NOTEBOOKS ?? resolve(repo, "notebooks")), exec, limits: nbLimits,
    execNote: exec ? undefined : `notebook cells cannot run: the server listens on ${values.host}, beyond loopback; restart it with --allow-exec to allow code execution`,
  },
  profilesRoot: resolve(values.profiles ?? process.env.QW_PROFILES ?? resolve(repo, "profiles")),
});

const server = Bun.serve({
  hostname: values.host,
  port,
  fetch: app.fetch,
  // Bun closes connections idle for idleTimeout seconds, streaming responses included. SSE routes turn it off
  // per request (server.timeout) and also send a keep-alive comment every 5 s; this bounds everything else.
  idleTimeout,
  maxRequestBodySize: 8 << 20,
});

console.log(`qwen-workbench on http://${server.hostname}:${server.port}  (engine: ${engineModule}, backend ${backend}, models: ${modelRoots.join(", ")})`);
if (!loopback) console.warn("warning: listening beyond loopback; the workbench has no authentication");
if (!loopback && exec) console.warn("warning: --allow-exec: anyone who can reach this port can run arbitrary code on this machine through the notebooks");
else if (!loopback) console.warn("notebooks are read-only (no code execution) beyond loopback; --allow-exec enables them");

// Graceful shutdown (D6): stop listening, let the app end its tasks (the in-flight run is saved as a partial
// profile; every follower gets a terminal event), stop the engine worker, remove this process's half-written
// synthetic models, exit 0. A second signal exits at once.
let stopping = false;
const stop = async (sig: string) => {
  if (stopping) { console.error(`[web] ${sig} again: exiting now`); process.exit(130); }
  stopping = true;
  console.log(`[web] ${sig}: shutting down (saving the in-flight run, ending streams)`);
  server.stop(false);
  try { await app.shutdown(`server shutdown (${sig})`); } catch (e) { console.error("[web] shutdown:", (e as Error).message); }
  app.notebooks.closeAll();
  await host.close();
  const removed = removeOwnTempFiles([syntheticDir(), ...modelRoots]);
  if (removed.length) console.log(`[web] removed ${removed.length} partial file(s): ${removed.join(", ")}`);
  server.stop(true);
  process.exit(0);
};
process.on("SIGINT", () => void stop("SIGINT"));
process.on("SIGTERM", () => void stop("SIGTERM"));
