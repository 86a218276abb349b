// The CLI: user errors exit 1 with one clear line (no stack trace); generate / inspect / synth / bench work.
import { test, expect, describe } from "bun:test";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readProfile } from "../../engine/measure/profile.ts";
import { cpuLibraryBuilt, ROOT } from "../reference/fixtures.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

function cli(...args: string[]): { code: number; out: string; err: string } {
  const r = Bun.spawnSync([process.execPath, join(ROOT, "engine/cli/main.ts"), ...args], { cwd: ROOT, stdin: "ignore", env: { ...process.env, QW_DEBUG: "" } });
  return { code: r.exitCode ?? -1, out: r.stdout.toString(), err: r.stderr.toString() };
}

test("user errors: exit 1, one clear message, no stack trace", () => {
  const cases: [string[], RegExp][] = [
    [["frobnicate"], /unknown command 'frobnicate'/],
    [["generate", "--bogus"], /Unknown option '--bogus'/],
    [["generate", "--prompt", "x", "--temperature", "hot"], /--temperature expects a number/],
    [["generate", "--prompt", "x", "--top-p", "2"], /--top-p must be <= 1/],
    [["generate", "/no/such/model.gguf", "hello"], /not found|does not exist/],
    [["generate", "synthetic:3b", "hello"], /unknown synthetic preset '3b'/],
    [["synth", "13b"], /unknown preset '13b'/],
    [["synth", "tiny", "--type", "q2_k"], /--type must be one of/],
    [["synth", "tiny", "--format", "hf", "--type", "q8_0"], /float weights only/],
    [["inspect", "/nope"], /does not exist/],
    [["inspect", join(ROOT, "package.json")], /not a GGUF file/],
    [["bench", "--reps", "2"], /--reps must be >= 3/],
    [["generate", "--prompt", "x", "--backend", "tpu"], /--backend must be auto, cpu or cuda/],
    [["generate", "--prompt", "x", "--weights", "q4,output=q3"], /--weights q4,output=q3: output: "q3" is not a weight format/],
    [["generate", "--prompt", "x", "--weights", "q4,lm=q8"], /--weights q4,lm=q8: "lm" is not a layer index \(0, 1, 2, \.\.\.\) or "output"/],
  ];
  if (cpuLibraryBuilt()) {  // the toggle check needs the registry of the loaded model
    cases.push(
      [["generate", "--prompt", "x", "--backend", "cpu", "--toggle", "tile=huge"], /toggle tile \(Kernel tile sizes\): "huge" is not one of auto, fixed/],
      [["bench", "--backend", "cpu", "--depth=-5"], /--depth must be >= 0/],
      [["generate", "--prompt", "x", "--backend", "cpu", "--toggle", "graphs=on"], /toggle graphs \(CUDA graphs\) = on is not on the cpu backend \(the cuda backend has it/],
      // the embedded model is tied: its lm_head is the embedding, which the option must not change
      [["generate", "--prompt", "x", "--backend", "cpu", "--weights", "q4,output=q8"], /ties its lm_head to the token embedding.*drop the "output" key/],
    );
  }
  for (const [args, re] of cases) {
    const r = cli(...args);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(re);
    expect(r.err).not.toMatch(/\n\s+at /); // no stack frames
  }
});

test("help and inspect", () => {
  const h = cli("help");
  expect(h.code).toBe(0);
  expect(h.out).toMatch(/generate.*synth.*inspect.*bench/s);
  const i = cli("inspect", "default");
  expect(i.code).toBe(0);
  expect(i.out).toMatch(/\| token_embd\.weight \| BF16 \| \[256, 8256\] \|/);
  const p = cli("inspect", "synthetic:0.5b:q4_k_m");
  expect(p.out).toMatch(/\| blk\.0\.attn_q\.weight \| Q5_0 \| \[896, 896\] \|/);
});

describe.skipIf(!cpuLibraryBuilt())("CLI with the engine", () => {
  test("generate streams text and writes a valid profile", () => {
    const dir = mkdtempSync(join(tmpdir(), "qw-cli-"));
    try {
      const prof = join(dir, "run.json");
      const r = cli("generate", "--prompt", "The Fulton County Grand Jury said", "--max-tokens", "8", "--backend", "cpu", "--profile", prof);
      expect(r.code).toBe(0);
      expect(r.out.startsWith("The Fulton County Grand Jury said")).toBe(true);
      expect(r.out.length).toBeGreaterThan("The Fulton County Grand Jury said".length + 8);
      const p = readProfile(prof);
      expect(p.kind).toBe("run");
      expect(p.manifest.model.id).toBe("default:tiny-qwen2-brown");
      expect(p.manifest.device.backend).toBe("cpu");
      expect(p.ops!.op.length).toBeGreaterThan(100);
      expect(p.tokens!.length).toBe(8);
      expect(p.summary.decode_tokens).toBe(7);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("synth tiny (gguf) then generate and bench from the file", () => {
    const dir = mkdtempSync(join(tmpdir(), "qw-cli-"));
    try {
      const f = join(dir, "tiny.gguf");
      const s = cli("synth", "tiny", "--type", "f16", "--out", f);
      expect(s.code).toBe(0);
      expect(existsSync(f)).toBe(true);
      const g = cli("generate", f, "hello", "world", "--max-tokens", "4", "--backend", "cpu");
      expect(g.code).toBe(0);
      expect(g.out.startsWith("hello world")).toBe(true);
      const prof = join(dir, "bench.json");
      const b = cli("bench", f, "--pp", "16", "--tg", "8", "--batch", "1,2", "--backend", "cpu", "--out", prof);
      expect(b.code).toBe(0);
      expect(b.out).toMatch(/\| pp16 \|/);
      expect(b.out).toMatch(/\| tg8 b2 \|/);
      const p = readProfile(prof);
      expect(p.kind).toBe("bench");
      expect(p.bench!.length).toBe(3);
      expect(p.bench![0].tokens_per_s.samples.length).toBe(3);
      // profiling fidelity: kernels against off in 3 rounds, and its sum check
      expect(p.fidelity?.overhead_pct?.kernels.samples.length).toBe(3);
      expect(p.fidelity?.sum_check.some((c) => c.mode === "kernels" && c.phase === "decode")).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
