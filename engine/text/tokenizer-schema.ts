// What a tokenizer is read from, validated with zod: Hugging Face tokenizer.json / tokenizer_config.json (plain or
// gzipped), and the GGUF tokenizer metadata llama.cpp reads and writes (token types, key types). tokenizer.ts
// builds a QwenTokenizer from these.
import { readRegularFile } from "../io/fsafe.ts";
import { z } from "zod";

// ---------------------------------------------------------------------------------------------------------
// Input schemas (zod)

export const addedTokenSchema = z.object({
  id: z.number().int().nonnegative(),
  content: z.string().min(1),
  single_word: z.boolean().optional(),
  lstrip: z.boolean().optional(),
  rstrip: z.boolean().optional(),
  normalized: z.boolean().optional(),
  special: z.boolean().optional(),
});

export const tokenizerJsonSchema = z.object({
  added_tokens: z.array(addedTokenSchema).default([]),
  normalizer: z
    .union([
      z.null(),
      z.object({ type: z.literal("NFC") }),
      z.object({ type: z.literal("Sequence"), normalizers: z.array(z.object({ type: z.literal("NFC") })) }),
    ])
    .optional(),
  pre_tokenizer: z.object({
    type: z.literal("Sequence"),
    pretokenizers: z.tuple([
      z.object({
        type: z.literal("Split"),
        pattern: z.object({ Regex: z.string() }),
        behavior: z.literal("Isolated"),
        invert: z.literal(false),
      }),
      z.object({ type: z.literal("ByteLevel"), add_prefix_space: z.literal(false), use_regex: z.literal(false) }).loose(),
    ]),
  }),
  decoder: z.object({ type: z.literal("ByteLevel") }).loose(),
  model: z
    .object({
      type: z.literal("BPE"),
      // Large tables: shape checked here, entries checked by the loader's loops (zod per entry costs ~0.3 s).
      vocab: z.custom<Record<string, number>>((v) => typeof v === "object" && v !== null && !Array.isArray(v), "expected an object { token: id }"),
      merges: z.array(z.unknown()),
      byte_fallback: z.literal(false).optional(),
      continuing_subword_prefix: z.union([z.literal(""), z.null()]).optional(),
      end_of_word_suffix: z.union([z.literal(""), z.null()]).optional(),
      dropout: z.null().optional(),
      ignore_merges: z.literal(false).optional(),
    })
    .loose(),
}).loose();

export const tokenStringOrObject = z.union([z.string(), z.object({ content: z.string() }).loose(), z.null()]);

export const tokenizerConfigSchema = z
  .object({
    chat_template: z.union([z.string(), z.array(z.object({ name: z.string(), template: z.string() })), z.null()]).optional(),
    bos_token: tokenStringOrObject.optional(),
    eos_token: tokenStringOrObject.optional(),
    pad_token: tokenStringOrObject.optional(),
    add_bos_token: z.boolean().nullable().optional(),
    add_eos_token: z.boolean().nullable().optional(),
  })
  .loose();

export type TokenizerConfigJson = z.infer<typeof tokenizerConfigSchema>;

export function parseOrThrow<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value);
  if (!r.success) {
    const issues = r.error.issues.slice(0, 5).map((i) => `  at ${i.path.length ? i.path.join(".") : "(root)"}: ${i.message}`);
    throw new Error(`${what} is not a supported Qwen2 tokenizer:\n${issues.join("\n")}`);
  }
  return r.data;
}

// ---------------------------------------------------------------------------------------------------------
// GGUF

/** llama.cpp token types. */
export const TOKEN_TYPE = { UNDEFINED: 0, NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

/** GGUF value types of the keys toGgufMetadata() writes (what llama.cpp expects). */
export const GGUF_TOKENIZER_TYPES: Record<string, string> = {
  "tokenizer.ggml.model": "string",
  "tokenizer.ggml.pre": "string",
  "tokenizer.ggml.tokens": "array<string>",
  "tokenizer.ggml.token_type": "array<int32>",
  "tokenizer.ggml.merges": "array<string>",
  "tokenizer.ggml.bos_token_id": "uint32",
  "tokenizer.ggml.eos_token_id": "uint32",
  "tokenizer.ggml.padding_token_id": "uint32",
  "tokenizer.ggml.add_bos_token": "bool",
  "tokenizer.ggml.add_eos_token": "bool",
  "tokenizer.chat_template": "string",
};

// convert_hf_to_gguf.py's does_token_look_special
export function looksSpecial(t: string): boolean {
  return (
    ["<pad>", "<mask>", "<2mass>", "[@BOS@]"].includes(t) ||
    (t.startsWith("<|") && t.endsWith("|>")) ||
    (t.startsWith("<｜") && t.endsWith("｜>")) ||
    (t.startsWith("<unused") && t.endsWith(">"))
  );
}

const intLike = z.union([z.number(), z.bigint()]).transform((v, ctx) => {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) {
    ctx.addIssue({ code: "custom", message: `expected a non-negative integer, got ${String(v)}` });
    return z.NEVER;
  }
  return n;
});
const arrayLike = <T extends z.ZodType>(item: T) =>
  z.preprocess((v) => (ArrayBuffer.isView(v) && !(v instanceof DataView) ? Array.from(v as unknown as ArrayLike<unknown>) : v), z.array(item));

export const ggufMetaSchema = z
  .object({
    "tokenizer.ggml.model": z.literal("gpt2", { message: 'tokenizer.ggml.model must be "gpt2" (byte-level BPE)' }),
    "tokenizer.ggml.pre": z.literal("qwen2", { message: 'tokenizer.ggml.pre must be "qwen2"' }),
    "tokenizer.ggml.tokens": z.array(z.string()).min(256),
    "tokenizer.ggml.token_type": arrayLike(z.union([z.number(), z.bigint()]).transform(Number)).optional(),
    "tokenizer.ggml.merges": z.array(z.string()),
    "tokenizer.ggml.bos_token_id": intLike.optional(),
    "tokenizer.ggml.eos_token_id": intLike.optional(),
    "tokenizer.ggml.padding_token_id": intLike.optional(),
    "tokenizer.ggml.eot_token_id": intLike.optional(),
    "tokenizer.ggml.eom_token_id": intLike.optional(),
    "tokenizer.ggml.add_bos_token": z.boolean().optional(),
    "tokenizer.ggml.add_eos_token": z.boolean().optional(),
    "tokenizer.chat_template": z.string().optional(),
  })
  .loose();

// ---------------------------------------------------------------------------------------------------------
// Files

/** { type, value } (engine/formats/gguf.ts GgufKV) -> value; { elemType, items } -> items; others unchanged. */
export function unwrapGgufValue(v: unknown): unknown {
  if (v && typeof v === "object" && !Array.isArray(v) && !ArrayBuffer.isView(v)) {
    const o = v as Record<string, unknown>;
    if (typeof o.type === "number" && "value" in o) return unwrapGgufValue(o.value);
    if (typeof o.elemType === "number" && "items" in o) return o.items;
  }
  return v;
}


export function readJsonMaybeGz(path: string): unknown {
  let buf: Uint8Array;
  try {
    buf = readRegularFile(path, 1 << 30); // never a FIFO or device (it would block the thread)
  } catch (e) {
    throw new Error(`cannot read ${path}: ${(e as Error).message}`);
  }
  if (buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) buf = Bun.gunzipSync(buf as Uint8Array<ArrayBuffer>);
  try {
    return JSON.parse(new TextDecoder().decode(buf));
  } catch {
    throw new Error(`${path} is not valid JSON`); // the parser's message would quote the file
  }
}
