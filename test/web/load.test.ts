// Bounded load test on loopback: 50 SSE clients start runs back to back against the real server for
// QW_LOAD_SECONDS (default 15; the 60 s version: QW_LOAD_SECONDS=60 bun test test/web/load.test.ts).
// Some clients cancel their run, some drop their stream midway. Passes when the server never crashes, every
// run ends in done/cancelled (none failed, none lost), and every finished run's profile is listed and readable.
// QW_LOAD_ENGINE=fake uses test/web/fake-engine.ts instead of the CPU engine.
import { describe, expect, test, afterAll } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { readSse, json } from "./helpers.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const REPO = resolve(import.meta.dir, "../..");
const SECONDS = Number(process.env.QW_LOAD_SECONDS ?? 15);
const CLIENTS = Number(process.env.QW_LOAD_CLIENTS ?? 50);
const engine = process.env.QW_LOAD_ENGINE === "fake" ? join(REPO, "test/web/fake-engine.ts") : join(REPO, "engine/index.ts");

describe("load", () => {
  const tmp = mkdtempSync(join(tmpdir(), "qwb-load-"));
  let server: ReturnType<typeof Bun.spawn> | null = null;
  afterAll(() => { server?.kill(); rmSync(tmp, { recursive: true, force: true }); });

  test(`${CLIENTS} SSE clients for ${SECONDS} s: no crash, no lost profile`, async () => {
    const port = 20000 + Math.floor(Math.random() * 20000);
    server = Bun.spawn([process.execPath, join(REPO, "web/server.ts"), "--port", String(port), "--profiles", join(tmp, "profiles"), "--backend", "cpu", "--engine", engine], {
      cwd: REPO, stdout: "pipe", stderr: "pipe",
    });
    const base = `http://127.0.0.1:${port}`;
    for (let i = 0; i < 600; i++) { // up to 60 s: a loaded machine starts Bun slowly
      try { if ((await fetch(`${base}/api/health`)).ok) break; } catch { /* starting */ }
      await Bun.sleep(100);
    }
    const deadline = Date.now() + SECONDS * 1000;
    const outcome = { done: 0, cancelled: 0, failed: 0, dropped: 0, errors: [] as string[], keys: new Set<string>() };

    async function client(c: number) {
      let n = 0;
      while (Date.now() < deadline) {
        n++;
        const mode = (c + n) % 9 === 0 ? "cancel" : (c + n) % 11 === 0 ? "drop" : "follow";
        let id: string;
        try {
          const r = await fetch(`${base}/api/runs`, json({ prompt: `client ${c} run ${n}: the old man`, maxTokens: 12 + (c % 8), label: `load-c${c}-${n}` }));
          if (r.status === 503) { await Bun.sleep(50); continue; } // queue full: back off
          if (r.status !== 202) { outcome.errors.push(`POST ${r.status}: ${await r.text()}`); continue; }
          id = ((await r.json()) as { id: string }).id;
        } catch (e) { outcome.errors.push(`POST failed: ${(e as Error).message}`); return; }
        if (mode === "cancel") {
          const es = fetch(`${base}/api/tasks/${id}/events`).then((r) => readSse(r, undefined, 120_000));
          await fetch(`${base}/api/tasks/${id}/cancel`, { method: "POST" });
          const ev = await es;
          const last = ev.at(-1);
          if (last?.event === "cancelled") outcome.cancelled++; else if (last?.event === "done") outcome.done++;
          else { outcome.failed++; outcome.errors.push(`cancel run ${id}: ${JSON.stringify(last)}`); }
          if (last?.data?.profileKey) outcome.keys.add(last.data.profileKey);
        } else if (mode === "drop") {
          const ac = new AbortController();
          const r = await fetch(`${base}/api/tasks/${id}/events`, { signal: ac.signal });
          await readSse(r, (e) => e.event === "status", 30_000).catch(() => []);
          ac.abort();
          outcome.dropped++;
          // the run itself continues; collect its result by polling
          for (let i = 0; i < 1800; i++) {
            const t = (await (await fetch(`${base}/api/tasks/${id}`)).json()) as { status: string; result?: { profileKey?: string } };
            if (["done", "failed", "cancelled"].includes(t.status)) {
              if (t.status === "failed") { outcome.failed++; outcome.errors.push(`dropped run ${id} failed`); }
              if (t.result?.profileKey) outcome.keys.add(t.result.profileKey);
              break;
            }
            await Bun.sleep(100);
          }
        } else {
          const ev = await readSse(await fetch(`${base}/api/tasks/${id}/events`), undefined, 120_000);
          const last = ev.at(-1);
          if (last?.event === "done") {
            outcome.done++;
            outcome.keys.add(last.data.profileKey);
            if (!ev.some((e) => e.event === "token")) outcome.errors.push(`run ${id}: no token events`);
          } else { outcome.failed++; outcome.errors.push(`run ${id}: ended with ${JSON.stringify(last)?.slice(0, 200)}`); }
        }
      }
    }

    await Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c)));
    // the server is still up and every profile a client was told about exists and reads back
    expect(server.exitCode).toBeNull();
    const health = await fetch(`${base}/api/health`);
    expect(health.status).toBe(200);
    const list = (await (await fetch(`${base}/api/profiles`)).json()) as { profiles: { key: string }[] };
    const listed = new Set(list.profiles.map((p) => p.key));
    const lost = [...outcome.keys].filter((k) => !listed.has(k));
    for (const k of [...outcome.keys].slice(0, 20)) expect((await fetch(`${base}/api/profiles/${encodeURIComponent(k)}`)).status).toBe(200);
    console.log(`[load] ${CLIENTS} clients, ${SECONDS} s: ${outcome.done} done, ${outcome.cancelled} cancelled, ${outcome.dropped} streams dropped, ${outcome.failed} failed, ${outcome.keys.size} profiles, ${lost.length} lost`);
    expect(outcome.errors.slice(0, 5)).toEqual([]);
    expect(outcome.failed).toBe(0);
    expect(lost).toEqual([]);
    expect(outcome.done).toBeGreaterThan(CLIENTS / 2);
    expect(listed.size).toBeGreaterThanOrEqual(outcome.keys.size);
  }, (SECONDS + 120) * 1000);

  test("an SSE stream outlives Bun's idle timeout while the engine is silent", async () => {
    // idle timeout 2 s, engine silent for 2.5 s per step: the stream lives on keep-alive comments.
    const port = 20000 + Math.floor(Math.random() * 20000);
    const s = Bun.spawn([process.execPath, join(REPO, "web/server.ts"), "--port", String(port), "--profiles", join(tmp, "profiles-idle"),
      "--engine", join(REPO, "test/web/fake-engine.ts"), "--idle-timeout", "2"], {
      cwd: REPO, stdout: "pipe", stderr: "pipe",
      env: { ...process.env, QW_FAKE_OPTIONS: JSON.stringify({ stepDelayMs: 2500 }), QW_SSE_HEARTBEAT_MS: "500" },
    });
    try {
      const base = `http://127.0.0.1:${port}`;
      for (let i = 0; i < 600; i++) { try { if ((await fetch(`${base}/api/health`)).ok) break; } catch { /* starting */ } await Bun.sleep(100); }
      const { id } = (await (await fetch(`${base}/api/runs`, json({ prompt: "slow", maxTokens: 2 }))).json()) as { id: string };
      const res = await fetch(`${base}/api/tasks/${id}/events`);
      const raw = await new Response(res.body).text(); // the whole stream, until the server ends it
      expect(raw).toContain(": keep-alive");
      expect(raw).toContain("event: done");
    } finally { s.kill(); }
  }, 180_000);
});
