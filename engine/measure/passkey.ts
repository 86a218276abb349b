// engine/measure/passkey.ts — the passkey retrieval test (issue 14) as the fixture README describes it
// (shared/fixtures/README.md, tiny-qwen2-passkey): filler from held-out Brown text (the validation split,
// engine/text/brown.ts), the needle " The pass key is NNNNN. Remember it. NNNNN is the pass key." at a uniformly
// random depth, the question " What is the pass key? The pass key is" at the end; greedy decoding of 7 tokens,
// scored on the first 5 digits generated. Accuracy by length × needle-depth bucket (the heat map).
//
// Prompts are built in tokens so that every prompt has exactly the asked length: filler tokens are a contiguous
// run of the validation stream (documents encoded one by one, joined without separators), cut at a word
// boundary; the needle goes in at a word boundary (a filler token whose text starts with a space) at or after a
// uniformly drawn position. Every (length, trial) pair draws from its own seeded generator, so a trial's prompt
// does not depend on which other lengths or how many trials run.
import { join } from "node:path";
import type { DcaOptions, EngineModel, QwenConfig, SparseInfo, SparseMode, SparseOptions } from "../api.ts";
import { REPO_ROOT } from "../constants.ts";
import { brownDocuments } from "../text/brown.ts";
import { PromptSet } from "./record.ts";
import { passkeyTable, passkeyTitle, type PasskeyCell, type PasskeyResult, type PasskeyTrial } from "./passkey-schema.ts";

// The result's types and its text views live in passkey-schema.ts (pure: export/ may read them).
export { passkeyTable, passkeyTitle };
export type { PasskeyCell, PasskeyResult, PasskeyTrial };

/** The embedded passkey model (shared/fixtures tiny-qwen2-passkey; its config declares chunk 512 / local 64). */
export const PASSKEY_MODEL_DIR = join(REPO_ROOT, "models", "tiny-qwen2-passkey");

export const NEEDLE = (key: string) => ` The pass key is ${key}. Remember it. ${key} is the pass key.`;
export const QUESTION = " What is the pass key? The pass key is";
/** Tokens generated per trial (the README's reference: greedy, 7 tokens). */
export const PASSKEY_NEW_TOKENS = 7;

/** The DCA parameters a session gets (the native front's rule, cuda/include/qwen.h qw_session_create). */
export function dcaParams(config: QwenConfig, override: DcaOptions = {}): { chunk: number; local: number; source: string } {
  const dc = config.dual_chunk_attention_config;
  let chunk = dc?.chunk_size ?? config.original_max_position_embeddings ?? config.max_position_embeddings;
  let source = dc?.chunk_size ? "dual_chunk_attention_config" : config.original_max_position_embeddings ? "original_max_position_embeddings" : "max_position_embeddings";
  let local = dc?.local_size ?? Math.floor(chunk / 8);
  if (override.chunk !== undefined) {
    chunk = override.chunk;
    local = Math.floor(chunk / 8);
    source = "option";
  }
  if (override.local !== undefined) local = override.local;
  if (!Number.isInteger(chunk) || chunk < 1) throw new Error(`dca chunk must be an integer >= 1, got ${chunk}`);
  if (!Number.isInteger(local) || local < 0 || local >= chunk) throw new Error(`dca local window must be an integer in [0, chunk = ${chunk}), got ${local}`);
  return { chunk, local, source };
}

/** mulberry32 over a 32-bit hash of the parts: a small, seedable, reproducible generator. */
export function rngFor(...parts: number[]): () => number {
  let h = 0x9e3779b9;
  for (const p of parts) h = Math.imul(h ^ (p >>> 0), 0x85ebca6b) ^ (h >>> 13);
  return mulberry32(h);
}

/** mulberry32: a small deterministic PRNG, uniform in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface PasskeyPrompt {
  tokens: number[];
  key: string;
  /** Token index where the needle starts. */
  needleAt: number;
  /** Fraction of the filler before the needle, in [0, 1]. */
  depth: number;
  /** Index of the first filler token in the held-out stream. */
  fillerStart: number;
}

/** What prompt building needs of a tokenizer. */
export interface PasskeyTokenizer {
  encode(text: string): number[];
  decode(ids: number[]): string;
}

/** The held-out Brown filler as one token stream, with word-start flags (token text starts with whitespace). */
export class FillerStream {
  readonly tokens: number[] = [];
  readonly wordStart: boolean[] = [];
  private readonly startsWord = new Map<number, boolean>();  // token id → its text starts with whitespace
  constructor(tok: PasskeyTokenizer, texts: string[] = brownDocuments("validation").map((d) => d.text)) {
    for (const t of texts) this.append(tok, t);
  }

  /** The held-out documents whole, then training documents in corpus order only until the stream holds `minTokens`
   * (a speed study's prompts longer than the held-out text; the passkey harness itself keeps to held-out text). */
  static atLeast(tok: PasskeyTokenizer, minTokens: number): { filler: FillerStream; trainDocuments: number } {
    const filler = new FillerStream(tok);
    let trainDocuments = 0;
    for (const d of filler.tokens.length < minTokens ? brownDocuments("train") : []) {
      if (filler.tokens.length >= minTokens) break;
      filler.append(tok, d.text);
      trainDocuments++;
    }
    if (filler.tokens.length < minTokens) throw new Error(`the Brown corpus holds ${filler.tokens.length} tokens of filler; ${minTokens} were asked for`);
    return { filler, trainDocuments };
  }

  // Each document ends with "\n" (the corpus text separates paragraphs with one "\n", as the model saw it).
  private append(tok: PasskeyTokenizer, text: string): void {
    for (const id of tok.encode(text + "\n")) {
      let v = this.startsWord.get(id);
      if (v === undefined) this.startsWord.set(id, (v = /^\s/.test(tok.decode([id]))));
      this.tokens.push(id);
      this.wordStart.push(v);
    }
  }
}

/** One passkey prompt of exactly `length` tokens (throws when the length cannot hold needle and question). */
export function buildPasskeyPrompt(tok: PasskeyTokenizer, filler: FillerStream, length: number, rand: () => number): PasskeyPrompt {
  const key = String(10000 + Math.floor(rand() * 90000));
  const needle = tok.encode(NEEDLE(key)), question = tok.encode(QUESTION);
  const F = length - needle.length - question.length;
  if (F < 1) throw new Error(`passkey length ${length} is too short: needle and question take ${needle.length + question.length} tokens`);
  if (F + 1 >= filler.tokens.length) throw new Error(`passkey length ${length} needs ${F} filler tokens; the held-out Brown text has ${filler.tokens.length}`);
  // A window of F tokens starting at a word start (the text reads as text from its first token).
  let start = Math.floor(rand() * (filler.tokens.length - F));
  while (start > 0 && !filler.wordStart[start]) start--;
  const win = filler.tokens.slice(start, start + F);
  // Needle position: uniform in [0, F], moved forward to the next word start (or the end).
  let at = Math.floor(rand() * (F + 1));
  while (at < F && !filler.wordStart[start + at]) at++;
  const tokens = [...win.slice(0, at), ...needle, ...win.slice(at), ...question];
  return { tokens, key, needleAt: at, depth: F > 0 ? at / F : 0, fillerStart: start };
}

/** The first 5 digits of the generated text equal the key. */
export function scorePasskey(generated: string, key: string): boolean {
  return (generated.match(/\d/g) ?? []).slice(0, 5).join("") === key;
}

export interface PasskeyOptions {
  lengths: number[];
  trials: number;
  seed?: number;
  /** Depth buckets of the heat map (default 5: 0–20 %, …, 80–100 %). */
  buckets?: number;
  dca?: boolean;
  dcaOptions?: DcaOptions;
  /** Sparse prefill (toggle sparsePrefill = this pattern) with these budgets (default: the engine's). */
  sparse?: SparseMode;
  sparseOptions?: SparseOptions;
  /** Called after every trial (progress). */
  onTrial?: (t: PasskeyTrial, done: number, total: number) => void;
  signal?: AbortSignal;
}

/** Runs the test: one session (max context = the longest prompt + the generated tokens), greedy, seq 0. */
export async function runPasskey(model: EngineModel, opts: PasskeyOptions): Promise<PasskeyResult> {
  const { lengths, trials } = opts;
  const seed = opts.seed ?? 0, buckets = opts.buckets ?? 5, dcaOn = opts.dca ?? false;
  if (!lengths.length || lengths.some((l) => !Number.isInteger(l) || l < 1)) throw new Error(`passkey: lengths must be positive integers, got ${JSON.stringify(lengths)}`);
  if (!Number.isInteger(trials) || trials < 1) throw new Error(`passkey: trials must be an integer >= 1, got ${trials}`);
  if (!Number.isInteger(buckets) || buckets < 1 || buckets > 20) throw new Error(`passkey: buckets must be an integer in [1, 20], got ${buckets}`);
  const p = dcaParams(model.config, opts.dcaOptions);
  const maxContext = Math.max(...lengths) + PASSKEY_NEW_TOKENS;
  const warnings: string[] = [];
  const mpe = model.config.max_position_embeddings, trained = model.config.original_max_position_embeddings ?? mpe;
  if (maxContext > mpe) warnings.push(`max context ${maxContext} exceeds max_position_embeddings ${mpe}${dcaOn ? " (dca is on: positions stay below the chunk)" : ""}`);
  if (!dcaOn && maxContext > trained) warnings.push(`prompts up to ${maxContext} tokens exceed the trained length ${trained} with dca off: plain RoPE is expected to fail there`);
  const session = model.newSession({
    maxContext, ...(dcaOn || opts.dcaOptions ? { dca: { chunk: p.chunk, local: p.local } } : {}),
    ...(opts.sparse && opts.sparseOptions ? { sparse: opts.sparseOptions } : {}),
  });
  let budgets: SparseInfo | undefined;
  const t0 = performance.now();
  const detail: PasskeyTrial[] = [];
  try {
    if (dcaOn) session.setToggle("dca", "on");
    if (opts.sparse) session.setToggle("sparsePrefill", opts.sparse);
    session.setSampling(0, { temperature: 0 });
    const tok = model.tokenizer;
    const filler = new FillerStream(tok);
    const total = lengths.length * trials;
    for (const length of lengths) {
      for (let trial = 0; trial < trials; trial++) {
        if (opts.signal?.aborted) throw new Error("passkey cancelled");
        const pr = buildPasskeyPrompt(tok, filler, length, rngFor(seed, length, trial));
        session.reset(0);
        const out = [session.prefill(0, pr.tokens)];
        const sp = opts.sparse ? (budgets = session.sparseInfo?.()) : undefined;  // the prefill's, before decode
        while (out.length < PASSKEY_NEW_TOKENS) out.push(session.decode([0], [out[out.length - 1]])[0]);
        const generated = model.tokenizer.decode(out);
        const t: PasskeyTrial = {
          length, trial, key: pr.key, depth: pr.depth, bucket: Math.min(buckets - 1, Math.floor(pr.depth * buckets)),
          generated, correct: scorePasskey(generated, pr.key), ...(sp ? sparseTrial(sp) : {}),
        };
        detail.push(t);
        opts.onTrial?.(t, detail.length, total);
        await new Promise<void>((r) => setImmediate(r));  // let a cancel or a progress message through
      }
    }
  } finally {
    session.close();
  }
  const r = summarize(model, { on: dcaOn, ...p }, lengths, trials, seed, buckets, detail, warnings, (performance.now() - t0) / 1000);
  if (budgets) {
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    r.sparse = {
      on: true, mode: opts.sparse!, vertical: budgets.vertical, slash: budgets.slash, blocks: budgets.blocks,
      local: budgets.local, sink: budgets.sink, stats: budgets.stats,
      byLength: lengths.map((length) => {
        const ts = detail.filter((t) => t.length === length);
        const rc = ts.filter((t) => t.recall !== undefined).map((t) => t.recall!);
        return { length, density: mean(ts.map((t) => t.density ?? 1)), recall: rc.length ? mean(rc) : null };
      }),
    };
  }
  return r;
}

/** A trial's density (keys visited / dense, mean over layers and heads) and recall (with stats). */
function sparseTrial(info: SparseInfo): { density: number; recall?: number } {
  const heads = info.layers.flatMap((l) => l.heads);
  if (!heads.length) return { density: 1 };
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const rc = heads.filter((h) => h.recall !== undefined).map((h) => h.recall!);
  return { density: mean(heads.map((h) => h.density)), ...(rc.length ? { recall: mean(rc) } : {}) };
}

function summarize(model: EngineModel, dca: PasskeyResult["dca"], lengths: number[], trials: number, seed: number, buckets: number,
  detail: PasskeyTrial[], warnings: string[], seconds: number): PasskeyResult {
  const cells: PasskeyCell[] = [];
  const byLength = lengths.map((length) => {
    const ts = detail.filter((t) => t.length === length);
    for (let b = 0; b < buckets; b++) {
      const tb = ts.filter((t) => t.bucket === b);
      const correct = tb.filter((t) => t.correct).length;
      cells.push({ length, bucket: b, n: tb.length, correct, accuracy: tb.length ? correct / tb.length : null });
    }
    const correct = ts.filter((t) => t.correct).length;
    return { length, n: ts.length, correct, accuracy: ts.length ? correct / ts.length : 0 };
  });
  return {
    schema: "qwen-workbench/passkey", model: model.id, backend: model.backend, device: model.device.name, dca, lengths, trials, seed,
    buckets, byLength, cells, trialsDetail: detail, warnings, seconds,
  };
}

/**
 * The prompts of a passkey run as a prompt set (engine/measure/record.ts) the web Run page can replay: token
 * prompts, greedy, 7 tokens. The keys go into the description in prompt order (a replay is not scored there).
 */
export function passkeyPromptSet(tok: PasskeyTokenizer, filler: FillerStream, name: string, lengths: number[], trials: number, seed = 0): PromptSet {
  if (lengths.length * trials > 1000) throw new Error(`a prompt set holds at most 1000 prompts; ${lengths.length} lengths x ${trials} trials is ${lengths.length * trials}`);
  const ps = lengths.flatMap((length) => Array.from({ length: trials }, (_, trial) => ({ length, trial, ...buildPasskeyPrompt(tok, filler, length, rngFor(seed, length, trial)) })));
  const description = `passkey prompts (engine/measure/passkey.ts), seed ${seed}, lengths ${lengths.join(",")} x ${trials}; keys in order: ${ps.map((p) => p.key).join(" ")}`;
  return PromptSet.parse({
    name, description: description.length > 2000 ? description.slice(0, 1997) + "..." : description,
    prompts: ps.map((p) => ({ tokens: p.tokens })), sampling: { temperature: 0 }, maxTokens: PASSKEY_NEW_TOKENS,
  });
}
