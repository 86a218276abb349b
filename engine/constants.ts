// engine/constants.ts — constants that several rooms of engine/ need and that must not pull in bun:ffi: the GGML
// type ids the native library accepts (qw_ggml_type in cuda/include/qwen.h) and the repository root. ffi.ts
// re-exports both for its callers.
import { resolve } from "node:path";

/** GGML type ids the engine accepts (qw_ggml_type). */
export const GGML = { F32: 0, F16: 1, Q4_0: 2, Q5_0: 6, Q8_0: 8, Q4_K: 12, Q5_K: 13, Q6_K: 14, BF16: 30 } as const;

/** The repository root (engine/..). */
export const REPO_ROOT = resolve(import.meta.dir, "..");
