// The CLI's speculative options (engine/spec/cli.ts): bad flags are one clear line; generate with a draft
// model prints the target's greedy text and the acceptance line and writes it into the profile; bench compares
// off with draft k on Brown prompts; the notebook's --help.
import { test, expect, describe, afterAll } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readProfile } from "../../engine/measure/profile.ts";
import type { QwenConfig } from "../../engine/api.ts";
import { eagleConfigFor, writeEagleHead } from "../../engine/spec/eagle-head.ts";
import { randomHead } from "./spec-helpers.ts";
import { cpuLibraryBuilt, ROOT } from "../reference/fixtures.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout();

const tmp = mkdtempSync(join(tmpdir(), "qwb-spec-cli-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const DRAFT = join(ROOT, "models/tiny-qwen2-brown-draft");

function cli(...args: string[]): { code: number; out: string; err: string } {
  const r = Bun.spawnSync([process.execPath, join(ROOT, "engine/cli/main.ts"), ...args], { cwd: ROOT, stdin: "ignore", env: { ...process.env, QW_DEBUG: "" } });
  return { code: r.exitCode ?? -1, out: r.stdout.toString(), err: r.stderr.toString() };
}

test("bad speculative flags: exit 1 with one clear line", () => {
  for (const [args, re] of [
    [["generate", "--prompt", "x", "--speculative", "draft"], /--speculative draft needs --draft PATH/],
    [["generate", "--prompt", "x", "--speculative", "medusa"], /--speculative must be off, draft or eagle/],
    [["generate", "--prompt", "x", "--speculative", "eagle"], /--speculative eagle needs --eagle DIR/],
    [["generate", "--prompt", "x", "--tree-depth", "3"], /--tree-depth\/--tree-topk\/--tree-budget need --speculative eagle/],
    [["generate", "--prompt", "x", "--eagle", "/nonexistent", "--tree-topk", "99"], /topK.*topK 1\.\.16/],
    [["generate", "--prompt", "x", "--draft", DRAFT, "--draft-k", "0"], /--draft-k expects integers in 1\.\.64/],
    [["generate", "--prompt", "x", "--draft-k", "2"], /--draft-k needs --speculative draft/],
    [["generate", "--prompt", "x", "--draft", DRAFT, "--draft-k", "2,4"], /--draft-k takes one value/],
  ] as [string[], RegExp][]) {
    const r = cli(...args);
    expect({ args, code: r.code }).toEqual({ args, code: 1 });
    expect(r.err).toMatch(re);
    expect(r.err).not.toMatch(/\n\s+at /);
  }
});

describe.skipIf(!cpuLibraryBuilt())("CLI speculative runs (CPU)", () => {
  test("generate --speculative draft: the plain greedy text, an acceptance line, and the profile's speculative block", () => {
    const plain = cli("generate", "--backend", "cpu", "--prompt", "The jury said", "-n", "24");
    const prof = join(tmp, "spec.json");
    const spec = cli("generate", "--backend", "cpu", "--prompt", "The jury said", "-n", "24", "--speculative", "draft", "--draft", DRAFT, "--draft-k", "3", "--profile", prof);
    expect(plain.code).toBe(0);
    expect(spec.code).toBe(0);
    expect(spec.out).toBe(plain.out);
    expect(spec.err).toMatch(/\[speculative draft k=3: \d+ verify steps, [\d.]+ tokens\/step, acceptance [\d.]+ %/);
    const p = readProfile(prof);
    expect(p.manifest.toggles?.speculative).toBe("draft");
    const s = p.summary.speculative as { k: number; acceptance_by_position: number[]; steps: number };
    expect(s.k).toBe(3);
    expect(s.acceptance_by_position).toHaveLength(3);
    expect(s.steps).toBeGreaterThan(0);
  });

  test("the toggle speculative=draft without --draft: a clear error (generate and bench)", () => {
    for (const cmd of ["generate", "bench"]) {
      const r = cli(cmd, "--backend", "cpu", "--toggle", "speculative=draft", ...(cmd === "bench" ? ["--pp", "0", "--tg", "1"] : ["--prompt", "x"]));
      expect(r.code).toBe(1);
      expect(r.err).toMatch(new RegExp(`${cmd}: speculative=draft needs --draft PATH`));
    }
  });

  test("bench --speculative draft: an off row and one row per k with acceptance statistics", () => {
    const r = cli("bench", "--backend", "cpu", "--pp", "0", "--tg", "8", "--speculative", "draft", "--draft", DRAFT, "--draft-k", "1,2",
      "--prompts", "2", "--format", "json");
    expect(r.code).toBe(0);
    const rows = JSON.parse(r.out) as { test: string; extra?: { speculative?: { k: number; tokens_per_step: number } } }[];
    const spec = rows.filter((x) => x.test.includes("brown"));
    expect(spec.map((x) => x.test)).toEqual(["tg8 b1 brown off", "tg8 b1 brown draft k=1", "tg8 b1 brown draft k=2"]);
    expect(spec[1].extra?.speculative?.k).toBe(1);
    expect(spec[2].extra?.speculative?.tokens_per_step).toBeGreaterThanOrEqual(1);
  });

  test("generate and bench --speculative eagle with a random SafeAILab-layout head: the plain greedy text, tree statistics", async () => {
    const cfg = JSON.parse(readFileSync(join(ROOT, "models/tiny-qwen2-brown/config.json"), "utf8")) as QwenConfig;
    const full: QwenConfig = { ...cfg, num_key_value_heads: cfg.num_key_value_heads ?? cfg.num_attention_heads, head_dim: cfg.hidden_size / cfg.num_attention_heads, rope_theta: 1e6 };
    const headDir = join(tmp, "eagle-head");
    await writeEagleHead(headDir, eagleConfigFor(full), randomHead(full, 3));
    const plain = cli("generate", "--backend", "cpu", "--prompt", "The jury said", "-n", "20");
    const prof = join(tmp, "eagle.json");
    const spec = cli("generate", "--backend", "cpu", "--prompt", "The jury said", "-n", "20", "--speculative", "eagle", "--eagle", headDir,
      "--tree-depth", "3", "--tree-topk", "2", "--tree-budget", "5", "--profile", prof);
    expect(spec.code).toBe(0);
    expect(spec.out).toBe(plain.out);
    expect(spec.err).toMatch(/\[speculative eagle depth=3 topk=2 budget=5: \d+ verify steps/);
    const p = readProfile(prof);
    expect(p.manifest.toggles?.speculative).toBe("eagle");
    const s = p.summary.speculative as { method: string; tree: { depth: number }; acceptance_by_position: number[] };
    expect(s.method).toBe("eagle");
    expect(s.tree.depth).toBe(3);
    expect(s.acceptance_by_position).toHaveLength(3);
    const b = cli("bench", "--backend", "cpu", "--pp", "0", "--tg", "6", "--speculative", "eagle", "--eagle", headDir, "--prompts", "2", "--format", "json");
    expect(b.code).toBe(0);
    const rows = JSON.parse(b.out) as { test: string; extra?: { speculative?: { method: string; nodes_per_step: number } } }[];
    const sp = rows.filter((x) => x.test.includes("brown"));
    expect(sp.map((x) => x.test)).toEqual(["tg6 b1 brown off", "tg6 b1 brown eagle d=5 k=4 b=16"]);
    expect(sp[1].extra?.speculative?.method).toBe("eagle");
    expect(sp[1].extra?.speculative?.nodes_per_step).toBeGreaterThan(0);
  });

  test("notebooks/speculative.ts --help prints usage", () => {
    const r = Bun.spawnSync([process.execPath, join(ROOT, "notebooks/speculative.ts"), "--help"], { cwd: ROOT });
    expect(r.exitCode).toBe(0);
    expect(r.stdout.toString()).toMatch(/^usage: npx bun notebooks\/speculative\.ts/);
  });
});
