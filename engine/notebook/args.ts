// engine/notebook/args.ts — the command-line helpers the measurement notebooks share: an error that prints the
// usage and exits 2, integer options with a default and a lower bound, and --backend / --threads.

export type BackendArg = "auto" | "cpu" | "cuda";

/** die(message) prints "error: message" and the usage, exits 2; int(value, name, default, min) parses an option;
 *  backendOpt(--backend value, default) and threadsOpt(--threads value: an integer >= 0, or undefined) are the two
 *  options every notebook that opens a model takes. */
export function cliArgs(usage: string): {
  die: (m: string) => never;
  int: (v: string | undefined, name: string, dflt: number, min?: number) => number;
  backendOpt: (v: string | undefined, dflt?: BackendArg) => BackendArg;
  threadsOpt: (v: string | undefined) => number | undefined;
} {
  const die = (m: string): never => { console.error(`error: ${m}\n${usage}`); process.exit(2); };
  const int = (v: string | undefined, name: string, dflt: number, min = 1) => {
    if (v === undefined) return dflt;
    const x = Number(v);
    if (v.trim() === "" || !Number.isInteger(x) || x < min) die(`--${name} expects an integer >= ${min}, got '${v}'`);
    return x;
  };
  const backendOpt = (v: string | undefined, dflt: BackendArg = "auto"): BackendArg => {
    const b = v ?? dflt;
    if (b !== "auto" && b !== "cpu" && b !== "cuda") die(`--backend must be auto, cpu or cuda, got '${b}'`);
    return b as BackendArg;
  };
  const threadsOpt = (v: string | undefined) => (v === undefined ? undefined : int(v, "threads", 0, 0));
  return { die, int, backendOpt, threadsOpt };
}
