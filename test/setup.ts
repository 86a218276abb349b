// Generous test timeouts. A loaded 2-core machine makes model loads, GGUF round trips and engine runs take many
// times longer than on an idle one, and tests assert behaviour, never a wall-clock time (speed is measured by
// `bench` and the notebooks). Bun reads no default timeout from bunfig.toml, and setDefaultTimeout() holds for
// one test file only (Bun resets it per file; a preload reaches just the first file). So: `npm test`
// (scripts/test.ts) passes `--timeout`, and every test file calls generousTimeout() at its top, which also
// covers a plain `bun test <files>`.
import { setDefaultTimeout } from "bun:test";

export const DEFAULT_TEST_TIMEOUT_MS = 300_000;

export function generousTimeout(): void {
  setDefaultTimeout(DEFAULT_TEST_TIMEOUT_MS);
}

generousTimeout(); // as the bunfig.toml preload
