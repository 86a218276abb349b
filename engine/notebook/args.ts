// engine/notebook/args.ts — the command-line helpers the measurement notebooks share: an error that prints the
// usage and exits 2, and integer options with a default and a lower bound.

/** die(message) prints "error: message" and the usage, exits 2; int(value, name, default, min) parses an option. */
export function cliArgs(usage: string): { die: (m: string) => never; int: (v: string | undefined, name: string, dflt: number, min?: number) => number } {
  const die = (m: string): never => { console.error(`error: ${m}\n${usage}`); process.exit(2); };
  const int = (v: string | undefined, name: string, dflt: number, min = 1) => {
    if (v === undefined) return dflt;
    const x = Number(v);
    if (v.trim() === "" || !Number.isInteger(x) || x < min) die(`--${name} expects an integer >= ${min}, got '${v}'`);
    return x;
  };
  return { die, int };
}
