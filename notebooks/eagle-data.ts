// The EAGLE head's training data for notebooks/peers/train_eagle.py (the GPU machine has no Brown corpus and no
// tokenizer package): the Brown training split (every document but each 20th, engine/text/brown.ts) and the
// validation split, tokenized with the embedded target's tokenizer, each document followed by its end-of-text
// id, as little-endian uint16 (vocab 8256 < 65536), plus meta.json.
//
//   npx bun notebooks/eagle-data.ts [--out .gpu/eagle-data] [--model default]
import { parseArgs } from "node:util";
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { openModel } from "../engine/index.ts";
import { brownTokens } from "../engine/text/brown.ts";

const { values: o } = parseArgs({ args: Bun.argv.slice(2), options: { out: { type: "string" }, model: { type: "string" }, help: { type: "boolean", short: "h" } } });
if (o.help) { console.log("usage: npx bun notebooks/eagle-data.ts [--out DIR (default .gpu/eagle-data)] [--model default|PATH]"); process.exit(0); }
const out = resolve(o.out ?? ".gpu/eagle-data");
const m = await openModel(o.model ?? "default", { backend: "cpu", threads: 1 });
try {
  const eot = m.tokenizer.eosIds[0];
  if (eot === undefined) throw new Error("the model's tokenizer has no end-of-text id");
  if (m.config.vocab_size > 65536) throw new Error(`vocab ${m.config.vocab_size} does not fit uint16`);
  mkdirSync(out, { recursive: true });
  const meta: Record<string, unknown> = { model: m.id, vocab_size: m.config.vocab_size, eot, dtype: "uint16-le", splits: {} };
  for (const split of ["train", "validation"] as const) {
    const ids = brownTokens((t) => m.tokenizer.encode(t), eot, split);
    writeFileSync(join(out, `${split}.bin`), new Uint8Array(Uint16Array.from(ids).buffer));
    (meta.splits as Record<string, number>)[split] = ids.length;
    console.error(`${split}: ${ids.length} tokens`);
  }
  writeFileSync(join(out, "meta.json"), JSON.stringify(meta, null, 2) + "\n");
  console.error(`wrote ${out}/{train,validation}.bin and meta.json`);
} finally {
  m.close();
}
