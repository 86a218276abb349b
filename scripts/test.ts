// The README's test command (after the type check): runs the native C++ tests and the whole bun test suite,
// then prints the one closing line CI reads: "N passed, N failed[, N skipped]".
// Extra arguments are passed to `bun test` (e.g. a path filter).
import { spawnSync } from "node:child_process";

const DEFAULT_TEST_TIMEOUT_MS = 300_000; // = test/setup.ts (not imported: that module needs bun:test)

let passed = 0, failed = 0, skipped = 0;
let exitCode = 0;

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], maxBuffer: 1 << 28 });
  // Both captured streams go to stdout, in order: written to two pipes that CI merges (2>&1 | tee), the writes of
  // one interleaved mid-line with the other's, and the closing line below once landed inside a test name.
  process.stdout.write(r.stdout ?? "");
  process.stdout.write(r.stderr ?? "");
  if (r.status !== 0) exitCode = 1;
  if (r.error) {
    console.error(`test: could not run ${cmd}: ${r.error.message}`);
    failed += 1;
  }
  return `${r.stdout ?? ""}\n${r.stderr ?? ""}`;
}

// 1. Native tests (cuda/tests): their runner prints "N passed, N failed".
// 1. Native tests (cuda/tests): each case prints "<name>: ok", each failed check a "FAIL file:line: ..." line.
const before = exitCode;
const native = run("make", ["-s", "-C", "cuda", "test"]);
const nativeOk = (native.match(/^[^\s].*: ok$/gm) ?? []).length;
const nativeFail = (native.match(/^FAIL /gm) ?? []).length;
passed += nativeOk;
failed += nativeFail;
if (exitCode !== before && nativeFail === 0) failed += 1; // it stopped without naming a failed check
if (nativeOk + nativeFail === 0) {
  console.error("test: the native tests reported no case");
  failed += 1;
}

// 2. bun test: its summary has lines " N pass", " N fail", " N skip".
const extra = process.argv.slice(2);
// A generous per-test timeout (test/setup.ts says why it is passed here too): the suite must pass on a loaded
// 2-core machine (CI runs it beside two busy loops).
const out = run(process.execPath, ["test", "--timeout", String(DEFAULT_TEST_TIMEOUT_MS), ...extra]);
const num = (re: RegExp) => { const m = out.match(re); return m ? Number(m[1]) : 0; };
const bp = num(/^\s*(\d+) pass\s*$/m), bf = num(/^\s*(\d+) fail\s*$/m), bs = num(/^\s*(\d+) skip\s*$/m);
if (bp + bf === 0) {
  console.error("test: bun test reported no tests");
  failed += 1;
}
passed += bp; failed += bf; skipped += bs;
if (failed > 0) exitCode = 1;
process.stdout.write(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}\n`);
// Not process.exit(): Bun drops writes still queued on a full pipe when it exits at once, and CI's `| tee` pipe
// lost this closing line (and the end of bun test's output) that way once the output outgrew the pipe buffer.
// Setting the code and returning lets every queued write drain first.
process.exitCode = exitCode;
