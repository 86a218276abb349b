// notebooks/bench.ts --report: the committed H200 run-3 profiles and peers become one table with our numbers next
// to the peers' (no model is opened, so this runs on the CPU-only CI machine), and bad input fails clearly.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const REPO = join(import.meta.dir, "..", "..");
const RUN3 = join(REPO, "profiles", "h200", "run3");

function bench(args: string[]) {
  const p = Bun.spawnSync([process.execPath, join(REPO, "notebooks", "bench.ts"), ...args], { cwd: REPO, stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

describe("bench.ts --report", () => {
  test("merges the run-3 profiles with their peers into a side-by-side decode table", () => {
    const out = mkdtempSync(join(tmpdir(), "qw-report-"));
    const r = bench(["--report", RUN3, "--peers", join(RUN3, "peers.jsonl"), "--out", out]);
    expect(r.code).toBe(0);
    const md = readFileSync(join(out, "bench.md"), "utf8");
    const side = md.slice(md.indexOf("Decode tok/s side by side"));
    const row = (shape: string, t: string) => side.split("\n").find((l) => l.startsWith(`| ${shape} | ${t} |`)) ?? "";
    // ours (bf16, Q8_0, Q4_K_M) and both peers on the batch-1 line of every shape, with the ratio to the best peer
    for (const shape of ["0.5b", "1.5b", "7b"]) {
      const l = row(shape, "tg128 b1");
      expect(l.split("|").filter((c) => c.trim() === "–").length).toBe(0);
      const ratio = Number(/\| ([0-9.]+)× \|$/.exec(l)?.[1]);
      expect(ratio).toBeGreaterThan(1); // the issue-3 bar: faster than torch.compile and HF eager on the same shapes
    }
    expect(row("0.5b", "tg128 b1")).toContain("1068.5 (1061.1–1076.3)");
    expect(row("7b", "tg128 b16")).toContain("496.1");
    // the per-op decode-step tables of every profile follow
    expect(md.match(/one decode step|decode step breakdown/g)?.length).toBeGreaterThanOrEqual(9);
    const jsonl = readFileSync(join(out, "bench.jsonl"), "utf8").trim().split("\n");
    expect(jsonl.length).toBe(9 * 6 + 12); // 9 profiles x 6 tests + 12 peer rows
  });

  test("a missing directory or one without bench profiles is an error that says so", () => {
    const scratch = mkdtempSync(join(tmpdir(), "qw-report-out-"));
    const missing = bench(["--report", join(tmpdir(), "qw-no-such-dir-xyz"), "--out", scratch]);
    expect(missing.code).toBe(2);
    expect(missing.err + missing.out).toContain("does not exist");
    const empty = mkdtempSync(join(tmpdir(), "qw-report-empty-"));
    writeFileSync(join(empty, "not-a-profile.json"), "{\"x\": 1}");
    const none = bench(["--report", empty, "--out", scratch]);
    expect(none.code).toBe(2);
    expect(none.err + none.out).toContain("no bench profiles");
  });
});
