// Preloaded by bunfig.toml before every test file. Bun ignores a `timeout` key in bunfig.toml (its default
// stays 5 s), and a loaded 2-core machine makes model loads, GGUF round trips and engine runs take many times
// longer than on an idle one: every test gets a generous default timeout here. Tests assert behaviour, never a
// wall-clock time (speed is measured by `bench` and the notebooks).
import { setDefaultTimeout } from "bun:test";

export const DEFAULT_TEST_TIMEOUT_MS = 300_000;
setDefaultTimeout(DEFAULT_TEST_TIMEOUT_MS);
