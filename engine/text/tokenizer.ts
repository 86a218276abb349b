// Qwen2/2.5 tokenizer: byte-level BPE with Qwen's pre-tokenizer regex, NFC normalizer, byte-level decoder
// and added (special) tokens matched before pre-tokenization. Written from scratch (no runtime dependency on
// @huggingface/tokenizers) so that the regex follows the Rust `tokenizers` crate's Oniguruma semantics exactly
// (see QWEN2_JS_PATTERN); cross-checked against @huggingface/tokenizers and Hugging Face golden ids in tests.
//
// Loads from a Hugging Face tokenizer.json (+ tokenizer_config.json) or from GGUF metadata, and writes GGUF
// tokenizer metadata the way llama.cpp's convert_hf_to_gguf.py does.
//
// The pre-tokenizer regex and the byte-level alphabet are in bytelevel.ts, the zod schemas of the files it is read
// from (tokenizer.json, tokenizer_config.json, GGUF metadata) in tokenizer-schema.ts; this file is the BPE and
// its loaders.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import type { z } from "zod";
import { renderChat, type ChatMessage, type RenderChatOptions } from "./chat.ts";
import { REPO_ROOT } from "../constants.ts";
import { BYTE_TO_CHAR, isWordChar, QWEN2_JS_PATTERN, QWEN2_PATTERN, tokenStringToBytes, utf8 } from "./bytelevel.ts";
import {
  GGUF_TOKENIZER_TYPES, ggufMetaSchema, looksSpecial, parseOrThrow, readJsonMaybeGz, TOKEN_TYPE, tokenStringOrObject,
  tokenizerConfigSchema, tokenizerJsonSchema, unwrapGgufValue,
} from "./tokenizer-schema.ts";

export { bytesToByteLevel, QWEN2_JS_PATTERN, QWEN2_PATTERN } from "./bytelevel.ts";
export { GGUF_TOKENIZER_TYPES, TOKEN_TYPE, type TokenizerConfigJson } from "./tokenizer-schema.ts";

// ---------------------------------------------------------------------------------------------------------
// The tokenizer

export interface AddedToken {
  id: number;
  content: string;
  special: boolean;
  lstrip: boolean;
  rstrip: boolean;
  singleWord: boolean;
}

export interface EncodeOptions {
  /** Adds the model's BOS/EOS as its post-processor would (Qwen adds none: add_bos_token false). Default false. */
  addSpecial?: boolean;
  /** Matches added/special tokens written in the text (Hugging Face always does). Default true. */
  parseSpecial?: boolean;
}

export interface DecodeOptions {
  /** Drops special tokens (Hugging Face skip_special_tokens). Default false. */
  skipSpecial?: boolean;
}

/** Data a tokenizer is built from (both loaders normalize into this). */
export interface TokenizerData {
  /** id -> token string (byte-level alphabet for BPE tokens, raw content for added tokens); undefined = hole. */
  tokens: (string | undefined)[];
  /** ids that are plain BPE tokens (the rest are added tokens or padding). */
  bpeVocab: Map<string, number>;
  merges: [string, string][];
  added: AddedToken[];
  /** ids known only as padding ([PADn] / unused); decode to "" and are never produced by encode. */
  unused?: Set<number>;
  nfc: boolean;
  bosId: number | null;
  eosId: number | null;
  padId: number | null;
  addBos: boolean;
  addEos: boolean;
  chatTemplate: string | null;
  /** extra end-of-generation ids (e.g. GGUF eot). */
  extraEos?: number[];
}

const WORD_CACHE_MAX = 100_000;

export class QwenTokenizer {
  /** Number of ids this tokenizer knows (max id + 1, padding included for GGUF-loaded ones). */
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly padId: number | null;
  /** Ids that end a generation: eos, <|im_end|>, <|endoftext|> (those present) and GGUF eot/eom. */
  readonly eosIds: number[];
  readonly addedTokens: readonly AddedToken[];
  readonly chatTemplate: string | null;
  readonly addBos: boolean;
  readonly addEos: boolean;
  readonly nfc: boolean;

  private readonly tokens: (string | undefined)[];
  private readonly bpeVocab: Map<string, number>;
  private readonly tokenToIdMap: Map<string, number>;
  private readonly unused: Set<number>;
  private readonly specialIds: Set<number>;
  private readonly addedByContent: Map<string, AddedToken>;
  private readonly addedRe: RegExp | null;
  private readonly pretok: RegExp;
  private readonly byteIds: Int32Array;
  private readonly mergeKeyBase: number;
  private readonly mergeIndex: Map<number, number>; // (a * base + b) -> rank
  private readonly mergeResult: Int32Array; // rank -> merged id
  private readonly wordCache = new Map<string, number[]>();
  private readonly bytesCache: (Uint8Array | undefined)[] = [];

  constructor(d: TokenizerData) {
    this.tokens = d.tokens;
    this.vocabSize = d.tokens.length;
    this.bpeVocab = d.bpeVocab;
    this.unused = d.unused ?? new Set();
    this.nfc = d.nfc;
    this.bosId = d.bosId;
    this.eosId = d.eosId;
    this.padId = d.padId;
    this.addBos = d.addBos;
    this.addEos = d.addEos;
    this.chatTemplate = d.chatTemplate;
    this.addedTokens = d.added;

    this.tokenToIdMap = new Map(d.bpeVocab);
    for (const a of d.added) this.tokenToIdMap.set(a.content, a.id);
    this.addedByContent = new Map(d.added.map((a) => [a.content, a]));
    this.specialIds = new Set(d.added.filter((a) => a.special).map((a) => a.id));

    // Leftmost-longest match of added tokens: alternation sorted by length (longest first).
    const contents = [...this.addedByContent.keys()].sort((a, b) => b.length - a.length);
    this.addedRe = contents.length
      ? new RegExp(contents.map((c) => c.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&")).join("|"), "gu")
      : null;
    this.pretok = new RegExp(QWEN2_JS_PATTERN, "gu");

    this.byteIds = new Int32Array(256).fill(-1);
    for (let b = 0; b < 256; b++) {
      const id = d.bpeVocab.get(BYTE_TO_CHAR[b]);
      if (id !== undefined) this.byteIds[b] = id;
    }

    this.mergeKeyBase = this.vocabSize + 1;
    this.mergeIndex = new Map();
    this.mergeResult = new Int32Array(d.merges.length);
    for (let r = 0; r < d.merges.length; r++) {
      const [a, b] = d.merges[r];
      const ia = d.bpeVocab.get(a);
      const ib = d.bpeVocab.get(b);
      const ic = d.bpeVocab.get(a + b);
      if (ia === undefined || ib === undefined || ic === undefined) {
        const missing = ia === undefined ? a : ib === undefined ? b : a + b;
        throw new Error(`tokenizer merge #${r} "${a} ${b}": token ${JSON.stringify(missing)} is not in the vocabulary`);
      }
      const key = ia * this.mergeKeyBase + ib;
      if (!this.mergeIndex.has(key)) this.mergeIndex.set(key, r);
      this.mergeResult[r] = ic;
    }

    const eos = new Set<number>();
    if (d.eosId !== null) eos.add(d.eosId);
    for (const c of ["<|im_end|>", "<|endoftext|>"]) {
      const a = this.addedByContent.get(c);
      if (a) eos.add(a.id);
    }
    for (const e of d.extraEos ?? []) eos.add(e);
    this.eosIds = [...eos];
  }

  // ----- loaders -----

  /** Loads a Hugging Face tokenizer.json (optionally gzipped: *.gz or gzip magic). tokenizer_config.json is
   * read from `configPath`, or from the same folder (also tried: tokenizer_config.json.gz) when present. */
  static fromTokenizerJson(path: string, configPath?: string): QwenTokenizer {
    const json = readJsonMaybeGz(path);
    let config: unknown = undefined;
    const dir = dirname(path);
    const candidates = configPath ? [configPath] : [join(dir, "tokenizer_config.json"), join(dir, "tokenizer_config.json.gz")];
    for (const c of candidates) {
      if (existsSync(c)) {
        config = readJsonMaybeGz(c);
        break;
      }
    }
    if (configPath && config === undefined) throw new Error(`tokenizer config not found: ${configPath}`);
    return QwenTokenizer.fromJson(json, config, path);
  }

  /** Builds from parsed tokenizer.json / tokenizer_config.json objects. */
  static fromJson(tokenizerJson: unknown, tokenizerConfig?: unknown, what = "tokenizer.json"): QwenTokenizer {
    const tj = parseOrThrow(tokenizerJsonSchema, tokenizerJson, what);
    const pattern = tj.pre_tokenizer.pretokenizers[0].pattern.Regex;
    if (pattern !== QWEN2_PATTERN) {
      throw new Error(`${what} is not a supported Qwen2 tokenizer: pre_tokenizer Split regex differs from Qwen2's (${JSON.stringify(pattern).slice(0, 120)})`);
    }
    const cfg = tokenizerConfig === undefined ? {} : parseOrThrow(tokenizerConfigSchema, tokenizerConfig, "tokenizer_config.json");

    const bpeVocab = new Map<string, number>();
    const tokens: (string | undefined)[] = [];
    for (const [tok, id] of Object.entries(tj.model.vocab)) {
      if (!Number.isSafeInteger(id) || id < 0 || id > 0x7fffffff) {
        throw new Error(`${what} is not a supported Qwen2 tokenizer:\n  at model.vocab.${JSON.stringify(tok)}: expected a non-negative integer id, got ${JSON.stringify(id)}`);
      }
      if (tokens[id] !== undefined) throw new Error(`${what}: id ${id} is used by two vocabulary tokens`);
      bpeVocab.set(tok, id);
      tokens[id] = tok;
    }
    const added: AddedToken[] = [];
    for (const a of tj.added_tokens) {
      if (tokens[a.id] !== undefined && tokens[a.id] !== a.content) {
        throw new Error(`${what}: added token ${JSON.stringify(a.content)} reuses id ${a.id} of ${JSON.stringify(tokens[a.id])}`);
      }
      tokens[a.id] = a.content;
      added.push({ id: a.id, content: a.content, special: a.special ?? false, lstrip: a.lstrip ?? false, rstrip: a.rstrip ?? false, singleWord: a.single_word ?? false });
    }
    for (let i = 0; i < tokens.length; i++) if (tokens[i] === undefined) throw new Error(`${what}: no token has id ${i}`);
    const merges: [string, string][] = tj.model.merges.map((m, i) => {
      if (Array.isArray(m) && m.length === 2 && typeof m[0] === "string" && typeof m[1] === "string") return m as [string, string];
      if (typeof m !== "string") throw new Error(`${what} is not a supported Qwen2 tokenizer:\n  at model.merges.${i}: expected "a b" or ["a", "b"], got ${JSON.stringify(m)?.slice(0, 80)}`);
      const sp = m.indexOf(" ", 1);
      if (sp < 0) throw new Error(`${what}: model.merges[${i}] ${JSON.stringify(m)} is not "a b"`);
      return [m.slice(0, sp), m.slice(sp + 1)];
    });

    const idOf = (t: z.infer<typeof tokenStringOrObject> | undefined): number | null => {
      if (t === undefined || t === null) return null;
      const s = typeof t === "string" ? t : t.content;
      const id = added.find((a) => a.content === s)?.id ?? bpeVocab.get(s);
      if (id === undefined) throw new Error(`tokenizer_config.json: token ${JSON.stringify(s)} is not in the vocabulary`);
      return id;
    };
    let chatTemplate: string | null = null;
    if (typeof cfg.chat_template === "string") chatTemplate = cfg.chat_template;
    else if (Array.isArray(cfg.chat_template)) chatTemplate = cfg.chat_template.find((t) => t.name === "default")?.template ?? cfg.chat_template[0]?.template ?? null;

    return new QwenTokenizer({
      tokens,
      bpeVocab,
      merges,
      added,
      nfc: tj.normalizer != null,
      bosId: idOf(cfg.bos_token),
      eosId: idOf(cfg.eos_token),
      padId: idOf(cfg.pad_token),
      addBos: cfg.add_bos_token ?? false,
      addEos: cfg.add_eos_token ?? false,
      chatTemplate,
    });
  }

  /** Builds from GGUF metadata: key -> value as a Map or object; values plain (arrays as JS or typed arrays) or
   * engine/formats/gguf.ts's typed { type, value } entries (array values { elemType, items }). */
  static fromGgufMetadata(meta: Record<string, unknown> | Map<string, unknown>): QwenTokenizer {
    const plain: Record<string, unknown> = {};
    for (const [k, v] of meta instanceof Map ? meta : Object.entries(meta)) {
      if (k.startsWith("tokenizer.")) plain[k] = unwrapGgufValue(v);
    }
    const m = parseOrThrow(ggufMetaSchema, plain, "GGUF metadata");
    const n = m["tokenizer.ggml.tokens"].length;
    const types = m["tokenizer.ggml.token_type"];
    if (types && types.length !== n) throw new Error(`GGUF metadata: tokenizer.ggml.token_type has ${types.length} entries, tokens has ${n}`);
    const tokens: (string | undefined)[] = m["tokenizer.ggml.tokens"].slice();
    const bpeVocab = new Map<string, number>();
    const added: AddedToken[] = [];
    const unused = new Set<number>();
    for (let id = 0; id < n; id++) {
      const t = types ? types[id] : TOKEN_TYPE.NORMAL;
      const s = tokens[id]!;
      if (t === TOKEN_TYPE.CONTROL || t === TOKEN_TYPE.USER_DEFINED) {
        added.push({ id, content: s, special: t === TOKEN_TYPE.CONTROL, lstrip: false, rstrip: false, singleWord: false });
      } else if (t === TOKEN_TYPE.UNUSED) {
        unused.add(id);
      } else {
        if (!bpeVocab.has(s)) bpeVocab.set(s, id);
      }
    }
    const merges: [string, string][] = m["tokenizer.ggml.merges"].map((s, i) => {
      const sp = s.indexOf(" ", 1);
      if (sp < 0) throw new Error(`GGUF metadata: tokenizer.ggml.merges[${i}] ${JSON.stringify(s)} is not "a b"`);
      return [s.slice(0, sp), s.slice(sp + 1)];
    });
    const id = (k: string): number | null => {
      const v = m[k as keyof typeof m] as number | undefined;
      if (v === undefined) return null;
      if (v >= n) throw new Error(`GGUF metadata: ${k} = ${v} is out of range (${n} tokens)`);
      return v;
    };
    const extraEos = [id("tokenizer.ggml.eot_token_id"), id("tokenizer.ggml.eom_token_id")].filter((x): x is number => x !== null);
    return new QwenTokenizer({
      tokens,
      bpeVocab,
      merges,
      added,
      unused,
      nfc: true,
      bosId: id("tokenizer.ggml.bos_token_id"),
      eosId: id("tokenizer.ggml.eos_token_id"),
      padId: id("tokenizer.ggml.padding_token_id"),
      addBos: m["tokenizer.ggml.add_bos_token"] ?? false,
      addEos: m["tokenizer.ggml.add_eos_token"] ?? false,
      chatTemplate: m["tokenizer.chat_template"] ?? null,
      extraEos,
    });
  }

  /** GGUF tokenizer metadata as llama.cpp's convert_hf_to_gguf.py writes it for Qwen2 (types: GGUF_TOKENIZER_TYPES).
   * `vocabSize` pads the token list with "[PAD{i}]" (type UNUSED) up to the model's embedding rows. */
  toGgufMetadata(opts: { vocabSize?: number; bosId?: number; eosId?: number; padId?: number; chatTemplate?: string | null } = {}): Record<string, unknown> {
    const n = Math.max(this.vocabSize, opts.vocabSize ?? 0);
    const tokens: string[] = new Array(n);
    const types: number[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const t = i < this.vocabSize ? this.tokens[i] : undefined;
      if (t === undefined || this.unused.has(i)) {
        tokens[i] = t ?? `[PAD${i}]`;
        types[i] = TOKEN_TYPE.UNUSED;
        continue;
      }
      tokens[i] = t;
      const a = this.addedByContent.get(t);
      if (a && a.id === i) types[i] = a.special || looksSpecial(t) ? TOKEN_TYPE.CONTROL : TOKEN_TYPE.USER_DEFINED;
      else types[i] = TOKEN_TYPE.NORMAL;
    }
    const merges = new Array<string>(this.mergeResult.length);
    // Rebuild "a b" strings from the rank table.
    for (const [key, rank] of this.mergeIndex) {
      const a = Math.floor(key / this.mergeKeyBase);
      const b = key - a * this.mergeKeyBase;
      merges[rank] = `${this.tokens[a]} ${this.tokens[b]}`;
    }
    const endoftext = this.addedByContent.get("<|endoftext|>")?.id;
    const bos = opts.bosId ?? this.bosId ?? endoftext;
    const eos = opts.eosId ?? this.eosId ?? endoftext;
    const pad = opts.padId ?? this.padId ?? endoftext;
    const meta: Record<string, unknown> = {
      "tokenizer.ggml.model": "gpt2",
      "tokenizer.ggml.pre": "qwen2",
      "tokenizer.ggml.tokens": tokens,
      "tokenizer.ggml.token_type": types,
      "tokenizer.ggml.merges": merges.filter((x) => x !== undefined),
    };
    if (bos !== undefined) meta["tokenizer.ggml.bos_token_id"] = bos;
    if (eos !== undefined) meta["tokenizer.ggml.eos_token_id"] = eos;
    if (pad !== undefined) meta["tokenizer.ggml.padding_token_id"] = pad;
    meta["tokenizer.ggml.add_bos_token"] = this.addBos;
    if (this.addEos) meta["tokenizer.ggml.add_eos_token"] = true;
    const tpl = opts.chatTemplate === undefined ? this.chatTemplate : opts.chatTemplate;
    if (tpl) meta["tokenizer.chat_template"] = tpl;
    return meta;
  }

  // ----- lookups -----

  idToToken(id: number): string | undefined {
    return this.unused.has(id) ? undefined : this.tokens[id];
  }

  tokenToId(token: string): number | undefined {
    return this.tokenToIdMap.get(token);
  }

  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  /** Id of an added token by content, e.g. specialId("<|im_end|>"). */
  specialId(content: string): number | undefined {
    return this.addedByContent.get(content)?.id;
  }

  // ----- encode -----

  encode(text: string, opts: EncodeOptions = {}): number[] {
    const out: number[] = [];
    if (opts.addSpecial && this.addBos && this.bosId !== null) out.push(this.bosId);
    if (opts.parseSpecial === false || !this.addedRe) {
      this.encodeOrdinary(text, out);
    } else {
      const re = this.addedRe;
      re.lastIndex = 0;
      let last = 0;
      let pendingRstrip = false;
      for (let m = re.exec(text); m !== null; m = re.exec(text)) {
        const a = this.addedByContent.get(m[0])!;
        const start = m.index;
        const end = start + m[0].length;
        if (a.singleWord && (isWordChar(text, start - 1) || isWordChar(text, end))) {
          re.lastIndex = start + 1;
          continue;
        }
        let seg = text.slice(last, start);
        if (pendingRstrip) seg = seg.replace(/^\s+/u, "");
        if (a.lstrip) seg = seg.replace(/\s+$/u, "");
        this.encodeOrdinary(seg, out);
        out.push(a.id);
        pendingRstrip = a.rstrip;
        last = end;
      }
      let seg = text.slice(last);
      if (pendingRstrip) seg = seg.replace(/^\s+/u, "");
      this.encodeOrdinary(seg, out);
    }
    if (opts.addSpecial && this.addEos && this.eosId !== null) out.push(this.eosId);
    return out;
  }

  /** The pre-tokenized words of `text` (after NFC), without special-token matching. For tests/inspection. */
  preTokenize(text: string): string[] {
    const s = this.nfc ? text.normalize("NFC") : text;
    const words: string[] = [];
    const re = this.pretok;
    re.lastIndex = 0;
    let last = 0;
    for (let m = re.exec(s); m !== null; m = re.exec(s)) {
      if (m.index > last) words.push(s.slice(last, m.index));
      words.push(m[0]);
      last = m.index + m[0].length;
    }
    if (last < s.length) words.push(s.slice(last));
    return words;
  }

  private encodeOrdinary(text: string, out: number[]): void {
    if (text === "") return;
    const s = this.nfc ? text.normalize("NFC") : text;
    const re = this.pretok;
    re.lastIndex = 0;
    let last = 0;
    for (let m = re.exec(s); m !== null; m = re.exec(s)) {
      if (m.index > last) this.encodeWord(s.slice(last, m.index), out);
      this.encodeWord(m[0], out);
      last = m.index + m[0].length;
    }
    if (last < s.length) this.encodeWord(s.slice(last), out);
  }

  private encodeWord(word: string, out: number[]): void {
    const cached = this.wordCache.get(word);
    if (cached) {
      for (const id of cached) out.push(id);
      return;
    }
    const ids = this.bpe(utf8.encode(word));
    if (word.length < 256) {
      if (this.wordCache.size >= WORD_CACHE_MAX) this.wordCache.clear();
      this.wordCache.set(word, ids);
    }
    for (const id of ids) out.push(id);
  }

  /** Byte-level BPE of one pre-token: repeatedly applies the lowest-rank merge (leftmost first on ties), as
   * the Rust BPE model's Word::merge_all does with its (rank, position) heap. */
  private bpe(bytes: Uint8Array): number[] {
    const n = bytes.length;
    const ids = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const id = this.byteIds[bytes[i]];
      if (id < 0) throw new Error(`tokenizer has no byte-level token for byte 0x${bytes[i].toString(16)}`);
      ids[i] = id;
    }
    if (n === 1) return [ids[0]];
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const base = this.mergeKeyBase;
    const idx = this.mergeIndex;
    // min-heap of rank * 2^32 + position
    const heap: number[] = [];
    const P = 4294967296;
    const push = (v: number) => {
      let i = heap.length;
      heap.push(v);
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (heap[p] <= v) break;
        heap[i] = heap[p];
        i = p;
      }
      heap[i] = v;
    };
    const pop = (): number => {
      const top = heap[0];
      const v = heap.pop()!;
      const len = heap.length;
      if (len > 0) {
        let i = 0;
        for (;;) {
          let c = 2 * i + 1;
          if (c >= len) break;
          if (c + 1 < len && heap[c + 1] < heap[c]) c++;
          if (heap[c] >= v) break;
          heap[i] = heap[c];
          i = c;
        }
        heap[i] = v;
      }
      return top;
    };
    for (let i = 0; i + 1 < n; i++) {
      const r = idx.get(ids[i] * base + ids[i + 1]);
      if (r !== undefined) push(r * P + i);
    }
    while (heap.length > 0) {
      const top = pop();
      const rank = Math.floor(top / P);
      const pos = top - rank * P;
      const nx = next[pos];
      if (ids[pos] < 0 || nx < 0) continue; // removed or last
      if (idx.get(ids[pos] * base + ids[nx]) !== rank) continue; // stale
      ids[pos] = this.mergeResult[rank];
      // unlink nx
      const nn = next[nx];
      next[pos] = nn;
      if (nn >= 0) prev[nn] = pos;
      ids[nx] = -1;
      const pv = prev[pos];
      if (pv >= 0) {
        const r = idx.get(ids[pv] * base + ids[pos]);
        if (r !== undefined) push(r * P + pv);
      }
      if (nn >= 0) {
        const r = idx.get(ids[pos] * base + ids[nn]);
        if (r !== undefined) push(r * P + pos);
      }
    }
    const res: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) res.push(ids[i]);
    return res;
  }

  // ----- decode -----

  /** The bytes token `id` decodes to (empty for unknown/padding ids). */
  tokenBytes(id: number): Uint8Array {
    let b = this.bytesCache[id];
    if (b === undefined) {
      const t = Number.isInteger(id) && id >= 0 && !this.unused.has(id) ? this.tokens[id] : undefined;
      b = t === undefined ? new Uint8Array(0) : tokenStringToBytes(t);
      if (t !== undefined) this.bytesCache[id] = b;
    }
    return b;
  }

  decode(ids: ArrayLike<number>, opts: DecodeOptions = {}): string {
    const parts: Uint8Array[] = [];
    let len = 0;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (opts.skipSpecial && this.specialIds.has(id)) continue;
      const b = this.tokenBytes(id);
      parts.push(b);
      len += b.length;
    }
    const all = new Uint8Array(len);
    let o = 0;
    for (const p of parts) {
      all.set(p, o);
      o += p.length;
    }
    return new TextDecoder("utf-8").decode(all);
  }

  /** A token-by-token decoder whose outputs concatenate to decode(ids): incomplete UTF-8 sequences are held
   * back until the bytes that complete them arrive (invalid bytes become U+FFFD, as in decode). */
  decoder(opts: DecodeOptions = {}): IncrementalDecoder {
    return new IncrementalDecoder(this, opts);
  }

  // ----- chat -----

  /** Renders messages with the model's chat template (ChatML if it has none). */
  renderChat(messages: ChatMessage[], opts: RenderChatOptions = {}): string {
    const name = (id: number | null) => (id === null ? null : this.tokens[id] ?? null);
    return renderChat(this.chatTemplate, messages, { bosToken: name(this.bosId), eosToken: name(this.eosId), ...opts });
  }

  /** Token ids of the rendered chat (special tokens parsed, nothing added). */
  applyChatTemplate(messages: ChatMessage[], opts: RenderChatOptions = {}): number[] {
    return this.encode(this.renderChat(messages, opts), { addSpecial: false, parseSpecial: true });
  }
}

export class IncrementalDecoder {
  private readonly td = new TextDecoder("utf-8");
  constructor(private readonly tok: QwenTokenizer, private readonly opts: DecodeOptions = {}) {}

  /** Text made complete by token `id` ("" while a multi-byte character is still incomplete). */
  push(id: number): string {
    if (this.opts.skipSpecial && this.tok.isSpecial(id)) return "";
    return this.td.decode(this.tok.tokenBytes(id), { stream: true });
  }

  /** Flushes held-back bytes (as U+FFFD) at the end of the stream. */
  end(): string {
    return this.td.decode();
  }
}

/** models/ of this repository. */
export const MODELS_DIR = join(REPO_ROOT, "models");

/** The full Qwen2/2.5 tokenizer shipped in models/qwen-tokenizer (151643 BPE tokens + specials; Qwen3's file). */
export function loadQwenTokenizer(): QwenTokenizer {
  const dir = join(MODELS_DIR, "qwen-tokenizer");
  return QwenTokenizer.fromTokenizerJson(join(dir, "tokenizer.json.gz"), join(dir, "tokenizer_config.json"));
}

/** Loads the tokenizer of a Hugging Face model folder (tokenizer.json or tokenizer.json.gz). */
export function loadTokenizerDir(dir: string): QwenTokenizer {
  for (const f of ["tokenizer.json", "tokenizer.json.gz"]) {
    const p = join(dir, f);
    if (existsSync(p)) return QwenTokenizer.fromTokenizerJson(p);
  }
  throw new Error(`no tokenizer.json in ${dir}`);
}
